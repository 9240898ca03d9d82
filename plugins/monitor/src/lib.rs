//! The monitor agent type: a background daemon under Jake that reports and takes no user tasks.
#![warn(missing_docs)]

use tavern_plugin_api::{AgentKind, AgentType, Expert, KindPolicy, ToolName};

/// The monitor's compiled-in prompt text.
pub const PROMPT: &str = include_str!("../prompts/monitor.md");

/// Monitors only watch and report.
pub const TOOLS: &[ToolName] = &[ToolName::Message, ToolName::ListAgents];

/// The monitor agent type.
#[derive(Debug, Default, Clone, Copy)]
pub struct Monitor;

impl AgentType for Monitor {
    fn kind(&self) -> AgentKind {
        AgentKind::Monitor
    }

    fn prompt(&self, _expert: Option<Expert>) -> &'static str {
        PROMPT
    }

    fn policy(&self) -> KindPolicy {
        KindPolicy {
            tools: TOOLS,
            dismiss_when_done: false,
            summonable_by_users: true,
            requires_jake_parent: true,
        }
    }
}
