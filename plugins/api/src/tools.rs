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

impl ToolName {
    /// Every tool, in the order they are offered to models.
    pub const ALL: [ToolName; 9] = [
        ToolName::Summon,
        ToolName::Ask,
        ToolName::Commit,
        ToolName::Done,
        ToolName::Message,
        ToolName::Broadcast,
        ToolName::SetDescription,
        ToolName::ListAgents,
        ToolName::Dismiss,
    ];

    /// The name models call the tool by (over the Anthropic and OpenAI APIs, and as an MCP tool).
    pub fn wire(self) -> &'static str {
        match self {
            ToolName::Summon => "summon_agent",
            ToolName::Ask => "ask_user",
            ToolName::Commit => "add_commitment",
            ToolName::Done => "signal_done",
            ToolName::Message => "send_message",
            ToolName::Broadcast => "broadcast",
            ToolName::SetDescription => "set_description",
            ToolName::ListAgents => "list_agents",
            ToolName::Dismiss => "dismiss_agent",
        }
    }

    /// The tool a model called by its wire name.
    pub fn from_wire(name: &str) -> Option<ToolName> {
        ToolName::ALL.into_iter().find(|t| t.wire() == name)
    }

    /// What the model is told the tool does.
    pub fn description(self) -> &'static str {
        match self {
            ToolName::Summon => "Summon a child agent under you to do part of the work. It works in its own thread and reports to you.",
            ToolName::Ask => "Ask the person who asked for the work a question. Your turn ends; the answer arrives as your next message. Use class \"quick\" for questions answerable at a glance, \"deep\" for ones that need your work looked at.",
            ToolName::Commit => "Add a commitment: what you promise, and a shell assertion Tavern runs in the project directory (exit 0 means kept). You are done only when every assertion passes.",
            ToolName::Done => "Signal that your work is done. Tavern then runs every commitment's assertion; if one fails you get a gap report and keep working.",
            ToolName::Message => "Send a message to another agent by name, or to \"parent\".",
            ToolName::Broadcast => "Send a message to several agents at once: your siblings, your subtree, or all.",
            ToolName::SetDescription => "Replace your description: the original ask plus your current status, as people see it.",
            ToolName::ListAgents => "List every agent in the tavern with its state.",
            ToolName::Dismiss => "Dismiss an agent that is Done.",
        }
    }

    /// The JSON schema of the tool's input.
    pub fn input_schema(self) -> serde_json::Value {
        use serde_json::json;
        let string = |d: &str| json!({"type": "string", "description": d});
        let (properties, required) = match self {
            ToolName::Summon => (
                json!({
                    "assignment": string("What the child is to do."),
                    "type": string("mortal (default), drone, monitor, or an expert: reviewer, tester, architect."),
                    "name": string("A name instead of the next one from the naming theme."),
                    "model": string("The child's model; yours when absent."),
                }),
                vec!["assignment"],
            ),
            ToolName::Ask => (
                json!({
                    "question": string("The question."),
                    "class": {"type": "string", "enum": ["quick", "deep"], "description": "quick (default) or deep."},
                }),
                vec!["question"],
            ),
            ToolName::Commit => (
                json!({
                    "description": string("What you promise, in words."),
                    "assertion": string("A shell command that exits 0 when the promise is kept."),
                    "needs_signoff": {"type": "boolean", "description": "Whether a person must also sign it off."},
                }),
                vec!["description", "assertion"],
            ),
            ToolName::Done | ToolName::ListAgents => (json!({}), vec![]),
            ToolName::Message => (
                json!({"to": string("The recipient's name, or \"parent\"."), "text": string("The message.")}),
                vec!["to", "text"],
            ),
            ToolName::Broadcast => (
                json!({
                    "scope": {"type": "string", "enum": ["siblings", "subtree", "all"]},
                    "text": string("The message."),
                }),
                vec!["scope", "text"],
            ),
            ToolName::SetDescription => (
                json!({"text": string("The new description.")}),
                vec!["text"],
            ),
            ToolName::Dismiss => (
                json!({"name": string("The agent to dismiss.")}),
                vec!["name"],
            ),
        };
        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
    }
}

impl ToolCall {
    /// Reads a call a model made by wire name with a JSON input; the error says what is wrong.
    pub fn from_wire(name: &str, input: serde_json::Value) -> Result<ToolCall, String> {
        let tool = ToolName::from_wire(name)
            .ok_or_else(|| format!("Tavern has no tool named {name:?}"))?;
        // A call without arguments may arrive as null; the serde form wants an object.
        let input = if input.is_null() {
            serde_json::json!({})
        } else {
            input
        };
        let mut tagged = serde_json::Map::new();
        tagged.insert(tool.to_string(), input);
        serde_json::from_value(serde_json::Value::Object(tagged))
            .map_err(|e| format!("bad input for {name}: {e}"))
    }

    /// The call's input as the model wrote it (the inverse of [`ToolCall::from_wire`]).
    pub fn wire_input(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => {
                map.into_iter().next().map(|(_, v)| v).unwrap_or_default()
            }
            _ => serde_json::json!({}),
        }
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
    /// Whether it counts toward Done: an agent's own commitments are proposals until the person who
    /// asked for the work approves them (when the project asks for that).
    #[serde(default, skip_serializing_if = "Approval::is_accepted")]
    pub approval: Approval,
}

/// Where a commitment stands with the people it is made to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// It counts: made by a person or a parent, or where the project asks no approval.
    #[default]
    Accepted,
    /// Proposed by the agent itself; it counts once a person approves it.
    Proposed,
    /// Approved by this person.
    Approved {
        /// Who.
        by: String,
    },
    /// Rejected by this person: it no longer counts, and the agent was told.
    Rejected {
        /// Who.
        by: String,
        /// Why, if they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Approval {
    /// Whether it is the default (no approval asked).
    pub fn is_accepted(&self) -> bool {
        *self == Approval::Accepted
    }
}

impl Commitment {
    /// Where it stands, in a few words, for the agent's prompt.
    pub fn check_status(&self) -> String {
        let check = match &self.last_check {
            Some(check) if check.passed => "passed last check",
            Some(_) => "FAILED last check",
            None => "not checked yet",
        };
        match &self.approval {
            Approval::Accepted | Approval::Approved { .. } => check.to_string(),
            Approval::Proposed => format!("{check}; proposed, waiting for a person's approval"),
            Approval::Rejected { by, reason } => format!(
                "REJECTED by @{by}{}; it no longer counts",
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// Whether it counts toward Done at all (it was not rejected).
    pub fn counts(&self) -> bool {
        !matches!(self.approval, Approval::Rejected { .. })
    }

    /// Whether a person's approval of it is still awaited.
    pub fn awaits_approval(&self) -> bool {
        self.approval == Approval::Proposed
    }

    /// Whether the commitment is satisfied: its last check passed, any sign-off it needs was given,
    /// and, if it was proposed, a person approved it.
    pub fn satisfied(&self) -> bool {
        self.last_check.as_ref().is_some_and(|c| c.passed)
            && (!self.needs_signoff || self.signed_off_by.is_some())
            && matches!(
                self.approval,
                Approval::Accepted | Approval::Approved { .. }
            )
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

    #[test]
    fn wire_names_round_trip_and_bad_input_is_named() {
        for tool in ToolName::ALL {
            assert_eq!(ToolName::from_wire(tool.wire()), Some(tool));
            assert_eq!(tool.input_schema()["type"], "object");
        }
        let call = ToolCall::from_wire(
            "add_commitment",
            serde_json::json!({"description": "file exists", "assertion": "test -f hello.txt"}),
        )
        .unwrap();
        assert_eq!(call.name(), ToolName::Commit);
        assert_eq!(
            ToolCall::from_wire(call.name().wire(), call.wire_input()).unwrap(),
            call
        );
        assert_eq!(
            ToolCall::from_wire("signal_done", serde_json::Value::Null).unwrap(),
            ToolCall::Done {}
        );
        let err = ToolCall::from_wire("add_commitment", serde_json::json!({"description": "x"}))
            .unwrap_err();
        assert!(err.contains("assertion"), "{err}");
        assert!(ToolCall::from_wire("rm_rf", serde_json::json!({}))
            .unwrap_err()
            .contains("rm_rf"));
    }
}
