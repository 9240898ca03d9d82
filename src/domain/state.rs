//! The tavern's state and the pure fold that builds it from the log.
//!
//! `apply` is synchronous and infallible and reads nothing but the record it is given: replay, branch
//! views and the live run all go through it, so they agree by construction.

use std::collections::{BTreeMap, HashMap, HashSet};
use tavern_plugin_api::{
    AgentKind, AgentState, AgentView, Commitment, Expert, Modes, RestartStrategy, TaskMode, Usage,
};

use super::intent::{Actor, Intent};
use super::outcome::{Message, MessageKind, NewAgent, Outcome, Party, PendingItem, Settled};
use super::TavernSchema;
use crate::log::{Millis, Record, Seq, Status};

/// One agent's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentNode {
    /// Its name, as summoned (its id).
    pub name: String,
    /// Its type.
    pub kind: AgentKind,
    /// Its expert prompt.
    pub expert: Option<Expert>,
    /// Its parent.
    pub parent: Option<String>,
    /// Its children, in summon order.
    pub children: Vec<String>,
    /// Its state.
    pub state: AgentState,
    /// What it was asked to do.
    pub assignment: Option<String>,
    /// Original ask plus current status.
    pub description: String,
    /// Free notes (the body of its document after the description).
    pub notes: String,
    /// Its model spec.
    pub model: Option<String>,
    /// Its working directory (absolute), when not the project.
    pub workdir: Option<String>,
    /// The surface thread its work shows in (a Discord thread id), once one was opened.
    pub thread: Option<String>,
    /// The thread's header message, which shows the agent's state.
    pub thread_header: Option<String>,
    /// Mode flags.
    pub modes: Modes,
    /// Task mode.
    pub task_mode: TaskMode,
    /// How it restarts its children's failed tasks.
    pub restart: RestartStrategy,
    /// Its commitments.
    pub commitments: Vec<Commitment>,
    /// The person who asked for its work.
    pub requester: Option<String>,
    /// The last person whose message this agent read (Jake passes it on as the requester).
    pub last_human: Option<String>,
    /// When it was summoned.
    pub created: Millis,
    /// When anything about it last changed.
    pub updated: Millis,
    /// Positions in [`TavernState::messages`] of messages addressed to it.
    pub inbox: Vec<usize>,
    /// How many inbox messages its turns have read.
    pub read_upto: usize,
    /// Positions of every message to or from it (its conversation).
    pub conversation: Vec<usize>,
    /// How many model replies it has had.
    pub turns: u32,
    /// When its most recent restarts happened (the restart limit counts those within a window).
    pub restart_times: Vec<Millis>,
    /// Tokens (and cost, where known) its model calls used, in total.
    pub usage: Usage,
    /// Its runtime session id (the Claude Code CLI's), once one was started; resumed after a restart.
    pub session: Option<String>,
    /// The session's message uuids, one list per finished turn, oldest first.
    pub session_turns: Vec<Vec<String>>,
    /// Permission rules people added for this agent by answering "always".
    pub rules: Vec<String>,
    /// Whether its latest model reply came from a script (surfaces tag scripted speech).
    pub scripted: bool,
    /// The latest of its turns a person interrupted, and who did (the running turn watches for its own
    /// entry here, so an interrupt recorded before the turn's task looked is still seen).
    pub interrupted: Option<(Seq, String)>,
}

impl AgentNode {
    fn new(new: &NewAgent) -> AgentNode {
        AgentNode {
            name: new.name.clone(),
            kind: new.kind,
            expert: new.expert,
            parent: new.parent.clone(),
            children: Vec::new(),
            state: AgentState::Summoned,
            description: new.assignment.clone().unwrap_or_default(),
            assignment: new.assignment.clone(),
            notes: String::new(),
            model: new.model.clone(),
            workdir: new.workdir.clone(),
            thread: None,
            thread_header: None,
            modes: new.modes,
            task_mode: TaskMode::default(),
            restart: RestartStrategy::default(),
            commitments: Vec::new(),
            requester: new.requester.clone(),
            last_human: None,
            created: new.created,
            updated: new.created,
            inbox: Vec::new(),
            read_upto: 0,
            conversation: Vec::new(),
            turns: 0,
            restart_times: Vec::new(),
            usage: Usage::default(),
            session: None,
            session_turns: Vec::new(),
            rules: Vec::new(),
            scripted: false,
            interrupted: None,
        }
    }

    /// How many restarts it had within `window` ms before `now`.
    pub fn recent_restarts(&self, now: Millis, window: Millis) -> u32 {
        self.restart_times
            .iter()
            .filter(|t| t.saturating_add(window) > now)
            .count() as u32
    }

    /// `mortal`, or `mortal/reviewer` for an expert.
    pub fn kind_label(&self) -> String {
        match self.expert {
            Some(expert) => format!("{}/{}", self.kind, expert),
            None => self.kind.to_string(),
        }
    }

    /// The snapshot an agent type sees.
    pub fn view(&self) -> AgentView {
        AgentView {
            name: self.name.clone(),
            kind: self.kind,
            expert: self.expert,
            parent: self.parent.clone(),
            children: self.children.clone(),
            state: self.state,
            assignment: self.assignment.clone(),
            description: self.description.clone(),
            commitments: self.commitments.clone(),
            modes: self.modes,
            task_mode: self.task_mode,
            requester: self.requester.clone(),
        }
    }
}

/// An entry that has not reached a terminal status: what recovery needs to finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenEntry {
    /// Who asked.
    pub actor: Actor,
    /// What was asked.
    pub intent: Intent,
    /// Its status so far.
    pub status: Status,
    /// Everything recorded for it so far.
    pub outcomes: Vec<Outcome>,
}

/// The highest `supervisor.max_restarts` Tavern accepts: an agent remembers this many recent restarts.
pub const MAX_RESTART_LIMIT: u32 = 64;

/// Everything Tavern knows, as folded from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TavernState {
    /// The naming theme (set when the tavern is opened).
    pub theme: Option<String>,
    /// Jake's name, once the tavern is open.
    pub jake: Option<String>,
    /// Agents by lowercased name (names are unique case-insensitively).
    pub agents: BTreeMap<String, AgentNode>,
    /// Lowercased agent names in summon order.
    pub order: Vec<String>,
    /// Every message, in the order posted.
    pub messages: Vec<Message>,
    /// The last entry's sequence number.
    pub last_seq: Seq,
    /// Entries still running (or interrupted by a crash), by seq.
    pub open: BTreeMap<Seq, OpenEntry>,
    /// Entries caused by a turn's tool calls: (turn seq, call index) → entry seq.
    pub caused: BTreeMap<(Seq, u32), Seq>,
    /// Approvals and questions waiting for people, and those settled, by id.
    pub pending: BTreeMap<u32, Pending>,
    /// The outside requests (Discord message, reaction and interaction ids) already recorded, so a
    /// redelivered one is recognised.
    pub origins: HashSet<String>,
    /// The index of the first naming candidate (see `naming::candidate`) that is still free. Names are
    /// never given back, so every earlier one stays taken and choosing a name starts here.
    pub name_cursor: usize,
    /// Where each message is in `messages`, by id, so a message's document is found without a search.
    pub message_index: HashMap<String, usize>,
}

/// An approval or question for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its id (as people name it).
    pub id: u32,
    /// The agent waiting.
    pub agent: String,
    /// What waits.
    pub item: PendingItem,
    /// How it was settled, once it was, and by whom.
    pub settled: Option<(String, Settled)>,
}

impl Pending {
    /// Whether it still waits.
    pub fn is_open(&self) -> bool {
        self.settled.is_none()
    }
}

impl TavernState {
    /// The agent whose surface thread this is.
    pub fn agent_by_thread(&self, thread: &str) -> Option<&AgentNode> {
        self.agents
            .values()
            .find(|n| n.thread.as_deref() == Some(thread))
    }

    /// Looks an agent up by name, case-insensitively.
    pub fn agent(&self, name: &str) -> Option<&AgentNode> {
        self.agents.get(&name.to_lowercase())
    }

    fn agent_mut(&mut self, name: &str) -> Option<&mut AgentNode> {
        self.agents.get_mut(&name.to_lowercase())
    }

    /// The id the next pending item gets.
    pub fn next_pending_id(&self) -> u32 {
        self.pending.keys().next_back().map_or(1, |id| id + 1)
    }

    /// Items still waiting for a person whose agent is alive, oldest first.
    pub fn open_pending(&self) -> impl Iterator<Item = &Pending> {
        self.pending
            .values()
            .filter(|p| p.is_open() && self.agent(&p.agent).is_some_and(|n| !n.state.is_dead()))
    }

    /// Every agent in summon order.
    pub fn agents_in_order(&self) -> impl Iterator<Item = &AgentNode> {
        self.order.iter().filter_map(|key| self.agents.get(key))
    }

    /// Moves the naming cursor past the candidates that are taken now.
    fn advance_name_cursor(&mut self) {
        let Some(theme) = self
            .theme
            .as_deref()
            .and_then(|t| crate::naming::theme(t).ok())
        else {
            return;
        };
        self.name_cursor =
            crate::naming::next_name_from(theme, self.name_cursor, |c| self.name_taken(c)).1;
    }

    /// The message with this id.
    pub fn message(&self, id: &str) -> Option<&Message> {
        self.message_index
            .get(id)
            .and_then(|&i| self.messages.get(i))
    }

    /// Whether a name is taken, case-insensitively (dead agents keep their names).
    pub fn name_taken(&self, name: &str) -> bool {
        self.agents.contains_key(&name.to_lowercase())
    }

    /// The agent's ancestors, parent first.
    pub fn ancestors(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = self.agent(name).and_then(|n| n.parent.clone());
        // The tree is acyclic by construction (a parent always exists before its child), but bound the
        // walk anyway so a damaged document can never hang Tavern.
        while let Some(parent) = current {
            if out.len() > self.agents.len() {
                break;
            }
            current = self.agent(&parent).and_then(|n| n.parent.clone());
            out.push(parent);
        }
        out
    }

    /// The agent's descendants, depth first in summon order (not including itself).
    pub fn descendants(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack: Vec<String> = self
            .agent(name)
            .map(|n| n.children.iter().rev().cloned().collect())
            .unwrap_or_default();
        while let Some(next) = stack.pop() {
            if out.len() > self.agents.len() {
                break;
            }
            if let Some(node) = self.agent(&next) {
                stack.extend(node.children.iter().rev().cloned());
            }
            out.push(next);
        }
        out
    }

    /// Unread inbox messages that should start a turn (presence notices do not).
    pub fn has_waking_input(&self, name: &str) -> bool {
        self.agent(name).is_some_and(|node| {
            node.inbox[node.read_upto.min(node.inbox.len())..]
                .iter()
                .any(|&i| self.messages[i].kind != MessageKind::Presence)
        })
    }

    /// The open (running, or interrupted by a crash) turn of `agent`, if any.
    pub fn open_turn(&self, agent: &str) -> Option<Seq> {
        self.open.iter().find_map(|(seq, open)| match &open.intent {
            crate::domain::Intent::TakeTurn { agent: a } if a.eq_ignore_ascii_case(agent) => {
                Some(*seq)
            }
            _ => None,
        })
    }

    /// Whether Tavern is running `agent`'s assertions right now (its done signal is still open).
    pub fn verification_running(&self, agent: &str) -> bool {
        self.open.values().any(|e| {
            matches!(&e.intent, crate::domain::Intent::SignalDone { agent: a } if a.eq_ignore_ascii_case(agent))
        })
    }

    /// Whether a request from outside Tavern with this origin is already in the log.
    pub fn has_origin(&self, origin: &str) -> bool {
        self.origins.contains(origin)
    }

    /// Folds one log record.
    pub fn apply(&mut self, record: &Record<TavernSchema>) {
        match record {
            Record::Entry(entry) => {
                self.last_seq = self.last_seq.max(entry.seq);
                if let Some(origin) = &entry.origin {
                    self.origins.insert(origin.clone());
                }
                if let Some(cause) = &entry.cause {
                    if let Some(call) = cause.call {
                        self.caused.insert((cause.seq, call), entry.seq);
                    }
                }
                for outcome in &entry.outcomes {
                    self.apply_outcome(outcome, entry.ts);
                }
                if !entry.status.is_terminal() {
                    self.open.insert(
                        entry.seq,
                        OpenEntry {
                            actor: entry.actor.clone(),
                            intent: entry.intent.clone(),
                            status: entry.status,
                            outcomes: entry.outcomes.clone(),
                        },
                    );
                }
            }
            Record::Update(update) => {
                for outcome in &update.outcomes {
                    self.apply_outcome(outcome, update.ts);
                }
                if update.status.is_terminal() {
                    self.open.remove(&update.seq);
                    // The dedup index only matters while a turn can still be resumed.
                    let stale: Vec<(Seq, u32)> = self
                        .caused
                        .range((update.seq, 0)..=(update.seq, u32::MAX))
                        .map(|(k, _)| *k)
                        .collect();
                    for key in stale {
                        self.caused.remove(&key);
                    }
                } else if let Some(open) = self.open.get_mut(&update.seq) {
                    open.status = update.status;
                    open.outcomes.extend(update.outcomes.iter().cloned());
                }
            }
        }
    }

    /// Folds one outcome recorded at time `ts`.
    pub fn apply_outcome(&mut self, outcome: &Outcome, ts: Millis) {
        match outcome {
            Outcome::TavernOpened { theme } => self.theme = Some(theme.clone()),
            Outcome::AgentSummoned(new) => {
                let key = new.name.to_lowercase();
                if let Some(parent) = new.parent.as_deref().and_then(|p| self.agent_mut(p)) {
                    parent.children.push(new.name.clone());
                    parent.updated = ts;
                }
                if new.kind == AgentKind::Jake {
                    self.jake = Some(new.name.clone());
                }
                self.agents.insert(key.clone(), AgentNode::new(new));
                self.order.push(key);
                self.advance_name_cursor();
            }
            Outcome::StateChanged { agent, to, .. } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.state = *to;
                    node.updated = ts;
                }
            }
            Outcome::CommitmentAdded {
                agent, commitment, ..
            } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.commitments.push(commitment.clone());
                    node.updated = ts;
                }
            }
            Outcome::CommitmentChecked {
                agent,
                index,
                check,
            } => {
                if let Some(c) = self
                    .agent_mut(agent)
                    .and_then(|n| n.commitments.get_mut(*index))
                {
                    c.last_check = Some(check.clone());
                }
            }
            Outcome::CommitmentSignedOff { agent, index, by } => {
                if let Some(c) = self
                    .agent_mut(agent)
                    .and_then(|n| n.commitments.get_mut(*index))
                {
                    c.signed_off_by = Some(by.clone());
                }
            }
            Outcome::CommitmentReviewed {
                agent,
                index,
                approval,
            } => {
                if let Some(c) = self
                    .agent_mut(agent)
                    .and_then(|n| n.commitments.get_mut(*index))
                {
                    c.approval = approval.clone();
                }
            }
            Outcome::MessagePosted(message) => {
                let index = self.messages.len();
                if let Party::Agent(to) = &message.to {
                    if let Some(node) = self.agent_mut(to) {
                        node.inbox.push(index);
                        node.conversation.push(index);
                    }
                }
                if let Party::Agent(from) = &message.from {
                    if message.to != message.from {
                        if let Some(node) = self.agent_mut(from) {
                            node.conversation.push(index);
                        }
                    }
                }
                self.message_index
                    .insert(message.id.clone(), self.messages.len());
                self.messages.push(message.clone());
            }
            Outcome::ModesChanged {
                agent,
                modes,
                task_mode,
            } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.modes = *modes;
                    node.task_mode = *task_mode;
                    node.updated = ts;
                }
            }
            Outcome::DescriptionChanged { agent, text } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.description = text.clone();
                    node.updated = ts;
                }
            }
            Outcome::NotesChanged { agent, text } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.notes = text.clone();
                    node.updated = ts;
                }
            }
            Outcome::RestartStrategyChanged { agent, strategy } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.restart = *strategy;
                }
            }
            Outcome::InboxRewound { agent, upto } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.read_upto = (*upto).min(node.inbox.len());
                }
            }
            Outcome::InboxRead { agent, upto, .. } => {
                let Some(key) = self.agent(agent).map(|n| n.name.to_lowercase()) else {
                    return;
                };
                // Clamped, so a damaged but well-formed log can never make the fold panic.
                let (from, to_idx) = {
                    let node = &self.agents[&key];
                    let to = (*upto).min(node.inbox.len());
                    (node.read_upto.min(to), to)
                };
                let last_human =
                    self.agents[&key].inbox[from..to_idx]
                        .iter()
                        .rev()
                        .find_map(|&i| match &self.messages[i].from {
                            Party::User(user) => Some(user.clone()),
                            _ => None,
                        });
                if let Some(node) = self.agents.get_mut(&key) {
                    node.read_upto = to_idx;
                    if last_human.is_some() {
                        node.last_human = last_human;
                    }
                }
            }
            Outcome::ModelReplied {
                agent,
                reply,
                scripted,
                ..
            } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.turns += 1;
                    node.scripted = *scripted;
                    if let Some(usage) = &reply.usage {
                        node.usage.add(usage);
                    }
                }
            }
            Outcome::PendingOpened { id, agent, item } => {
                self.pending.insert(
                    *id,
                    Pending {
                        id: *id,
                        agent: agent.clone(),
                        item: item.clone(),
                        settled: None,
                    },
                );
            }
            Outcome::PendingSettled { id, by, settled } => {
                if let Some(p) = self.pending.get_mut(id) {
                    p.settled = Some((by.clone(), settled.clone()));
                }
            }
            Outcome::RuleAdded { agent, rule } => {
                if let Some(node) = self.agent_mut(agent) {
                    if !node.rules.contains(rule) {
                        node.rules.push(rule.clone());
                    }
                    node.updated = ts;
                }
            }
            Outcome::ThreadAttached {
                agent,
                thread,
                header,
            } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.thread = Some(thread.clone());
                    node.thread_header = header.clone();
                }
            }
            Outcome::SessionStarted { agent, session } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.session = Some(session.clone());
                }
            }
            Outcome::SessionTurn {
                agent, messages, ..
            } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.session_turns.push(messages.clone());
                }
            }
            Outcome::TurnInterrupted { agent, by, turn } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.interrupted = Some((*turn, by.clone()));
                }
            }
            Outcome::ToolCalled { .. }
            | Outcome::DocumentEditRecorded { .. }
            | Outcome::InputSent { .. }
            | Outcome::Activity { .. } => {}
            Outcome::TaskRestarted { agent, .. } => {
                if let Some(node) = self.agent_mut(agent) {
                    node.restart_times.push(ts);
                    // Only recent restarts matter to the limit; keep the list short (the limit is at
                    // most `MAX_RESTART_LIMIT`, so this never forgets one that counts).
                    if node.restart_times.len() > MAX_RESTART_LIMIT as usize {
                        node.restart_times.remove(0);
                    }
                }
            }
        }
    }
}
