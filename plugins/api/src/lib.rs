//! The plugin API: the vocabulary and traits every Tavern agent type is written against.
//!
//! Tavern's agent types (Jake, mortal, drone, monitor) are a closed set compiled into the binary. Each
//! type is its own crate that depends on this one and on nothing else of Tavern, so an agent type can
//! reach the world only through the [`AgentContext`] it is handed: its node, the bus, its model handle
//! and its tools. The root `tavern` crate implements the traits declared here ([`Model`], [`Tools`],
//! [`Bus`]) and maps the closed [`AgentKind`] enum to the plugin crates with an exhaustive match.
//!
//! This crate also holds the small vocabulary that both sides must agree on: lifecycle states and their
//! legal transitions, mode flags, commitments, tool calls and model requests. Keeping it here (rather than
//! in the root crate) is what lets plugins avoid depending on the root crate, which depends on them.
#![warn(missing_docs)]

mod kinds;
mod lifecycle;
mod model;
mod prompt;
mod tools;
mod turn;

pub use kinds::{AgentKind, Expert, KindPolicy, ParseKindError};
pub use lifecycle::{AgentState, IllegalTransition, Modes, RestartStrategy, TaskMode};
pub use model::{
    ChatMessage, Model, ModelError, ModelReply, ModelRequest, Role, StopReason, Usage,
};
pub use prompt::compose_system_prompt;
pub use tools::{
    Approval, BroadcastScope, Bus, BusError, CheckSummary, Commitment, QuestionClass, ToolCall,
    ToolName, ToolResult, Tools,
};
pub use turn::{
    standard_turn, AgentContext, AgentError, AgentType, AgentView, TurnInput, TurnOutput,
};
