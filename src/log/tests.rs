//! Tests of the command log against real files in temporary directories.
//!
//! Every async test runs under a timeout so that a bug which leaves a ticket unresolved fails the
//! test instead of hanging the suite, and every blocking wait in a hook has its own timeout.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::lines::find_newline;
use super::writer::{Hook, Phase};
use super::*;

/// The test schema: version 2, whose version 1 spelled a `say` intent as `{"speak": text}`.
struct T;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Intent {
    Say { text: String },
    Summon { name: String },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Said { words: u32 },
    Note(String),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Actor {
    User(String),
    Agent(String),
}

impl Schema for T {
    type Intent = Intent;
    type Outcome = Outcome;
    type Actor = Actor;
    const VERSION: u32 = 2;

    fn upcast(
        from_version: u32,
        mut record: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        if from_version != 1 {
            return Err(format!("no upcaster from version {from_version}"));
        }
        if let Some(intent) = record.get_mut("intent") {
            if let Some(text) = intent
                .get("speak")
                .and_then(|t| t.as_str())
                .map(str::to_string)
            {
                *intent = json!({ "say": { "text": text } });
            }
        }
        Ok(record)
    }
}

/// A schema whose outcomes cannot be encoded as JSON (map keys that are not strings).
struct Unencodable;

impl Schema for Unencodable {
    type Intent = Intent;
    type Outcome = BTreeMap<Vec<u8>, u8>;
    type Actor = Actor;
    const VERSION: u32 = 1;
}

const TIMEOUT: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .expect("the test did not finish in time")
}

fn draft(text: &str) -> EntryDraft<T> {
    EntryDraft {
        origin: None,
        cause: None,
        ts: 1_000,
        actor: Actor::User("alice".into()),
        intent: Intent::Say { text: text.into() },
        status: Status::Executing,
        outcomes: Vec::new(),
        error: None,
    }
}

fn update(seq: Seq, status: Status, outcomes: Vec<Outcome>, error: Option<&str>) -> Update<T> {
    Update {
        seq,
        ts: 2_000 + seq,
        status,
        outcomes,
        error: error.map(str::to_string),
    }
}

/// Tests that are not about durability turn fsync off to stay fast; the round-trip, group
/// commit, durability-ordering and poisoning tests keep it on.
fn unsynced() -> LogOptions {
    LogOptions { fsync: false }
}

fn open_main(dir: &Path) -> Log<T> {
    Log::<T>::open(dir, "main", unsynced())
        .expect("open main")
        .0
}

fn replay_all(reader: &LogReader<T>, upto: Option<Seq>) -> Vec<Record<T>> {
    let mut records = Vec::new();
    reader.replay(upto, |r| records.push(r)).expect("replay");
    records
}

fn entry_seqs(records: &[Record<T>]) -> Vec<Seq> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Entry(e) => Some(e.seq),
            Record::Update(_) => None,
        })
        .collect()
}

fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read log file")
        .lines()
        .map(str::to_string)
        .collect()
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for raw append");
    file.write_all(bytes).expect("raw append");
}

/// The line and reason of the damage a replay of `dir`'s main branch stops at.
fn replay_damage(dir: &Path) -> (u64, String) {
    let reader = LogReader::<T>::open(dir, "main").unwrap();
    match reader.replay(None, |_| {}).unwrap_err() {
        LogError::Damaged { line, reason, .. } => (line, reason),
        other => panic!("expected Damaged, got {other}"),
    }
}

/// A record line (a JSON object) with its checksum field, as the writer seals it.
fn seal(json: &str) -> String {
    let content = json.strip_suffix('}').expect("a JSON object");
    format!(
        r#"{content},"ck":"{:08x}"}}"#,
        crc32fast::hash(content.as_bytes())
    )
}

/// Replaces 1-based line `line` of a file.
fn replace_line(path: &Path, line: usize, with: &str) {
    let mut lines = file_lines(path);
    lines[line - 1] = with.to_string();
    std::fs::write(path, lines.join("\n") + "\n").expect("rewrite log file");
}

fn texts(entries: &[Entry<T>]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match &e.intent {
            Intent::Say { text } => text.clone(),
            Intent::Summon { name } => format!("summon {name}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_and_read_round_trip() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (log, report) = Log::<T>::open(dir.path(), "main", LogOptions::default()).unwrap();
        assert!(report.created);
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(report.last_seq, 0);

        let first = EntryDraft {
            status: Status::Executed,
            outcomes: vec![Outcome::Said { words: 3 }],
            ..draft("hello")
        };
        let second = EntryDraft {
            cause: Some(Cause {
                seq: 1,
                call: Some(0),
            }),
            actor: Actor::Agent("jake".into()),
            intent: Intent::Summon {
                name: "mortal".into(),
            },
            ..draft("")
        };
        let third = EntryDraft {
            status: Status::Failed,
            error: Some("boom".into()),
            origin: Some("discord:message:42".into()),
            ..draft("third")
        };
        assert_eq!(log.append(first.clone()).await.unwrap(), 1);
        assert_eq!(log.append(second.clone()).await.unwrap(), 2);
        log.enqueue_update(update(
            2,
            Status::Executed,
            vec![Outcome::Note("ok".into())],
            None,
        ))
        .unwrap()
        .await
        .unwrap();
        assert_eq!(log.append(third.clone()).await.unwrap(), 3);
        assert_eq!(log.last_seq(), 3);

        let expected = vec![
            Entry::<T> {
                origin: None,
                seq: 1,
                branch: "main".into(),
                parent: None,
                cause: None,
                ts: 1_000,
                actor: first.actor.clone(),
                intent: first.intent.clone(),
                status: Status::Executed,
                outcomes: vec![Outcome::Said { words: 3 }],
                error: None,
            },
            Entry::<T> {
                origin: None,
                seq: 2,
                branch: "main".into(),
                parent: Some(1),
                cause: Some(Cause {
                    seq: 1,
                    call: Some(0),
                }),
                ts: 1_000,
                actor: Actor::Agent("jake".into()),
                intent: Intent::Summon {
                    name: "mortal".into(),
                },
                status: Status::Executed,
                outcomes: vec![Outcome::Note("ok".into())],
                error: None,
            },
            Entry::<T> {
                origin: Some("discord:message:42".into()),
                seq: 3,
                branch: "main".into(),
                parent: Some(2),
                cause: None,
                ts: 1_000,
                actor: third.actor.clone(),
                intent: third.intent.clone(),
                status: Status::Failed,
                outcomes: vec![],
                error: Some("boom".into()),
            },
        ];
        assert_eq!(log.reader().read_range(1, 3).unwrap(), expected);
        assert_eq!(log.reader().read_range(0, Seq::MAX).unwrap(), expected);
        assert_eq!(log.reader().tail(10).unwrap(), expected);
        let snapshot = LogReader::<T>::open(dir.path(), "main").unwrap();
        assert_eq!(snapshot.read_range(2, 2).unwrap(), expected[1..2].to_vec());
        assert_eq!(snapshot.last_seq(), 3);

        let records = replay_all(&snapshot, None);
        assert_eq!(records.len(), 4);
        assert_eq!(
            records[2],
            Record::Update(update(
                2,
                Status::Executed,
                vec![Outcome::Note("ok".into())],
                None
            ))
        );
        log.close().await.unwrap();

        // The file is plain JSON lines in the documented shape.
        let lines = file_lines(log.path());
        assert_eq!(lines.len(), 5);
        let header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(header["v"], 2);
        assert_eq!(header["branch"], "main");
        assert!(header.get("fork").is_some_and(|f| f.is_null()));
        assert!(header["created"].as_u64().is_some());
        assert!(lines[1]
            .starts_with(r#"{"v":2,"seq":1,"branch":"main","ts":1000,"actor":{"user":"alice"}"#));
        assert!(
            !lines[1].contains("parent"),
            "seq 1 has no parent: {}",
            lines[1]
        );
        assert!(
            lines[2].contains(r#""parent":1,"cause":{"seq":1,"call":0}"#),
            "{}",
            lines[2]
        );
        assert!(
            !lines[2].contains("outcomes"),
            "empty outcomes are omitted: {}",
            lines[2]
        );
        // Every record ends with the CRC-32 of what comes before its checksum field.
        let content = r#"{"v":2,"seq":2,"ts":2002,"status":"executed","outcomes":[{"note":"ok"}]"#;
        assert_eq!(
            lines[3],
            format!(
                r#"{content},"ck":"{:08x}"}}"#,
                crc32fast::hash(content.as_bytes())
            )
        );

        let (reopened, report) = Log::<T>::open(dir.path(), "main", LogOptions::default()).unwrap();
        assert!(!report.created);
        assert_eq!(report.last_seq, 3);
        assert_eq!(reopened.append(draft("four")).await.unwrap(), 4);
        reopened.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_concurrent_appenders() {
    bounded(async {
        const WRITERS: usize = 64;
        const EACH: usize = 16;
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::<T>::open(dir.path(), "main", LogOptions::default()).unwrap();
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..EACH {
                    let seq = log.append(draft(&format!("w{writer}-{i}"))).await.unwrap();
                    acked.push((seq, format!("w{writer}-{i}")));
                }
                acked
            }));
        }
        let mut acked = Vec::new();
        for task in tasks {
            acked.extend(task.await.unwrap());
        }
        let total = (WRITERS * EACH) as Seq;
        let mut seqs: Vec<Seq> = acked.iter().map(|(s, _)| *s).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=total).collect::<Vec<_>>(),
            "seqs are unique and contiguous"
        );

        // Every acknowledged seq holds exactly the entry its writer appended.
        let entries = log.reader().read_range(1, total).unwrap();
        assert_eq!(entries.len() as Seq, total);
        let by_seq: BTreeMap<Seq, String> = acked.into_iter().collect();
        for (entry, text) in entries.iter().zip(texts(&entries)) {
            assert_eq!(by_seq[&entry.seq], text);
        }

        let stats = log.stats();
        assert_eq!(stats.records, total);
        assert!(
            stats.fsyncs * 4 < total,
            "expected group commit to need far fewer syncs than appends: {stats:?}"
        );
        assert_eq!(stats.fsyncs, stats.batches);
        log.close().await.unwrap();
    })
    .await;
}

/// Builds a hook that parks the writer thread at `phase` until released.
fn gate(phase: Phase) -> (Hook, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (reached_tx, reached_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let reached_tx = Mutex::new(reached_tx);
    let release_rx = Mutex::new(release_rx);
    let hook: Hook = Arc::new(move |at| {
        if at == phase {
            let _ = reached_tx.lock().unwrap().send(());
            let _ = release_rx.lock().unwrap().recv_timeout(TIMEOUT);
        }
        Ok(())
    });
    (hook, reached_rx, release_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_resolves_only_after_sync() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (hook, reached, release) = gate(Phase::Sync);
        let (log, _) =
            Log::<T>::open_with_hook(dir.path(), "main", LogOptions::default(), hook).unwrap();
        let (seq, mut ticket) = log.enqueue_entry(draft("durable?")).unwrap();
        assert_eq!(seq, 1);
        reached
            .recv_timeout(TIMEOUT)
            .expect("the writer reached the sync");

        // The bytes are written but not synced: the ticket is pending and the durable reader
        // does not see them, although a snapshot of the file does.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut ticket)
                .await
                .is_err()
        );
        assert_eq!(log.stats().fsyncs, 0);
        assert_eq!(log.reader().last_seq(), 0);
        assert!(log.reader().tail(5).unwrap().is_empty());
        assert_eq!(replay_all(&log.reader(), None).len(), 0);
        assert_eq!(
            LogReader::<T>::open(dir.path(), "main").unwrap().last_seq(),
            1
        );

        release.send(()).unwrap();
        ticket.await.unwrap();
        assert_eq!(log.stats().fsyncs, 1);
        assert_eq!(log.reader().last_seq(), 1);
        assert_eq!(texts(&log.reader().tail(5).unwrap()), vec!["durable?"]);
        log.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_truncated_and_appends_continue() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        log.append(draft("one")).await.unwrap();
        log.append(draft("two")).await.unwrap();
        log.close().await.unwrap();
        let path = log.path().to_path_buf();
        drop(log);
        let intact = std::fs::metadata(&path).unwrap().len();
        let torn = br#"{"v":2,"seq":3,"branch":"main","ts":10"#;
        append_raw(&path, torn);

        // A snapshot reader ignores the incomplete line rather than failing on it.
        assert_eq!(
            LogReader::<T>::open(dir.path(), "main").unwrap().last_seq(),
            2
        );

        let (log, report) = Log::<T>::open(dir.path(), "main", unsynced()).unwrap();
        assert_eq!(report.truncated_bytes, torn.len() as u64);
        assert_eq!(report.last_seq, 2);
        assert_eq!(report.len, intact);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), intact);
        assert_eq!(log.append(draft("three")).await.unwrap(), 3);
        log.close().await.unwrap();
        let reader = LogReader::<T>::open(dir.path(), "main").unwrap();
        assert_eq!(
            texts(&reader.read_range(1, 3).unwrap()),
            vec!["one", "two", "three"]
        );
        assert_eq!(entry_seqs(&replay_all(&reader, None)), vec![1, 2, 3]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_middle_line_is_reported_with_its_line_number() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        for i in 1..=5 {
            log.append(draft(&format!("e{i}"))).await.unwrap();
        }
        log.close().await.unwrap();
        let path = log.path().to_path_buf();
        drop(log);
        // Line 1 is the header, so entry 3 is on line 4.
        replace_line(
            &path,
            4,
            r#"{"v":2,"seq":3,"branch":"main","ts":1000,"actor":{"user":"alice"},"intent":"#,
        );

        let reader = LogReader::<T>::open(dir.path(), "main").unwrap();
        let check = |error: LogError| match &error {
            LogError::Damaged { path: p, line, .. } => {
                assert_eq!(p, &path);
                assert_eq!(*line, 4, "{error}");
                let message = error.to_string();
                assert!(message.contains("main.jsonl line 4: "), "{message}");
                assert!(
                    message.contains("Tavern never skips a damaged line"),
                    "{message}"
                );
            }
            other => panic!("expected Damaged, got {other}"),
        };
        check(reader.replay(None, |_| {}).unwrap_err());
        check(reader.read_range(1, 5).unwrap_err());
        check(reader.read_range(3, 3).unwrap_err());
        check(reader.tail(5).unwrap_err());
        // Records before the damage are still readable on their own: the range read only
        // skims later lines for updates to entries 1..=2, and line 4 names entry 3.
        assert_eq!(texts(&reader.read_range(1, 2).unwrap()), vec!["e1", "e2"]);
        assert_eq!(entry_seqs(&replay_all(&reader, Some(2))), vec![1, 2]);

        // A missing line is damage too: the seqs no longer increase by one.
        replace_line(
            &path,
            4,
            &seal(r#"{"v":2,"seq":2,"ts":5,"status":"executed"}"#),
        );
        let (line, reason) = replay_damage(dir.path());
        assert_eq!(line, 5);
        assert!(
            reason.contains("entry seq 4 where 3 was expected"),
            "{reason}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_deep_in_a_large_log_stops_replay_exactly_there() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        for i in 1..=2_000 {
            // Closing below waits for every queued record, so the tickets need no await.
            let (_, _ticket) = log.enqueue_entry(draft(&format!("entry {i}"))).unwrap();
        }
        log.close().await.unwrap();
        let path = log.path().to_path_buf();
        drop(log);
        let pristine = std::fs::read(&path).unwrap();
        // Consecutive blocks are parsed by different threads, so nearby lines exercise both.
        for line in [2usize, 1_000, 1_013, 1_027, 1_998] {
            std::fs::write(&path, &pristine).unwrap();
            replace_line(&path, line, "{not json");
            let reader = LogReader::<T>::open(dir.path(), "main").unwrap();
            let mut delivered = 0u64;
            match reader.replay(None, |_| delivered += 1) {
                Err(LogError::Damaged { line: at, .. }) => assert_eq!(at, line as u64),
                other => panic!("expected Damaged at line {line}, got {other:?}"),
            }
            assert_eq!(
                delivered,
                line as u64 - 2,
                "every record before the damage is delivered"
            );
            // A prefix that ends before the damage replays cleanly.
            let upto = line as Seq - 2;
            assert_eq!(reader.replay(Some(upto), |_| {}).unwrap().entries, upto);
        }
        // Damage on the last line is found as soon as the branch is opened, because opening
        // reads the last entry.
        std::fs::write(&path, &pristine).unwrap();
        replace_line(&path, 2_001, "{not json");
        match LogReader::<T>::open(dir.path(), "main") {
            Err(LogError::Damaged { line, .. }) => assert_eq!(line, 2_001),
            other => panic!("expected Damaged at the last line, got {other:?}"),
        }
        assert!(matches!(
            Log::<T>::open(dir.path(), "main", unsynced()),
            Err(LogError::Damaged { line: 2_001, .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_version_is_rejected() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        log.append(draft("one")).await.unwrap();
        log.append(draft("two")).await.unwrap();
        log.close().await.unwrap();
        append_raw(
            log.path(),
            br#"{"v":3,"seq":3,"branch":"main","ts":1,"actor":{"user":"x"},"intent":{"new_thing":{}},"status":"pending"}
"#,
        );
        let reader = LogReader::<T>::open(dir.path(), "main").unwrap();
        assert_eq!(reader.last_seq(), 3);
        for error in [
            reader.replay(None, |_| {}).unwrap_err(),
            reader.read_range(3, 3).unwrap_err(),
            reader.tail(1).unwrap_err(),
        ] {
            match error {
                LogError::NewerSchema {
                    line,
                    version,
                    supported,
                    ..
                } => assert_eq!((line, version, supported), (4, 3, 2)),
                other => panic!("expected NewerSchema, got {other}"),
            }
        }
        assert_eq!(texts(&reader.read_range(1, 1).unwrap()), vec!["one"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_records_are_upcast() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.jsonl"),
            concat!(
                r#"{"v":1,"branch":"main","fork":null,"created":5}"#,
                "\n",
                r#"{"v":1,"seq":1,"branch":"main","ts":5,"actor":{"user":"bob"},"intent":{"speak":"hi"},"status":"executing"}"#,
                "\n",
                r#"{"v":1,"seq":1,"ts":6,"status":"executed","outcomes":[{"said":{"words":1}}]}"#,
                "\n",
            ),
        )
        .unwrap();
        let log = open_main(dir.path());
        assert_eq!(log.last_seq(), 1);
        assert_eq!(log.append(draft("now v2")).await.unwrap(), 2);
        log.close().await.unwrap();

        let reader = LogReader::<T>::open(dir.path(), "main").unwrap();
        let entries = reader.read_range(1, 2).unwrap();
        assert_eq!(entries[0].intent, Intent::Say { text: "hi".into() });
        assert_eq!(entries[0].actor, Actor::User("bob".into()));
        assert_eq!(entries[0].status, Status::Executed);
        assert_eq!(entries[0].outcomes, vec![Outcome::Said { words: 1 }]);
        assert_eq!(texts(&entries), vec!["hi", "now v2"]);
        assert_eq!(replay_all(&reader, None).len(), 3);

        // A version without an upcaster is reported, not skipped.
        append_raw(log.path(), br#"{"v":0,"seq":3,"ts":1,"status":"pending"}
"#);
        let reader = LogReader::<T>::open(dir.path(), "main").unwrap();
        match reader.replay(None, |_| {}).unwrap_err() {
            LogError::Damaged { line, reason, .. } => {
                assert_eq!(line, 5);
                assert!(reason.contains("no upcaster from version 0"), "{reason}");
            }
            other => panic!("expected Damaged, got {other}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_range_merges_updates_including_late_ones() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        for i in 1..=5 {
            log.append(draft(&format!("e{i}"))).await.unwrap();
        }
        let pad = "x".repeat(100);
        let updates = [
            update(2, Status::Executing, vec![Outcome::Note("a".into())], None),
            update(4, Status::Failed, vec![], Some("bad")),
            update(2, Status::Executed, vec![Outcome::Note("b".into())], None),
        ];
        for u in updates {
            log.enqueue_update(u).unwrap().await.unwrap();
        }
        // Enough filler that the late update lies far beyond the binary search's linear window.
        for i in 6..=600 {
            log.append(draft(&format!("{pad}{i}"))).await.unwrap();
        }
        log.enqueue_update(update(
            1,
            Status::Cancelled,
            vec![Outcome::Said { words: 9 }],
            Some("late"),
        ))
        .unwrap()
        .await
        .unwrap();
        log.append(draft("last")).await.unwrap();

        let reader = log.reader();
        let entries = reader.read_range(1, 4).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(entries[0].status, Status::Cancelled);
        assert_eq!(entries[0].error.as_deref(), Some("late"));
        assert_eq!(entries[0].outcomes, vec![Outcome::Said { words: 9 }]);
        assert_eq!(entries[1].status, Status::Executed);
        assert_eq!(
            entries[1].outcomes,
            vec![Outcome::Note("a".into()), Outcome::Note("b".into())]
        );
        assert_eq!(entries[2].status, Status::Executing);
        assert_eq!(entries[3].status, Status::Failed);
        assert_eq!(entries[3].error.as_deref(), Some("bad"));
        assert_eq!(reader.read_range(2, 2).unwrap(), entries[1..2].to_vec());

        // Deep inside a large file, binary search finds exact entries.
        for seq in [6, 7, 299, 300, 301, 599, 600, 601] {
            let got = reader.read_range(seq, seq).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].seq, seq);
            assert_eq!(got[0].parent, Some(seq - 1));
        }
        assert_eq!(reader.read_range(598, 700).unwrap().len(), 4);
        assert!(reader.read_range(700, 800).unwrap().is_empty());
        assert!(reader.read_range(5, 4).unwrap().is_empty());
        log.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_crosses_the_branch_boundary() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let main = open_main(dir.path());
        for i in 1..=40 {
            main.append(draft(&format!("m{i}"))).await.unwrap();
        }
        main.close().await.unwrap();
        let info = create_branch(dir.path(), "b", "main", 30).unwrap();
        assert_eq!(info.fork.as_ref().map(|f| f.at_seq), Some(30));

        let (b, report) = Log::<T>::open(dir.path(), "b", unsynced()).unwrap();
        assert_eq!(report.last_seq, 30);
        for i in 31..=55 {
            assert_eq!(b.append(draft(&format!("b{i}"))).await.unwrap(), i);
        }
        b.enqueue_update(update(
            29,
            Status::Executed,
            vec![Outcome::Note("in b".into())],
            None,
        ))
        .unwrap()
        .await
        .unwrap();

        let tail = b.reader().tail(50).unwrap();
        assert_eq!(
            tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (6..=55).collect::<Vec<_>>()
        );
        assert!(tail[..25].iter().all(|e| e.branch == "main"));
        assert!(tail[25..].iter().all(|e| e.branch == "b"));
        assert_eq!(tail[23].seq, 29);
        assert_eq!(tail[23].status, Status::Executed);
        assert_eq!(tail[23].outcomes, vec![Outcome::Note("in b".into())]);
        assert_eq!(tail[25].parent, Some(30));
        assert_eq!(
            b.reader().tail(50).unwrap(),
            b.reader().read_range(6, 55).unwrap()
        );
        assert_eq!(b.reader().tail(500).unwrap().len(), 55);
        assert_eq!(b.reader().tail(3).unwrap().len(), 3);
        assert!(b.reader().tail(0).unwrap().is_empty());

        // The update written on b is not part of main.
        let main_view = LogReader::<T>::open(dir.path(), "main").unwrap();
        assert_eq!(
            main_view.read_range(29, 29).unwrap()[0].status,
            Status::Executing
        );
        b.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_sees_exactly_its_prefix() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let main = open_main(dir.path());
        for i in 1..=10 {
            main.append(draft(&format!("m{i}"))).await.unwrap();
        }
        let info = create_branch(dir.path(), "b", "main", 5).unwrap();
        let fork = info.fork.clone().unwrap();
        assert_eq!((fork.from.as_str(), fork.at_seq), ("main", 5));
        // The offset is just after entry 5's line (header + 5 lines).
        let main_lines = file_lines(main.path());
        let expected_offset: usize = main_lines[..6].iter().map(|l| l.len() + 1).sum();
        assert_eq!(fork.at_offset, expected_offset as u64);

        // Parent appends and updates after the fork are invisible to the branch.
        main.append(draft("m11")).await.unwrap();
        main.enqueue_update(update(3, Status::Failed, vec![], Some("after fork")))
            .unwrap()
            .await
            .unwrap();

        let (b, _) = Log::<T>::open(dir.path(), "b", unsynced()).unwrap();
        assert_eq!(b.last_seq(), 5);
        assert_eq!(b.append(draft("b6")).await.unwrap(), 6);
        let view = b.reader();
        let entries = view.read_range(1, 100).unwrap();
        assert_eq!(texts(&entries), vec!["m1", "m2", "m3", "m4", "m5", "b6"]);
        assert_eq!(entries[2].status, Status::Executing);
        assert_eq!(entries[5].branch, "b");
        assert_eq!(entries[5].parent, Some(5));
        let records = replay_all(&view, None);
        assert_eq!(entry_seqs(&records), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(records.len(), 6, "no update from main after the fork");

        // Main still sees its own history only.
        let main_entries = main.reader().read_range(1, 100).unwrap();
        assert_eq!(main_entries.len(), 11);
        assert_eq!(main_entries[2].status, Status::Failed);

        // Forking a branch at an entry it inherited points at the file that holds it.
        let c = create_branch(dir.path(), "c", "b", 3).unwrap();
        let c_fork = c.fork.unwrap();
        assert_eq!((c_fork.from.as_str(), c_fork.at_seq), ("main", 3));
        let d = create_branch(dir.path(), "d", "b", 6).unwrap();
        assert_eq!(d.fork.unwrap().from, "b");
        let e = create_branch(dir.path(), "e", "b", 0).unwrap();
        assert_eq!(e.fork.unwrap().at_seq, 0);
        assert_eq!(
            texts(
                &LogReader::<T>::open(dir.path(), "c")
                    .unwrap()
                    .read_range(1, 9)
                    .unwrap()
            ),
            vec!["m1", "m2", "m3"]
        );
        assert_eq!(
            LogReader::<T>::open(dir.path(), "d")
                .unwrap()
                .read_range(1, 9)
                .unwrap()
                .len(),
            6
        );
        let empty = LogReader::<T>::open(dir.path(), "e").unwrap();
        assert_eq!(empty.last_seq(), 0);
        assert!(replay_all(&empty, None).is_empty());
        let (e_log, _) = Log::<T>::open(dir.path(), "e", unsynced()).unwrap();
        assert_eq!(e_log.append(draft("fresh")).await.unwrap(), 1);
        e_log.close().await.unwrap();

        // Errors: taken name, fork point beyond the end, unknown parent, bad name.
        assert!(matches!(
            create_branch(dir.path(), "b", "main", 1),
            Err(LogError::BranchExists { .. })
        ));
        match create_branch(dir.path(), "f", "main", 12) {
            Err(LogError::SeqOutOfRange { seq, last, .. }) => assert_eq!((seq, last), (12, 11)),
            other => panic!("expected SeqOutOfRange, got {other:?}"),
        }
        assert!(matches!(
            create_branch(dir.path(), "f", "nope", 1),
            Err(LogError::UnknownBranch { .. })
        ));
        assert!(matches!(
            Log::<T>::open(dir.path(), "nope", unsynced()),
            Err(LogError::UnknownBranch { .. })
        ));
        b.close().await.unwrap();
        main.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_upto_has_prefix_semantics() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        log.append(draft("one")).await.unwrap();
        log.enqueue_update(update(1, Status::Executed, vec![], None))
            .unwrap()
            .await
            .unwrap();
        log.append(draft("two")).await.unwrap();
        log.append(draft("three")).await.unwrap();
        log.enqueue_update(update(2, Status::Executed, vec![], None))
            .unwrap()
            .await
            .unwrap();
        let reader = log.reader();

        let as_of_2 = replay_all(&reader, Some(2));
        assert_eq!(as_of_2.len(), 3, "entry 1, its update, entry 2");
        assert_eq!(entry_seqs(&as_of_2), vec![1, 2]);
        assert!(matches!(&as_of_2[1], Record::Update(u) if u.seq == 1));
        assert!(
            matches!(&as_of_2[2], Record::Entry(e) if e.seq == 2 && e.status == Status::Executing)
        );

        let as_of_3 = replay_all(&reader, Some(3));
        assert_eq!(
            as_of_3.len(),
            4,
            "the update for 2 comes after entry 3's line"
        );
        assert_eq!(replay_all(&reader, None).len(), 5);
        assert!(replay_all(&reader, Some(0)).is_empty());
        let stats = reader.replay(Some(3), |_| {}).unwrap();
        assert_eq!((stats.entries, stats.updates), (3, 1));
        match reader.replay(Some(4), |_| {}) {
            Err(LogError::SeqOutOfRange { seq, last, .. }) => assert_eq!((seq, last), (4, 3)),
            other => panic!("expected SeqOutOfRange, got {other:?}"),
        }
        log.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_into_branch_records_the_new_intent() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        log.append(draft("one")).await.unwrap();
        log.append(draft("two")).await.unwrap();
        let original = EntryDraft {
            cause: Some(Cause {
                seq: 2,
                call: Some(1),
            }),
            actor: Actor::Agent("jake".into()),
            status: Status::Executed,
            outcomes: vec![Outcome::Note("done".into())],
            ..draft("three")
        };
        log.append(original).await.unwrap();
        log.append(draft("four")).await.unwrap();
        log.close().await.unwrap();

        let new_intent = Intent::Summon {
            name: "drone".into(),
        };
        let info =
            edit_into_branch::<T>(dir.path(), "edit", "main", 3, new_intent.clone(), 77).unwrap();
        let fork = info.fork.clone().unwrap();
        assert_eq!((fork.from.as_str(), fork.at_seq), ("main", 2));
        assert_eq!(info.path, dir.path().join("edit.jsonl"));

        let reader = LogReader::<T>::open(dir.path(), "edit").unwrap();
        assert_eq!(reader.last_seq(), 3);
        let entries = reader.read_range(1, 10).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(texts(&entries[..2]), vec!["one", "two"]);
        let edited = &entries[2];
        assert_eq!(edited.seq, 3);
        assert_eq!(edited.branch, "edit");
        assert_eq!(edited.parent, Some(2));
        assert_eq!(edited.intent, new_intent);
        assert_eq!(edited.actor, Actor::Agent("jake".into()));
        assert_eq!(
            edited.cause,
            Some(Cause {
                seq: 2,
                call: Some(1)
            })
        );
        assert_eq!(edited.status, Status::Pending);
        assert!(edited.outcomes.is_empty());
        assert_eq!(edited.ts, 77);

        let (edit_log, _) = Log::<T>::open(dir.path(), "edit", unsynced()).unwrap();
        assert_eq!(edit_log.append(draft("after edit")).await.unwrap(), 4);
        edit_log.close().await.unwrap();

        let first =
            edit_into_branch::<T>(dir.path(), "edit1", "main", 1, new_intent.clone(), 1).unwrap();
        assert_eq!(first.fork.unwrap().at_seq, 0);
        let at_one = LogReader::<T>::open(dir.path(), "edit1")
            .unwrap()
            .read_range(1, 5)
            .unwrap();
        assert_eq!(at_one.len(), 1);
        assert_eq!(at_one[0].parent, None);

        for at in [0, 5] {
            assert!(matches!(
                edit_into_branch::<T>(dir.path(), "bad", "main", at, new_intent.clone(), 1),
                Err(LogError::SeqOutOfRange { .. })
            ));
        }
        assert!(matches!(
            edit_into_branch::<T>(dir.path(), "edit", "main", 2, new_intent, 1),
            Err(LogError::BranchExists { .. })
        ));
    })
    .await;
}

#[test]
fn list_branches_reads_headers_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = open_main(dir.path());
    runtime.block_on(async {
        for i in 1..=3 {
            log.append(draft(&format!("m{i}"))).await.unwrap();
        }
        log.close().await.unwrap();
    });
    create_branch(dir.path(), "zeta", "main", 2).unwrap();
    create_branch(dir.path(), "alpha", "zeta", 0).unwrap();
    std::fs::write(dir.path().join(".zeta.jsonl.tmp-1-1"), "leftover").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a branch").unwrap();
    std::fs::write(dir.path().join("bad name.jsonl"), "not a branch").unwrap();

    let branches = list_branches(dir.path()).unwrap();
    let names: Vec<&str> = branches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, vec!["alpha", "main", "zeta"]);
    assert_eq!(branches[1].fork, None);
    assert_eq!(branches[1].path, dir.path().join("main.jsonl"));
    let zeta = branches[2].fork.clone().unwrap();
    assert_eq!((zeta.from.as_str(), zeta.at_seq), ("main", 2));
    assert_eq!(
        branches[0].fork.as_ref().map(|f| f.from.as_str()),
        Some("zeta")
    );

    assert!(matches!(
        list_branches(&dir.path().join("missing")),
        Err(LogError::Io { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_head_conflicts() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        let (seq, ticket) = log.enqueue_entry_expect(0, draft("first")).unwrap();
        assert_eq!(seq, 1);
        match log.enqueue_entry_expect(0, draft("stale")) {
            Err(LogError::Conflict {
                expected, actual, ..
            }) => assert_eq!((expected, actual), (0, 1)),
            other => panic!("expected Conflict, got {other:?}"),
        }
        let (seq, second) = log.enqueue_entry_expect(1, draft("second")).unwrap();
        assert_eq!(seq, 2);
        ticket.await.unwrap();
        second.await.unwrap();
        assert_eq!(
            texts(&log.reader().read_range(1, 5).unwrap()),
            vec!["first", "second"]
        );
        log.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sync_poisons_the_writer() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let fail = Arc::new(AtomicBool::new(false));
        let hook: Hook = {
            let fail = Arc::clone(&fail);
            Arc::new(move |phase| {
                if phase == Phase::Sync && fail.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other("injected fsync failure"));
                }
                Ok(())
            })
        };
        let (log, _) =
            Log::<T>::open_with_hook(dir.path(), "main", LogOptions::default(), hook).unwrap();
        log.append(draft("kept")).await.unwrap();
        fail.store(true, Ordering::SeqCst);

        match log.append(draft("lost")).await {
            Err(LogError::WriterFailed { message, .. }) => {
                assert!(message.contains("injected fsync failure"), "{message}");
                assert!(message.contains("cut off"), "{message}");
            }
            other => panic!("expected WriterFailed, got {other:?}"),
        }
        // Everything after the failure is refused, without retrying.
        assert!(matches!(
            log.enqueue_entry(draft("later")),
            Err(LogError::WriterFailed { .. })
        ));
        assert!(matches!(
            log.enqueue_update(update(1, Status::Executed, vec![], None)),
            Err(LogError::WriterFailed { .. })
        ));
        assert!(matches!(
            log.close().await,
            Err(LogError::WriterFailed { .. })
        ));
        assert_eq!(log.reader().last_seq(), 1);
        drop(log);

        // The unconfirmed record was cut off, so it does not reappear.
        let (log, report) = Log::<T>::open(dir.path(), "main", unsynced()).unwrap();
        assert_eq!(report.last_seq, 1);
        assert_eq!(texts(&log.reader().read_range(1, 9).unwrap()), vec!["kept"]);
        log.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_writer_per_branch_and_clean_shutdown() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        assert!(matches!(
            Log::<T>::open(dir.path(), "main", unsynced()),
            Err(LogError::Busy { .. })
        ));
        let (_, ticket) = log.enqueue_entry(draft("queued")).unwrap();
        log.close().await.unwrap();
        ticket.await.unwrap();
        // Closing is idempotent and refuses later records.
        log.close().await.unwrap();
        assert!(matches!(
            log.append(draft("late")).await,
            Err(LogError::WriterFailed { .. })
        ));
        // The durable reader keeps working after close.
        assert_eq!(log.reader().last_seq(), 1);

        // Dropping the last handle without awaiting still writes what was queued.
        let log = open_main(dir.path());
        let (seq, _ticket) = log.enqueue_entry(draft("dropped")).unwrap();
        assert_eq!(seq, 2);
        drop(log);
        let log = open_main(dir.path());
        assert_eq!(log.last_seq(), 2);
        assert_eq!(
            texts(&log.reader().read_range(2, 2).unwrap()),
            vec!["dropped"]
        );
        log.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_inputs_are_rejected() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "a/b", "a.b", "../x", "spa ce", &"n".repeat(65)] {
            match Log::<T>::open(dir.path(), name, unsynced()) {
                Err(error @ LogError::InvalidBranchName { .. }) => {
                    assert!(
                        error.to_string().contains("A-Z, a-z, 0-9, '_' and '-'"),
                        "{error}"
                    )
                }
                other => panic!("expected InvalidBranchName for {name:?}, got {other:?}"),
            }
        }
        assert!(chain::validate_name(&"n".repeat(64)).is_ok());
        assert!(chain::validate_name("Feature_branch-2").is_ok());

        let log = open_main(dir.path());
        match log.enqueue_update(update(1, Status::Executed, vec![], None)) {
            Err(LogError::SeqOutOfRange { seq, last, .. }) => assert_eq!((seq, last), (1, 0)),
            other => panic!("expected SeqOutOfRange, got {other:?}"),
        }
        log.close().await.unwrap();

        let (bad, _) =
            Log::<Unencodable>::open(&dir.path().join("other"), "main", unsynced()).unwrap();
        let mut outcome = BTreeMap::new();
        outcome.insert(vec![1u8], 1u8);
        let draft = EntryDraft::<Unencodable> {
            origin: None,
            cause: None,
            ts: 1,
            actor: Actor::User("x".into()),
            intent: Intent::Say { text: "x".into() },
            status: Status::Executed,
            outcomes: vec![outcome],
            error: None,
        };
        assert!(matches!(
            bad.enqueue_entry(draft),
            Err(LogError::Encode { .. })
        ));
        // Nothing was consumed by the failed encode.
        assert_eq!(bad.last_seq(), 0);
        bad.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_log_random_access_matches_replay() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        let mut tickets = Vec::new();
        for i in 1..=3_000u64 {
            let (seq, ticket) = log.enqueue_entry(draft(&format!("entry {i}"))).unwrap();
            tickets.push(ticket);
            if i % 3 == 0 {
                tickets.push(
                    log.enqueue_update(update(
                        seq - 1,
                        Status::Executed,
                        vec![Outcome::Said { words: 1 }],
                        None,
                    ))
                    .unwrap(),
                );
            }
            if i % 500 == 0 {
                tickets.push(
                    log.enqueue_update(update(i / 2, Status::Failed, vec![], Some("late")))
                        .unwrap(),
                );
            }
        }
        for ticket in tickets {
            ticket.await.unwrap();
        }
        let reader = log.reader();
        let mut model: Vec<Entry<T>> = Vec::new();
        reader
            .replay(None, |record| match record {
                Record::Entry(e) => model.push(e),
                Record::Update(u) => model[(u.seq - 1) as usize].apply(u),
            })
            .unwrap();
        assert_eq!(model.len(), 3_000);
        for (from, to) in [
            (1, 1),
            (1, 10),
            (250, 260),
            (1_499, 1_502),
            (2_990, 3_000),
            (2_000, 2_000),
        ] {
            assert_eq!(
                reader.read_range(from, to).unwrap(),
                model[(from - 1) as usize..to as usize].to_vec(),
                "range {from}..={to}"
            );
        }
        assert_eq!(reader.tail(50).unwrap(), model[2_950..].to_vec());
        log.close().await.unwrap();
    })
    .await;
}

#[test]
fn fast_seq_reads_only_canonical_prefixes() {
    assert_eq!(codec::fast_seq(br#"{"v":2,"seq":42,"ts":1}"#), Some(42));
    assert_eq!(
        codec::fast_seq(br#"{"v":12,"seq":0,"branch":"x"}"#),
        Some(0)
    );
    assert_eq!(codec::fast_seq(br#"{"seq":42,"v":2}"#), None);
    assert_eq!(codec::fast_seq(br#"{"v":2,"seq":42}"#), None);
    assert_eq!(
        codec::fast_seq(br#"{"v":2,"seq":99999999999999999999,"ts":1}"#),
        None
    );
    assert_eq!(codec::fast_seq(b""), None);
}

/// One step of a random log history.
#[derive(Clone, Debug)]
enum Op {
    Entry {
        status: Status,
        outcomes: u8,
        pad: usize,
        error: bool,
    },
    Update {
        target: prop::sample::Index,
        status: Status,
        outcomes: u8,
        error: bool,
    },
}

fn status_strategy() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Pending),
        Just(Status::Executing),
        Just(Status::Executed),
        Just(Status::Failed),
        Just(Status::Cancelled),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (status_strategy(), 0u8..3, 0usize..400, any::<bool>())
            .prop_map(|(status, outcomes, pad, error)| Op::Entry { status, outcomes, pad, error }),
        2 => (any::<prop::sample::Index>(), status_strategy(), 0u8..3, any::<bool>())
            .prop_map(|(target, status, outcomes, error)| Op::Update { target, status, outcomes, error }),
    ]
}

fn outcomes(n: u8, tag: usize) -> Vec<Outcome> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                Outcome::Said { words: tag as u32 }
            } else {
                Outcome::Note(format!("n{tag}"))
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_read_back_identically(
        ops in prop::collection::vec(op_strategy(), 1..160),
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let log = open_main(dir.path());
        let mut written: Vec<Record<T>> = Vec::new();
        let mut model: Vec<Entry<T>> = Vec::new();
        let mut tickets = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Entry { status, outcomes: n, pad, error } => {
                    let draft = EntryDraft::<T> {
                        origin: (i % 5 == 0).then(|| format!("discord:message:{i}")),
                        cause: (i % 3 == 0 && !model.is_empty()).then(|| Cause { seq: model.len() as Seq, call: (i % 2 == 0).then_some(i as u32) }),
                        ts: i as Millis,
                        actor: Actor::Agent(format!("a{}", i % 4)),
                        intent: Intent::Say { text: format!("{i}{}", "p".repeat(*pad)) },
                        status: *status,
                        outcomes: outcomes(*n, i),
                        error: error.then(|| format!("e{i}")),
                    };
                    let (seq, ticket) = log.enqueue_entry(draft.clone()).unwrap();
                    tickets.push(ticket);
                    // Built field by field, not with `into_entry`, so the model does not trust the code
                        // it checks.
                    let entry = Entry::<T> {
                        origin: draft.origin.clone(),
                        seq,
                        branch: "main".into(),
                        parent: (seq > 1).then(|| seq - 1),
                        cause: draft.cause,
                        ts: draft.ts,
                        actor: draft.actor,
                        intent: draft.intent,
                        status: draft.status,
                        outcomes: draft.outcomes,
                        error: draft.error,
                    };
                    written.push(Record::Entry(entry.clone()));
                    model.push(entry);
                }
                Op::Update { target, status, outcomes: n, error } => {
                    if model.is_empty() {
                        continue;
                    }
                    let seq = target.index(model.len()) as Seq + 1;
                    let u = Update::<T> {
                        seq,
                        ts: i as Millis,
                        status: *status,
                        outcomes: outcomes(*n, i),
                        error: error.then(|| format!("u{i}")),
                    };
                    tickets.push(log.enqueue_update(u.clone()).unwrap());
                    written.push(Record::Update(u.clone()));
                    model[(seq - 1) as usize].apply(u);
                }
            }
        }
        runtime.block_on(async {
            for ticket in tickets {
                ticket.await.unwrap();
            }
        });
        let last = model.len() as Seq;
        for reader in [log.reader(), LogReader::<T>::open(dir.path(), "main").unwrap()] {
            prop_assert_eq!(reader.last_seq(), last);
            prop_assert_eq!(&replay_all(&reader, None), &written);
            prop_assert_eq!(&reader.read_range(1, last).unwrap(), &model);
            if last == 0 {
                continue;
            }
            for (a, b) in &picks {
                let (x, y) = (a.index(model.len()), b.index(model.len()));
                let (from, to) = (x.min(y), x.max(y));
                prop_assert_eq!(
                    &reader.read_range(from as Seq + 1, to as Seq + 1).unwrap(),
                    &model[from..=to].to_vec()
                );
                let n = y + 1;
                prop_assert_eq!(&reader.tail(n).unwrap(), &model[model.len() - n..].to_vec());
                // Prefix replay stops right after entry x + 1's own line.
                let upto = x as Seq + 1;
                let cut = written
                    .iter()
                    .position(|r| matches!(r, Record::Entry(e) if e.seq == upto))
                    .unwrap();
                prop_assert_eq!(&replay_all(&reader, Some(upto)), &written[..=cut].to_vec());
            }
        }
        runtime.block_on(log.close()).unwrap();
    }

    #[test]
    fn find_newline_matches_a_naive_search(hay in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..100)) {
        prop_assert_eq!(find_newline(&hay), hay.iter().position(|&b| b == b'\n'));
    }
}

mod integrity;
