//! Domain tests in given / when / then form: given a history of intents, when one more is decided, then
//! expect outcomes (or an error). Deciding and applying run without IO, a log or a runtime.

use tavern_plugin_api::{AgentKind, AgentState, Approval, CheckSummary, QuestionClass};

use super::decide::{finish_turn, verification_verdict};
use super::*;
use crate::log::{Entry, Record, Status};

/// A deterministic environment: fixed time, counting ids.
struct Scenario {
    state: TavernState,
    seq: u64,
    ids: u64,
    /// `verify.approve_own_commitments`; off unless a test is about proposals.
    approve_own: bool,
    /// Milliseconds the clock has been moved on (see [`Scenario::wait`]).
    elapsed: u64,
}

fn alice() -> Actor {
    Actor::User("alice".into())
}

impl Scenario {
    /// A fresh tavern with Jake.
    fn given() -> Scenario {
        let mut s = Scenario {
            state: TavernState::default(),
            seq: 0,
            ids: 0,
            approve_own: false,
            elapsed: 0,
        };
        s.ok(
            Actor::Tavern,
            Intent::OpenTavern {
                theme: "lotr".into(),
            },
        );
        s
    }

    fn decide(&mut self, actor: &Actor, intent: &Intent) -> Result<Decision, DomainError> {
        let mut ids = self.ids;
        let mut new_id = || {
            ids += 1;
            format!("id-{ids}")
        };
        let mut env = DecideEnv {
            now: 1_000 + self.elapsed + self.seq,
            new_id: &mut new_id,
            models: &Default::default(),
            claude_cli_missing: None,
            max_restarts: 2,
            restart_window: 60_000,
            project: std::path::Path::new("/project"),
            approve_own_commitments: self.approve_own,
        };
        let result = decide(&self.state, actor, intent, &mut env);
        self.ids = ids;
        result
    }

    fn record(&mut self, actor: Actor, intent: Intent, outcomes: Vec<Outcome>, status: Status) {
        self.seq += 1;
        self.state.apply(&Record::Entry(Entry {
            origin: None,
            seq: self.seq,
            branch: "main".into(),
            parent: None,
            cause: None,
            ts: 1_000 + self.elapsed + self.seq,
            actor,
            intent,
            status,
            outcomes,
            error: None,
        }));
    }

    /// Moves the clock on by `ms`.
    fn wait(&mut self, ms: u64) {
        self.elapsed += ms;
    }

    /// Decides and applies an intent that must succeed; returns its outcomes.
    fn ok(&mut self, actor: Actor, intent: Intent) -> Vec<Outcome> {
        let decision = self
            .decide(&actor, &intent)
            .unwrap_or_else(|e| panic!("{intent:?} was refused: {e}"));
        let status = if decision.continues {
            Status::Executing
        } else {
            Status::Executed
        };
        self.record(actor, intent, decision.outcomes.clone(), status);
        decision.outcomes
    }

    /// Decides an intent that must be refused; returns the error text. The state does not change.
    fn refused(&mut self, actor: Actor, intent: Intent) -> String {
        let before = self.state.clone();
        let error = self
            .decide(&actor, &intent)
            .expect_err("the intent should be refused")
            .to_string();
        assert_eq!(self.state, before);
        error
    }

    fn summon(&mut self, actor: Actor, parent: &str, assignment: &str) -> String {
        let outcomes = self.ok(
            actor,
            Intent::Summon(Summon {
                parent: parent.into(),
                assignment: Some(assignment.into()),
                kind: AgentKind::Mortal,
                expert: None,
                name: None,
                model: None,
                workdir: None,
            }),
        );
        outcomes
            .iter()
            .find_map(|o| match o {
                Outcome::AgentSummoned(n) => Some(n.name.clone()),
                _ => None,
            })
            .expect("a summon names its agent")
    }

    fn commit(&mut self, agent: &str, signoff: bool) {
        self.ok(
            alice(),
            Intent::AddCommitment {
                agent: agent.into(),
                description: "works".into(),
                assertion: "true".into(),
                needs_signoff: signoff,
            },
        );
    }

    /// Verification's second half, as the executor records it.
    fn verdict(&mut self, agent: &str, passed: &[bool]) -> Vec<Outcome> {
        // As `verification::run` does, a rejected commitment is not run.
        let counts: Vec<bool> = self
            .state
            .agent(agent)
            .map(|n| n.commitments.iter().map(|c| c.counts()).collect())
            .unwrap_or_default();
        let checks = passed
            .iter()
            .enumerate()
            .filter(|(i, _)| counts.get(*i).copied().unwrap_or(true))
            .map(|(i, p)| {
                (
                    i,
                    CheckSummary {
                        passed: *p,
                        exit_code: Some(if *p { 0 } else { 1 }),
                        timed_out: false,
                        output_tail: if *p { String::new() } else { "nope\n".into() },
                        duration_ms: 1,
                    },
                )
            })
            .collect();
        let mut ids = self.ids;
        let mut new_id = || {
            ids += 1;
            format!("id-{ids}")
        };
        let mut env = DecideEnv {
            now: 5_000,
            new_id: &mut new_id,
            models: &Default::default(),
            claude_cli_missing: None,
            max_restarts: 2,
            restart_window: 60_000,
            project: std::path::Path::new("/project"),
            approve_own_commitments: self.approve_own,
        };
        let outcomes = verification_verdict(&self.state, agent, checks, &mut env)
            .expect("the agent is verifying");
        self.ids = ids;
        // The verdict finishes the done signal's entry, as the executor records it.
        let seq = self
            .state
            .open
            .iter()
            .find(|(_, e)| matches!(&e.intent, Intent::SignalDone { agent: a } if a == agent))
            .map(|(seq, _)| *seq)
            .expect("the done signal is open");
        self.state.apply(&Record::Update(crate::log::Update {
            seq,
            ts: 5_000,
            status: Status::Executed,
            outcomes: outcomes.clone(),
            error: None,
        }));
        outcomes
    }

    fn state_of(&self, agent: &str) -> AgentState {
        self.state.agent(agent).expect("the agent exists").state
    }
}

fn messages_to(outcomes: &[Outcome], to: &Party) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::MessagePosted(m) if &m.to == to => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn opening_creates_exactly_one_jake() {
    let mut s = Scenario::given();
    assert_eq!(s.state.jake.as_deref(), Some("Jake"));
    assert_eq!(s.state_of("jake"), AgentState::Working);
    let error = s.refused(
        Actor::Tavern,
        Intent::OpenTavern {
            theme: "lotr".into(),
        },
    );
    assert!(error.contains("exactly one Jake"), "{error}");
}

#[test]
fn summons_get_theme_names_in_order_and_start_working() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let sam = s.summon(Actor::Agent("Jake".into()), "Jake", "b");
    let child = s.summon(Actor::Agent(frodo.clone()), &frodo, "c");
    assert_eq!((frodo.as_str(), sam.as_str()), ("Frodo", "Sam"));
    assert_eq!(s.state_of(&child), AgentState::Working);
    assert_eq!(s.state.ancestors(&child), vec!["Frodo", "Jake"]);
    // A person's summon is chat mode; an agent's perseveres.
    assert!(!s.state.agent("Frodo").unwrap().modes.perseverance);
    assert!(s.state.agent("Sam").unwrap().modes.perseverance);
    // The assignment is the child's first input, from whoever summoned it.
    let first = s.state.agent(&child).unwrap().inbox[0];
    assert_eq!(s.state.messages[first].from, Party::Agent("Frodo".into()));
    // The requester is the person, passed down the tree.
    assert_eq!(
        s.state.agent(&child).unwrap().requester.as_deref(),
        Some("alice")
    );
}

#[test]
fn agents_act_only_on_themselves_and_their_subtree() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let sam = s.summon(alice(), "Jake", "b");
    let error = s.refused(
        Actor::Agent(frodo.clone()),
        Intent::SignalDone { agent: sam },
    );
    assert!(error.contains("only on themselves"), "{error}");
}

#[test]
fn illegal_transitions_are_refused_with_both_states() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let error = s.refused(
        alice(),
        Intent::Dismiss {
            agent: frodo.clone(),
        },
    );
    assert!(
        error.contains("Working to DismissedReaped") && error.contains("reap"),
        "{error}"
    );
    s.commit(&frodo, false);
    s.ok(
        alice(),
        Intent::SignalDone {
            agent: frodo.clone(),
        },
    );
    let error = s.refused(
        alice(),
        Intent::SignalDone {
            agent: frodo.clone(),
        },
    );
    assert!(error.contains("Verifying to Verifying"), "{error}");
}

#[test]
fn passing_verification_is_done_and_tells_the_parent() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let sam = s.summon(Actor::Agent(frodo.clone()), &frodo, "b");
    s.commit(&sam, false);
    s.ok(
        Actor::Agent(sam.clone()),
        Intent::SignalDone { agent: sam.clone() },
    );
    assert_eq!(s.state_of(&sam), AgentState::Verifying);
    let outcomes = s.verdict(&sam, &[true]);
    assert_eq!(s.state_of(&sam), AgentState::Done);
    assert_eq!(
        messages_to(&outcomes, &Party::Agent(frodo)),
        vec!["Sam is Done: 1/1 commitments pass."]
    );
}

#[test]
fn failing_verification_goes_back_to_working_with_a_gap_report() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    s.commit(&frodo, false);
    s.commit(&frodo, false);
    s.ok(
        alice(),
        Intent::SignalDone {
            agent: frodo.clone(),
        },
    );
    let outcomes = s.verdict(&frodo, &[true, false]);
    assert_eq!(s.state_of(&frodo), AgentState::Working);
    let report = messages_to(&outcomes, &Party::Agent(frodo.clone()));
    assert_eq!(report.len(), 1);
    assert!(
        report[0].starts_with("Gap report: 1 of 2 commitments failed."),
        "{}",
        report[0]
    );
    assert!(
        report[0].contains("#2 works — `true`: exit code 1"),
        "{}",
        report[0]
    );
    assert!(report[0].contains("output: nope"), "{}", report[0]);
    let told_jake = messages_to(&outcomes, &Party::Agent("Jake".into()));
    assert!(told_jake[0].starts_with("Frodo went back to Working."));
}

#[test]
fn done_without_commitments_is_a_gap_not_a_pass() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    s.ok(
        alice(),
        Intent::SignalDone {
            agent: frodo.clone(),
        },
    );
    let outcomes = s.verdict(&frodo, &[]);
    assert_eq!(s.state_of(&frodo), AgentState::Working);
    assert!(messages_to(&outcomes, &Party::Agent(frodo))[0].contains("no commitments"));
}

#[test]
fn a_sign_off_is_an_intent_that_completes_verification() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    s.commit(&frodo, true);
    s.ok(
        alice(),
        Intent::SignalDone {
            agent: frodo.clone(),
        },
    );
    let outcomes = s.verdict(&frodo, &[true]);
    // The checks pass, but the person has not signed yet: still verifying, and asked.
    assert_eq!(s.state_of(&frodo), AgentState::Verifying);
    let asked = messages_to(&outcomes, &Party::User("alice".into()));
    assert!(asked[0].contains("/approve Frodo"), "{asked:?}");
    let error = s.refused(
        Actor::Agent(frodo.clone()),
        Intent::Approve {
            agent: frodo.clone(),
            commitment: 1,
        },
    );
    assert!(error.contains("only a person"), "{error}");
    let error = s.refused(
        alice(),
        Intent::Approve {
            agent: frodo.clone(),
            commitment: 2,
        },
    );
    assert!(error.contains("no commitment #2"), "{error}");
    s.ok(
        alice(),
        Intent::Approve {
            agent: frodo.clone(),
            commitment: 1,
        },
    );
    assert_eq!(s.state_of(&frodo), AgentState::Done);
}

#[test]
fn dismissing_and_reaping_cascade_through_the_subtree() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let sam = s.summon(Actor::Agent(frodo.clone()), &frodo, "b");
    let merry = s.summon(Actor::Agent(sam.clone()), &sam, "c");
    s.ok(
        alice(),
        Intent::Reap {
            agent: frodo.clone(),
            reason: "wrong path".into(),
        },
    );
    for name in [&frodo, &sam, &merry] {
        assert_eq!(s.state_of(name), AgentState::FailedReaped, "{name}");
    }
    // Dead agents stay listed, and cannot be messaged.
    assert_eq!(s.state.agents.len(), 4);
    let error = s.refused(
        alice(),
        Intent::SendMessage {
            to: sam.clone(),
            text: "hi".into(),
        },
    );
    assert!(error.contains("FailedReaped"), "{error}");

    // A dismissed Done parent dismisses its Done children and reaps its live ones.
    let pippin = s.summon(alice(), "Jake", "d");
    let done_child = s.summon(Actor::Agent(pippin.clone()), &pippin, "e");
    let live_child = s.summon(Actor::Agent(pippin.clone()), &pippin, "f");
    for agent in [&done_child, &pippin] {
        s.commit(agent, false);
        s.ok(
            alice(),
            Intent::SignalDone {
                agent: agent.clone(),
            },
        );
        s.verdict(agent, &[true]);
    }
    s.ok(
        alice(),
        Intent::Dismiss {
            agent: pippin.clone(),
        },
    );
    assert_eq!(s.state_of(&pippin), AgentState::DismissedReaped);
    assert_eq!(s.state_of(&done_child), AgentState::DismissedReaped);
    assert_eq!(s.state_of(&live_child), AgentState::FailedReaped);
    // Names are never reused.
    let next = s.summon(alice(), "Jake", "g");
    assert!(![&frodo, &sam, &merry, &pippin].contains(&&next));
}

#[test]
fn jake_is_never_done_dismissed_or_reaped() {
    let mut s = Scenario::given();
    for intent in [
        Intent::SignalDone {
            agent: "Jake".into(),
        },
        Intent::Dismiss {
            agent: "Jake".into(),
        },
        Intent::Reap {
            agent: "Jake".into(),
            reason: String::new(),
        },
    ] {
        let error = s.refused(alice(), intent);
        assert!(error.contains("Jake"), "{error}");
    }
}

#[test]
fn questions_bubble_to_the_requester_with_their_class_and_path() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let sam = s.summon(Actor::Agent(frodo.clone()), &frodo, "b");
    let outcomes = s.ok(
        Actor::Agent(sam.clone()),
        Intent::AskUser {
            agent: sam.clone(),
            question: "Postgres or SQLite?".into(),
            class: QuestionClass::Deep,
        },
    );
    assert_eq!(s.state_of(&sam), AgentState::WaitingForInput);
    let question = outcomes
        .iter()
        .find_map(|o| match o {
            Outcome::MessagePosted(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(question.to, Party::User("alice".into()));
    assert_eq!(
        question.kind,
        MessageKind::Question {
            class: QuestionClass::Deep
        }
    );
    assert_eq!(question.via, vec!["Frodo", "Jake"]);
    // The answer wakes it: its next turn moves it back to Working.
    s.ok(
        alice(),
        Intent::SendMessage {
            to: sam.clone(),
            text: "SQLite".into(),
        },
    );
    assert!(s.state.has_waking_input(&sam));
    s.ok(
        Actor::Agent(sam.clone()),
        Intent::TakeTurn { agent: sam.clone() },
    );
    assert_eq!(s.state_of(&sam), AgentState::Working);
}

#[test]
fn presence_notices_do_not_wake_an_agent() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    s.ok(
        Actor::Agent(frodo.clone()),
        Intent::TakeTurn {
            agent: frodo.clone(),
        },
    );
    assert!(!s.state.has_waking_input(&frodo));
    s.ok(
        alice(),
        Intent::SetModes {
            agent: frodo.clone(),
            patch: ModesPatch {
                user_present: Some(true),
                ..ModesPatch::default()
            },
        },
    );
    assert!(s.state.agent(&frodo).unwrap().modes.user_present);
    assert!(!s.state.has_waking_input(&frodo));
    // Only people toggle presence.
    let error = s.refused(
        Actor::Agent(frodo.clone()),
        Intent::SetModes {
            agent: frodo,
            patch: ModesPatch {
                user_present: Some(false),
                ..ModesPatch::default()
            },
        },
    );
    assert!(error.contains("only a person"), "{error}");
}

#[test]
fn broadcasts_reach_live_agents_in_scope() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let a = s.summon(Actor::Agent(frodo.clone()), &frodo, "b");
    let b = s.summon(Actor::Agent(frodo.clone()), &frodo, "c");
    let c = s.summon(Actor::Agent(frodo.clone()), &frodo, "d");
    s.ok(
        alice(),
        Intent::Reap {
            agent: c,
            reason: String::new(),
        },
    );
    let outcomes = s.ok(
        Actor::Agent(a.clone()),
        Intent::Broadcast {
            scope: tavern_plugin_api::BroadcastScope::Siblings,
            text: "hi".into(),
        },
    );
    let to: Vec<Party> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::MessagePosted(m) => Some(m.to.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(to, vec![Party::Agent(b)]);
    let outcomes = s.ok(
        Actor::Agent(frodo.clone()),
        Intent::Broadcast {
            scope: tavern_plugin_api::BroadcastScope::Subtree,
            text: "all hands".into(),
        },
    );
    assert_eq!(outcomes.len(), 2);
}

#[test]
fn unknown_and_bad_names_are_clear_errors() {
    let mut s = Scenario::given();
    let error = s.refused(
        alice(),
        Intent::SendMessage {
            to: "Gollum".into(),
            text: "hi".into(),
        },
    );
    assert!(error.contains("no agent is named \"Gollum\""), "{error}");
    let error = s.refused(
        alice(),
        Intent::Summon(Summon {
            parent: "Jake".into(),
            assignment: Some("x".into()),
            kind: AgentKind::Mortal,
            expert: None,
            name: Some("../etc".into()),
            model: None,
            workdir: None,
        }),
    );
    assert!(error.contains("..") && error.contains("../etc"), "{error}");
    s.summon(alice(), "Jake", "a");
    let error = s.refused(
        alice(),
        Intent::Summon(Summon {
            parent: "Jake".into(),
            assignment: Some("x".into()),
            kind: AgentKind::Mortal,
            expert: None,
            name: Some("frodo".into()),
            model: None,
            workdir: None,
        }),
    );
    assert!(error.contains("taken"), "{error}");
}

#[test]
fn a_summons_model_is_checked_and_stored_resolved() {
    let mut s = Scenario::given();
    let summon = |model: &str| {
        Intent::Summon(Summon {
            parent: "Jake".into(),
            assignment: Some("x".into()),
            kind: AgentKind::Mortal,
            expert: None,
            name: None,
            model: Some(model.into()),
            workdir: None,
        })
    };
    let error = s.refused(alice(), summon("gpt-5"));
    assert!(
        error.contains("\"gpt-5\"") && error.contains("scripted:PATH"),
        "{error}"
    );
    s.ok(alice(), summon("scripted:demo.toml"));
    assert_eq!(
        s.state.agent("Frodo").unwrap().model.as_deref(),
        Some("scripted:/project/demo.toml")
    );
}

#[test]
fn monitors_live_under_jake_only() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let monitor = |parent: &str| {
        Intent::Summon(Summon {
            parent: parent.into(),
            assignment: Some("watch".into()),
            kind: AgentKind::Monitor,
            expert: None,
            name: None,
            model: None,
            workdir: None,
        })
    };
    let error = s.refused(alice(), monitor(&frodo));
    assert!(error.contains("child of Jake"), "{error}");
    s.ok(alice(), monitor("Jake"));
}

#[test]
fn drones_dismiss_themselves_once_done() {
    let mut s = Scenario::given();
    s.ok(
        alice(),
        Intent::Summon(Summon {
            parent: "Jake".into(),
            assignment: Some("one thing".into()),
            kind: AgentKind::Drone,
            expert: None,
            name: None,
            model: None,
            workdir: None,
        }),
    );
    s.commit("Frodo", false);
    s.ok(
        alice(),
        Intent::SignalDone {
            agent: "Frodo".into(),
        },
    );
    s.verdict("Frodo", &[true]);
    assert_eq!(s.state_of("Frodo"), AgentState::DismissedReaped);
}

#[test]
fn restarts_are_limited_then_the_agent_is_reaped() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    for attempt in 1..=2 {
        let outcomes = s.ok(
            Actor::Tavern,
            Intent::RestartAgent {
                agent: frodo.clone(),
                reason: "model down".into(),
            },
        );
        assert_eq!(
            outcomes,
            vec![Outcome::TaskRestarted {
                agent: frodo.clone(),
                attempt
            }]
        );
    }
    s.ok(
        Actor::Tavern,
        Intent::RestartAgent {
            agent: frodo.clone(),
            reason: "model down".into(),
        },
    );
    assert_eq!(s.state_of(&frodo), AgentState::FailedReaped);
}

#[test]
fn only_restarts_within_the_window_count_and_jake_is_never_reaped() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let restart = |s: &mut Scenario, agent: &str| {
        s.ok(
            Actor::Tavern,
            Intent::RestartAgent {
                agent: agent.into(),
                reason: "model down".into(),
            },
        )
    };
    restart(&mut s, &frodo);
    restart(&mut s, &frodo);
    // The window is 60 s: an hour later, those two no longer count.
    s.wait(3_600_000);
    let outcomes = restart(&mut s, &frodo);
    assert_eq!(
        outcomes,
        vec![Outcome::TaskRestarted {
            agent: frodo.clone(),
            attempt: 1
        }]
    );
    assert_eq!(s.state_of(&frodo), AgentState::Working);
    // Jake past the limit is restarted again, never reaped.
    for _ in 0..5 {
        restart(&mut s, "Jake");
    }
    assert!(!s.state_of("Jake").is_dead());
}

#[test]
fn a_turns_reply_goes_to_the_requester() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let mut new_id = || "reply".to_string();
    let mut env = DecideEnv {
        now: 9,
        new_id: &mut new_id,
        models: &Default::default(),
        claude_cli_missing: None,
        max_restarts: 2,
        restart_window: 60_000,
        project: std::path::Path::new("/project"),
        approve_own_commitments: false,
    };
    let outcomes = finish_turn(&s.state, &frodo, "on it", &mut env);
    assert_eq!(
        messages_to(&outcomes, &Party::User("alice".into())),
        vec!["on it"]
    );
    assert!(finish_turn(&s.state, &frodo, "  ", &mut env).is_empty());
}

#[test]
fn file_edits_take_description_and_notes_and_refuse_managed_fields() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let doc = projection::agent_doc(s.state.agent(&frodo).unwrap());
    let edited = doc.replace("## Notes\n", "## Notes\nRemember the edge cases.\n");
    let outcomes = s.ok(
        Actor::File,
        Intent::EditDocument {
            path: "agents/Frodo.md".into(),
            content: Some(edited),
            base: None,
        },
    );
    assert_eq!(
        outcomes,
        vec![
            Outcome::NotesChanged {
                agent: frodo.clone(),
                text: "Remember the edge cases.".into()
            },
            Outcome::DocumentEditRecorded {
                path: "agents/Frodo.md".into(),
                ignored: Vec::new()
            }
        ]
    );
    let doc = projection::agent_doc(s.state.agent(&frodo).unwrap());
    // An editor buffer opened before Frodo moved on: stale managed fields, a new description. The
    // description is taken; the stale fields are left as Tavern has them, and said so.
    let stale_buffer = doc
        .replace("state = \"working\"", "state = \"summoned\"")
        .replace("## Description\na\n", "## Description\nA better plan.\n");
    let outcomes = s.ok(
        Actor::File,
        Intent::EditDocument {
            path: "agents/Frodo.md".into(),
            content: Some(stale_buffer),
            base: Some(EditBase {
                description: "a".into(),
                notes: "Remember the edge cases.".into(),
            }),
        },
    );
    assert_eq!(
        outcomes,
        vec![
            Outcome::DescriptionChanged {
                agent: frodo.clone(),
                text: "A better plan.".into()
            },
            Outcome::DocumentEditRecorded {
                path: "agents/Frodo.md".into(),
                ignored: vec!["state".into()]
            }
        ]
    );
    assert_eq!(s.state_of(&frodo), AgentState::Working);
    let doc = projection::agent_doc(s.state.agent(&frodo).unwrap());
    let error = s.refused(
        Actor::File,
        Intent::EditDocument {
            path: "agents/Frodo.md".into(),
            content: Some(doc.replace("state = \"working\"", "state = \"done\"")),
            base: None,
        },
    );
    assert!(
        error.contains("`state`") && error.contains("restored"),
        "{error}"
    );
    let error = s.refused(
        Actor::File,
        Intent::EditDocument {
            path: "agents/Frodo.md".into(),
            content: None,
            base: None,
        },
    );
    assert!(error.contains("cannot be deleted"), "{error}");
    // Unchanged content is recorded as a no-op.
    let outcomes = s.ok(
        Actor::File,
        Intent::EditDocument {
            path: "agents/Frodo.md".into(),
            content: Some(doc),
            base: None,
        },
    );
    assert!(matches!(outcomes[0], Outcome::DocumentEditRecorded { .. }));
}

#[test]
fn an_edit_is_merged_with_changes_recorded_since_its_base() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    // The person opens the file...
    let opened = projection::agent_doc(s.state.agent(&frodo).unwrap());
    let base = projection::agent_edit_base(&opened).unwrap().1;
    // ...meanwhile the agent's description changes through Tavern...
    s.ok(
        alice(),
        Intent::SetDescription {
            agent: frodo.clone(),
            text: "b".into(),
        },
    );
    // ...and the person saves notes from the buffer that still has the old description.
    let saved = opened.replace("## Notes\n", "## Notes\nmine\n");
    let edit = |content: String, base: Option<EditBase>| Intent::EditDocument {
        path: "agents/Frodo.md".into(),
        content: Some(content),
        base,
    };
    let outcomes = s.ok(Actor::File, edit(saved.clone(), Some(base.clone())));
    assert!(outcomes.contains(&Outcome::NotesChanged {
        agent: frodo.clone(),
        text: "mine".into()
    }));
    let node = s.state.agent(&frodo).unwrap();
    assert_eq!(
        (node.description.as_str(), node.notes.as_str()),
        ("b", "mine")
    );
    // Without a known base and with the agent changed since, the edit is not guessed at.
    let error = s.refused(Actor::File, edit(saved, None));
    assert!(error.contains("cannot be merged"), "{error}");
    // Both sides changing the same part: Tavern's stands, and the person is told.
    let clash = opened.replace("## Description\na\n", "## Description\nc\n");
    let error = s.refused(Actor::File, edit(clash, Some(base)));
    assert!(error.contains("description changed in Tavern"), "{error}");
}

#[test]
fn documents_carry_a_seal_that_tells_tavern_writes_from_edits() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "a");
    let doc = projection::agent_doc(s.state.agent(&frodo).unwrap());
    assert!(doc.ends_with(" -->\n"), "{doc}");
    let (text, seal) = projection::unseal(&doc);
    assert_eq!(seal, projection::Seal::Intact);
    assert!(text.ends_with("## Notes\n\n"), "{text:?}");
    let edited = doc.replace("## Notes\n", "## Notes\nmine\n");
    assert_eq!(projection::unseal(&edited).1, projection::Seal::Broken);
    assert_eq!(
        projection::unseal("no seal at all").1,
        projection::Seal::Broken
    );
    // The hash is FNV-1a: stable across builds, so seals written by one build verify in the next.
    assert_eq!(projection::stable_hash(""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(projection::stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn projection_round_trips_descriptions_and_notes() {
    let mut s = Scenario::given();
    let frodo = s.summon(alice(), "Jake", "line one\n\n## Notes\nnot really notes");
    let node = s.state.agent(&frodo).unwrap().clone();
    let doc = projection::agent_doc(&node);
    let (text, _) = projection::unseal(&doc);
    let (front, body): (projection::AgentFront, String) =
        crate::blackboard::front_matter::parse(text).unwrap();
    assert_eq!(front, projection::agent_front(&node));
    let (description, notes) = projection::split_agent_body(&body);
    assert_eq!(description, "line one\n\n## Notes\nnot really notes");
    assert_eq!(notes, "");
}

/// An agent's own commitment, with proposals on: its pending id.
fn propose(s: &mut Scenario, agent: &str, assertion: &str) -> u32 {
    let outcomes = s.ok(
        Actor::Agent(agent.into()),
        Intent::AddCommitment {
            agent: agent.into(),
            description: "works".into(),
            assertion: assertion.into(),
            needs_signoff: false,
        },
    );
    outcomes
        .iter()
        .find_map(|o| match o {
            Outcome::PendingOpened {
                id,
                item: PendingItem::Commitment { .. },
                ..
            } => Some(*id),
            _ => None,
        })
        .expect("an agent's own commitment is a proposal")
}

#[test]
fn an_agents_own_commitment_counts_only_once_a_person_approves_it() {
    let mut s = Scenario::given();
    s.approve_own = true;
    let frodo = s.summon(alice(), "Jake", "a");
    let id = propose(&mut s, &frodo, "true");
    // What a person sets counts at once.
    s.commit(&frodo, false);
    assert_eq!(
        s.state.agent(&frodo).unwrap().commitments[1].approval,
        Approval::Accepted
    );
    s.ok(
        Actor::Agent(frodo.clone()),
        Intent::SignalDone {
            agent: frodo.clone(),
        },
    );
    let outcomes = s.verdict(&frodo, &[true, true]);
    // Both pass, but the proposal waits: still verifying, and the requester is asked.
    assert_eq!(s.state_of(&frodo), AgentState::Verifying);
    let asked = messages_to(&outcomes, &Party::User("alice".into()));
    assert!(asked[0].contains(&format!("/approve {id}")), "{asked:?}");
    // The agent cannot approve itself, and "always" is not an answer to a proposal.
    let error = s.refused(
        Actor::Agent(frodo.clone()),
        Intent::Answer {
            id,
            answer: Answer::Allow,
        },
    );
    assert!(error.contains("only people"), "{error}");
    let error = s.refused(
        alice(),
        Intent::Answer {
            id,
            answer: Answer::Always,
        },
    );
    assert!(error.contains("proposed commitment"), "{error}");
    s.ok(
        alice(),
        Intent::Answer {
            id,
            answer: Answer::Allow,
        },
    );
    assert_eq!(s.state_of(&frodo), AgentState::Done);
    assert_eq!(
        s.state.agent(&frodo).unwrap().commitments[0].approval,
        Approval::Approved { by: "alice".into() }
    );
}

#[test]
fn a_rejected_proposal_no_longer_counts_and_the_agent_is_told() {
    let mut s = Scenario::given();
    s.approve_own = true;
    let frodo = s.summon(alice(), "Jake", "a");
    let id = propose(&mut s, &frodo, "false");
    s.ok(
        Actor::Agent(frodo.clone()),
        Intent::SignalDone {
            agent: frodo.clone(),
        },
    );
    // An answer while the assertions run does not decide anything yet.
    let outcomes = s.ok(
        alice(),
        Intent::Answer {
            id,
            answer: Answer::Deny {
                reason: Some("false always fails".into()),
            },
        },
    );
    assert_eq!(s.state_of(&frodo), AgentState::Verifying);
    let told = messages_to(&outcomes, &Party::Agent(frodo.clone()));
    assert!(
        told[0].contains("rejected your commitment #1") && told[0].contains("false always fails"),
        "{told:?}"
    );
    // The rejected commitment's failure is not a gap; with nothing left that counts, back to work.
    let outcomes = s.verdict(&frodo, &[false]);
    assert_eq!(s.state_of(&frodo), AgentState::Working);
    let report = messages_to(&outcomes, &Party::Agent(frodo.clone()));
    assert!(
        report[0].contains("every commitment you made was rejected"),
        "{report:?}"
    );
    // A second proposal that passes, approved, makes it Done.
    let id = propose(&mut s, &frodo, "true");
    s.ok(
        alice(),
        Intent::Answer {
            id,
            answer: Answer::Allow,
        },
    );
    s.ok(
        Actor::Agent(frodo.clone()),
        Intent::SignalDone {
            agent: frodo.clone(),
        },
    );
    let outcomes = s.verdict(&frodo, &[false, true]);
    assert_eq!(s.state_of(&frodo), AgentState::Done);
    // Only the commitment that counts was checked.
    let checked: Vec<usize> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::CommitmentChecked { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(checked, [1]);
}
