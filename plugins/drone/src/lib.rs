//! The drone agent type: one small task, proven by a commitment, then it dismisses itself.
#![warn(missing_docs)]

use tavern_plugin_api::{AgentKind, AgentType, Expert, KindPolicy, ToolName};

/// The drone's compiled-in prompt text.
pub const PROMPT: &str = include_str!("../prompts/drone.md");

/// Drones do not summon helpers or ask people: failure is cheap and there is no recovery attempt.
pub const TOOLS: &[ToolName] = &[
    ToolName::Commit,
    ToolName::Done,
    ToolName::Message,
    ToolName::SetDescription,
];

/// The drone agent type.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drone;

impl AgentType for Drone {
    fn kind(&self) -> AgentKind {
        AgentKind::Drone
    }

    fn prompt(&self, _expert: Option<Expert>) -> &'static str {
        PROMPT
    }

    fn policy(&self) -> KindPolicy {
        KindPolicy {
            tools: TOOLS,
            dismiss_when_done: true,
            summonable_by_users: true,
            requires_jake_parent: false,
        }
    }
}
