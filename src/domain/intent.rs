//! Intents: what a person, an agent or Tavern asks for. Imperative, recorded before they run.

use serde::{Deserialize, Serialize};
use std::fmt;
use tavern_plugin_api::{
    AgentKind, BroadcastScope, Expert, Modes, QuestionClass, RestartStrategy, TaskMode,
};

/// `text` on one line (newlines become spaces), cut to at most `max` characters with an ellipsis.
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.trim().replace('\n', " ");
    if line.chars().count() > max {
        format!(
            "{}…",
            line.chars().take(max.saturating_sub(1)).collect::<String>()
        )
    } else {
        line
    }
}

/// Who asked for an intent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// A person, by their surface's user name.
    User(String),
    /// An agent, by name.
    Agent(String),
    /// Tavern itself (startup, verification, supervision).
    Tavern,
    /// Somebody edited a file under `.tavern/` outside Tavern.
    File,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(name) => write!(f, "@{name}"),
            Actor::Agent(name) => f.write_str(name),
            Actor::Tavern => f.write_str("tavern"),
            Actor::File => f.write_str("file-edit"),
        }
    }
}

/// Summon a new agent under `parent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summon {
    /// The parent's name.
    pub parent: String,
    /// What the agent is to do. Without one, the agent waits, Summoned, for its first message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
    /// Its type.
    pub kind: AgentKind,
    /// An expert prompt for a mortal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert: Option<Expert>,
    /// A chosen name; otherwise the next from the tavern's naming theme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A model spec; otherwise its type's configured model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The directory it works in (relative to the project, or absolute); otherwise the project. Runtimes
    /// with a working directory (the Claude Code CLI) start there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
}

/// A change of mode flags; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModesPatch {
    /// New backgrounded flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backgrounded: Option<bool>,
    /// New perseverance flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perseverance: Option<bool>,
    /// New user-present flag (only people's actions toggle it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_present: Option<bool>,
    /// New task mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_mode: Option<TaskMode>,
}

impl ModesPatch {
    /// The modes after the patch.
    pub fn applied_to(&self, modes: Modes) -> Modes {
        Modes {
            backgrounded: self.backgrounded.unwrap_or(modes.backgrounded),
            perseverance: self.perseverance.unwrap_or(modes.perseverance),
            user_present: self.user_present.unwrap_or(modes.user_present),
        }
    }
}

/// The parts of an agent's document a person may edit, as Tavern last wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditBase {
    /// The description.
    pub description: String,
    /// The notes.
    pub notes: String,
}

/// A person's answer to something pending: a tool approval or an agent's question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Let the tool call run, this once.
    Allow,
    /// Refuse the tool call; the reason goes back to the model.
    Deny {
        /// Why, for the model.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Let it run, and add a rule so calls like it from this agent run without asking.
    Always,
    /// Answer a question with text; it reaches the agent as a message from the person.
    Text {
        /// The answer.
        text: String,
    },
}

/// Everything that can be asked of Tavern. The set is closed; each variant is matched exhaustively.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Open a new tavern: create Jake, the root. Appended once, on first start.
    OpenTavern {
        /// The naming theme for agents' names.
        theme: String,
    },
    /// Summon an agent.
    Summon(Summon),
    /// Send a message to one agent; the sender is the actor.
    SendMessage {
        /// The recipient's name (`parent` resolves to the sender's parent).
        to: String,
        /// The text.
        text: String,
    },
    /// Send a message to every live agent in a scope around the sending agent.
    Broadcast {
        /// Who receives it.
        scope: BroadcastScope,
        /// The text.
        text: String,
    },
    /// Add a commitment to an agent.
    AddCommitment {
        /// The agent.
        agent: String,
        /// What is promised.
        description: String,
        /// The shell assertion (exit 0 = pass).
        assertion: String,
        /// Whether a person must sign it off.
        #[serde(default)]
        needs_signoff: bool,
    },
    /// Signal that an agent is done: it moves to Verifying and Tavern runs every assertion.
    SignalDone {
        /// The agent.
        agent: String,
    },
    /// A person signs off a commitment that needs it.
    Approve {
        /// The agent.
        agent: String,
        /// The commitment's number, 1-based as people see it.
        commitment: usize,
    },
    /// Dismiss a Done agent (and its subtree).
    Dismiss {
        /// The agent.
        agent: String,
    },
    /// Stop an agent now: it and its live subtree become FailedReaped.
    Reap {
        /// The agent.
        agent: String,
        /// Why, for the record and the parent.
        reason: String,
    },
    /// Change an agent's mode flags or task mode.
    SetModes {
        /// The agent.
        agent: String,
        /// The changes.
        patch: ModesPatch,
    },
    /// Replace an agent's description.
    SetDescription {
        /// The agent.
        agent: String,
        /// The new description.
        text: String,
    },
    /// Set how an agent, as a parent, restarts its children's failed tasks.
    SetRestartStrategy {
        /// The agent.
        agent: String,
        /// The strategy.
        strategy: RestartStrategy,
    },
    /// An agent asks the person who asked for its work a question and waits for the answer.
    AskUser {
        /// The asking agent.
        agent: String,
        /// The question.
        question: String,
        /// Quick or deep.
        class: QuestionClass,
    },
    /// An agent takes a turn: its new inputs go to its model and its tool calls run.
    TakeTurn {
        /// The agent.
        agent: String,
    },
    /// Tavern restarts an agent's task after it failed.
    RestartAgent {
        /// The agent.
        agent: String,
        /// What failed.
        reason: String,
    },
    /// An agent wants to use a tool that no rule allows or denies; a person decides while it waits.
    RequestApproval {
        /// The agent.
        agent: String,
        /// The tool, as the runtime names it (`Bash`, `Write`, `mcp__server__tool`).
        tool: String,
        /// The tool's input.
        input: serde_json::Value,
    },
    /// A person interrupts an agent's running turn: its model stops, what it did so far stands, and it
    /// waits for new input.
    Interrupt {
        /// The agent.
        agent: String,
    },
    /// A person answers a pending approval or question, by its id as `/pending` shows it.
    Answer {
        /// The pending item's id.
        id: u32,
        /// The answer.
        answer: Answer,
    },
    /// A surface opened a conversation place for an agent (a Discord thread); it is where the agent's
    /// work shows and where people reply to it, re-attached after a restart.
    AttachThread {
        /// The agent.
        agent: String,
        /// The surface's id for it.
        thread: String,
        /// The surface's id of the message at the top of the thread that shows the agent's state.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
    },
    /// A person edited a document under `.tavern/` outside Tavern.
    EditDocument {
        /// The document's path relative to `.tavern/`.
        path: String,
        /// Its new content (`None` if the file was deleted).
        content: Option<String>,
        /// The description and notes of the version the person started from, when Tavern knows it
        /// (from the checksum line the edited file still carries). It lets an edit be merged with
        /// changes Tavern recorded meanwhile instead of undoing them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<EditBase>,
    },
}

impl Intent {
    /// The snake_case name of the intent, for listings.
    pub fn name(&self) -> &'static str {
        match self {
            Intent::OpenTavern { .. } => "open_tavern",
            Intent::Summon(_) => "summon",
            Intent::SendMessage { .. } => "send_message",
            Intent::Broadcast { .. } => "broadcast",
            Intent::AddCommitment { .. } => "add_commitment",
            Intent::SignalDone { .. } => "signal_done",
            Intent::Approve { .. } => "approve",
            Intent::Dismiss { .. } => "dismiss",
            Intent::Reap { .. } => "reap",
            Intent::SetModes { .. } => "set_modes",
            Intent::SetDescription { .. } => "set_description",
            Intent::SetRestartStrategy { .. } => "set_restart_strategy",
            Intent::AskUser { .. } => "ask_user",
            Intent::TakeTurn { .. } => "take_turn",
            Intent::RestartAgent { .. } => "restart_agent",
            Intent::RequestApproval { .. } => "request_approval",
            Intent::Answer { .. } => "answer",
            Intent::Interrupt { .. } => "interrupt",
            Intent::AttachThread { .. } => "attach_thread",
            Intent::EditDocument { .. } => "edit_document",
        }
    }

    /// A one-line human summary, for `/log`.
    pub fn summary(&self) -> String {
        let clip = |s: &str| one_line(s, 60);
        match self {
            Intent::OpenTavern { theme } => format!("open tavern (theme {theme})"),
            Intent::Summon(s) => {
                let kind = match s.expert {
                    Some(e) => format!("{}/{}", s.kind, e),
                    None => s.kind.to_string(),
                };
                format!(
                    "summon {kind} under {}: {}",
                    s.parent,
                    clip(s.assignment.as_deref().unwrap_or("(no assignment)"))
                )
            }
            Intent::SendMessage { to, text } => format!("message to {to}: {}", clip(text)),
            Intent::Broadcast { scope, text } => format!("broadcast to {scope:?}: {}", clip(text)),
            Intent::AddCommitment {
                agent,
                description,
                assertion,
                ..
            } => format!(
                "commit {agent}: {} -- {}",
                clip(description),
                clip(assertion)
            ),
            Intent::SignalDone { agent } => format!("done {agent}"),
            Intent::Approve { agent, commitment } => format!("approve {agent} #{commitment}"),
            Intent::Dismiss { agent } => format!("dismiss {agent}"),
            Intent::Reap { agent, reason } => format!("reap {agent}: {}", clip(reason)),
            Intent::SetModes { agent, patch } => format!("set modes of {agent}: {patch:?}"),
            Intent::SetDescription { agent, text } => {
                format!("describe {agent}: {}", clip(text))
            }
            Intent::SetRestartStrategy { agent, strategy } => {
                format!("restart strategy of {agent}: {strategy:?}")
            }
            Intent::AskUser {
                agent,
                question,
                class,
            } => format!("{agent} asks {}: {}", class.tag(), clip(question)),
            Intent::TakeTurn { agent } => format!("turn of {agent}"),
            Intent::RestartAgent { agent, reason } => {
                format!("restart {agent}: {}", clip(reason))
            }
            Intent::RequestApproval { agent, tool, input } => {
                format!(
                    "{agent} asks to use {tool}: {}",
                    clip(&input_summary(input))
                )
            }
            Intent::Interrupt { agent } => format!("interrupt {agent}"),
            Intent::AttachThread { agent, thread, .. } => format!("thread {thread} for {agent}"),
            Intent::Answer { id, answer } => match answer {
                Answer::Allow => format!("allow #{id}"),
                Answer::Deny { reason } => format!(
                    "deny #{id}{}",
                    reason
                        .as_deref()
                        .map(|r| format!(": {}", clip(r)))
                        .unwrap_or_default()
                ),
                Answer::Always => format!("always allow #{id}"),
                Answer::Text { text } => format!("answer #{id}: {}", clip(text)),
            },
            Intent::EditDocument { path, content, .. } => match content {
                Some(_) => format!("file edited: {path}"),
                None => format!("file deleted: {path}"),
            },
        }
    }
}

/// A tool input in one line for people: the command, path or URL it acts on when it has one, otherwise
/// its JSON.
pub fn input_summary(input: &serde_json::Value) -> String {
    for key in [
        "command",
        "file_path",
        "notebook_path",
        "path",
        "url",
        "pattern",
    ] {
        if let Some(text) = input.get(key).and_then(|v| v.as_str()) {
            return text.to_string();
        }
    }
    input.to_string()
}
