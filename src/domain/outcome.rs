//! Outcomes: what running an intent produced, in the past tense. Replay folds exactly these.
//!
//! Everything non-deterministic that an intent produced is an outcome — generated names and ids, times,
//! model replies, assertion results — so folding them never needs to generate, call or run anything.

use serde::{Deserialize, Serialize};
use std::fmt;
use tavern_plugin_api::{
    AgentKind, AgentState, Approval, CheckSummary, Commitment, Expert, ModelReply, Modes,
    QuestionClass, RestartStrategy, TaskMode, ToolResult,
};

use crate::log::{Millis, Seq};

/// A sender or recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// A person.
    User(String),
    /// An agent.
    Agent(String),
    /// Tavern itself (verification reports, notices).
    Tavern,
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::User(name) => write!(f, "@{name}"),
            Party::Agent(name) => f.write_str(name),
            Party::Tavern => f.write_str("tavern"),
        }
    }
}

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Conversation.
    Chat,
    /// A question for a person, surfaced with its class.
    Question {
        /// Quick or deep.
        class: QuestionClass,
    },
    /// A report from Tavern: verification results, a child's completion or reaping. Wakes the agent.
    Notice,
    /// A person joined or left the agent's conversation. Part of the next turn's input, but it does not
    /// start a turn by itself.
    Presence,
}

/// A message: a document under `.tavern/messages/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// A generated id (recorded, so replay reuses it).
    pub id: String,
    /// Who sent it.
    pub from: Party,
    /// Who it is for.
    pub to: Party,
    /// When it was sent.
    pub ts: Millis,
    /// What it is for.
    pub kind: MessageKind,
    /// The text.
    pub text: String,
    /// For questions: the agents it bubbled through on its way up, child first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
}

/// A new agent's node as the summon created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAgent {
    /// Its name (its id).
    pub name: String,
    /// Its type.
    pub kind: AgentKind,
    /// Its expert prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert: Option<Expert>,
    /// Its parent (`None` only for Jake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Its assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
    /// Its model spec, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its working directory (absolute), when not the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Its initial modes.
    pub modes: Modes,
    /// The person who asked for the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// When it was summoned.
    pub created: Millis,
}

/// Something waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingItem {
    /// A tool call waiting for approval; nothing has run.
    Approval {
        /// The tool.
        tool: String,
        /// Its input.
        input: serde_json::Value,
    },
    /// An agent's question.
    Question {
        /// The question.
        question: String,
        /// Quick or deep.
        class: QuestionClass,
    },
    /// A commitment the agent proposed for itself, waiting for a person to approve or reject it.
    Commitment {
        /// The commitment's index, 0-based.
        index: usize,
        /// What is promised.
        description: String,
        /// Its assertion.
        assertion: String,
    },
}

/// How a pending item was settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// The tool call was allowed once.
    Allowed,
    /// The tool call was denied.
    Denied {
        /// Why, as the model is told.
        reason: String,
    },
    /// The tool call was allowed, and a rule added for the agent.
    AllowedAlways {
        /// The rule, in permission-rule syntax.
        rule: String,
    },
    /// The question was answered.
    Answered,
    /// Nothing waits for it any more (its turn ended first); the reason says why.
    Withdrawn {
        /// Why.
        reason: String,
    },
}

/// What the agent did during a turn run by an external runtime (the Claude Code CLI), as it happened.
/// Recorded so surfaces can stream it and a replay shows it; it changes no state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// The agent said something.
    Text {
        /// The text.
        text: String,
    },
    /// The agent called a tool.
    ToolUse {
        /// The tool.
        tool: String,
        /// Its input in one line.
        input: String,
    },
    /// A tool's result came back.
    ToolResult {
        /// The tool.
        tool: String,
        /// Whether it succeeded.
        ok: bool,
        /// The start of its output.
        text: String,
    },
    /// A rule decided a permission request without asking anyone.
    RuleDecided {
        /// The tool.
        tool: String,
        /// Its input in one line.
        input: String,
        /// Allowed or denied.
        allowed: bool,
        /// The rule that decided.
        rule: String,
    },
}

/// One thing an intent did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The tavern was opened with this naming theme.
    TavernOpened {
        /// The naming theme.
        theme: String,
    },
    /// An agent came into being, in state Summoned.
    AgentSummoned(NewAgent),
    /// An agent changed state.
    StateChanged {
        /// The agent.
        agent: String,
        /// Its previous state.
        from: AgentState,
        /// Its new state.
        to: AgentState,
        /// Why, when it is worth saying.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A commitment was added at the end of the agent's list.
    CommitmentAdded {
        /// The agent.
        agent: String,
        /// Its position, 0-based, for surfaces that show it later than it happened. (Logs written
        /// before it was recorded read 0; the fold appends and never uses it.)
        #[serde(default)]
        index: usize,
        /// The commitment.
        commitment: Commitment,
    },
    /// Tavern ran a commitment's assertion.
    CommitmentChecked {
        /// The agent.
        agent: String,
        /// The commitment's index, 0-based.
        index: usize,
        /// What happened.
        check: CheckSummary,
    },
    /// A person signed a commitment off.
    CommitmentSignedOff {
        /// The agent.
        agent: String,
        /// The commitment's index, 0-based.
        index: usize,
        /// Who signed it.
        by: String,
    },
    /// A person approved or rejected a commitment the agent proposed.
    CommitmentReviewed {
        /// The agent.
        agent: String,
        /// The commitment's index, 0-based.
        index: usize,
        /// Where it stands now.
        approval: Approval,
    },
    /// A message was posted (and, for agents, put in their inbox).
    MessagePosted(Message),
    /// An agent's modes changed.
    ModesChanged {
        /// The agent.
        agent: String,
        /// The new flags.
        modes: Modes,
        /// The new task mode.
        task_mode: TaskMode,
    },
    /// An agent's description changed.
    DescriptionChanged {
        /// The agent.
        agent: String,
        /// The new text.
        text: String,
    },
    /// An agent's notes (the free text of its document) changed.
    NotesChanged {
        /// The agent.
        agent: String,
        /// The new text.
        text: String,
    },
    /// An agent's restart strategy changed.
    RestartStrategyChanged {
        /// The agent.
        agent: String,
        /// The new strategy.
        strategy: RestartStrategy,
    },
    /// An agent's turn took its inbox messages `from..upto` as input.
    InboxRead {
        /// The agent.
        agent: String,
        /// How many inbox messages had been read before this turn.
        from: usize,
        /// How many inbox messages have now been read in total.
        upto: usize,
    },
    /// A failed turn handed its input back, so the next turn reads it again.
    InboxRewound {
        /// The agent.
        agent: String,
        /// How many inbox messages count as read again.
        upto: usize,
    },
    /// The agent's model replied (recorded so replay and recovery never call the model again).
    ModelReplied {
        /// The agent.
        agent: String,
        /// The model's label.
        model: String,
        /// Whether the reply came from a script.
        scripted: bool,
        /// The reply.
        reply: ModelReply,
    },
    /// One of a turn's tool calls ran, as entry `entry` (when it became one).
    ToolCalled {
        /// The call's position in the reply.
        call: u32,
        /// The entry it became, if it got that far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<Seq>,
        /// What the model was told.
        result: ToolResult,
    },
    /// Tavern restarted an agent's task.
    TaskRestarted {
        /// The agent.
        agent: String,
        /// How many restarts it has had.
        attempt: u32,
    },
    /// Something now waits for a person; `id` is how people name it.
    PendingOpened {
        /// The id.
        id: u32,
        /// The agent waiting.
        agent: String,
        /// What waits.
        item: PendingItem,
    },
    /// A pending item was settled by a person.
    PendingSettled {
        /// The id.
        id: u32,
        /// Who settled it.
        by: String,
        /// How.
        settled: Settled,
    },
    /// A surface's thread now belongs to an agent.
    ThreadAttached {
        /// The agent.
        agent: String,
        /// The surface's id for the thread.
        thread: String,
        /// The surface's id of the thread's header message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
    },
    /// A person interrupted an agent's running turn (the turn's task stops it and closes the turn).
    TurnInterrupted {
        /// The agent.
        agent: String,
        /// Who interrupted it.
        by: String,
        /// The turn's entry.
        turn: Seq,
    },
    /// A permission rule was added for one agent (a person answered "always").
    RuleAdded {
        /// The agent.
        agent: String,
        /// The rule, in permission-rule syntax.
        rule: String,
    },
    /// An agent's runtime session began or was resumed (the Claude Code CLI's session id).
    SessionStarted {
        /// The agent.
        agent: String,
        /// The session id.
        session: String,
    },
    /// A turn of a runtime session finished: the ids of the messages it produced, in order, so a later
    /// branch can fork the session at this turn.
    SessionTurn {
        /// The agent.
        agent: String,
        /// The session id.
        session: String,
        /// The session's message uuids from this turn.
        messages: Vec<String>,
    },
    /// A runtime that keeps its own conversation (the Claude Code CLI) has this turn's input; a resumed
    /// turn does not send it again.
    InputSent {
        /// The agent.
        agent: String,
    },
    /// The agent did something during a runtime turn (streamed to surfaces).
    Activity {
        /// The agent.
        agent: String,
        /// What.
        activity: Activity,
    },
    /// A document edit made outside Tavern was recorded.
    DocumentEditRecorded {
        /// The path relative to `.tavern/`.
        path: String,
        /// Managed fields the edit changed, which were left as Tavern has them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ignored: Vec<String>,
    },
}
