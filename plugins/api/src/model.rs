//! The model boundary: what an agent asks a model and what comes back.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::tools::{ToolCall, ToolName, ToolResult};

/// Who said a line of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A person, another agent or Tavern itself, speaking to the agent.
    User,
    /// The agent's own earlier replies.
    Assistant,
}

/// One line of the conversation sent to a model.
///
/// Within one turn a model may call tools and read their results before it answers: the assistant's
/// line then carries its `tool_calls`, and the next user line carries one result per call, in the same
/// order. Backends pair them by position (they give the calls ids of their own), so nothing but the
/// order has to be remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said; for inputs it starts with who sent it. May be empty beside tool calls or results.
    pub text: String,
    /// The tool calls the assistant made on this line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The results of the previous assistant line's tool calls, in the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_results: Vec<ToolResult>,
}

impl ChatMessage {
    /// A plain line from the user side.
    pub fn user(text: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: Role::User,
            text: text.into(),
            tool_calls: Vec::new(),
            tool_results: Vec::new(),
        }
    }

    /// A plain line from the agent itself.
    pub fn assistant(text: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: Role::Assistant,
            ..ChatMessage::user(text)
        }
    }
}

/// Tokens a model call used, and what it cost where the backend knows (the Claude Code CLI reports it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens, including cache reads and writes.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cost in millionths of a US dollar, when the backend reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_micros: Option<u64>,
}

impl Usage {
    /// Adds another call's usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_micros = match (self.cost_micros, other.cost_micros) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
    }
}

/// Why a model stopped answering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished its answer.
    #[default]
    EndTurn,
    /// It called tools and wants their results before it goes on.
    ToolUse,
    /// It ran out of output tokens.
    MaxTokens,
}

/// One model call: everything the agent needs this turn, nothing relying on memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The agent's name.
    pub agent: String,
    /// The agent's type (`jake`, `mortal`, ...), and expert prompt if any (`mortal/reviewer`).
    pub kind: String,
    /// The agent's assignment, if it has one.
    pub assignment: Option<String>,
    /// How many turns this agent has taken before this one. Scripted models use it to pick the reply,
    /// which keeps them deterministic across restarts.
    pub turn: u32,
    /// The composed system prompt.
    pub system: String,
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    /// The Tavern tools this agent may call; backends offer exactly these to the model.
    #[serde(default)]
    pub tools: Vec<ToolName>,
}

/// What a model answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelReply {
    /// Text for the agent's conversation; may be empty.
    #[serde(default)]
    pub text: String,
    /// Tool calls, in order.
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    /// Why the model stopped; `tool_use` asks for the calls' results before it goes on.
    #[serde(default, skip_serializing_if = "is_end_turn")]
    pub stop: StopReason,
    /// What the call used, when the backend says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn is_end_turn(stop: &StopReason) -> bool {
    *stop == StopReason::EndTurn
}

/// A model call that failed. Shown to people, so each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// No model is configured for this agent.
    #[error("no model is configured for {agent}; start Tavern with --model (for example --model scripted:FILE) or set model.default in the config")]
    NotConfigured {
        /// The agent that wanted to think.
        agent: String,
    },
    /// The backend answered with an error.
    #[error("the model {model} failed: {message}")]
    Backend {
        /// The model's label.
        model: String,
        /// What went wrong.
        message: String,
    },
    /// The backend is not usable as configured (a missing key, a missing program); says what to set.
    #[error("the model {model} cannot be used: {message}")]
    Unavailable {
        /// The model's label.
        model: String,
        /// What is missing and how to provide it.
        message: String,
    },
    /// The call was cancelled because Tavern is shutting down or the agent was stopped.
    #[error("the model call was cancelled")]
    Cancelled,
}

/// A model backend. Implemented by Tavern (scripted, and later Claude Code and HTTP APIs).
#[async_trait]
pub trait Model: Send + Sync {
    /// A label for people, e.g. `scripted:demo.toml`; scripted models must say so in their label.
    fn label(&self) -> String;
    /// Whether replies come from a script rather than a real model.
    fn is_scripted(&self) -> bool;
    /// Makes one call.
    async fn complete(&self, request: ModelRequest) -> Result<ModelReply, ModelError>;
}
