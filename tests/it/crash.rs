//! Killing Tavern with SIGKILL at many points of a session loses no acknowledged intent.

use crate::support::{
    agents_in_log, agents_on_disk, all_documents_parse, demo_script, Console, Project,
};
use tavern::domain::{Actor, Outcome, TavernSchema};
use tavern::log::LogReader;

/// The acknowledged `(seq, what)` pairs in a transcript: `ok #N what` lines.
fn acks(lines: &[String]) -> Vec<(u64, String)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("ok #"))
        .filter_map(|rest| {
            let (seq, what) = rest.split_once(' ')?;
            Some((seq.parse().ok()?, what.to_string()))
        })
        .collect()
}

/// Runs the scripted session and kills it with SIGKILL `delay` after its `kill_after`-th line.
async fn session_until(
    project: &Project,
    kill_after: usize,
    delay: std::time::Duration,
) -> Vec<String> {
    let model = format!("scripted:{}", demo_script().display());
    let mut console = Console::start(project.path(), &["--model", &model]);
    let mut seen = Vec::new();
    // The banner, then a request that sets off the whole scripted session, then commands.
    let mut sent = false;
    while seen.len() < kill_after {
        // Once the session goes quiet there is nothing left to interrupt; kill it there.
        let Some(line) = console
            .next_line_within(std::time::Duration::from_secs(3))
            .await
        else {
            break;
        };
        if !sent && line.starts_with("Type to talk to Jake") {
            console.send("please build me a parser").await;
            console.send("/summon write the docs").await;
            console.send("/commit Frodo docs exist -- true").await;
            sent = true;
        }
        seen.push(line);
    }
    // A deliberate offset, so some kill points land while documents are being written behind the log.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    console.kill().await;
    seen
}

/// How many agent documents are on disk.
fn documents(project: &Project) -> usize {
    std::fs::read_dir(project.tavern().join("agents"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_loses_no_acknowledged_intent() {
    // Kill points are "right after the session printed its k-th line", so each is a different moment of
    // the session: before and after acknowledgements, mid-turn, mid-verification, mid-projection.
    // Later points add a delay after the line, to land while documents are being written.
    let mut points = 0;
    let mut with_documents = 0;
    let kill_points = (1..=26)
        .map(|k| (k, 0))
        .chain([5, 10, 15, 20, 25, 30, 60, 100, 200, 400].map(|ms| (14, ms)));
    for (kill_after, delay_ms) in kill_points {
        let project = Project::new();
        project.write("parser.txt", "parsed\n");
        let delay = std::time::Duration::from_millis(delay_ms);
        let seen = session_until(&project, kill_after, delay).await;
        if seen.len() < kill_after {
            // The session went quiet before this point: later points would all be the same moment.
            continue;
        }
        let on_disk = documents(&project);
        if on_disk > 0 {
            with_documents += 1;
        }
        let acked = acks(&seen);
        let tavern = project.tavern();

        // Restart: the tavern replays, repairs its documents and resumes; then stop it cleanly.
        let model = format!("scripted:{}", demo_script().display());
        let mut console = Console::start(project.path(), &["--model", &model]);
        console.expect_contains("Type to talk to Jake").await;
        console.quit().await;

        let reader = LogReader::<TavernSchema>::open(&tavern.join("log"), "main")
            .unwrap_or_else(|e| panic!("kill point {kill_after}: the log does not open: {e}"));
        let entries = reader
            .read_range(1, reader.last_seq())
            .expect("read the log");
        for (seq, what) in &acked {
            // The entry under an acknowledged number is the very intent that was acknowledged.
            let entry = entries.iter().find(|e| e.seq == *seq).unwrap_or_else(|| {
                panic!("kill point {kill_after}: acknowledged #{seq} is missing")
            });
            assert_eq!(
                entry.actor,
                Actor::User("alice".into()),
                "kill point {kill_after}: #{seq}"
            );
            match what.strip_prefix("summoned ") {
                Some(name) => assert!(
                    entry
                        .outcomes
                        .iter()
                        .any(|o| matches!(o, Outcome::AgentSummoned(n) if n.name == name)),
                    "kill point {kill_after}: #{seq} did not summon {name}"
                ),
                None => assert_eq!(&entry.intent.summary(), what, "kill point {kill_after}"),
            }
        }
        crate::support::assert_log_consistent(&tavern);
        all_documents_parse(&tavern);
        assert_eq!(
            agents_on_disk(&tavern),
            agents_in_log(&tavern),
            "kill point {kill_after}: the documents do not match the log"
        );
        points += 1;
        eprintln!(
            "kill point {kill_after}+{delay_ms}ms: {} lines seen, {} acknowledged, {on_disk} agent documents",
            seen.len(),
            acked.len()
        );
    }
    assert!(points >= 20, "only {points} kill points");
    assert!(
        with_documents >= 3,
        "only {with_documents} kill points found documents on disk"
    );
}
