//! Deciding: turning an intent into outcomes against the current state, or refusing it.
//!
//! Deciding may fail (an illegal transition, an unknown agent) and may generate things (names, ids,
//! times, taken from [`DecideEnv`]); what it generates is recorded in the outcomes, so applying them
//! later never generates anything. Deciding never does IO: slow work (model calls, assertions) happens in
//! the executor, which feeds its results back through the `*_verdict` and `finish_*` functions here.

use tavern_plugin_api::{
    AgentKind, AgentState, Approval, CheckSummary, Commitment, IllegalTransition, Modes,
    QuestionClass,
};

use super::intent::{Actor, Answer, Intent, ModesPatch, Summon};
use super::outcome::{Message, MessageKind, NewAgent, Outcome, Party, PendingItem, Settled};
use super::state::{AgentNode, TavernState};
use crate::blackboard::DocName;
use crate::log::Millis;
use crate::naming;
use crate::registry;

mod commitments;
mod lifecycle;
mod messages;
mod pending;
mod summon;
mod turn;

use commitments::*;
use lifecycle::*;
use messages::*;
use pending::*;
use summon::*;
use turn::*;

pub use commitments::{gap_report, verification_verdict};
pub use turn::{fail_turn, finish_turn};

/// What deciding needs from the outside world, injected so tests and replay control it.
pub struct DecideEnv<'a> {
    /// The current time.
    pub now: Millis,
    /// Generates a fresh unique id (a UUID in production, a counter in tests).
    pub new_id: &'a mut dyn FnMut() -> String,
    /// The configured model spec of each agent type, for agents summoned without one of their own.
    pub models: &'a crate::model::KindModels,
    /// Why the Claude Code CLI cannot be started, when it cannot; an agent that would run in it is
    /// refused at summon time with this, rather than failing at its first turn.
    pub claude_cli_missing: Option<&'a str>,
    /// How many task restarts an agent gets within `restart_window` before it is reaped.
    pub max_restarts: u32,
    /// The window, in milliseconds, in which restarts count toward the limit.
    pub restart_window: Millis,
    /// The project directory, against which relative paths in model specs resolve.
    pub project: &'a std::path::Path,
    /// Whether the commitments an agent makes for itself wait for a person's approval before they
    /// count (`commitments.approval`).
    pub approve_own_commitments: bool,
}

/// A decided intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What it did right away.
    pub outcomes: Vec<Outcome>,
    /// Whether it goes on running after its entry is written (verification, a model turn).
    pub continues: bool,
}

impl Decision {
    fn done(outcomes: Vec<Outcome>) -> Decision {
        Decision {
            outcomes,
            continues: false,
        }
    }
}

/// Why an intent was refused. Every message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// No such agent.
    #[error("no agent is named {0:?}; /agents lists who is here")]
    UnknownAgent(String),
    /// The agent is dead.
    #[error("{name} is {state}; dead agents keep their files but cannot act or be acted on")]
    AgentDead {
        /// The agent.
        name: String,
        /// Its final state.
        state: AgentState,
    },
    /// A lifecycle transition that is not allowed.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The tavern is already open (there is exactly one Jake).
    #[error("this tavern is already open; there is exactly one Jake per tavern")]
    AlreadyOpen,
    /// Nothing can happen before the tavern is opened.
    #[error("the tavern is not open yet")]
    NotOpen,
    /// A name that cannot be used.
    #[error("cannot use the name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The actor may not do this.
    #[error("{0}")]
    NotAllowed(String),
    /// A model spec that names no model this build has.
    #[error("the model {spec:?} {reason}")]
    BadModel {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// The commitment number does not exist.
    #[error("{agent} has no commitment #{number} (it has {count}); /agents shows them")]
    NoSuchCommitment {
        /// The agent.
        agent: String,
        /// The number asked for (1-based).
        number: usize,
        /// How many it has.
        count: usize,
    },
    /// An answer names nothing that waits, or the wrong kind of thing.
    #[error("{0}")]
    NoSuchPending(String),
    /// A required text was empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// An edit to a file under `.tavern/` that Tavern cannot take.
    #[error("{path}: {reason}")]
    Edit {
        /// The file, relative to `.tavern/`.
        path: String,
        /// Why, and what to do.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, DomainError>;

fn live<'s>(state: &'s TavernState, name: &str) -> Result<&'s AgentNode> {
    let node = state
        .agent(name)
        .ok_or_else(|| DomainError::UnknownAgent(name.to_string()))?;
    if node.state.is_dead() {
        return Err(DomainError::AgentDead {
            name: node.name.clone(),
            state: node.state,
        });
    }
    Ok(node)
}

fn existing<'s>(state: &'s TavernState, name: &str) -> Result<&'s AgentNode> {
    state
        .agent(name)
        .ok_or_else(|| DomainError::UnknownAgent(name.to_string()))
}

/// People and Tavern may act on any agent; an agent only on itself and its descendants.
fn may_act_on(state: &TavernState, actor: &Actor, target: &AgentNode, what: &str) -> Result<()> {
    match actor {
        Actor::User(_) | Actor::Tavern => Ok(()),
        Actor::Agent(me) => {
            if me.eq_ignore_ascii_case(&target.name)
                || state
                    .ancestors(&target.name)
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(me))
            {
                Ok(())
            } else {
                Err(DomainError::NotAllowed(format!(
                    "{me} may not {what} {}: agents act only on themselves and their own children",
                    target.name
                )))
            }
        }
        Actor::File => Err(DomainError::NotAllowed(format!(
            "a file edit cannot {what} {}",
            target.name
        ))),
    }
}

fn actor_party(actor: &Actor) -> Result<Party> {
    match actor {
        Actor::User(name) => Ok(Party::User(name.clone())),
        Actor::Agent(name) => Ok(Party::Agent(name.clone())),
        Actor::Tavern => Ok(Party::Tavern),
        Actor::File => Err(DomainError::NotAllowed(
            "a file edit cannot send messages".to_string(),
        )),
    }
}

fn new_message(
    env: &mut DecideEnv<'_>,
    from: Party,
    to: Party,
    kind: MessageKind,
    text: String,
) -> Message {
    Message {
        id: (env.new_id)(),
        from,
        to,
        ts: env.now,
        kind,
        text,
        via: Vec::new(),
    }
}

fn message(
    env: &mut DecideEnv<'_>,
    from: Party,
    to: Party,
    kind: MessageKind,
    text: String,
) -> Outcome {
    Outcome::MessagePosted(new_message(env, from, to, kind, text))
}

fn transition(node: &AgentNode, to: AgentState, reason: Option<String>) -> Result<Outcome> {
    node.state.check_transition(&node.name, to)?;
    Ok(Outcome::StateChanged {
        agent: node.name.clone(),
        from: node.state,
        to,
        reason,
    })
}

/// Decides an intent. On success the outcomes are ready to be recorded and applied.
pub fn decide(
    state: &TavernState,
    actor: &Actor,
    intent: &Intent,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    if state.jake.is_none() && !matches!(intent, Intent::OpenTavern { .. }) {
        return Err(DomainError::NotOpen);
    }
    match intent {
        Intent::OpenTavern { theme } => open_tavern(state, theme, env),
        Intent::Summon(summon) => decide_summon(state, actor, summon, env),
        Intent::SendMessage { to, text } => send_message(state, actor, to, text, env),
        Intent::Broadcast { scope, text } => broadcast(state, actor, *scope, text, env),
        Intent::AddCommitment {
            agent,
            description,
            assertion,
            needs_signoff,
        } => add_commitment(
            state,
            actor,
            agent,
            description,
            assertion,
            *needs_signoff,
            env,
        ),
        Intent::SignalDone { agent } => {
            let node = live(state, agent)?;
            may_act_on(state, actor, node, "signal done for")?;
            if node.kind == AgentKind::Jake {
                return Err(DomainError::NotAllowed(
                    "Jake coordinates and is never done; signal done for the agent doing the work"
                        .into(),
                ));
            }
            let change = transition(node, AgentState::Verifying, None)?;
            Ok(Decision {
                outcomes: vec![change],
                continues: true,
            })
        }
        Intent::Approve { agent, commitment } => approve(state, actor, agent, *commitment, env),
        Intent::Dismiss { agent } => {
            let node = live(state, agent)?;
            may_act_on(state, actor, node, "dismiss")?;
            if node.kind == AgentKind::Jake {
                return Err(DomainError::NotAllowed(
                    "Jake cannot be dismissed: he is the root, and there is exactly one".into(),
                ));
            }
            let mut outcomes = vec![transition(node, AgentState::DismissedReaped, None)?];
            let reason = format!("{} was dismissed", node.name);
            outcomes.extend(cascade(state, &node.name, &reason));
            outcomes.extend(tell_parent(
                state,
                actor,
                node,
                format!("{} was dismissed by {actor}.", node.name),
                env,
            ));
            Ok(Decision::done(outcomes))
        }
        Intent::Reap { agent, reason } => {
            let node = live(state, agent)?;
            may_act_on(state, actor, node, "reap")?;
            Ok(Decision::done(reap(state, actor, node, reason, env)?))
        }
        Intent::SetModes { agent, patch } => set_modes(state, actor, agent, patch, env),
        Intent::SetDescription { agent, text } => {
            let node = existing(state, agent)?;
            may_act_on(state, actor, node, "describe")?;
            Ok(Decision::done(vec![Outcome::DescriptionChanged {
                agent: node.name.clone(),
                text: text.clone(),
            }]))
        }
        Intent::SetRestartStrategy { agent, strategy } => {
            let node = live(state, agent)?;
            may_act_on(state, actor, node, "change the restart strategy of")?;
            Ok(Decision::done(vec![Outcome::RestartStrategyChanged {
                agent: node.name.clone(),
                strategy: *strategy,
            }]))
        }
        Intent::AskUser {
            agent,
            question,
            class,
        } => ask_user(state, actor, agent, question, *class, env),
        Intent::TakeTurn { agent } => take_turn(state, actor, agent),
        Intent::RestartAgent { agent, reason } => restart_agent(state, agent, reason, env),
        Intent::RequestApproval { agent, tool, input } => {
            request_approval(state, actor, agent, tool, input)
        }
        Intent::Answer { id, answer } => answer_pending(state, actor, *id, answer, env),
        Intent::AttachThread {
            agent,
            thread,
            header,
        } => {
            if !matches!(actor, Actor::Tavern) {
                return Err(DomainError::NotAllowed(
                    "only Tavern's surfaces attach threads".into(),
                ));
            }
            let node = existing(state, agent)?;
            if thread.trim().is_empty() {
                return Err(DomainError::Empty("the thread id"));
            }
            Ok(Decision::done(vec![Outcome::ThreadAttached {
                agent: node.name.clone(),
                thread: thread.clone(),
                header: header.clone(),
            }]))
        }
        Intent::Interrupt { agent } => {
            let node = live(state, agent)?;
            let Actor::User(by) = actor else {
                return Err(DomainError::NotAllowed(
                    "only people interrupt agents".into(),
                ));
            };
            let Some(turn) = state.open_turn(&node.name) else {
                return Err(DomainError::NotAllowed(format!(
                    "{} is not taking a turn now, so there is nothing to interrupt",
                    node.name
                )));
            };
            Ok(Decision::done(vec![Outcome::TurnInterrupted {
                agent: node.name.clone(),
                by: by.clone(),
                turn,
            }]))
        }
        Intent::EditDocument {
            path,
            content,
            base,
        } => super::projection::decide_edit(state, path, content.as_deref(), base.as_ref()),
    }
}
