//! The message bus: send, broadcast and subscribe, through the executor and into documents.

use std::time::Duration;

use tavern::app::App;
use tavern::bus::{self, MessageFilter};
use tavern::config::Config;
use tavern::domain::{Actor, Intent, Party, Summon};
use tavern_plugin_api::{AgentKind, BroadcastScope, BusError};

use crate::support::Project;

fn config(project: &Project) -> Config {
    Config {
        project: project.path().to_path_buf(),
        tavern_dir: project.tavern(),
        theme: "greek-myth".to_string(),
        default_model: None,
        max_concurrent_calls: 2,
        verify_timeout: Duration::from_secs(5),
        output_limit: 1024,
        console_user: "alice".to_string(),
        max_restarts: 2,
    }
}

async fn summon(app: &App, parent: &str) -> String {
    let receipt = app
        .tavern
        .submit(
            Actor::User("alice".into()),
            Intent::Summon(Summon {
                parent: parent.into(),
                assignment: Some("work".into()),
                kind: AgentKind::Mortal,
                expert: None,
                name: None,
                model: None,
            }),
            None,
        )
        .await
        .unwrap();
    match receipt {
        tavern::executor::Receipt::Accepted { outcomes, .. } => outcomes
            .iter()
            .find_map(|o| match o {
                tavern::domain::Outcome::AgentSummoned(n) => Some(n.name.clone()),
                _ => None,
            })
            .unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_broadcast_and_subscribe() {
    let project = Project::new();
    let app = App::start(config(&project)).await.unwrap();
    let a = summon(&app, "Jake").await;
    let b = summon(&app, &a).await;
    let c = summon(&app, &a).await;

    let mut to_b = bus::subscribe(
        &app.tavern,
        MessageFilter {
            to: Some(Party::Agent(b.clone())),
            ..MessageFilter::default()
        },
    );
    let sent = bus::send(&app.tavern, Actor::Agent(c.clone()), &b, "psst")
        .await
        .unwrap();
    assert_eq!(sent.from, Party::Agent(c.clone()));
    let got = tokio::time::timeout(Duration::from_secs(5), to_b.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.text, "psst");

    // Broadcast to siblings reaches b only (c is the sender, a is the parent).
    let posted = bus::broadcast(
        &app.tavern,
        Actor::Agent(c.clone()),
        BroadcastScope::Siblings,
        "team",
    )
    .await
    .unwrap();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].to, Party::Agent(b.clone()));
    let got = tokio::time::timeout(Duration::from_secs(5), to_b.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.text, "team");

    // Unknown and dead recipients are errors for the sender.
    assert_eq!(
        bus::send(&app.tavern, Actor::Agent(c.clone()), "Hades", "hi").await,
        Err(BusError::UnknownAgent("Hades".into()))
    );
    app.tavern
        .submit(
            Actor::User("alice".into()),
            Intent::Reap {
                agent: b.clone(),
                reason: "done for".into(),
            },
            None,
        )
        .await
        .unwrap();
    match bus::send(&app.tavern, Actor::Agent(c.clone()), &b, "hello?").await {
        Err(BusError::AgentDead { name, .. }) => assert_eq!(name, b),
        other => panic!("{other:?}"),
    }
    // Every message is a document.
    app.tavern.flush().await;
    let files = std::fs::read_dir(project.tavern().join("messages"))
        .unwrap()
        .count();
    assert_eq!(files, app.tavern.read(|s| s.messages.len()));
    app.shutdown().await.unwrap();
}
