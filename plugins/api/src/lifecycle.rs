//! Lifecycle states, their legal transitions, mode flags and restart strategies.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The one state an agent is in at any time.
///
/// The legal transitions are exactly those accepted by [`AgentState::check_transition`]; every other
/// pair is an error, so a bug or a bad request can never move an agent sideways silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Created but not yet working (for example, summoned without an assignment).
    Summoned,
    /// Doing its assignment.
    Working,
    /// Blocked on an answer from a person or its parent.
    WaitingForInput,
    /// Idle until something wakes it.
    WaitingForWakeup,
    /// Signalled done; Tavern is running its commitments' assertions.
    Verifying,
    /// Every commitment passed.
    Done,
    /// Stopped because it failed or was reaped; terminal.
    FailedReaped,
    /// Dismissed after being done; terminal.
    DismissedReaped,
}

impl AgentState {
    /// Every state, in lifecycle order (useful for tests and status tables).
    pub const ALL: [AgentState; 8] = [
        AgentState::Summoned,
        AgentState::Working,
        AgentState::WaitingForInput,
        AgentState::WaitingForWakeup,
        AgentState::Verifying,
        AgentState::Done,
        AgentState::FailedReaped,
        AgentState::DismissedReaped,
    ];

    /// Whether moving from `self` to `to` is one of the legal transitions.
    pub fn can_transition(self, to: AgentState) -> bool {
        use AgentState::*;
        matches!(
            (self, to),
            (Summoned, Working)
                | (Working, WaitingForInput)
                | (Working, WaitingForWakeup)
                | (Working, Verifying)
                | (Working, FailedReaped)
                | (WaitingForInput, Working)
                | (WaitingForInput, FailedReaped)
                | (WaitingForWakeup, Working)
                | (WaitingForWakeup, FailedReaped)
                | (Verifying, Done)
                | (Verifying, Working)
                | (Verifying, FailedReaped)
                | (Done, DismissedReaped)
        )
    }

    /// Checks a transition, naming the agent in the error so the person reading it knows which one.
    pub fn check_transition(self, agent: &str, to: AgentState) -> Result<(), IllegalTransition> {
        if self.can_transition(to) {
            Ok(())
        } else {
            Err(IllegalTransition {
                agent: agent.to_string(),
                from: self,
                to,
            })
        }
    }

    /// Dead agents are kept (with their files) but never act again.
    pub fn is_dead(self) -> bool {
        matches!(self, AgentState::FailedReaped | AgentState::DismissedReaped)
    }

    /// The snake_case spelling used in files and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Summoned => "summoned",
            AgentState::Working => "working",
            AgentState::WaitingForInput => "waiting_for_input",
            AgentState::WaitingForWakeup => "waiting_for_wakeup",
            AgentState::Verifying => "verifying",
            AgentState::Done => "done",
            AgentState::FailedReaped => "failed_reaped",
            AgentState::DismissedReaped => "dismissed_reaped",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            AgentState::Summoned => "Summoned",
            AgentState::Working => "Working",
            AgentState::WaitingForInput => "WaitingForInput",
            AgentState::WaitingForWakeup => "WaitingForWakeup",
            AgentState::Verifying => "Verifying",
            AgentState::Done => "Done",
            AgentState::FailedReaped => "FailedReaped",
            AgentState::DismissedReaped => "DismissedReaped",
        };
        f.write_str(s)
    }
}

/// A transition that the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{agent} cannot go from {from} to {to}: that transition is not allowed{}", hint(*from, *to))]
pub struct IllegalTransition {
    /// The agent's name.
    pub agent: String,
    /// Its current state.
    pub from: AgentState,
    /// The state that was asked for.
    pub to: AgentState,
}

/// A short suggestion for the common illegal transitions people ask for.
fn hint(from: AgentState, to: AgentState) -> String {
    use AgentState::*;
    match (from, to) {
        (_, DismissedReaped) if !from.is_dead() => {
            " (only a Done agent can be dismissed; to stop it now, reap it)".to_string()
        }
        (_, Verifying) if from != Working => " (only a Working agent can signal done)".to_string(),
        _ if from.is_dead() => " (the agent is dead; its files are kept)".to_string(),
        _ => String::new(),
    }
}

/// The three independent mode flags of an agent. All eight combinations are valid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modes {
    /// Runs without a chat of its own, shown as a resource of its parent.
    #[serde(default)]
    pub backgrounded: bool,
    /// Keeps working until verified Done instead of stopping to wait.
    #[serde(default)]
    pub perseverance: bool,
    /// A person has joined this agent's conversation.
    #[serde(default)]
    pub user_present: bool,
}

/// What kind of work an agent is doing right now; switchable at any time, and logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskMode {
    /// Do the work directly.
    #[default]
    Execute,
    /// Hand the work to children.
    Delegate,
    /// Plan before doing.
    Plan,
    /// Split the work into parts.
    BreakUp,
    /// Bring children's results together.
    Unify,
}

impl TaskMode {
    /// Parses the snake_case name, naming the accepted values on error.
    pub fn parse(s: &str) -> Result<TaskMode, String> {
        match s {
            "execute" => Ok(TaskMode::Execute),
            "delegate" => Ok(TaskMode::Delegate),
            "plan" => Ok(TaskMode::Plan),
            "break_up" | "break-up" => Ok(TaskMode::BreakUp),
            "unify" => Ok(TaskMode::Unify),
            other => Err(format!(
                "unknown task mode {other:?}: use execute, delegate, plan, break_up or unify"
            )),
        }
    }
}

/// How a parent reacts when one of its children's tasks fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartStrategy {
    /// Restart only the child whose task failed.
    #[default]
    RestartOne,
    /// Restart every live child of the parent.
    RestartAll,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_listed_transitions_are_legal() {
        use AgentState::*;
        let legal = [
            (Summoned, Working),
            (Working, WaitingForInput),
            (Working, WaitingForWakeup),
            (Working, Verifying),
            (Working, FailedReaped),
            (WaitingForInput, Working),
            (WaitingForInput, FailedReaped),
            (WaitingForWakeup, Working),
            (WaitingForWakeup, FailedReaped),
            (Verifying, Done),
            (Verifying, Working),
            (Verifying, FailedReaped),
            (Done, DismissedReaped),
        ];
        for from in AgentState::ALL {
            for to in AgentState::ALL {
                assert_eq!(
                    from.can_transition(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn illegal_transition_names_agent_and_suggests_reap() {
        let err = AgentState::Working
            .check_transition("Frodo", AgentState::DismissedReaped)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Frodo"), "{text}");
        assert!(text.contains("Working"), "{text}");
        assert!(text.contains("reap"), "{text}");
    }
}
