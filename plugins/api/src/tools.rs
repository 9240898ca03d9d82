//! Tavern's tools as a model calls them, commitments, and the bus an agent type talks through.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How a question to a person is classified before it is surfaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionClass {
    /// Answerable without the agent's context.
    #[default]
    Quick,
    /// Needs the person to look at the agent's work first.
    Deep,
}

impl QuestionClass {
    /// The tag shown with the question, e.g. `[QUICK]`.
    pub fn tag(self) -> &'static str {
        match self {
            QuestionClass::Quick => "[QUICK]",
            QuestionClass::Deep => "[DEEP]",
        }
    }
}

/// Who a broadcast reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastScope {
    /// The sender's live siblings.
    Siblings,
    /// Every live agent below the sender.
    Subtree,
    /// Every live agent in the tavern except the sender.
    All,
}

impl BroadcastScope {
    /// Parses `siblings`, `subtree` or `all`.
    pub fn parse(s: &str) -> Result<BroadcastScope, String> {
        match s {
            "siblings" => Ok(BroadcastScope::Siblings),
            "subtree" => Ok(BroadcastScope::Subtree),
            "all" => Ok(BroadcastScope::All),
            other => Err(format!(
                "unknown broadcast scope {other:?}: use siblings, subtree or all"
            )),
        }
    }
}

/// One call of one of Tavern's tools, as a model (or a script) makes it.
///
/// Each call becomes an intent in the command log with the calling agent as its actor; the same intent
/// a person produces with the matching console command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ToolCall {
    /// Summon a child agent under the caller.
    Summon {
        /// What the child is to do.
        assignment: String,
        /// `mortal` (default), `drone`, `monitor`, or an expert: `reviewer`, `tester`, `architect`.
        #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        /// A name to use instead of the next one from the naming theme.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The model for the child; the caller's model when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
    /// Ask the person who asked for the work a question; the agent waits for the answer.
    Ask {
        /// The question.
        question: String,
        /// Quick or deep.
        #[serde(default)]
        class: QuestionClass,
    },
    /// Add a commitment: a description plus a shell assertion that exits 0 when it holds.
    Commit {
        /// What is promised, in words.
        description: String,
        /// The shell command Tavern runs to check it.
        assertion: String,
        /// Whether a person must also sign it off.
        #[serde(default)]
        needs_signoff: bool,
    },
    /// Signal that the work is done; Tavern then verifies every commitment.
    Done {},
    /// Send a message to another agent by name, or to `parent`.
    Message {
        /// The recipient's name, or `parent`.
        to: String,
        /// The text.
        text: String,
    },
    /// Send a message to several agents at once.
    Broadcast {
        /// Who receives it.
        scope: BroadcastScope,
        /// The text.
        text: String,
    },
    /// Replace the agent's description (the original ask plus current status).
    SetDescription {
        /// The new description.
        text: String,
    },
    /// List every agent with its state.
    ListAgents {},
    /// Dismiss an agent that is Done.
    Dismiss {
        /// The agent's name.
        name: String,
    },
}

/// The name of a tool, for policies and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolName {
    /// [`ToolCall::Summon`]
    Summon,
    /// [`ToolCall::Ask`]
    Ask,
    /// [`ToolCall::Commit`]
    Commit,
    /// [`ToolCall::Done`]
    Done,
    /// [`ToolCall::Message`]
    Message,
    /// [`ToolCall::Broadcast`]
    Broadcast,
    /// [`ToolCall::SetDescription`]
    SetDescription,
    /// [`ToolCall::ListAgents`]
    ListAgents,
    /// [`ToolCall::Dismiss`]
    Dismiss,
}

impl ToolCall {
    /// Which tool this call is for.
    pub fn name(&self) -> ToolName {
        match self {
            ToolCall::Summon { .. } => ToolName::Summon,
            ToolCall::Ask { .. } => ToolName::Ask,
            ToolCall::Commit { .. } => ToolName::Commit,
            ToolCall::Done {} => ToolName::Done,
            ToolCall::Message { .. } => ToolName::Message,
            ToolCall::Broadcast { .. } => ToolName::Broadcast,
            ToolCall::SetDescription { .. } => ToolName::SetDescription,
            ToolCall::ListAgents {} => ToolName::ListAgents,
            ToolCall::Dismiss { .. } => ToolName::Dismiss,
        }
    }

    /// Whether the agent's turn ends after this call: it is now waiting or being verified.
    pub fn ends_turn(&self) -> bool {
        matches!(self, ToolCall::Ask { .. } | ToolCall::Done {})
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ToolName::Summon => "summon",
            ToolName::Ask => "ask",
            ToolName::Commit => "commit",
            ToolName::Done => "done",
            ToolName::Message => "message",
            ToolName::Broadcast => "broadcast",
            ToolName::SetDescription => "set_description",
            ToolName::ListAgents => "list_agents",
            ToolName::Dismiss => "dismiss",
        };
        f.write_str(s)
    }
}

/// What a tool call returned to the model: text, and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResult {
    /// False when the call was refused or failed; `text` then says why.
    pub ok: bool,
    /// The result or the error, for the model to read.
    pub text: String,
}

impl ToolResult {
    /// A successful result.
    pub fn ok(text: impl Into<String>) -> ToolResult {
        ToolResult {
            ok: true,
            text: text.into(),
        }
    }

    /// A failed result.
    pub fn err(text: impl Into<String>) -> ToolResult {
        ToolResult {
            ok: false,
            text: text.into(),
        }
    }
}

/// The last time Tavern ran a commitment's assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSummary {
    /// Exit 0 within the timeout.
    pub passed: bool,
    /// The exit code, if the process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Whether the assertion ran out of time and its process group was killed.
    #[serde(default)]
    pub timed_out: bool,
    /// The end of its combined output.
    #[serde(default)]
    pub output_tail: String,
    /// How long it ran, in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
}

/// A promise an agent makes, checked by Tavern with a shell assertion (exit 0 = pass).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    /// What is promised, in words.
    pub description: String,
    /// The shell command run in the project directory.
    pub assertion: String,
    /// Whether a person must also approve it before the agent can be Done.
    #[serde(default)]
    pub needs_signoff: bool,
    /// Who signed it off, once someone has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_off_by: Option<String>,
    /// The latest verification of this commitment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<CheckSummary>,
}

impl Commitment {
    /// Whether the commitment is satisfied: its last check passed and any sign-off it needs was given.
    pub fn satisfied(&self) -> bool {
        self.last_check.as_ref().is_some_and(|c| c.passed)
            && (!self.needs_signoff || self.signed_off_by.is_some())
    }
}

/// Runs Tavern's tools on behalf of one agent. Implemented by Tavern; each call becomes an intent.
#[async_trait]
pub trait Tools: Send + Sync {
    /// Performs one call and returns what the model should see.
    async fn call(&self, call: ToolCall) -> ToolResult;
}

/// Why a message could not be delivered. The sender always learns of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// No agent has that name.
    #[error("no agent is named {0:?}; use list_agents to see who is here")]
    UnknownAgent(String),
    /// The agent exists but is dead (reaped or dismissed).
    #[error("{name} is {state} and cannot receive messages; its files are kept for reading")]
    AgentDead {
        /// The recipient.
        name: String,
        /// Its final state.
        state: crate::AgentState,
    },
    /// The message could not be recorded.
    #[error("the message was not recorded: {0}")]
    NotRecorded(String),
}

/// The message bus as an agent type sees it. Messages are documents and survive restarts.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Sends `text` to one agent by name.
    async fn send(&self, to: &str, text: &str) -> Result<(), BusError>;
    /// Sends `text` to every live agent in `scope`; returns how many received it.
    async fn broadcast(&self, scope: BroadcastScope, text: &str) -> Result<usize, BusError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_read_from_json_like_a_script_writes_them() {
        let calls: Vec<ToolCall> = serde_json::from_str(
            r#"[{"summon":{"assignment":"write tests","type":"tester"}},
                {"ask":{"question":"which db?","class":"deep"}},
                {"commit":{"description":"tests pass","assertion":"true"}},
                {"done":{}}]"#,
        )
        .unwrap();
        assert_eq!(calls[0].name(), ToolName::Summon);
        assert_eq!(
            calls[1],
            ToolCall::Ask {
                question: "which db?".into(),
                class: QuestionClass::Deep
            }
        );
        assert!(calls[3].ends_turn());
        let bad = serde_json::from_str::<ToolCall>(r#"{"sumon":{"assignment":"x"}}"#);
        assert!(bad.is_err());
    }
}
