//! Branches: forking a log at an entry, editing an intent into a new branch, and listing
//! branches.
//!
//! A fork never copies the shared prefix. The new file holds only a header naming the parent and
//! the byte offset just after the fork entry's line; readers follow that pointer. Forking is
//! therefore a binary search plus one small durable file creation, whatever the log's length.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chain::{self, Chain};
use super::codec;
use super::reader::{locate_entry, span_of, spans, LogReader};
use super::{EntryDraft, LogError, Millis, Schema, Seq, Status};

/// Where a branch forks from its parent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fork {
    /// The branch whose file holds the fork point.
    ///
    /// When a branch is created from `b` at an entry that `b` itself inherited from its own
    /// parent, this names the branch whose file actually holds that entry's line: the offset
    /// below must point into the file that holds it, and both describe the same prefix.
    pub from: String,
    /// The last entry of the shared prefix (0 for an empty prefix).
    pub at_seq: Seq,
    /// The byte offset in `from`'s file just after the line of entry `at_seq` (just after the
    /// header for `at_seq` 0).
    pub at_offset: u64,
}

/// A branch as described by its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchInfo {
    /// The branch name.
    pub name: String,
    /// Where it forks from, or `None` for a root branch.
    pub fork: Option<Fork>,
    /// When it was created (Unix milliseconds).
    pub created: Millis,
    /// Its file.
    pub path: PathBuf,
}

/// Works out the fork for "the log of `chain` as of entry `at`".
fn fork_point(chain: &Chain, at: Seq) -> Result<Fork, LogError> {
    if at == 0 {
        return Ok(Fork {
            from: chain.info.name.clone(),
            at_seq: 0,
            at_offset: chain.own.start,
        });
    }
    let spans = spans(chain, chain.own.end, chain.own.last_seq);
    let index = span_of(&spans, at).ok_or_else(|| {
        LogError::damaged(
            &chain.own.path,
            1,
            format!("no file of the branch's fork chain holds entry {at}"),
        )
    })?;
    let span = &spans[index];
    let (_, line_end) = locate_entry(span, at)?;
    Ok(Fork {
        from: span.seg.branch.clone(),
        at_seq: at,
        at_offset: line_end,
    })
}

/// Fails early with `BranchExists` so that no work is done for a name that is taken (the atomic
/// link at the end still decides races).
fn check_free(dir: &Path, name: &str) -> Result<(), LogError> {
    chain::validate_name(name)?;
    let path = chain::branch_path(dir, name);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Err(LogError::BranchExists {
            name: name.to_string(),
            path,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(path, e)),
    }
}

/// Creates branch `name` forking `from` after entry `at` (0 = empty prefix).
///
/// Only the new file's header is written (durably); the prefix is shared, not copied. The fork
/// point is found by binary search, so this costs O(log n) plus two small syncs. Fork only at
/// entries that are already durable: a snapshot of `from` may include bytes its writer has
/// written but not yet synced.
pub fn create_branch(dir: &Path, name: &str, from: &str, at: Seq) -> Result<BranchInfo, LogError> {
    check_free(dir, name)?;
    let chain = Chain::resolve(dir, from, None)?;
    let last = chain.own.last_seq;
    if at > last {
        return Err(LogError::SeqOutOfRange {
            path: chain.own.path.clone(),
            seq: at,
            last,
        });
    }
    let fork = fork_point(&chain, at)?;
    let header = chain::new_header(chain.header_v, name, Some(fork));
    let contents = codec::encode_header(&header).map_err(|reason| LogError::Encode {
        path: chain::branch_path(dir, name),
        reason,
    })?;
    let path = chain::create_file_atomically(dir, name, &contents)?;
    Ok(BranchInfo {
        name: header.branch,
        fork: header.fork,
        created: header.created,
        path,
    })
}

/// "Edit the intent at `at` into a new branch": forks `name` from `from` after entry `at - 1`
/// and records entry `at` with `intent`, the original entry's actor and cause, status
/// `Pending` and no outcomes.
///
/// The header and the new entry are written as one file that appears atomically and durably, so
/// a crash leaves either no branch or the complete edit.
pub fn edit_into_branch<S: Schema>(
    dir: &Path,
    name: &str,
    from: &str,
    at: Seq,
    intent: S::Intent,
    ts: Millis,
) -> Result<BranchInfo, LogError> {
    check_free(dir, name)?;
    let reader = LogReader::<S>::open(dir, from)?;
    let last = reader.last_seq();
    if at == 0 || at > last {
        return Err(LogError::SeqOutOfRange {
            path: reader.branch().path.clone(),
            seq: at,
            last,
        });
    }
    let original = reader.read_entry_line(at)?;
    let fork = fork_point(reader.chain(), at - 1)?;
    let header = chain::new_header(S::VERSION, name, Some(fork));
    let path = chain::branch_path(dir, name);
    let encode_error = |reason| LogError::Encode {
        path: path.clone(),
        reason,
    };
    let mut contents = codec::encode_header(&header).map_err(encode_error)?;
    let draft = EntryDraft::<S> {
        cause: original.cause,
        origin: original.origin,
        ts,
        actor: original.actor,
        intent,
        status: Status::Pending,
        outcomes: Vec::new(),
        error: None,
    };
    let parent = (at > 1).then(|| at - 1);
    contents.extend(codec::encode_entry::<S>(at, parent, name, &draft).map_err(encode_error)?);
    let path = chain::create_file_atomically(dir, name, &contents)?;
    Ok(BranchInfo {
        name: header.branch,
        fork: header.fork,
        created: header.created,
        path,
    })
}

/// Lists the branches in `dir`, sorted by name, reading only their headers.
///
/// Files that are not named like a branch (`<name>.jsonl`) are ignored, which includes the
/// dot-prefixed temporary files of an interrupted branch creation. A branch file with a damaged
/// header is an error, not an omission.
pub fn list_branches(dir: &Path) -> Result<Vec<BranchInfo>, LogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))?;
    let mut branches = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        if chain::validate_name(name).is_err() {
            continue;
        }
        let file_type = entry
            .file_type()
            .map_err(|e| LogError::io(entry.path(), e))?;
        if file_type.is_dir() {
            continue;
        }
        branches.push(chain::read_header(dir, name, None)?.info());
    }
    branches.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(branches)
}
