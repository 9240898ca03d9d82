//! The command log ("command sourcing").
//!
//! This module owns Tavern's durable record of intent: every intent from a person or an agent is
//! appended here *before* it executes, and the outcomes it produces are recorded as further
//! records while it runs. All other state is a pure fold (replay) over this log, so the log is the
//! only thing that must survive a crash.
//!
//! # Storage
//!
//! A log lives in one directory (normally `.tavern/log/`) with one plain JSON-lines file per
//! branch, `<branch>.jsonl`, readable with `jq`. Every file starts with a header line naming the
//! branch and, for a fork, the parent branch and the byte offset at which it was forked; the
//! remaining lines are records. A record is either an [`Entry`] (the first line of an intent,
//! recognised by its `intent` key) or an [`Update`] (a later status change and/or more outcomes
//! for an earlier entry). Every line carries the schema version `"v"`; older versions are
//! rewritten on read through [`Schema::upcast`].
//!
//! # Pieces
//!
//! * [`Log`] is the single writer of one branch file. It assigns sequence numbers synchronously
//!   (so callers can enqueue under their own mutex) and commits in groups on a dedicated thread:
//!   one `write` and one `fdatasync` per batch, after which the batch's [`Ticket`]s resolve.
//! * [`LogReader`] reads a branch (following its fork chain) with binary search, backward tails
//!   and a fast streaming [`LogReader::replay`].
//! * [`create_branch`], [`edit_into_branch`] and [`list_branches`] manage branches; a fork writes
//!   only a header, never a copy of the shared prefix.
//!
//! Damage is never skipped: a line that cannot be read is reported as [`LogError::Damaged`] with
//! the file and 1-based line number, except for a torn last line, which [`Log::open`] truncates
//! because it can only be an append that never completed.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod branch;
mod chain;
mod codec;
mod error;
mod lines;
mod reader;
mod replay;
mod writer;

#[cfg(test)]
mod tests;

pub use branch::{create_branch, edit_into_branch, list_branches, BranchInfo, Fork};
pub use error::LogError;
pub use reader::LogReader;
pub use replay::ReplayStats;
pub use writer::{Log, LogOptions, LogStats, OpenReport, Ticket};

/// A log sequence number. Entries are numbered from 1; 0 means "before the first entry".
pub type Seq = u64;

/// A wall-clock timestamp in milliseconds since the Unix epoch.
pub type Millis = u64;

/// The payload types of one log and how to read records written by older versions of them.
///
/// The log itself is generic: it never looks inside intents, outcomes or actors, it only stores
/// them as JSON. The keys `v`, `seq` and `intent` (its presence) belong to the log format rather
/// than to the schema, so an upcaster must keep them where they are.
pub trait Schema: Send + Sync + 'static {
    /// What a person or agent asked for.
    type Intent: Serialize
        + DeserializeOwned
        + Clone
        + fmt::Debug
        + PartialEq
        + Send
        + Sync
        + 'static;
    /// One effect an intent produced while it ran.
    type Outcome: Serialize
        + DeserializeOwned
        + Clone
        + fmt::Debug
        + PartialEq
        + Send
        + Sync
        + 'static;
    /// Who asked.
    type Actor: Serialize
        + DeserializeOwned
        + Clone
        + fmt::Debug
        + PartialEq
        + Send
        + Sync
        + 'static;

    /// The version written into every record (`"v"`).
    const VERSION: u32;

    /// Rewrites one raw record written by an older schema version into the current form.
    ///
    /// It is called once per record with `from_version < VERSION`; the result is parsed as a
    /// current record (its `"v"` is not checked again). The default has no upcasters, so an
    /// older record is reported as damaged with the returned message.
    fn upcast(from_version: u32, record: serde_json::Value) -> Result<serde_json::Value, String> {
        let _ = record;
        Err(format!("no upcaster from version {from_version}"))
    }
}

/// Where an intent is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Recorded but not started.
    Pending,
    /// Running; outcomes may still be recorded.
    Executing,
    /// Finished successfully.
    Executed,
    /// Finished with an error.
    Failed,
    /// Withdrawn before it finished.
    Cancelled,
}

impl Status {
    /// Whether the intent has finished, successfully or not.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Executed | Status::Failed | Status::Cancelled)
    }
}

/// What caused an entry: an earlier entry and, optionally, which of its calls.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cause {
    /// The causing entry.
    pub seq: Seq,
    /// The index of the call within the causing entry, when it made several.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub call: Option<u32>,
}

/// The first record of an intent, or (from the readers) an intent merged with its updates.
pub struct Entry<S: Schema> {
    /// Its sequence number, 1-based and contiguous along a branch.
    pub seq: Seq,
    /// The branch whose file holds this entry's line.
    pub branch: String,
    /// The previous entry (`None` for seq 1).
    pub parent: Option<Seq>,
    /// The entry that caused this one, if any.
    pub cause: Option<Cause>,
    /// Where the intent came from outside Tavern (a Discord message, reaction or interaction id), so
    /// a redelivery of the same request is recognised and not recorded twice.
    pub origin: Option<String>,
    /// When it was recorded.
    pub ts: Millis,
    /// Who asked.
    pub actor: S::Actor,
    /// What was asked.
    pub intent: S::Intent,
    /// Its status (the latest one, when merged).
    pub status: Status,
    /// Its outcomes, in the order they were recorded.
    pub outcomes: Vec<S::Outcome>,
    /// Its error (the latest record's, when merged).
    pub error: Option<String>,
}

/// A later record for an entry: a status change and/or more outcomes recorded while it runs.
pub struct Update<S: Schema> {
    /// The entry this update belongs to.
    pub seq: Seq,
    /// When it was recorded.
    pub ts: Millis,
    /// The entry's status from now on.
    pub status: Status,
    /// Outcomes to append to the entry's outcomes.
    pub outcomes: Vec<S::Outcome>,
    /// The entry's error from now on (`None` clears an earlier one).
    pub error: Option<String>,
}

/// One record of the log, in file order.
pub enum Record<S: Schema> {
    /// The first record of an intent.
    Entry(Entry<S>),
    /// A later record for an earlier entry.
    Update(Update<S>),
}

/// A new entry before the log has given it a seq, parent and branch.
pub struct EntryDraft<S: Schema> {
    /// The entry that caused this one, if any.
    pub cause: Option<Cause>,
    /// Where the intent came from outside Tavern (a Discord message, reaction or interaction id), so
    /// a redelivery of the same request is recognised and not recorded twice.
    pub origin: Option<String>,
    /// When it was recorded.
    pub ts: Millis,
    /// Who asked.
    pub actor: S::Actor,
    /// What was asked.
    pub intent: S::Intent,
    /// Its initial status.
    pub status: Status,
    /// Outcomes already known when it is recorded.
    pub outcomes: Vec<S::Outcome>,
    /// An error already known when it is recorded.
    pub error: Option<String>,
}

impl<S: Schema> EntryDraft<S> {
    /// The entry this draft becomes once the log gives it `seq` on `branch` (its parent is the entry
    /// before it, as [`Log::enqueue_entry`] records).
    pub fn into_entry(self, seq: Seq, branch: &str) -> Entry<S> {
        Entry {
            seq,
            branch: branch.to_string(),
            parent: seq.checked_sub(1).filter(|p| *p > 0),
            cause: self.cause,
            origin: self.origin,
            ts: self.ts,
            actor: self.actor,
            intent: self.intent,
            status: self.status,
            outcomes: self.outcomes,
            error: self.error,
        }
    }
}

impl<S: Schema> Entry<S> {
    /// Folds a later update into this entry: the status and error become the update's, and
    /// its outcomes are appended.
    pub fn apply(&mut self, update: Update<S>) {
        self.status = update.status;
        self.outcomes.extend(update.outcomes);
        self.error = update.error;
    }
}

// The impls below are written by hand because a derive would demand `S: Clone + Debug +
// PartialEq`, and schema marker types should not have to implement those.

impl<S: Schema> Clone for Entry<S> {
    fn clone(&self) -> Self {
        Entry {
            seq: self.seq,
            branch: self.branch.clone(),
            parent: self.parent,
            cause: self.cause,
            origin: self.origin.clone(),
            ts: self.ts,
            actor: self.actor.clone(),
            intent: self.intent.clone(),
            status: self.status,
            outcomes: self.outcomes.clone(),
            error: self.error.clone(),
        }
    }
}

impl<S: Schema> fmt::Debug for Entry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("seq", &self.seq)
            .field("branch", &self.branch)
            .field("parent", &self.parent)
            .field("cause", &self.cause)
            .field("origin", &self.origin)
            .field("ts", &self.ts)
            .field("actor", &self.actor)
            .field("intent", &self.intent)
            .field("status", &self.status)
            .field("outcomes", &self.outcomes)
            .field("error", &self.error)
            .finish()
    }
}

impl<S: Schema> PartialEq for Entry<S> {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
            && self.branch == other.branch
            && self.parent == other.parent
            && self.cause == other.cause
            && self.origin == other.origin
            && self.ts == other.ts
            && self.actor == other.actor
            && self.intent == other.intent
            && self.status == other.status
            && self.outcomes == other.outcomes
            && self.error == other.error
    }
}

impl<S: Schema> Clone for Update<S> {
    fn clone(&self) -> Self {
        Update {
            seq: self.seq,
            ts: self.ts,
            status: self.status,
            outcomes: self.outcomes.clone(),
            error: self.error.clone(),
        }
    }
}

impl<S: Schema> fmt::Debug for Update<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Update")
            .field("seq", &self.seq)
            .field("ts", &self.ts)
            .field("status", &self.status)
            .field("outcomes", &self.outcomes)
            .field("error", &self.error)
            .finish()
    }
}

impl<S: Schema> PartialEq for Update<S> {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
            && self.ts == other.ts
            && self.status == other.status
            && self.outcomes == other.outcomes
            && self.error == other.error
    }
}

impl<S: Schema> Clone for Record<S> {
    fn clone(&self) -> Self {
        match self {
            Record::Entry(entry) => Record::Entry(entry.clone()),
            Record::Update(update) => Record::Update(update.clone()),
        }
    }
}

impl<S: Schema> fmt::Debug for Record<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::Entry(entry) => f.debug_tuple("Entry").field(entry).finish(),
            Record::Update(update) => f.debug_tuple("Update").field(update).finish(),
        }
    }
}

impl<S: Schema> PartialEq for Record<S> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Record::Entry(a), Record::Entry(b)) => a == b,
            (Record::Update(a), Record::Update(b)) => a == b,
            _ => false,
        }
    }
}

impl<S: Schema> Clone for EntryDraft<S> {
    fn clone(&self) -> Self {
        EntryDraft {
            cause: self.cause,
            origin: self.origin.clone(),
            ts: self.ts,
            actor: self.actor.clone(),
            intent: self.intent.clone(),
            status: self.status,
            outcomes: self.outcomes.clone(),
            error: self.error.clone(),
        }
    }
}

impl<S: Schema> fmt::Debug for EntryDraft<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryDraft")
            .field("cause", &self.cause)
            .field("origin", &self.origin)
            .field("ts", &self.ts)
            .field("actor", &self.actor)
            .field("intent", &self.intent)
            .field("status", &self.status)
            .field("outcomes", &self.outcomes)
            .field("error", &self.error)
            .finish()
    }
}

impl<S: Schema> PartialEq for EntryDraft<S> {
    fn eq(&self, other: &Self) -> bool {
        self.cause == other.cause
            && self.origin == other.origin
            && self.ts == other.ts
            && self.actor == other.actor
            && self.intent == other.intent
            && self.status == other.status
            && self.outcomes == other.outcomes
            && self.error == other.error
    }
}
