//! The message bus on the tree: send, broadcast and subscribe.
//!
//! (Inside a turn, an agent's plugin sends through the turn's own bus in `turn`, so its sends are
//! recorded as effects of the turn and never repeated when the turn resumes.)
//!
//! Sending is an intent (`SendMessage`, `Broadcast`) like any other, so every message is in the log and
//! is a document under `.tavern/messages/`, and survives restarts. Subscriptions read the durable state:
//! events only wake them, so a subscriber that falls behind re-reads what it missed instead of losing it.

use std::sync::Arc;
use tavern_plugin_api::{BroadcastScope, BusError};
use tokio::sync::broadcast::error::RecvError;

use crate::domain::{Actor, DomainError, Intent, Message, MessageKind, Outcome, Party};
use crate::executor::{ExecError, Receipt, Tavern};

fn bus_error(error: DomainError) -> BusError {
    match error {
        DomainError::UnknownAgent(name) => BusError::UnknownAgent(name),
        DomainError::AgentDead { name, state } => BusError::AgentDead { name, state },
        other => BusError::NotRecorded(other.to_string()),
    }
}

fn exec_error(error: ExecError) -> BusError {
    BusError::NotRecorded(error.to_string())
}

fn posted(outcomes: Vec<Outcome>) -> Vec<Message> {
    outcomes
        .into_iter()
        .filter_map(|o| match o {
            Outcome::MessagePosted(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Sends `text` from `from` to the agent `to`. Unknown and dead recipients are errors for the sender.
pub async fn send(tavern: &Tavern, from: Actor, to: &str, text: &str) -> Result<Message, BusError> {
    let receipt = tavern
        .submit(
            from,
            Intent::SendMessage {
                to: to.to_string(),
                text: text.to_string(),
            },
            None,
        )
        .await
        .map_err(exec_error)?;
    match receipt {
        Receipt::Accepted { outcomes, .. } => posted(outcomes)
            .into_iter()
            .next()
            .ok_or_else(|| BusError::NotRecorded("the message produced no record".into())),
        Receipt::Rejected { error, .. } => Err(bus_error(error)),
    }
}

/// Sends `text` to every live agent in `scope` around the sender; returns the messages posted.
pub async fn broadcast(
    tavern: &Tavern,
    from: Actor,
    scope: BroadcastScope,
    text: &str,
) -> Result<Vec<Message>, BusError> {
    let receipt = tavern
        .submit(
            from,
            Intent::Broadcast {
                scope,
                text: text.to_string(),
            },
            None,
        )
        .await
        .map_err(exec_error)?;
    match receipt {
        Receipt::Accepted { outcomes, .. } => Ok(posted(outcomes)),
        Receipt::Rejected { error, .. } => Err(bus_error(error)),
    }
}

/// Which messages a subscription delivers. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Only messages to this party.
    pub to: Option<Party>,
    /// Only messages from this party.
    pub from: Option<Party>,
    /// Only questions.
    pub questions_only: bool,
}

impl MessageFilter {
    /// Whether a message passes the filter.
    pub fn matches(&self, message: &Message) -> bool {
        self.to.as_ref().is_none_or(|to| party_eq(to, &message.to))
            && self
                .from
                .as_ref()
                .is_none_or(|from| party_eq(from, &message.from))
            && (!self.questions_only || matches!(message.kind, MessageKind::Question { .. }))
    }
}

fn party_eq(a: &Party, b: &Party) -> bool {
    match (a, b) {
        (Party::Agent(x), Party::Agent(y)) | (Party::User(x), Party::User(y)) => {
            x.eq_ignore_ascii_case(y)
        }
        (Party::Tavern, Party::Tavern) => true,
        _ => false,
    }
}

/// A live subscription to durable messages matching a filter.
pub struct Subscription {
    tavern: Tavern,
    filter: MessageFilter,
    events: tokio::sync::broadcast::Receiver<Arc<crate::executor::Event>>,
    next: usize,
}

/// Subscribes to messages posted from now on that match `filter`.
pub fn subscribe(tavern: &Tavern, filter: MessageFilter) -> Subscription {
    // Subscribe before reading the position, so nothing posted in between is missed.
    let events = tavern.subscribe();
    let next = tavern.read(|s| s.messages.len());
    Subscription {
        tavern: tavern.clone(),
        filter,
        events,
        next,
    }
}

impl Subscription {
    /// The next matching message; `None` once the tavern has shut down.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            let found = self.tavern.read(|s| {
                let mut found = None;
                while self.next < s.messages.len() {
                    let message = &s.messages[self.next];
                    self.next += 1;
                    if self.filter.matches(message) {
                        found = Some(message.clone());
                        break;
                    }
                }
                found
            });
            if found.is_some() {
                return found;
            }
            match self.events.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
