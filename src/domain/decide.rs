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

fn open_tavern(state: &TavernState, theme: &str, env: &mut DecideEnv<'_>) -> Result<Decision> {
    if state.jake.is_some() {
        return Err(DomainError::AlreadyOpen);
    }
    naming::theme(theme).map_err(|e| DomainError::NotAllowed(e.to_string()))?;
    let jake = NewAgent {
        name: "Jake".to_string(),
        kind: AgentKind::Jake,
        expert: None,
        parent: None,
        assignment: None,
        // Jake uses his type's configured model, looked up at each turn.
        model: None,
        workdir: None,
        modes: Modes::default(),
        requester: None,
        created: env.now,
    };
    Ok(Decision::done(vec![
        Outcome::TavernOpened {
            theme: theme.to_string(),
        },
        Outcome::AgentSummoned(jake),
        Outcome::StateChanged {
            agent: "Jake".to_string(),
            from: AgentState::Summoned,
            to: AgentState::Working,
            reason: Some("the tavern opened".to_string()),
        },
    ]))
}

fn choose_name(state: &TavernState, requested: Option<&str>) -> Result<String> {
    if let Some(name) = requested {
        DocName::new(name).map_err(|e| DomainError::BadName {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        // People type names in commands (`/join NAME`, `/done NAME`) and mention them in text, so a
        // name is one word without quotes.
        if name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '`'))
        {
            return Err(DomainError::BadName {
                name: name.to_string(),
                reason:
                    "an agent's name is one word, without spaces or quotes, so it can be typed \
                         in commands like /join NAME"
                        .into(),
            });
        }
        if state.name_taken(name) || name.eq_ignore_ascii_case("jake") {
            return Err(DomainError::BadName {
                name: name.to_string(),
                reason: "that name is taken (names are never reused, even after dismissal)".into(),
            });
        }
        return Ok(name.to_string());
    }
    let theme_id = state.theme.as_deref().unwrap_or("lotr");
    let theme = naming::theme(theme_id).map_err(|e| DomainError::NotAllowed(e.to_string()))?;
    // Every candidate before the state's cursor is taken, so the search starts there.
    Ok(
        naming::next_name_from(theme, state.name_cursor, |candidate| {
            state.name_taken(candidate) || candidate.eq_ignore_ascii_case("jake")
        })
        .0,
    )
}

fn decide_summon(
    state: &TavernState,
    actor: &Actor,
    summon: &Summon,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let parent = live(state, &summon.parent)?;
    may_act_on(state, actor, parent, "summon children under")?;
    let policy = registry::plugin(summon.kind).policy();
    if summon.kind == AgentKind::Jake {
        return Err(DomainError::NotAllowed(
            "Jake cannot be summoned: there is exactly one, and Tavern creates him".into(),
        ));
    }
    if matches!(actor, Actor::User(_)) && !policy.summonable_by_users {
        return Err(DomainError::NotAllowed(format!(
            "people cannot summon a {} directly",
            summon.kind
        )));
    }
    if policy.requires_jake_parent && parent.kind != AgentKind::Jake {
        return Err(DomainError::NotAllowed(format!(
            "a {} must be a child of Jake, not of {}",
            summon.kind, parent.name
        )));
    }
    if matches!(parent.state, AgentState::Verifying | AgentState::Done) {
        return Err(DomainError::NotAllowed(format!(
            "{} is {} and cannot take on children now",
            parent.name, parent.state
        )));
    }
    if summon
        .assignment
        .as_deref()
        .is_some_and(|a| a.trim().is_empty())
    {
        return Err(DomainError::Empty("the assignment"));
    }
    let name = choose_name(state, summon.name.as_deref())?;
    let requester = match actor {
        Actor::User(user) => Some(user.clone()),
        Actor::Agent(_) => parent.requester.clone().or(parent.last_human.clone()),
        Actor::Tavern | Actor::File => parent.requester.clone(),
    };
    // Agents summoned by an agent persevere (they have a job and keep at it until verified);
    // agents summoned by a person start in chat mode.
    let modes = Modes {
        perseverance: matches!(actor, Actor::Agent(_)),
        ..Modes::default()
    };
    // A model named at summon time is checked now, so a typo is an error here rather than a string of
    // failed turns later; it is stored resolved (absolute paths), so it means the same after a restart.
    // Without one the agent uses its type's configured model, looked up at each turn (a mortal summoned
    // by Jake does not inherit Jake's coordinating model).
    let model = match &summon.model {
        Some(spec) => crate::model::ModelSpec::parse(spec, env.project)
            .map_err(|reason| DomainError::BadModel {
                spec: spec.clone(),
                reason,
            })?
            .map(|m| m.to_string()),
        None => None,
    };
    let effective = env.models.effective(model.as_deref(), summon.kind);
    if let (Some(missing), Some(spec)) = (env.claude_cli_missing, effective) {
        if matches!(
            crate::model::ModelSpec::parse(spec, env.project),
            Ok(Some(crate::model::ModelSpec::ClaudeCode { .. }))
        ) {
            return Err(DomainError::BadModel {
                spec: spec.to_string(),
                reason: format!("cannot run here: {missing}"),
            });
        }
    }
    // Resolved against the project now, so it means the same after a restart; whether it exists is
    // checked when a runtime starts there (deciding does no IO), and that error names the directory.
    let workdir = match summon.workdir.as_deref().map(str::trim) {
        None => None,
        Some("") => return Err(DomainError::Empty("the working directory")),
        Some(dir) => Some(env.project.join(dir).display().to_string()),
    };
    let new = NewAgent {
        name: name.clone(),
        kind: summon.kind,
        expert: summon.expert,
        parent: Some(parent.name.clone()),
        assignment: summon.assignment.clone(),
        model,
        workdir,
        modes,
        requester,
        created: env.now,
    };
    let mut outcomes = vec![Outcome::AgentSummoned(new)];
    if let Some(assignment) = &summon.assignment {
        // The assignment is the child's first input, and it begins at once.
        let from = actor_party(actor)?;
        outcomes.push(message(
            env,
            from,
            Party::Agent(name.clone()),
            MessageKind::Chat,
            assignment.clone(),
        ));
        outcomes.push(Outcome::StateChanged {
            agent: name,
            from: AgentState::Summoned,
            to: AgentState::Working,
            reason: Some("summoned with an assignment".into()),
        });
    }
    Ok(Decision::done(outcomes))
}

fn resolve_recipient<'s>(state: &'s TavernState, actor: &Actor, to: &str) -> Result<&'s AgentNode> {
    if to.eq_ignore_ascii_case("parent") {
        let Actor::Agent(me) = actor else {
            return Err(DomainError::NotAllowed(
                "only an agent can message its parent".into(),
            ));
        };
        let parent = existing(state, me)?.parent.clone().ok_or_else(|| {
            DomainError::NotAllowed(format!("{me} is the root and has no parent"))
        })?;
        return live(state, &parent);
    }
    live(state, to)
}

fn send_message(
    state: &TavernState,
    actor: &Actor,
    to: &str,
    text: &str,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    if text.trim().is_empty() {
        return Err(DomainError::Empty("the message"));
    }
    let from = actor_party(actor)?;
    if let Actor::Agent(me) = actor {
        live(state, me)?;
    }
    let target = resolve_recipient(state, actor, to)?;
    let mut outcomes = vec![message(
        env,
        from,
        Party::Agent(target.name.clone()),
        MessageKind::Chat,
        text.to_string(),
    )];
    // A person talking to an agent answers its open questions, however they reply.
    if let Actor::User(by) = actor {
        outcomes.extend(
            state
                .open_pending()
                .filter(|p| {
                    p.agent.eq_ignore_ascii_case(&target.name)
                        && matches!(p.item, PendingItem::Question { .. })
                })
                .map(|p| Outcome::PendingSettled {
                    id: p.id,
                    by: by.clone(),
                    settled: Settled::Answered,
                }),
        );
    }
    Ok(Decision::done(outcomes))
}

fn broadcast(
    state: &TavernState,
    actor: &Actor,
    scope: tavern_plugin_api::BroadcastScope,
    text: &str,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    use tavern_plugin_api::BroadcastScope;
    if text.trim().is_empty() {
        return Err(DomainError::Empty("the message"));
    }
    let from = actor_party(actor)?;
    let me = match actor {
        Actor::Agent(me) => Some(live(state, me)?.name.clone()),
        _ => None,
    };
    let recipients: Vec<String> = match (scope, &me) {
        (BroadcastScope::All, _) => state
            .agents_in_order()
            .map(|n| n.name.clone())
            .filter(|n| Some(n) != me.as_ref())
            .collect(),
        (BroadcastScope::Subtree, Some(me)) => state.descendants(me),
        (BroadcastScope::Siblings, Some(me)) => {
            let parent = state.agent(me).and_then(|n| n.parent.clone());
            parent
                .and_then(|p| state.agent(&p))
                .map(|p| {
                    p.children
                        .iter()
                        .filter(|c| *c != me)
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
        (_, None) => return Err(DomainError::NotAllowed(
            "only an agent can broadcast to its siblings or subtree; people can broadcast to all"
                .into(),
        )),
    };
    let mut outcomes = Vec::new();
    for name in recipients {
        if state.agent(&name).is_some_and(|n| !n.state.is_dead()) {
            outcomes.push(message(
                env,
                from.clone(),
                Party::Agent(name),
                MessageKind::Chat,
                text.to_string(),
            ));
        }
    }
    Ok(Decision::done(outcomes))
}

fn add_commitment(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    description: &str,
    assertion: &str,
    needs_signoff: bool,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let node = live(state, agent)?;
    may_act_on(state, actor, node, "add commitments to")?;
    if node.kind == AgentKind::Jake {
        return Err(DomainError::NotAllowed(
            "Jake makes no commitments; the agents doing the work do".into(),
        ));
    }
    if description.trim().is_empty() {
        return Err(DomainError::Empty("the commitment's description"));
    }
    if assertion.trim().is_empty() {
        return Err(DomainError::Empty("the commitment's assertion"));
    }
    if matches!(node.state, AgentState::Verifying | AgentState::Done) {
        return Err(DomainError::NotAllowed(format!(
            "{} is {}; commitments can only be added before it signals done",
            node.name, node.state
        )));
    }
    // An agent's own promise is a proposal to the person who asked for the work; what a person or a
    // parent asks of it counts at once.
    let proposed = env.approve_own_commitments
        && node.requester.is_some()
        && matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&node.name));
    let commitment = Commitment {
        description: description.trim().to_string(),
        assertion: assertion.trim().to_string(),
        needs_signoff,
        signed_off_by: None,
        last_check: None,
        approval: if proposed {
            Approval::Proposed
        } else {
            Approval::Accepted
        },
    };
    let mut outcomes = Vec::new();
    if proposed {
        outcomes.push(Outcome::PendingOpened {
            id: state.next_pending_id(),
            agent: node.name.clone(),
            item: PendingItem::Commitment {
                index: node.commitments.len(),
                description: commitment.description.clone(),
                assertion: commitment.assertion.clone(),
            },
        });
    }
    outcomes.insert(
        0,
        Outcome::CommitmentAdded {
            agent: node.name.clone(),
            index: node.commitments.len(),
            commitment,
        },
    );
    Ok(Decision::done(outcomes))
}

/// What a person's word on one commitment (an approval, a rejection, a sign-off; `change` applies it)
/// does to an agent that already signalled done: with its checks finished, it is Done once every
/// commitment that counts is satisfied, and back at work when none counts any more.
fn after_review(
    state: &TavernState,
    node: &AgentNode,
    index: usize,
    change: impl FnOnce(&mut Commitment),
    env: &mut DecideEnv<'_>,
) -> Result<Vec<Outcome>> {
    if node.state != AgentState::Verifying || state.verification_running(&node.name) {
        return Ok(Vec::new());
    }
    let mut after = node.commitments.clone();
    change(&mut after[index]);
    let counted: Vec<&Commitment> = after.iter().filter(|c| c.counts()).collect();
    if counted.is_empty() {
        return Ok(vec![transition(
            node,
            AgentState::Working,
            Some("none of its commitments counts any more".into()),
        )?]);
    }
    if counted.iter().all(|c| c.satisfied()) {
        return complete(state, node, env);
    }
    Ok(Vec::new())
}

fn approve(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    number: usize,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let Actor::User(user) = actor else {
        return Err(DomainError::NotAllowed(
            "only a person can sign off a commitment".into(),
        ));
    };
    let node = live(state, agent)?;
    let count = node.commitments.len();
    let index =
        number
            .checked_sub(1)
            .filter(|i| *i < count)
            .ok_or(DomainError::NoSuchCommitment {
                agent: node.name.clone(),
                number,
                count,
            })?;
    if !node.commitments[index].needs_signoff {
        return Err(DomainError::NotAllowed(format!(
            "{}'s commitment #{number} does not need a sign-off; its assertion decides",
            node.name
        )));
    }
    let mut outcomes = vec![Outcome::CommitmentSignedOff {
        agent: node.name.clone(),
        index,
        by: user.clone(),
    }];
    // The last missing sign-off of an agent whose checks already passed completes it.
    outcomes.extend(after_review(
        state,
        node,
        index,
        |c| c.signed_off_by = Some(user.clone()),
        env,
    )?);
    Ok(Decision::done(outcomes))
}

/// Moves a verifying agent to Done, tells its parent, and dismisses drones.
fn complete(
    state: &TavernState,
    node: &AgentNode,
    env: &mut DecideEnv<'_>,
) -> Result<Vec<Outcome>> {
    let mut outcomes = vec![transition(
        node,
        AgentState::Done,
        Some("every commitment passed".into()),
    )?];
    let n = node.commitments.iter().filter(|c| c.counts()).count();
    outcomes.extend(tell_parent(
        state,
        &Actor::Tavern,
        node,
        format!("{} is Done: {n}/{n} commitments pass.", node.name),
        env,
    ));
    if registry::plugin(node.kind).policy().dismiss_when_done {
        outcomes.push(Outcome::StateChanged {
            agent: node.name.clone(),
            from: AgentState::Done,
            to: AgentState::DismissedReaped,
            reason: Some(format!("a {} ends itself once done", node.kind)),
        });
    }
    Ok(outcomes)
}

/// A notice to the node's parent, unless the parent is the one who acted (it already knows).
fn tell_parent(
    state: &TavernState,
    actor: &Actor,
    node: &AgentNode,
    text: String,
    env: &mut DecideEnv<'_>,
) -> Vec<Outcome> {
    let Some(parent) = node.parent.as_deref().and_then(|p| state.agent(p)) else {
        return Vec::new();
    };
    if parent.state.is_dead()
        || matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&parent.name))
    {
        return Vec::new();
    }
    vec![message(
        env,
        Party::Tavern,
        Party::Agent(parent.name.clone()),
        MessageKind::Notice,
        text,
    )]
}

/// What happens to an agent's live descendants when it dies: Done ones are dismissed, the rest reaped.
fn cascade(state: &TavernState, root: &str, reason: &str) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for name in state.descendants(root) {
        let Some(node) = state.agent(&name) else {
            continue;
        };
        let reason = Some(reason.to_string());
        match node.state {
            AgentState::FailedReaped | AgentState::DismissedReaped => {}
            AgentState::Done => outcomes.push(Outcome::StateChanged {
                agent: node.name.clone(),
                from: AgentState::Done,
                to: AgentState::DismissedReaped,
                reason,
            }),
            AgentState::Summoned => {
                // Summoned has one way out (to Working), so a reaped Summoned agent passes through it.
                outcomes.push(Outcome::StateChanged {
                    agent: node.name.clone(),
                    from: AgentState::Summoned,
                    to: AgentState::Working,
                    reason: reason.clone(),
                });
                outcomes.push(Outcome::StateChanged {
                    agent: node.name.clone(),
                    from: AgentState::Working,
                    to: AgentState::FailedReaped,
                    reason,
                });
            }
            live => outcomes.push(Outcome::StateChanged {
                agent: node.name.clone(),
                from: live,
                to: AgentState::FailedReaped,
                reason,
            }),
        }
    }
    outcomes
}

fn reap(
    state: &TavernState,
    actor: &Actor,
    node: &AgentNode,
    reason: &str,
    env: &mut DecideEnv<'_>,
) -> Result<Vec<Outcome>> {
    if node.kind == AgentKind::Jake {
        return Err(DomainError::NotAllowed(
            "Jake cannot be reaped: he is the root, and there is exactly one".into(),
        ));
    }
    let why = if reason.trim().is_empty() {
        format!("reaped by {actor}")
    } else {
        reason.trim().to_string()
    };
    let mut outcomes = Vec::new();
    if node.state == AgentState::Summoned {
        outcomes.push(transition(node, AgentState::Working, Some(why.clone()))?);
        outcomes.push(Outcome::StateChanged {
            agent: node.name.clone(),
            from: AgentState::Working,
            to: AgentState::FailedReaped,
            reason: Some(why.clone()),
        });
    } else {
        outcomes.push(transition(
            node,
            AgentState::FailedReaped,
            Some(why.clone()),
        )?);
    }
    outcomes.extend(cascade(
        state,
        &node.name,
        &format!("{} was reaped", node.name),
    ));
    outcomes.extend(tell_parent(
        state,
        actor,
        node,
        format!("{} was reaped: {why}", node.name),
        env,
    ));
    Ok(outcomes)
}

fn set_modes(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    patch: &ModesPatch,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let node = live(state, agent)?;
    may_act_on(state, actor, node, "change the modes of")?;
    if patch.user_present.is_some() && !matches!(actor, Actor::User(_)) {
        return Err(DomainError::NotAllowed(
            "only a person joining or leaving changes whether a person is present".into(),
        ));
    }
    let modes = patch.applied_to(node.modes);
    let task_mode = patch.task_mode.unwrap_or(node.task_mode);
    let mut outcomes = vec![Outcome::ModesChanged {
        agent: node.name.clone(),
        modes,
        task_mode,
    }];
    if let (Some(present), Actor::User(user)) = (patch.user_present, actor) {
        if present != node.modes.user_present {
            let text = if present {
                format!("@{user} joined the conversation.")
            } else {
                format!("@{user} left the conversation.")
            };
            outcomes.push(message(
                env,
                Party::Tavern,
                Party::Agent(node.name.clone()),
                MessageKind::Presence,
                text,
            ));
        }
    }
    Ok(Decision::done(outcomes))
}

fn ask_user(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    question: &str,
    class: QuestionClass,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let node = live(state, agent)?;
    if !matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&node.name)) {
        return Err(DomainError::NotAllowed(format!(
            "only {} can ask its own questions",
            node.name
        )));
    }
    if question.trim().is_empty() {
        return Err(DomainError::Empty("the question"));
    }
    let change = transition(
        node,
        AgentState::WaitingForInput,
        Some("asked a question".into()),
    )?;
    // The question bubbles up the tree to the person who asked for the work; each ancestor it passed
    // is recorded, so the person sees the chain and each level could later handle or transform it.
    let via = state.ancestors(&node.name);
    let to = node
        .requester
        .clone()
        .or_else(|| node.last_human.clone())
        .map(Party::User)
        .unwrap_or(Party::Tavern);
    let mut msg = new_message(
        env,
        Party::Agent(node.name.clone()),
        to,
        MessageKind::Question { class },
        question.trim().to_string(),
    );
    msg.via = via;
    let pending = Outcome::PendingOpened {
        id: state.next_pending_id(),
        agent: node.name.clone(),
        item: PendingItem::Question {
            question: msg.text.clone(),
            class,
        },
    };
    Ok(Decision::done(vec![
        change,
        Outcome::MessagePosted(msg),
        pending,
    ]))
}

fn request_approval(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    tool: &str,
    input: &serde_json::Value,
) -> Result<Decision> {
    let node = live(state, agent)?;
    if !matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&node.name)) {
        return Err(DomainError::NotAllowed(format!(
            "only {} can ask to use a tool for itself",
            node.name
        )));
    }
    if tool.trim().is_empty() {
        return Err(DomainError::Empty("the tool name"));
    }
    Ok(Decision::done(vec![Outcome::PendingOpened {
        id: state.next_pending_id(),
        agent: node.name.clone(),
        item: PendingItem::Approval {
            tool: tool.to_string(),
            input: input.clone(),
        },
    }]))
}

fn answer_pending(
    state: &TavernState,
    actor: &Actor,
    id: u32,
    answer: &Answer,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let Actor::User(by) = actor else {
        return Err(DomainError::NotAllowed(
            "only people answer approvals and questions".into(),
        ));
    };
    let pending = state.pending.get(&id).ok_or_else(|| {
        DomainError::NoSuchPending(format!(
            "nothing is pending as #{id}; /pending lists what waits"
        ))
    })?;
    if let Some((who, _)) = &pending.settled {
        return Err(DomainError::NoSuchPending(format!(
            "#{id} was already settled by @{who}"
        )));
    }
    let node = live(state, &pending.agent)?;
    let settle = |settled| Outcome::PendingSettled {
        id,
        by: by.clone(),
        settled,
    };
    let outcomes = match (&pending.item, answer) {
        (PendingItem::Approval { .. }, Answer::Allow) => vec![settle(Settled::Allowed)],
        (PendingItem::Approval { .. }, Answer::Deny { reason }) => {
            let reason = reason
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| format!("@{by} denied this tool call"));
            vec![settle(Settled::Denied { reason })]
        }
        (PendingItem::Approval { tool, input }, Answer::Always) => {
            // When no rule narrow enough exists (see `permission::always_rule`), "always" means "yes,
            // this once", and the person is told so by the settled record carrying no rule.
            match crate::permission::always_rule(tool, input, env.project) {
                Some(rule) => vec![
                    settle(Settled::AllowedAlways {
                        rule: rule.to_string(),
                    }),
                    Outcome::RuleAdded {
                        agent: node.name.clone(),
                        rule: rule.to_string(),
                    },
                ],
                None => vec![settle(Settled::Allowed)],
            }
        }
        (PendingItem::Question { .. }, Answer::Text { text }) => {
            if text.trim().is_empty() {
                return Err(DomainError::Empty("the answer"));
            }
            // The answer is a message from the person, like any reply in the agent's thread; sending
            // it settles every question the agent has open (see `send_message`).
            return send_message(state, actor, &node.name, text, env);
        }
        (PendingItem::Commitment { index, .. }, Answer::Allow) => {
            let approval = Approval::Approved { by: by.clone() };
            let mut outcomes = vec![
                settle(Settled::Allowed),
                Outcome::CommitmentReviewed {
                    agent: node.name.clone(),
                    index: *index,
                    approval: approval.clone(),
                },
            ];
            outcomes.extend(after_review(state, node, *index, |c| c.approval = approval, env)?);
            outcomes
        }
        (
            PendingItem::Commitment {
                index,
                description,
                assertion,
            },
            Answer::Deny { reason },
        ) => {
            let reason = reason.clone().filter(|r| !r.trim().is_empty());
            let approval = Approval::Rejected {
                by: by.clone(),
                reason: reason.clone(),
            };
            let because = reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let mut outcomes = vec![
                settle(Settled::Denied {
                    reason: reason
                        .clone()
                        .unwrap_or_else(|| format!("@{by} rejected it")),
                }),
                Outcome::CommitmentReviewed {
                    agent: node.name.clone(),
                    index: *index,
                    approval: approval.clone(),
                },
                message(
                    env,
                    Party::Tavern,
                    Party::Agent(node.name.clone()),
                    MessageKind::Notice,
                    format!(
                        "@{by} rejected your commitment #{} ({description} — `{assertion}`){because}. \
                         It no longer counts toward done; commit to something that shows the work is done instead.",
                        index + 1
                    ),
                ),
            ];
            outcomes.extend(after_review(state, node, *index, |c| c.approval = approval, env)?);
            outcomes
        }
        (PendingItem::Commitment { .. }, _) => {
            return Err(DomainError::NoSuchPending(format!(
                "#{id} is a proposed commitment: approve it with /approve {id} or reject it with /deny {id} [REASON]"
            )))
        }
        (PendingItem::Approval { .. }, Answer::Text { .. }) => {
            return Err(DomainError::NoSuchPending(format!(
                "#{id} is a tool approval: answer it with /approve {id}, /deny {id} [REASON] or /always {id}"
            )))
        }
        (PendingItem::Question { .. }, _) => {
            return Err(DomainError::NoSuchPending(format!(
                "#{id} is a question: answer it with /answer {id} TEXT"
            )))
        }
    };
    Ok(Decision::done(outcomes))
}

fn take_turn(state: &TavernState, actor: &Actor, agent: &str) -> Result<Decision> {
    let node = live(state, agent)?;
    if !matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&node.name)) {
        return Err(DomainError::NotAllowed(format!(
            "only {} takes its own turns",
            node.name
        )));
    }
    let mut outcomes = Vec::new();
    match node.state {
        AgentState::Working => {}
        AgentState::Summoned | AgentState::WaitingForInput | AgentState::WaitingForWakeup => {
            outcomes.push(transition(
                node,
                AgentState::Working,
                Some("new input".into()),
            )?);
        }
        other => {
            return Err(DomainError::NotAllowed(format!(
                "{} is {other} and takes no turns now",
                node.name
            )))
        }
    }
    outcomes.push(Outcome::InboxRead {
        agent: node.name.clone(),
        from: node.read_upto,
        upto: node.inbox.len(),
    });
    Ok(Decision {
        outcomes,
        continues: true,
    })
}

fn restart_agent(
    state: &TavernState,
    agent: &str,
    reason: &str,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let node = live(state, agent)?;
    let attempt = node.recent_restarts(env.now, env.restart_window) + 1;
    // Jake, the root, is always restarted: the tavern cannot run without him.
    if attempt > env.max_restarts && node.kind != AgentKind::Jake {
        let why = format!(
            "its task failed {attempt} times within {} s (limit {}); last failure: {reason}",
            env.restart_window / 1000,
            env.max_restarts
        );
        return Ok(Decision::done(reap(
            state,
            &Actor::Tavern,
            node,
            &why,
            env,
        )?));
    }
    Ok(Decision::done(vec![Outcome::TaskRestarted {
        agent: node.name.clone(),
        attempt,
    }]))
}

/// The outcomes of a failed turn. Its input is handed back so the restarted task reads it again, while
/// the agent has restarts left. Past the limit an agent is reaped (by the restart that follows), and
/// Jake — who is never reaped — drops that input and tells the person, who can say it again.
pub fn fail_turn(
    state: &TavernState,
    agent: &str,
    inbox_from: usize,
    error: &str,
    env: &mut DecideEnv<'_>,
) -> Vec<Outcome> {
    let Some(node) = state.agent(agent) else {
        return Vec::new();
    };
    if node.recent_restarts(env.now, env.restart_window) < env.max_restarts {
        return vec![Outcome::InboxRewound {
            agent: node.name.clone(),
            upto: inbox_from,
        }];
    }
    if node.kind != AgentKind::Jake {
        return Vec::new();
    }
    let to = node
        .last_human
        .clone()
        .map(Party::User)
        .unwrap_or(Party::Tavern);
    vec![message(
        env,
        Party::Tavern,
        to,
        MessageKind::Notice,
        format!(
            "Jake could not answer after {} tries: {error}. Your message is kept in the log; \
             say it again once the model is back.",
            env.max_restarts + 1
        ),
    )]
}

/// The outcomes of a verification: each check, then Done, a wait for sign-off, or back to Working with
/// a gap report. Returns `None` when the agent is no longer Verifying (it was reaped meanwhile).
pub fn verification_verdict(
    state: &TavernState,
    agent: &str,
    checks: Vec<(usize, CheckSummary)>,
    env: &mut DecideEnv<'_>,
) -> Option<Vec<Outcome>> {
    let node = state.agent(agent)?;
    let mut outcomes: Vec<Outcome> = checks
        .iter()
        .map(|(index, check)| Outcome::CommitmentChecked {
            agent: node.name.clone(),
            index: *index,
            check: check.clone(),
        })
        .collect();
    if node.state != AgentState::Verifying {
        return None;
    }
    // A rejected commitment neither blocks nor completes anything.
    let failures: Vec<(usize, &CheckSummary)> = checks
        .iter()
        .filter(|(i, c)| !c.passed && node.commitments.get(*i).is_some_and(Commitment::counts))
        .map(|(i, c)| (*i, c))
        .collect();
    if !node.commitments.iter().any(Commitment::counts) || !failures.is_empty() {
        let report = gap_report(node, &failures);
        outcomes.push(Outcome::StateChanged {
            agent: node.name.clone(),
            from: AgentState::Verifying,
            to: AgentState::Working,
            reason: Some("verification failed".into()),
        });
        outcomes.push(message(
            env,
            Party::Tavern,
            Party::Agent(node.name.clone()),
            MessageKind::Notice,
            report.clone(),
        ));
        outcomes.extend(tell_parent(
            state,
            &Actor::Tavern,
            node,
            format!("{} went back to Working. {report}", node.name),
            env,
        ));
        return Some(outcomes);
    }
    // What still waits for a person: proposals to approve, and sign-offs.
    let mut waiting = Vec::new();
    for (i, c) in node.commitments.iter().enumerate() {
        if !c.counts() {
            continue;
        }
        if c.awaits_approval() {
            let how = state
                .open_pending()
                .find(|p| {
                    p.agent.eq_ignore_ascii_case(&node.name)
                        && matches!(p.item, PendingItem::Commitment { index, .. } if index == i)
                })
                .map(|p| format!(" (/approve {})", p.id))
                .unwrap_or_default();
            waiting.push(format!("#{} needs your approval{how}", i + 1));
        } else if c.needs_signoff && c.signed_off_by.is_none() {
            waiting.push(format!(
                "#{} needs your sign-off (/approve {} {})",
                i + 1,
                node.name,
                i + 1
            ));
        }
    }
    if waiting.is_empty() {
        // `complete` only fails on an illegal transition, and the agent is Verifying here.
        outcomes.extend(complete(state, node, env).unwrap_or_default());
    } else {
        let to = node
            .requester
            .clone()
            .map(Party::User)
            .unwrap_or(Party::Tavern);
        outcomes.push(message(
            env,
            Party::Tavern,
            to,
            MessageKind::Question {
                class: QuestionClass::Quick,
            },
            format!(
                "{}'s checks pass; commitment {}.",
                node.name,
                waiting.join("; ")
            ),
        ));
    }
    Some(outcomes)
}

/// The gap report: which assertions failed, their exit codes and the end of their output.
pub fn gap_report(node: &AgentNode, failures: &[(usize, &CheckSummary)]) -> String {
    if node.commitments.is_empty() {
        return "Gap report: no commitments. Add at least one commitment with a shell assertion \
                before signalling done; Tavern verifies work only by running assertions."
            .to_string();
    }
    let counted = node.commitments.iter().filter(|c| c.counts()).count();
    if counted == 0 {
        return "Gap report: every commitment you made was rejected. Add a commitment the person \
                can accept before signalling done."
            .to_string();
    }
    let mut report = format!(
        "Gap report: {} of {counted} commitments failed.",
        failures.len(),
    );
    for (index, check) in failures {
        let commitment = &node.commitments[*index];
        let how = if check.timed_out {
            "timed out and was killed".to_string()
        } else {
            match check.exit_code {
                Some(code) => format!("exit code {code}"),
                None => "killed by a signal".to_string(),
            }
        };
        report.push_str(&format!(
            "\n#{} {} — `{}`: {how}",
            index + 1,
            commitment.description,
            commitment.assertion
        ));
        let tail = check.output_tail.trim_end();
        if !tail.is_empty() {
            report.push_str(&format!("\n  output: {}", tail.replace('\n', "\n  ")));
        }
    }
    report
}

/// The outcomes that end a turn: the reply posted to the agent's conversation.
pub fn finish_turn(
    state: &TavernState,
    agent: &str,
    reply_text: &str,
    env: &mut DecideEnv<'_>,
) -> Vec<Outcome> {
    let Some(node) = state.agent(agent) else {
        return Vec::new();
    };
    if reply_text.trim().is_empty() {
        return Vec::new();
    }
    // An agent speaks in its own conversation, which the person who asked for its work reads.
    let to = node
        .requester
        .clone()
        .or_else(|| node.last_human.clone())
        .map(Party::User)
        .unwrap_or(Party::Tavern);
    vec![message(
        env,
        Party::Agent(node.name.clone()),
        to,
        MessageKind::Chat,
        reply_text.to_string(),
    )]
}
