//! The message bus: send, broadcast and subscribe, through the executor and into documents.

use std::time::Duration;

use tavern::app::App;
use tavern::bus::{self, MessageFilter};
use tavern::domain::{Actor, Intent, Party};
use tavern_plugin_api::{BroadcastScope, BusError};

use crate::support::{summon, test_config, Project};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_broadcast_and_subscribe() {
    let project = Project::new();
    let app = App::start(test_config(&project, "greek-myth", None))
        .await
        .unwrap();
    let a = summon(&app.tavern, "Jake", "work").await;
    let b = summon(&app.tavern, &a, "work").await;
    let c = summon(&app.tavern, &a, "work").await;

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
