//! A tavern written by an earlier release opens unchanged: its log replays to the same state and its
//! documents are current, so nothing is rewritten. The fixture in `tests/fixtures/v0.1-tavern` was written
//! by the release of 2026-12-08 (the scripted demo session, a drone named Éowyn, a message that came from
//! Discord and an attached thread); refactors that change how names, origins or ids are held must keep it
//! opening as it is.

use std::path::Path;

use tavern::app::App;
use tavern_plugin_api::AgentState;

use crate::support::{test_config, Project};

fn fixture() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/v0.1-tavern"
    ))
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every document's relative path and bytes.
fn documents(tavern: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["agents", "messages", "work/pending", "work/completed"] {
        let Ok(entries) = std::fs::read_dir(tavern.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            out.push((
                format!("{dir}/{}", path.file_name().unwrap().to_string_lossy()),
                std::fs::read(&path).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

/// Starts a tavern on a copy of the fixture, with `edit` applied to its log first, and checks that it
/// opens as the release left it.
async fn opens_unchanged(edit: impl Fn(&str) -> String) {
    let project = Project::new();
    copy_tree(fixture(), &project.tavern());
    let log = project.tavern().join("log/main.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, edit(&text)).unwrap();
    let before = documents(&project.tavern());
    assert!(before.len() > 10, "{before:?}");

    let app = App::start(test_config(&project, "lotr", None))
        .await
        .unwrap();
    let report = app.report.clone();
    assert!(!report.opened, "{report:?}");
    assert_eq!(report.entries, 17, "{report:?}");
    assert_eq!(report.repaired_documents, 0, "{report:?}");
    assert_eq!(report.offline_edits, 0, "{report:?}");
    assert!(report.set_aside.is_empty(), "{report:?}");
    assert!(
        report.resumed.is_empty() && report.cancelled.is_empty(),
        "{report:?}"
    );

    let state = app.tavern.read(Clone::clone);
    let agent = |name: &str| state.agent(name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(agent("Jake").state, AgentState::Working);
    assert_eq!(agent("Frodo").state, AgentState::Working);
    assert_eq!(agent("Frodo").description, "the parser lead");
    assert_eq!(agent("Frodo").thread.as_deref(), Some("7771"));
    assert_eq!(agent("Frodo").thread_header.as_deref(), Some("7772"));
    assert_eq!(agent("Sam").state, AgentState::Done);
    assert_eq!(agent("Sam").commitments.len(), 1);
    assert_eq!(agent("Éowyn").kind, tavern_plugin_api::AgentKind::Drone);
    assert_eq!(agent("Éowyn").commitments.len(), 1);
    assert!(state.origins.contains("discord:message:5551"));
    assert_eq!(state.messages.len(), 12);
    assert!(state.pending.values().all(|p| !p.is_open()));
    app.tavern.flush().await;
    app.shutdown().await.unwrap();

    // A replay is the same state, and no document was rewritten.
    let replayed = tavern::app::replay(&project.tavern().join("log"), "main", None).unwrap();
    assert_eq!(replayed, state);
    assert_eq!(documents(&project.tavern()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tavern_written_by_the_previous_release_opens_unchanged() {
    opens_unchanged(str::to_string).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_before_checksums_opens_unchanged() {
    // The release before this fixture's wrote the same records without the checksum field.
    opens_unchanged(|text| {
        text.lines()
            .map(|line| match line.rfind(r#","ck":""#) {
                Some(at) => format!("{}}}\n", &line[..at]),
                None => format!("{line}\n"),
            })
            .collect()
    })
    .await;
}
