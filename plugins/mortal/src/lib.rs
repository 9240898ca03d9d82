//! The mortal agent type: a worker held to its commitments, optionally with an expert prompt.
//!
//! Experts (reviewer, tester, architect) are not types of their own: they are prompt texts this crate
//! carries and picks by [`Expert`].
#![warn(missing_docs)]

use tavern_plugin_api::{AgentKind, AgentType, Expert, KindPolicy, ToolName};

/// The base prompt of every mortal.
pub const PROMPT: &str = include_str!("../prompts/mortal.md");
/// The reviewer expert prompt.
pub const REVIEWER: &str = include_str!("../prompts/reviewer.md");
/// The tester expert prompt.
pub const TESTER: &str = include_str!("../prompts/tester.md");
/// The architect expert prompt.
pub const ARCHITECT: &str = include_str!("../prompts/architect.md");

/// The tools a mortal may call: all of them but dismiss (dismissal belongs to parents and people).
pub const TOOLS: &[ToolName] = &[
    ToolName::Summon,
    ToolName::Ask,
    ToolName::Commit,
    ToolName::Done,
    ToolName::Message,
    ToolName::Broadcast,
    ToolName::SetDescription,
    ToolName::ListAgents,
];

/// The mortal agent type.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mortal;

/// The expert prompt text, which a mortal's prompt is extended with.
pub fn expert_prompt(expert: Expert) -> &'static str {
    match expert {
        Expert::Reviewer => REVIEWER,
        Expert::Tester => TESTER,
        Expert::Architect => ARCHITECT,
    }
}

impl AgentType for Mortal {
    fn kind(&self) -> AgentKind {
        AgentKind::Mortal
    }

    fn prompt(&self, expert: Option<Expert>) -> &'static str {
        match expert {
            Some(expert) => expert_prompt(expert),
            None => PROMPT,
        }
    }

    fn policy(&self) -> KindPolicy {
        KindPolicy {
            tools: TOOLS,
            dismiss_when_done: false,
            summonable_by_users: true,
            requires_jake_parent: false,
        }
    }
}
