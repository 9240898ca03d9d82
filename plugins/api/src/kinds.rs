//! The closed set of agent types and expert prompts.
//!
//! Adding a type is a code change here, and every `match` over [`AgentKind`] in Tavern then fails to
//! compile until it handles the new type. Nothing is ever loaded at run time.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::tools::ToolName;

/// An agent type. The set is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// The coordinator: exactly one per tavern, the root of the tree.
    Jake,
    /// A worker that does an assignment and is held to its commitments.
    Mortal,
    /// A worker for one small task that dismisses itself once verified done.
    Drone,
    /// A background daemon under Jake that reports on health and progress; takes no user tasks.
    Monitor,
}

/// An expert prompt that a mortal can be summoned with. Experts are data, not types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expert {
    /// Reviews changes for correctness and clarity.
    Reviewer,
    /// Writes and runs tests.
    Tester,
    /// Designs structure and boundaries.
    Architect,
}

/// The error for a `--type` value that names no agent type or expert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown agent type {0:?}: use mortal, drone, monitor, reviewer, tester or architect (jake is the one coordinator and cannot be summoned)")]
pub struct ParseKindError(pub String);

impl AgentKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AgentKind; 4] = [
        AgentKind::Jake,
        AgentKind::Mortal,
        AgentKind::Drone,
        AgentKind::Monitor,
    ];

    /// Parses a summon `--type` value into a kind and an optional expert prompt.
    ///
    /// Experts are mortals with a different prompt, so `reviewer` parses to `(Mortal, Some(Reviewer))`.
    /// `jake` is rejected: there is exactly one Jake and Tavern creates him itself.
    pub fn parse_summonable(s: &str) -> Result<(AgentKind, Option<Expert>), ParseKindError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mortal" => Ok((AgentKind::Mortal, None)),
            "drone" => Ok((AgentKind::Drone, None)),
            "monitor" => Ok((AgentKind::Monitor, None)),
            "reviewer" => Ok((AgentKind::Mortal, Some(Expert::Reviewer))),
            "tester" => Ok((AgentKind::Mortal, Some(Expert::Tester))),
            "architect" => Ok((AgentKind::Mortal, Some(Expert::Architect))),
            _ => Err(ParseKindError(s.to_string())),
        }
    }

    /// The snake_case name used in files and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Jake => "jake",
            AgentKind::Mortal => "mortal",
            AgentKind::Drone => "drone",
            AgentKind::Monitor => "monitor",
        }
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Expert {
    /// Every expert, in a fixed order.
    pub const ALL: [Expert; 3] = [Expert::Reviewer, Expert::Tester, Expert::Architect];

    /// The snake_case name used in files, the log and prompt override file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Expert::Reviewer => "reviewer",
            Expert::Tester => "tester",
            Expert::Architect => "architect",
        }
    }
}

impl fmt::Display for Expert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent type is allowed to do; Tavern enforces it, the model cannot widen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindPolicy {
    /// The tools the type's model may call. Calls to any other tool are refused with an error result.
    pub tools: &'static [ToolName],
    /// Dismiss the agent automatically once it is verified Done (drones end themselves).
    pub dismiss_when_done: bool,
    /// Whether a person may summon this type directly.
    pub summonable_by_users: bool,
    /// Whether the type may only be a child of Jake (monitors).
    pub requires_jake_parent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experts_are_mortals_and_jake_is_not_summonable() {
        assert_eq!(
            AgentKind::parse_summonable("Reviewer"),
            Ok((AgentKind::Mortal, Some(Expert::Reviewer)))
        );
        assert_eq!(
            AgentKind::parse_summonable("drone"),
            Ok((AgentKind::Drone, None))
        );
        let err = AgentKind::parse_summonable("jake").unwrap_err().to_string();
        assert!(err.contains("cannot be summoned"), "{err}");
        assert!(AgentKind::parse_summonable("wizard").is_err());
    }
}
