//! The `.tavern/` documents: the projection of the log, edits by people, and the one-Jake lock.

use std::time::Duration;

use tavern::app::App;
use tavern::domain::{Actor, Intent, Outcome};
use tavern::executor::Event;

use crate::support::{run_tavern, summon, test_config, Console, Project};

/// A running tavern with one agent, Frodo, whose document is written; returns the app, its handle and
/// the path of Frodo's document.
async fn with_frodo(project: &Project) -> (App, tavern::executor::Tavern, std::path::PathBuf) {
    let app = App::start(test_config(project, "lotr", None))
        .await
        .unwrap();
    let tavern = app.tavern.clone();
    summon(&tavern, "Jake", "write docs").await;
    tavern.flush().await;
    let path = project.tavern().join("agents/Frodo.md");
    (app, tavern, path)
}

/// Waits (on the blackboard's own watch stream) until the document's content satisfies `pred`.
async fn file_becomes(project: &Project, relative: &str, pred: impl Fn(&str) -> bool) -> String {
    use tavern::blackboard::{DocId, DocStore, FsStore};
    let store = FsStore::open(project.tavern()).unwrap();
    let mut watch = store.watch().unwrap();
    let id = DocId::from_relative_path(std::path::Path::new(relative)).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(text) = store.read(&id).unwrap() {
                if pred(&text) {
                    return text;
                }
            }
            // Any change may be the one; re-read after each.
            watch.next().await.expect("the watch stream ended");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{relative} never reached the expected content"))
}

/// Waits for an event matching `pred`.
async fn event(
    events: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<Event>>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(event) if pred(&event) => return (*event).clone(),
                Ok(_) => continue,
                Err(e) => panic!("event stream failed while waiting for {what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_edit_is_recorded_and_a_managed_field_edit_is_refused_and_restored() {
    let project = Project::new();
    let (app, tavern, path) = with_frodo(&project).await;
    let original = std::fs::read_to_string(&path).unwrap();
    let mut events = tavern.subscribe();

    // A person adds notes in their editor.
    let edited = original.replace("## Notes\n", "## Notes\nUse the house style.\n");
    std::fs::write(&path, &edited).unwrap();
    let recorded = event(&mut events, "the notes edit", |e| {
        e.actor == Some(Actor::File)
            && e.outcomes
                .iter()
                .any(|o| matches!(o, Outcome::NotesChanged { text, .. } if text == "Use the house style."))
    })
    .await;
    assert!(matches!(recorded.intent, Some(Intent::EditDocument { .. })));
    assert_eq!(
        tavern.read(|s| s.agent("Frodo").unwrap().notes.clone()),
        "Use the house style."
    );

    // A person marks the agent done by editing its state: refused, recorded, and the file restored.
    tavern.flush().await;
    let current = std::fs::read_to_string(&path).unwrap();
    let forged = current.replace("state = \"working\"", "state = \"done\"");
    std::fs::write(&path, &forged).unwrap();
    let refused = event(&mut events, "the refused edit", |e| {
        e.actor == Some(Actor::File) && e.error.is_some()
    })
    .await;
    assert!(
        refused.error.as_deref().unwrap().contains("`state`"),
        "{refused:?}"
    );
    // The refused text is kept in the log.
    match refused.intent {
        Some(Intent::EditDocument {
            content: Some(c), ..
        }) => assert_eq!(c, forged),
        other => panic!("{other:?}"),
    }
    let restored = file_becomes(&project, "agents/Frodo.md", |t| {
        t.contains("state = \"working\"")
    })
    .await;
    assert!(restored.contains("Use the house style."), "{restored}");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_agents_survive_a_restart_as_documents() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(
        project.path(),
        &["console"],
        "/summon a\n/summon b --parent Frodo\nhello Jake\n/join Sam\nhi Sam\n",
    )
    .await;
    assert!(ok);
    let messages = std::fs::read_dir(project.tavern().join("messages"))
        .unwrap()
        .count();
    let app = App::start(test_config(&project, "lotr", None))
        .await
        .unwrap();
    let state = app.tavern.read(|s| s.clone());
    assert_eq!(state.messages.len(), messages);
    assert!(state.messages.iter().any(|m| m.text == "hi Sam"));
    assert_eq!(state.agent("Sam").unwrap().parent.as_deref(), Some("Frodo"));
    assert_eq!(app.report.repaired_documents, 0);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_document_is_repaired_from_the_log_at_start() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(project.path(), &["console"], "/summon a\n").await;
    assert!(ok);
    let path = project.tavern().join("agents/Frodo.md");
    let before = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (ok, stdout, _) = run_tavern(project.path(), &["console"], "").await;
    assert!(ok);
    assert!(stdout.contains("repaired 1 documents"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tavern_on_the_same_project_is_refused() {
    let project = Project::new();
    let mut first = Console::start(project.path(), &[]);
    first.expect_contains("Type to talk to Jake").await;
    let (ok, _, stderr) = run_tavern(project.path(), &["console"], "").await;
    assert!(!ok);
    assert!(
        stderr.contains("another Tavern is already running on this project"),
        "{stderr}"
    );
    first.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_while_tavern_was_stopped_are_recorded_at_start() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(project.path(), &["console"], "/summon a\n").await;
    assert!(ok);
    let path = project.tavern().join("agents/Frodo.md");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("## Notes\n", "## Notes\nWritten offline.\n"),
    )
    .unwrap();

    let app = App::start(test_config(&project, "lotr", None))
        .await
        .unwrap();
    assert_eq!(app.report.offline_edits, 1);
    assert_eq!(app.report.repaired_documents, 0);
    assert_eq!(
        app.tavern.read(|s| s.agent("Frodo").unwrap().notes.clone()),
        "Written offline."
    );
    app.tavern.flush().await;
    let restored = std::fs::read_to_string(&path).unwrap();
    assert!(restored.contains("Written offline."), "{restored}");
    assert_eq!(
        tavern::domain::projection::unseal(&restored).1,
        tavern::domain::projection::Seal::Intact
    );
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_copy_of_a_document_put_back_by_hand_is_restored() {
    let project = Project::new();
    let (app, tavern, path) = with_frodo(&project).await;
    let old = std::fs::read_to_string(&path).unwrap();
    tavern
        .submit(
            Actor::User("alice".into()),
            Intent::SetDescription {
                agent: "Frodo".into(),
                text: "newer".into(),
            },
            None,
        )
        .await
        .unwrap();
    file_becomes(&project, "agents/Frodo.md", |t| t.contains("newer")).await;
    // An editor's undo (or a checkout) puts Tavern's own older version back: it is not a person's edit,
    // so nothing is recorded, and the current version returns.
    std::fs::write(&path, &old).unwrap();
    file_becomes(&project, "agents/Frodo.md", |t| t.contains("newer")).await;
    let last = tavern.read(|s| s.last_seq);
    assert_eq!(last, 3, "no edit was recorded");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_racing_a_change_through_tavern_keeps_both() {
    let project = Project::new();
    let (app, tavern, path) = with_frodo(&project).await;
    let opened = std::fs::read_to_string(&path).unwrap();
    // The person saves notes; before Tavern has even noticed, a change comes through Tavern, whose
    // projection must not overwrite the unrecorded edit.
    std::fs::write(
        &path,
        opened.replace("## Notes\n", "## Notes\nA person's notes.\n"),
    )
    .unwrap();
    tavern
        .submit(
            Actor::User("alice".into()),
            Intent::SetDescription {
                agent: "Frodo".into(),
                text: "Changed through Tavern.".into(),
            },
            None,
        )
        .await
        .unwrap();
    let merged = file_becomes(&project, "agents/Frodo.md", |t| {
        t.contains("A person's notes.") && t.contains("Changed through Tavern.")
    })
    .await;
    assert_eq!(
        tavern::domain::projection::unseal(&merged).1,
        tavern::domain::projection::Seal::Intact
    );
    let (description, notes) = tavern.read(|s| {
        let n = s.agent("Frodo").unwrap();
        (n.description.clone(), n.notes.clone())
    });
    assert_eq!(description, "Changed through Tavern.");
    assert_eq!(notes, "A person's notes.");
    app.shutdown().await.unwrap();
}
