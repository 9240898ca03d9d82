//! The domain: intents, outcomes, the tavern's state, and the rules that connect them.
//!
//! `decide` turns an intent into outcomes (or refuses it) against the current state; `apply` folds
//! outcomes into the state. Deciding may generate names, ids and times, which it records in the
//! outcomes; applying never generates, calls or runs anything. The command log stores both, through
//! [`TavernSchema`].

pub mod decide;
pub mod intent;
pub mod outcome;
pub mod projection;
pub mod state;

#[cfg(test)]
mod tests;

pub use decide::{decide, DecideEnv, Decision, DomainError};
pub use intent::{input_summary, one_line, Actor, Answer, EditBase, Intent, ModesPatch, Summon};
pub use outcome::{Activity, Message, MessageKind, NewAgent, Outcome, Party, PendingItem, Settled};
pub use state::{AgentNode, OpenEntry, Pending, TavernState};

/// The command log's payload types for Tavern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TavernSchema;

impl crate::log::Schema for TavernSchema {
    type Intent = Intent;
    type Outcome = Outcome;
    type Actor = Actor;
    const VERSION: u32 = 1;

    fn upcast(from_version: u32, _record: serde_json::Value) -> Result<serde_json::Value, String> {
        // Version 1 is the first; a future version 2 adds its upcaster here, so old logs keep replaying.
        Err(format!(
            "no upcaster from log schema version {from_version}"
        ))
    }
}
