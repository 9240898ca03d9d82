//! The model boundary: what an agent asks a model and what comes back.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::tools::ToolCall;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said; for inputs it starts with who sent it.
    pub text: String,
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
