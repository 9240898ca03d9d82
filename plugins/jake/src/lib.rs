//! Jake, The Proprietor: the one coordinator at the root of every tavern's tree.
//!
//! Jake delegates rather than executes, so his policy offers the coordination tools only: he summons,
//! messages, lists and dismisses, but never commits or signals done himself.
#![warn(missing_docs)]

use tavern_plugin_api::{AgentKind, AgentType, Expert, KindPolicy, ToolName};

/// Jake's compiled-in prompt text.
pub const PROMPT: &str = include_str!("../prompts/jake.md");

/// The tools Jake may call.
pub const TOOLS: &[ToolName] = &[
    ToolName::Summon,
    ToolName::Message,
    ToolName::Broadcast,
    ToolName::ListAgents,
    ToolName::SetDescription,
    ToolName::Dismiss,
];

/// The Jake agent type.
#[derive(Debug, Default, Clone, Copy)]
pub struct Jake;

impl AgentType for Jake {
    fn kind(&self) -> AgentKind {
        AgentKind::Jake
    }

    fn prompt(&self, _expert: Option<Expert>) -> &'static str {
        PROMPT
    }

    fn policy(&self) -> KindPolicy {
        KindPolicy {
            tools: TOOLS,
            dismiss_when_done: false,
            summonable_by_users: false,
            requires_jake_parent: false,
        }
    }
}
