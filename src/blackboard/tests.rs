//! Tests of the blackboard: names and ids, the store contract (run against both stores),
//! crash safety of [`FsStore`] writes, front matter, and change notification.
//!
//! Every wait on a watcher is bounded by [`WATCH_TIMEOUT`]; nothing sleeps to synchronise.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::front_matter::{self, FormatError};
use super::*;

/// How long a test waits for a change it expects before failing.
const WATCH_TIMEOUT: Duration = Duration::from_secs(5);

fn name(text: &str) -> DocName {
    DocName::new(text).expect("test names are valid")
}

fn id(collection: Collection, text: &str) -> DocId {
    DocId::new(collection, name(text))
}

fn written(id: &DocId) -> Change {
    Change {
        id: id.clone(),
        kind: ChangeKind::Written,
    }
}

fn removed(id: &DocId) -> Change {
    Change {
        id: id.clone(),
        kind: ChangeKind::Removed,
    }
}

fn open_temp_store() -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let store = FsStore::open(dir.path().join(".tavern")).expect("open store");
    (dir, store)
}

/// The names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read directory")
        .map(|entry| {
            entry
                .expect("read directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Waits (at most [`WATCH_TIMEOUT`]) until `watch` reports `want`, and returns the changes
/// reported before it. Duplicates and unrelated changes are allowed by the contract, so they
/// are collected rather than rejected.
async fn wait_for(watch: &mut Watch, want: &Change) -> Vec<Change> {
    let mut before = Vec::new();
    let outcome = tokio::time::timeout(WATCH_TIMEOUT, async {
        loop {
            match watch.next().await {
                Some(change) if change == *want => return true,
                Some(change) => before.push(change),
                None => return false,
            }
        }
    })
    .await;
    match outcome {
        Ok(true) => before,
        Ok(false) => panic!("watch ended before reporting {want:?}; saw {before:?}"),
        Err(_) => panic!("no {want:?} within {WATCH_TIMEOUT:?}; saw {before:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Names and ids
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_names_are_accepted() {
    let long = "x".repeat(MAX_NAME_BYTES);
    let good = [
        "bob",
        "Éowyn",
        "agent-1_beta",
        "v1.2",
        "with space",
        "msg 2024-01-01T10.00",
        "日本語",
        long.as_str(),
    ];
    for text in good {
        let name = DocName::new(text).unwrap_or_else(|err| panic!("{text:?} rejected: {err}"));
        assert_eq!(name.as_str(), text);
        assert_eq!(name.to_string(), text);
    }
}

#[test]
fn invalid_names_are_rejected_with_the_rule_they_break() {
    let too_long = "x".repeat(MAX_NAME_BYTES + 1);
    // 33 two-byte characters: 33 characters but 66 bytes, so the limit is in bytes.
    let too_long_in_bytes = "é".repeat(33);
    let bad: [(&str, NameRule, &str); 15] = [
        ("", NameRule::Empty, "may not be empty"),
        ("../etc", NameRule::DotDot, "may not contain \"..\""),
        ("a..b", NameRule::DotDot, "may not contain \"..\""),
        ("..", NameRule::DotDot, "may not contain \"..\""),
        ("a/b", NameRule::Separator, "may not contain '/' or '\\'"),
        ("a\\b", NameRule::Separator, "may not contain '/' or '\\'"),
        (
            "nul\0byte",
            NameRule::ControlCharacter,
            "control characters",
        ),
        (
            "tab\there",
            NameRule::ControlCharacter,
            "control characters",
        ),
        (
            "line\nbreak",
            NameRule::ControlCharacter,
            "control characters",
        ),
        (".hidden", NameRule::LeadingDot, "may not start with '.'"),
        (
            ".bob.md.tmp-1234",
            NameRule::LeadingDot,
            "may not start with '.'",
        ),
        (
            "trailing ",
            NameRule::TrailingSpaceOrDot,
            "may not end with",
        ),
        (
            "trailing.",
            NameRule::TrailingSpaceOrDot,
            "may not end with",
        ),
        (
            too_long.as_str(),
            NameRule::TooLong {
                len: MAX_NAME_BYTES + 1,
            },
            "at most 64 bytes",
        ),
        (
            too_long_in_bytes.as_str(),
            NameRule::TooLong { len: 66 },
            "(this one is 66)",
        ),
    ];
    for (text, rule, rule_text) in bad {
        let err = DocName::new(text).expect_err(text);
        assert_eq!(err.rule(), rule, "rule for {text:?}");
        assert_eq!(err.name(), text);
        let message = err.to_string();
        assert!(
            message.contains(&format!("{text:?}")),
            "{message:?} names {text:?}"
        );
        assert!(message.contains(rule_text), "{message:?} explains the rule");
    }
}

#[test]
fn name_error_message_matches_the_documented_form() {
    let err = DocName::new("../etc").expect_err("traversal is rejected");
    assert_eq!(
        err.to_string(),
        "invalid document name \"../etc\": names may not contain \"..\"; \
         use letters, digits, '-', '_', '.', spaces"
    );
    // Through the store error, the message is unchanged.
    assert_eq!(StoreError::from(err.clone()).to_string(), err.to_string());
}

#[test]
fn collections_have_distinct_directories() {
    let dirs: Vec<&str> = Collection::all().iter().map(Collection::dir).collect();
    assert_eq!(
        dirs,
        [
            "agents",
            "messages",
            "work/pending",
            "work/completed",
            "prompts"
        ]
    );
}

#[test]
fn doc_id_paths_round_trip() {
    for &collection in Collection::all() {
        let doc = id(collection, "Éowyn 1");
        let path = doc.relative_path();
        assert_eq!(path, Path::new(collection.dir()).join("Éowyn 1.md"));
        assert_eq!(doc.to_string(), format!("{}/Éowyn 1.md", collection.dir()));
        assert_eq!(DocId::from_relative_path(&path), Some(doc));
    }
}

#[test]
fn non_document_paths_are_not_ids() {
    let not_ids = [
        "agents/.bob.md.tmp-0d5f0c2e",
        "agents/bob.txt",
        "agents/bob",
        "agents/.md",
        "agents/sub/bob.md",
        "work/bob.md",
        "log/2024.md",
        "bob.md",
        "/agents/bob.md",
        "agents",
        "",
    ];
    for path in not_ids {
        assert_eq!(DocId::from_relative_path(Path::new(path)), None, "{path:?}");
    }
    assert_eq!(
        DocId::parse(Collection::Agents, "../x").map_err(|err| err.rule()),
        Err(NameRule::DotDot)
    );
}

// ---------------------------------------------------------------------------------------------
// The store contract, shared by both stores
// ---------------------------------------------------------------------------------------------

/// Exercises write, read, list and remove through the trait only.
fn check_store_contract(store: &dyn DocStore) {
    let bob = id(Collection::Agents, "bob");
    assert_eq!(store.read(&bob).expect("read missing"), None);
    assert!(!store.remove(&bob).expect("remove missing"));
    assert_eq!(store.list(Collection::Agents).expect("list empty"), []);

    store.write(&bob, "first\n").expect("write");
    assert_eq!(store.read(&bob).expect("read").as_deref(), Some("first\n"));
    store.write(&bob, "second").expect("overwrite");
    assert_eq!(store.read(&bob).expect("read").as_deref(), Some("second"));

    // Empty and non-ASCII content survive unchanged.
    let empty = id(Collection::Prompts, "empty");
    store.write(&empty, "").expect("write empty");
    assert_eq!(store.read(&empty).expect("read").as_deref(), Some(""));
    let eowyn = id(Collection::Agents, "Éowyn");
    store.write(&eowyn, "«shield-maiden»\n").expect("write");
    assert_eq!(
        store.read(&eowyn).expect("read").as_deref(),
        Some("«shield-maiden»\n")
    );

    for text in ["carol", "alice", "dave smith"] {
        store
            .write(&id(Collection::Agents, text), text)
            .expect("write");
    }
    let same_name_elsewhere = id(Collection::WorkPending, "alice");
    store
        .write(&same_name_elsewhere, "a work item")
        .expect("write");

    let listed: Vec<String> = store
        .list(Collection::Agents)
        .expect("list")
        .into_iter()
        .map(|doc| {
            assert_eq!(doc.collection, Collection::Agents);
            doc.name.to_string()
        })
        .collect();
    assert_eq!(listed, ["alice", "bob", "carol", "dave smith", "Éowyn"]);
    assert_eq!(
        store.list(Collection::WorkPending).expect("list"),
        std::slice::from_ref(&same_name_elsewhere)
    );
    assert_eq!(store.list(Collection::WorkCompleted).expect("list"), []);
    // Documents with the same name in different collections are distinct.
    assert_eq!(
        store
            .read(&id(Collection::Agents, "alice"))
            .expect("read")
            .as_deref(),
        Some("alice")
    );

    assert!(store.remove(&bob).expect("remove"));
    assert!(!store.remove(&bob).expect("remove again"));
    assert_eq!(store.read(&bob).expect("read removed"), None);
    assert!(!store.list(Collection::Agents).expect("list").contains(&bob));
    assert_eq!(
        store.read(&same_name_elsewhere).expect("read").as_deref(),
        Some("a work item")
    );
}

#[test]
fn fs_store_meets_the_store_contract() {
    let (_dir, store) = open_temp_store();
    check_store_contract(&store);
}

#[test]
fn mem_store_meets_the_store_contract() {
    check_store_contract(&MemStore::new());
}

// ---------------------------------------------------------------------------------------------
// FsStore specifics
// ---------------------------------------------------------------------------------------------

#[test]
fn fs_store_open_creates_every_collection_directory() {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let root = dir.path().join("project").join(".tavern");
    let store = FsStore::open(&root).expect("open");
    for collection in Collection::all() {
        assert!(root.join(collection.dir()).is_dir(), "{collection} exists");
    }
    assert_eq!(
        store.root(),
        root.canonicalize().expect("canonicalize root")
    );
    // Opening again is harmless and sees the same documents.
    let doc = id(Collection::Messages, "m1");
    store.write(&doc, "hello").expect("write");
    let again = FsStore::open(&root).expect("reopen");
    assert_eq!(again.read(&doc).expect("read").as_deref(), Some("hello"));
}

#[test]
fn fs_store_writes_documents_where_the_layout_says() {
    let (_dir, store) = open_temp_store();
    let doc = id(Collection::WorkCompleted, "task 7");
    store.write(&doc, "done\n").expect("write");
    let path = store
        .root()
        .join("work")
        .join("completed")
        .join("task 7.md");
    assert_eq!(store.path_of(&doc), path);
    assert_eq!(fs::read_to_string(&path).expect("read by hand"), "done\n");
}

#[test]
fn write_leaves_no_temporary_file_behind() {
    let (_dir, store) = open_temp_store();
    let doc = id(Collection::Agents, "bob");
    for round in 0..3 {
        store.write(&doc, &format!("round {round}")).expect("write");
    }
    assert_eq!(entries(&store.root().join("agents")), ["bob.md"]);
}

#[test]
fn crash_leftovers_and_foreign_files_are_ignored() {
    let (_dir, store) = open_temp_store();
    let doc = id(Collection::Agents, "bob");
    store.write(&doc, "the real bob").expect("write");
    let agents = store.root().join("agents");
    // A write interrupted by a crash leaves its temporary file next to the target.
    fs::write(agents.join(".bob.md.tmp-0d5f0c2e"), "half a bo").expect("fake leftover");
    fs::write(agents.join(".carol.md.tmp-1a2b"), "never finished").expect("fake leftover");
    fs::write(agents.join("notes.txt"), "not a document").expect("foreign file");
    fs::write(agents.join("bad .md"), "invalid name").expect("foreign file");
    fs::create_dir(agents.join("folder.md")).expect("directory named like a document");

    assert_eq!(
        store.list(Collection::Agents).expect("list"),
        std::slice::from_ref(&doc)
    );
    assert_eq!(
        store.read(&doc).expect("read").as_deref(),
        Some("the real bob")
    );
    // A later write of the same document is unaffected by the leftover.
    store.write(&doc, "bob again").expect("write");
    assert_eq!(
        store.read(&doc).expect("read").as_deref(),
        Some("bob again")
    );
}

#[test]
fn readers_see_old_or_new_content_never_a_mix() {
    let (_dir, store) = open_temp_store();
    let doc = id(Collection::Messages, "big");
    // Large enough that a non-atomic write would be observable half done.
    let old = "a".repeat(256 * 1024);
    let new = "b".repeat(256 * 1024);
    store.write(&doc, &old).expect("write");

    let writing = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0_u32;
            while writing.load(Ordering::Acquire) {
                let content = store.read(&doc).expect("read").expect("document exists");
                assert!(
                    content == old || content == new,
                    "read a mix of {} bytes",
                    content.len()
                );
                reads += 1;
            }
            reads
        });
        for round in 0..30 {
            let content = if round % 2 == 0 { &new } else { &old };
            store.write(&doc, content).expect("write");
        }
        writing.store(false, Ordering::Release);
        let reads = reader.join().expect("reader thread");
        assert!(reads > 0, "the reader ran");
    });
}

#[test]
fn write_recreates_a_deleted_collection_directory() {
    let (_dir, store) = open_temp_store();
    fs::remove_dir_all(store.root().join("prompts")).expect("delete directory by hand");
    let doc = id(Collection::Prompts, "system");
    assert_eq!(store.list(Collection::Prompts).expect("list"), []);
    assert_eq!(store.read(&doc).expect("read"), None);
    store.write(&doc, "be terse").expect("write");
    assert_eq!(store.read(&doc).expect("read").as_deref(), Some("be terse"));
}

#[test]
fn errors_name_the_path() {
    let (_dir, store) = open_temp_store();
    let doc = id(Collection::Agents, "folder");
    let path = store.path_of(&doc);
    fs::create_dir(&path).expect("directory where a document should be");
    let err = store
        .read(&doc)
        .expect_err("a directory is not readable as a document");
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let err = store
        .write(&doc, "x")
        .expect_err("cannot rename over a directory");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    // The failed write cleaned up after itself.
    assert_eq!(entries(&store.root().join("agents")), ["folder.md"]);
}

#[test]
fn non_utf8_documents_are_reported_as_such() {
    let (_dir, store) = open_temp_store();
    let doc = id(Collection::Agents, "latin1");
    let path = store.path_of(&doc);
    fs::write(&path, b"caf\xe9\n").expect("write latin-1 by hand");
    let err = store.read(&doc).expect_err("not UTF-8");
    assert!(matches!(err, StoreError::NotUtf8 { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Watching
// ---------------------------------------------------------------------------------------------

#[test]
fn watch_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Watch>();
    assert_send::<FsStore>();
    assert_send::<MemStore>();
}

#[tokio::test]
async fn fs_watch_sees_its_own_writes_and_removals() {
    let (_dir, store) = open_temp_store();
    let mut watch = store.watch().expect("watch");
    let doc = id(Collection::WorkPending, "job-1");

    store.write(&doc, "todo").expect("write");
    wait_for(&mut watch, &written(&doc)).await;

    assert!(store.remove(&doc).expect("remove"));
    wait_for(&mut watch, &removed(&doc)).await;
}

#[tokio::test]
async fn fs_watch_sees_human_edits() {
    let (_dir, store) = open_temp_store();
    let doc = id(Collection::Agents, "Éowyn");
    store.write(&doc, "before").expect("write");
    let mut watch = store.watch().expect("watch");

    // An editor writing the file in place.
    fs::write(store.path_of(&doc), "edited by hand").expect("edit by hand");
    wait_for(&mut watch, &written(&doc)).await;

    // A person creating a new document from the shell.
    let created = id(Collection::Messages, "note");
    fs::write(store.path_of(&created), "hi").expect("create by hand");
    wait_for(&mut watch, &written(&created)).await;

    // An editor saving through a rename from a backup file.
    let backup = store.root().join("agents").join("Éowyn.md~");
    fs::write(&backup, "saved by an editor").expect("write backup");
    fs::rename(&backup, store.path_of(&doc)).expect("rename over");
    wait_for(&mut watch, &written(&doc)).await;

    // A person deleting a document.
    fs::remove_file(store.path_of(&created)).expect("delete by hand");
    wait_for(&mut watch, &removed(&created)).await;
}

#[tokio::test]
async fn fs_watch_ignores_temporary_and_foreign_files() {
    let (_dir, store) = open_temp_store();
    let mut watch = store.watch().expect("watch");
    let agents = store.root().join("agents");
    fs::write(agents.join(".bob.md.tmp-0d5f0c2e"), "crash leftover").expect("temp file");
    fs::write(agents.join("notes.txt"), "foreign").expect("foreign file");
    fs::create_dir_all(store.root().join("log")).expect("log directory");
    fs::write(store.root().join("log").join("run.md"), "log").expect("log file");

    // Changes arrive in order, so once the sentinel is reported, anything the files above
    // caused has been reported too.
    let sentinel = id(Collection::Agents, "sentinel");
    store.write(&sentinel, "x").expect("write");
    let before = wait_for(&mut watch, &written(&sentinel)).await;
    assert!(
        before.iter().all(|change| change.id == sentinel),
        "only the sentinel was reported: {before:?}"
    );
}

#[tokio::test]
async fn fs_watch_reports_documents_of_a_moved_directory() {
    let (_dir, store) = open_temp_store();
    let doc = id(Collection::Prompts, "system");
    store.write(&doc, "be terse").expect("write");
    let mut watch = store.watch().expect("watch");

    // Moving a whole directory produces an event for the directory only, not its files.
    let prompts = store.root().join("prompts");
    let aside = store.root().join("prompts-aside");
    fs::rename(&prompts, &aside).expect("move directory away");
    wait_for(&mut watch, &removed(&doc)).await;

    fs::rename(&aside, &prompts).expect("move directory back");
    wait_for(&mut watch, &written(&doc)).await;
}

#[tokio::test]
async fn dropping_a_fs_watch_does_not_affect_the_store() {
    let (_dir, store) = open_temp_store();
    let doc = id(Collection::Agents, "bob");
    let watch = store.watch().expect("watch");
    drop(watch);
    store.write(&doc, "still works").expect("write");
    let mut second = store.watch().expect("watch again");
    store.write(&doc, "and again").expect("write");
    wait_for(&mut second, &written(&doc)).await;
}

#[tokio::test]
async fn mem_watch_sees_writes_and_removals_in_order() {
    let store = MemStore::new();
    let mut watch = store.watch().expect("watch");
    assert_eq!(watch.try_next(), None);

    let bob = id(Collection::Agents, "bob");
    let job = id(Collection::WorkPending, "job");
    store.write(&bob, "1").expect("write");
    store.write(&job, "2").expect("write");
    assert!(store.remove(&bob).expect("remove"));
    // Removing a missing document changes nothing, so it is not reported.
    assert!(!store.remove(&bob).expect("remove again"));

    let next = tokio::time::timeout(WATCH_TIMEOUT, watch.next())
        .await
        .expect("a change is waiting");
    assert_eq!(next, Some(written(&bob)));
    assert_eq!(watch.try_next(), Some(written(&job)));
    assert_eq!(watch.try_next(), Some(removed(&bob)));
    assert_eq!(watch.try_next(), None);
}

#[tokio::test]
async fn mem_watch_serves_every_subscriber_and_survives_dropped_ones() {
    let store = MemStore::new();
    let mut first = store.watch().expect("watch");
    let dropped = store.watch().expect("watch");
    drop(dropped);
    let mut second = store.watch().expect("watch");

    let doc = id(Collection::Messages, "m");
    store.write(&doc, "hello").expect("write");
    assert_eq!(first.try_next(), Some(written(&doc)));
    assert_eq!(second.try_next(), Some(written(&doc)));

    // Once the store is gone no more changes can come, and the watch says so.
    drop(store);
    let end = tokio::time::timeout(WATCH_TIMEOUT, first.next())
        .await
        .expect("the watch ends promptly");
    assert_eq!(end, None);
}

// ---------------------------------------------------------------------------------------------
// Front matter
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Agent {
    name: String,
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    tags: Vec<String>,
    limits: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Empty {}

fn agents() -> Vec<Agent> {
    let plain = Agent {
        name: "Éowyn".into(),
        role: "reviewer".into(),
        model: None,
        tags: vec![],
        limits: BTreeMap::new(),
    };
    let tricky = Agent {
        // A value holding a delimiter line ends up in a TOML multi-line string.
        name: "+++".into(),
        role: "line one\n+++\nline three\n".into(),
        model: Some("a \"quoted\" '''model'''\n+++".into()),
        tags: vec!["+++\n".into(), "x = 1".into(), "[table]".into()],
        limits: BTreeMap::from([("tokens".into(), 4096), ("+++".into(), -1)]),
    };
    vec![plain, tricky]
}

const BODIES: [&str; 12] = [
    "",
    "plain body\n",
    "no trailing newline",
    "\n",
    "\n\nleading blank lines\n",
    "+++\n",
    "+++",
    "+++\nname = \"not front matter\"\n+++\n",
    "text\n+++\nmore text\n+++\n",
    " +++ not a delimiter\n+++ \n",
    "windows\r\nline endings\r\n",
    "unicode «ünïcødé» 日本語\n",
];

#[test]
fn front_matter_round_trips_exactly() {
    for agent in agents() {
        for body in BODIES {
            let text = front_matter::render(&agent, body).expect("render");
            let (front, parsed_body): (Agent, String) =
                front_matter::parse(&text).unwrap_or_else(|err| panic!("parse {text:?}: {err}"));
            assert_eq!(front, agent, "front of {text:?}");
            assert_eq!(parsed_body, body, "body of {text:?}");
        }
    }
    for body in BODIES {
        let text = front_matter::render(&Empty {}, body).expect("render");
        let (front, parsed_body): (Empty, String) = front_matter::parse(&text).expect("parse");
        assert_eq!(front, Empty {});
        assert_eq!(parsed_body, body);
    }
}

#[test]
fn render_produces_the_documented_layout() {
    #[derive(Serialize)]
    struct Front {
        title: String,
        n: i64,
    }
    let front = Front {
        title: "hi".into(),
        n: 3,
    };
    assert_eq!(
        front_matter::render(&front, "body\n").expect("render"),
        "+++\ntitle = \"hi\"\nn = 3\n+++\nbody\n"
    );
    assert_eq!(
        front_matter::render(&Empty {}, "body\n").expect("render"),
        "+++\n+++\nbody\n"
    );
}

#[test]
fn parse_accepts_hand_edited_variations() {
    #[derive(Debug, PartialEq, Deserialize)]
    struct Front {
        title: String,
    }
    let cases = [
        // Saved on Windows.
        ("+++\r\ntitle = \"x\"\r\n+++\r\nbody\r\n", "body\r\n"),
        // With a byte-order mark.
        ("\u{feff}+++\ntitle = \"x\"\n+++\nbody\n", "body\n"),
        // Stray spaces after the delimiters.
        ("+++  \ntitle = \"x\"\n+++\t\nbody\n", "body\n"),
        // Comments and blank lines in the header.
        ("+++\n# who\n\ntitle = \"x\" # inline\n+++\n", ""),
        // Closing delimiter at the very end of the file.
        ("+++\ntitle = \"x\"\n+++", ""),
    ];
    for (text, body) in cases {
        let (front, parsed_body): (Front, String) =
            front_matter::parse(text).unwrap_or_else(|err| panic!("parse {text:?}: {err}"));
        assert_eq!(front, Front { title: "x".into() }, "{text:?}");
        assert_eq!(parsed_body, body, "{text:?}");
    }
}

#[test]
fn parse_reports_missing_delimiters() {
    for text in [
        "",
        "no front matter\n",
        "++\n",
        " +++\ntitle = 1\n+++\n",
        "\n+++\n+++\n",
    ] {
        let err = front_matter::parse::<Empty>(text).expect_err(text);
        assert!(
            matches!(err, FormatError::MissingOpening),
            "{text:?}: {err:?}"
        );
        assert!(err.to_string().contains("must start with a \"+++\" line"));
    }
    for text in [
        "+++",
        "+++\n",
        "+++\ntitle = \"x\"\n",
        "+++\ntitle = \"x\"\n++ +\n",
    ] {
        let err = front_matter::parse::<Empty>(text).expect_err(text);
        assert!(
            matches!(err, FormatError::MissingClosing),
            "{text:?}: {err:?}"
        );
        assert!(err.to_string().contains("not closed"), "{err}");
    }
}

#[test]
fn parse_reports_toml_errors_at_their_line_in_the_document() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)] // Only the parse outcome matters here.
    struct Front {
        title: String,
        count: i64,
    }

    // A syntax error on the document's third line.
    let text = "+++\ntitle = \"x\"\ncount = \n+++\nbody\n";
    let err = front_matter::parse::<Front>(text).expect_err("syntax error");
    let FormatError::Toml { line, .. } = &err else {
        panic!("expected a TOML error, got {err:?}");
    };
    assert_eq!(*line, Some(3));
    assert!(err.to_string().contains("at line 3"), "{err}");

    // A value of the wrong type, on the document's second line.
    let text = "+++\ncount = \"many\"\ntitle = \"x\"\n+++\n";
    let err = front_matter::parse::<Front>(text).expect_err("type error");
    let FormatError::Toml { line, column, .. } = &err else {
        panic!("expected a TOML error, got {err:?}");
    };
    assert_eq!((*line, *column), (Some(2), Some(9)), "{err}");

    // A missing field is reported by name.
    let text = "+++\ntitle = \"x\"\n+++\n";
    let err = front_matter::parse::<Front>(text).expect_err("missing field");
    assert!(matches!(err, FormatError::Toml { .. }), "{err:?}");
    assert!(err.to_string().contains("count"), "{err}");

    // An unterminated multi-line string swallows every later delimiter; the error is reported
    // against the first closing line, which is where the author meant the header to end.
    let text = "+++\ntitle = \"\"\"open\n+++\nbody\n+++\n";
    let err = front_matter::parse::<Front>(text).expect_err("unterminated string");
    assert!(matches!(err, FormatError::Toml { .. }), "{err:?}");
}

#[test]
fn render_rejects_values_that_are_not_tables() {
    let err = front_matter::render(&vec![1, 2, 3], "body").expect_err("a list is not a table");
    assert!(matches!(err, FormatError::Render(_)), "{err:?}");
    let err = front_matter::render(&42, "body").expect_err("a number is not a table");
    assert!(err
        .to_string()
        .starts_with("front matter cannot be rendered"));
}

#[test]
fn a_document_set_aside_keeps_its_bytes_and_never_replaces_an_earlier_one() {
    let (dir, store) = open_temp_store();
    let frodo = id(Collection::Agents, "Frodo");
    let path = store.path_of(&frodo);
    assert_eq!(store.set_aside(&frodo).unwrap(), None);
    std::fs::write(&path, b"first \xff").unwrap();
    assert_eq!(
        store.set_aside(&frodo).unwrap(),
        Some(Path::new("attic/agents/Frodo.md").to_path_buf())
    );
    assert!(!path.exists());
    std::fs::write(&path, b"second \xfe").unwrap();
    assert_eq!(
        store.set_aside(&frodo).unwrap(),
        Some(Path::new("attic/agents/Frodo.2.md").to_path_buf())
    );
    let attic = dir.path().join(".tavern/attic/agents");
    assert_eq!(
        std::fs::read(attic.join("Frodo.md")).unwrap(),
        b"first \xff"
    );
    assert_eq!(
        std::fs::read(attic.join("Frodo.2.md")).unwrap(),
        b"second \xfe"
    );
    // The attic is not a collection: nothing in it is listed as a document.
    assert!(store.list(Collection::Agents).unwrap().is_empty());

    let mem = MemStore::new();
    mem.write(&frodo, "text").unwrap();
    assert_eq!(
        mem.set_aside(&frodo).unwrap(),
        Some(Path::new("attic/agents/Frodo.md").to_path_buf())
    );
    assert_eq!(mem.read(&frodo).unwrap(), None);
    assert_eq!(mem.set_aside(&frodo).unwrap(), None);
}
