//! Replay rebuilds exactly the state of the live run, and makes no model call and runs no assertion.

use std::time::Duration;

use proptest::prelude::*;
use tavern::app::{replay, App};
use tavern::domain::{Actor, Intent, ModesPatch, Summon};
use tavern::model::ModelSpec;
use tavern_plugin_api::{AgentKind, AgentState};

use crate::support::Project;

/// One step a person might take; agents are picked by index into the current list.
#[derive(Debug, Clone)]
enum Op {
    Summon {
        parent: usize,
        drone: bool,
    },
    Commit {
        agent: usize,
        pass: bool,
        signoff: bool,
    },
    Done {
        agent: usize,
    },
    Approve {
        agent: usize,
    },
    Dismiss {
        agent: usize,
    },
    Reap {
        agent: usize,
    },
    Message {
        agent: usize,
    },
    Mode {
        agent: usize,
        persevere: bool,
    },
    Describe {
        agent: usize,
    },
    Join {
        agent: usize,
        present: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..8usize, any::<bool>()).prop_map(|(parent, drone)| Op::Summon { parent, drone }),
        3 => (0..8usize, any::<bool>(), any::<bool>())
            .prop_map(|(agent, pass, signoff)| Op::Commit { agent, pass, signoff }),
        2 => (0..8usize).prop_map(|agent| Op::Done { agent }),
        1 => (0..8usize).prop_map(|agent| Op::Approve { agent }),
        1 => (0..8usize).prop_map(|agent| Op::Dismiss { agent }),
        1 => (0..8usize).prop_map(|agent| Op::Reap { agent }),
        2 => (0..8usize).prop_map(|agent| Op::Message { agent }),
        1 => (0..8usize, any::<bool>()).prop_map(|(agent, persevere)| Op::Mode { agent, persevere }),
        1 => (0..8usize).prop_map(|agent| Op::Describe { agent }),
        1 => (0..8usize, any::<bool>()).prop_map(|(agent, present)| Op::Join { agent, present }),
    ]
}

const SCRIPT: &str = r#"
[[reply]]
agent = "*"
text = "Noted."

[[reply]]
agent = "*"
text = "Noted again."
tools = [{ set_description = { text = "busy" } }]
"#;

fn config(project: &Project, script: &std::path::Path) -> tavern::config::Config {
    crate::support::test_config(
        project,
        "rick-and-morty",
        Some(ModelSpec::Scripted(script.to_path_buf())),
    )
}

fn intent_for(op: &Op, names: &[String]) -> Intent {
    let pick = |i: usize| names[i % names.len()].clone();
    match op {
        Op::Summon { parent, drone } => Intent::Summon(Summon {
            parent: pick(*parent),
            assignment: Some("do a thing".into()),
            kind: if *drone {
                AgentKind::Drone
            } else {
                AgentKind::Mortal
            },
            expert: None,
            name: None,
            model: None,
            workdir: None,
        }),
        Op::Commit {
            agent,
            pass,
            signoff,
        } => Intent::AddCommitment {
            agent: pick(*agent),
            description: "a check".into(),
            // Every assertion leaves a mark, so the test can tell whether replay ran any.
            assertion: format!(
                "echo run >> runs.log; {}",
                if *pass { "true" } else { "false" }
            ),
            needs_signoff: *signoff,
        },
        Op::Done { agent } => Intent::SignalDone {
            agent: pick(*agent),
        },
        Op::Approve { agent } => Intent::Approve {
            agent: pick(*agent),
            commitment: 1,
        },
        Op::Dismiss { agent } => Intent::Dismiss {
            agent: pick(*agent),
        },
        Op::Reap { agent } => Intent::Reap {
            agent: pick(*agent),
            reason: "enough".into(),
        },
        Op::Message { agent } => Intent::SendMessage {
            to: pick(*agent),
            text: "hello".into(),
        },
        Op::Mode { agent, persevere } => Intent::SetModes {
            agent: pick(*agent),
            patch: ModesPatch {
                perseverance: Some(*persevere),
                ..ModesPatch::default()
            },
        },
        Op::Describe { agent } => Intent::SetDescription {
            agent: pick(*agent),
            text: "new".into(),
        },
        Op::Join { agent, present } => Intent::SetModes {
            agent: pick(*agent),
            patch: ModesPatch {
                user_present: Some(*present),
                ..ModesPatch::default()
            },
        },
    }
}

/// Waits until nothing is running and no agent has input to act on.
async fn settle(app: &App) {
    let mut events = app.tavern.subscribe();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let busy = app.tavern.read_head(|s| {
                !s.open.is_empty()
                    || s.agents_in_order().any(|n| {
                        tavern::tree::wants_turn(s, &n.name, &app.tavern.settings().models)
                    })
            });
            if !busy {
                return;
            }
            // Every change arrives as an event; a lagged receiver just checks again.
            let _ = events.recv().await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let (open, wanting) = app.tavern.read_head(|s| {
            (
                (
                    s.open.clone(),
                    s.agents_in_order()
                        .map(|n| {
                            format!(
                                "{} {} read {}/{}",
                                n.name,
                                n.state,
                                n.read_upto,
                                n.inbox.len()
                            )
                        })
                        .collect::<Vec<_>>(),
                ),
                s.agents_in_order()
                    .filter(|n| tavern::tree::wants_turn(s, &n.name, &app.tavern.settings().models))
                    .map(|n| format!("{} {}", n.name, n.state))
                    .collect::<Vec<_>>(),
            )
        });
        panic!(
            "the tavern did not settle: open entries {open:#?}, agents wanting a turn {wanting:?}"
        )
    });
}

/// Runs the operations; with `interrupt_after`, shuts the tavern down right after that many (with turns
/// and verifications still running), starts it again and lets it resume before the rest.
fn run_case(ops: Vec<Op>, interrupt_after: Option<usize>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let project = Project::new();
        let script = project.write("script.toml", SCRIPT);
        let mut app = App::start(config(&project, &script)).await.expect("start");
        let mut tavern = app.tavern.clone();
        for (i, op) in ops.iter().enumerate() {
            if interrupt_after == Some(i) {
                app.shutdown().await.expect("shutdown mid-run");
                app = App::start(config(&project, &script))
                    .await
                    .expect("restart");
                tavern = app.tavern.clone();
            }
            let names: Vec<String> =
                tavern.read_head(|s| s.agents_in_order().map(|n| n.name.clone()).collect());
            let intent = intent_for(op, &names);
            tavern
                .submit(Actor::User("alice".into()), intent, None)
                .await
                .expect("the log accepts the intent");
        }
        settle(&app).await;
        app.shutdown().await.expect("clean shutdown");
        let live = tavern.read_head(|s| s.clone());
        let durable = tavern.read(|s| s.clone());
        prop_assert_eq!(&live, &durable);

        let runs_before =
            std::fs::read_to_string(project.path().join("runs.log")).unwrap_or_default();
        let replayed = replay(&project.tavern().join("log"), "main", None).expect("replay");
        let runs_after =
            std::fs::read_to_string(project.path().join("runs.log")).unwrap_or_default();
        prop_assert_eq!(&replayed, &live);
        prop_assert_eq!(runs_before, runs_after, "replay ran an assertion");
        // A state rebuilt by replay has every agent in a legal, known state.
        for node in replayed.agents_in_order() {
            prop_assert!(AgentState::ALL.contains(&node.state));
        }
        crate::support::assert_log_consistent(&project.tavern());
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn replay_rebuilds_the_live_state(ops in proptest::collection::vec(op(), 1..40)) {
        run_case(ops, None)?;
    }

    #[test]
    fn replay_rebuilds_the_state_of_a_run_interrupted_and_resumed(
        ops in proptest::collection::vec(op(), 2..30),
        at in 1..29usize,
    ) {
        let at = at.min(ops.len() - 1);
        run_case(ops, Some(at))?;
    }
}

/// Replay never reaches a model: after the script is deleted (any model call would now fail), a restart
/// rebuilds Jake's recorded reply from the log, makes no model call and writes nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_calls_no_model() {
    let project = Project::new();
    let script = project.write("script.toml", SCRIPT);
    let app = App::start(config(&project, &script)).await.unwrap();
    app.tavern
        .submit(
            Actor::User("alice".into()),
            Intent::SendMessage {
                to: "Jake".into(),
                text: "hi".into(),
            },
            None,
        )
        .await
        .unwrap();
    settle(&app).await;
    assert_eq!(app.sidecar.calls(), 1, "Jake's turn made one model call");
    let tavern = app.tavern.clone();
    app.shutdown().await.unwrap();
    let before = tavern.read_head(|s| s.clone());
    assert!(before.messages.iter().any(|m| m.text == "Noted."));

    std::fs::remove_file(&script).unwrap();
    let again = App::start(config(&project, &script)).await.unwrap();
    settle(&again).await;
    assert_eq!(again.sidecar.calls(), 0, "the restart called a model");
    assert_eq!(again.tavern.read_head(|s| s.clone()), before);
    again.shutdown().await.unwrap();
    assert_eq!(
        replay(&project.tavern().join("log"), "main", None).unwrap(),
        before
    );
}

/// The log's library operations on a real tavern's log: the state as of entry N, a branch at N that
/// copies nothing, an edited intent on a new branch, and the list of branches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_as_of_n_branches_and_edits() {
    use tavern::domain::TavernSchema;
    use tavern::log::{create_branch, edit_into_branch, list_branches, LogReader, Status};

    let project = Project::new();
    let mut cfg = config(&project, &project.write("script.toml", SCRIPT));
    cfg.models = Default::default();
    let app = App::start(cfg).await.unwrap();
    let mut snapshots = Vec::new();
    for assignment in ["one", "two", "three"] {
        crate::support::summon(&app.tavern, "Jake", assignment).await;
        let state = app.tavern.read_head(|s| s.clone());
        snapshots.push((state.last_seq, state));
    }
    app.shutdown().await.unwrap();
    let dir = project.tavern().join("log");

    // The state as of each entry is exactly what the live run had right after it.
    for (seq, snapshot) in &snapshots {
        assert_eq!(
            &replay(&dir, "main", Some(*seq)).unwrap(),
            snapshot,
            "as of #{seq}"
        );
    }

    // A branch at entry 2 holds exactly the prefix, without copying it.
    let main_len = std::fs::metadata(dir.join("main.jsonl")).unwrap().len();
    let branch = create_branch(&dir, "what-if", "main", 2).unwrap();
    let branch_len = std::fs::metadata(&branch.path).unwrap().len();
    assert!(
        branch_len < 200 && branch_len < main_len / 4,
        "{branch_len} vs {main_len}"
    );
    assert_eq!(replay(&dir, "what-if", None).unwrap(), snapshots[0].1);

    // Editing entry 3's intent makes a new branch whose entry 3 is the edited intent, pending.
    let edited = Intent::Summon(Summon {
        parent: "Jake".into(),
        assignment: Some("a different plan".into()),
        kind: AgentKind::Drone,
        expert: None,
        name: None,
        model: None,
        workdir: None,
    });
    edit_into_branch::<TavernSchema>(&dir, "edit-3", "main", 3, edited.clone(), 0).unwrap();
    let reader = LogReader::<TavernSchema>::open(&dir, "edit-3").unwrap();
    let entries = reader.read_range(1, reader.last_seq()).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2].intent, edited);
    assert_eq!(entries[2].status, Status::Pending);
    assert_eq!(entries[1].intent, {
        let main = LogReader::<TavernSchema>::open(&dir, "main").unwrap();
        main.read_range(2, 2).unwrap()[0].intent.clone()
    });
    let state = replay(&dir, "edit-3", None).unwrap();
    assert!(state.open.contains_key(&3));
    assert_eq!(state.agents.len(), snapshots[0].1.agents.len());

    let names: Vec<String> = list_branches(&dir)
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, vec!["edit-3", "main", "what-if"]);
}
