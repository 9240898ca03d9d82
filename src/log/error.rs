//! The one error type of the command log.
//!
//! Every message names the file (or directory) involved and says what to do about it, because
//! these errors end up in front of a person who has to repair a log by hand.

use std::path::PathBuf;

use super::Seq;

/// Everything that can go wrong reading or writing the command log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The operating system refused a file operation.
    #[error(
        "I/O error on {}: {source}; check that the path exists, is accessible and the disk is not full",
        path.display()
    )]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A line cannot be read. Tavern never skips one, because every later state depends on it.
    #[error(
        "{} line {line}: {reason}; the log is damaged here. Fix or remove that line (a copy is \
         safest); Tavern never skips a damaged line.",
        path.display()
    )]
    Damaged {
        /// The damaged file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// What is wrong with the line.
        reason: String,
    },

    /// A record was written by a newer schema than this build understands.
    #[error(
        "{} line {line}: record has schema version {version}, but this build of Tavern supports \
         versions up to {supported}; upgrade Tavern to read this log",
        path.display()
    )]
    NewerSchema {
        /// The file holding the record.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// The record's version.
        version: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// An optimistic append found that someone else appended first.
    #[error(
        "{}: expected the last entry to be {expected} but it is {actual}; another intent was \
         recorded first. Re-read the log and decide again",
        path.display()
    )]
    Conflict {
        /// The branch file.
        path: PathBuf,
        /// The last seq the caller based its decision on.
        expected: Seq,
        /// The actual last seq.
        actual: Seq,
    },

    /// No file exists for the branch.
    #[error(
        "no branch {name:?} in {}: {}/{name}.jsonl does not exist; list the branches with \
         list_branches or create this one with create_branch",
        dir.display(),
        dir.display()
    )]
    UnknownBranch {
        /// The requested branch.
        name: String,
        /// The log directory searched.
        dir: PathBuf,
    },

    /// A branch of that name already exists.
    #[error(
        "branch {name:?} already exists ({}); pick another name or remove that file first",
        path.display()
    )]
    BranchExists {
        /// The requested branch.
        name: String,
        /// The existing file.
        path: PathBuf,
    },

    /// A branch name that cannot be used as a file name safely.
    #[error("invalid branch name {name:?}: {reason}")]
    InvalidBranchName {
        /// The rejected name.
        name: String,
        /// Why, and what is allowed.
        reason: String,
    },

    /// A seq that does not exist (yet) on the branch.
    #[error(
        "{}: entry {seq} does not exist, the last entry is {last}; use a seq between 1 and {last}",
        path.display()
    )]
    SeqOutOfRange {
        /// The branch file.
        path: PathBuf,
        /// The requested seq.
        seq: Seq,
        /// The branch's last seq.
        last: Seq,
    },

    /// The writer could not make records durable; the log accepts nothing more.
    #[error(
        "writing {} failed: {message}; this log handle is poisoned and accepts no more records. \
         Check the disk, then reopen the log (reopening truncates a torn last line)",
        path.display()
    )]
    WriterFailed {
        /// The branch file.
        path: PathBuf,
        /// What failed.
        message: String,
    },

    /// A payload could not be encoded as JSON; nothing was written.
    #[error(
        "cannot encode a record for {}: {reason}; the schema's payload types must serialize to \
         JSON objects with string keys",
        path.display()
    )]
    Encode {
        /// The branch file.
        path: PathBuf,
        /// What serde_json reported.
        reason: String,
    },

    /// Another writer in this process already has the branch open.
    #[error(
        "{} is already open for writing by another Log in this process; share that Log (it is \
         Clone) instead of opening the branch twice",
        path.display()
    )]
    Busy {
        /// The branch file.
        path: PathBuf,
    },

    /// Another process holds the branch file's write lock.
    #[error(
        "{} is being written by another process (another Tavern on this project?); stop it \
         first, because two writers would give out the same entry numbers",
        path.display()
    )]
    LockedByOther {
        /// The branch file.
        path: PathBuf,
    },
}

impl LogError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a `Damaged` error.
    pub(crate) fn damaged(path: impl Into<PathBuf>, line: u64, reason: impl Into<String>) -> Self {
        LogError::Damaged {
            path: path.into(),
            line,
            reason: reason.into(),
        }
    }
}
