//! The directory layout: branch names and files, headers, atomic file creation, and resolving a
//! branch into the chain of file segments that make up its visible records.
//!
//! A branch's visible records are its ancestors' records up to each fork point, followed by its
//! own records. Each piece is a [`Segment`]: a byte range of one file together with the range of
//! entry seqs that can appear in it. Resolving a chain reads only headers plus a short backward
//! scan for the last entry, so it costs the same for a tiny log and a huge one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::branch::{BranchInfo, Fork};
use super::codec::{self, Header};
use super::lines::{self, read_at};
use super::{LogError, Millis, Seq};

/// The longest allowed branch name.
pub(crate) const MAX_NAME_LEN: usize = 64;
/// How deep fork chains may go; a deeper chain is almost certainly a loop made by hand.
const MAX_CHAIN_DEPTH: usize = 256;
/// The longest header line accepted; real headers are around 100 bytes.
const MAX_HEADER_LEN: usize = 64 << 10;

/// Checks a branch name: it becomes a file name, so it is restricted to a safe alphabet.
pub(crate) fn validate_name(name: &str) -> Result<(), LogError> {
    let allowed = "use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'";
    let reason = if name.is_empty() {
        Some(format!("the name is empty; {allowed}"))
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("the name is {} bytes long; {allowed}", name.len()))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            .map(|c| format!("the character {c:?} is not allowed; {allowed}"))
    };
    match reason {
        Some(reason) => Err(LogError::InvalidBranchName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The file holding a branch.
pub(crate) fn branch_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.jsonl"))
}

/// The current time in Unix milliseconds (0 if the clock is before 1970, which only a broken
/// clock reports; the value is informational).
pub(crate) fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A branch file's header, as read from disk.
pub(crate) struct HeaderRead {
    pub header: Header,
    pub path: PathBuf,
    pub file: File,
    /// The offset just after the header line, where records start.
    pub end: u64,
    /// The file length when the header was read.
    pub len: u64,
}

impl HeaderRead {
    pub(crate) fn info(&self) -> BranchInfo {
        BranchInfo {
            name: self.header.branch.clone(),
            fork: self.header.fork.clone(),
            created: self.header.created,
            path: self.path.clone(),
        }
    }
}

/// Reads and checks the header of `name`. With `max_version`, a header from a newer schema is
/// reported as such rather than as damage.
pub(crate) fn read_header(
    dir: &Path,
    name: &str,
    max_version: Option<u32>,
) -> Result<HeaderRead, LogError> {
    let path = branch_path(dir, name);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LogError::UnknownBranch {
                name: name.to_string(),
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(LogError::io(path, e)),
    };
    let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
    let mut buf = Vec::new();
    let line_len = loop {
        if let Some(i) = lines::find_newline(&buf) {
            break i;
        }
        if buf.len() as u64 >= len || buf.len() >= MAX_HEADER_LEN {
            return Err(LogError::damaged(
                &path,
                1,
                "the header line is missing or incomplete",
            ));
        }
        let old = buf.len();
        buf.resize(old + lines::PROBE_CHUNK, 0);
        let n = read_at(&file, &mut buf[old..], old as u64).map_err(|e| LogError::io(&path, e))?;
        buf.truncate(old + n);
        if n == 0 {
            return Err(LogError::damaged(
                &path,
                1,
                "the header line is missing or incomplete",
            ));
        }
    };
    let line = &buf[..line_len];
    let header: Header = match serde_json::from_slice(line) {
        Ok(header) => header,
        Err(e) => {
            let newer = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("v").and_then(serde_json::Value::as_u64))
                .and_then(|v| u32::try_from(v).ok())
                .zip(max_version)
                .filter(|(version, supported)| version > supported);
            return Err(match newer {
                Some((version, supported)) => LogError::NewerSchema {
                    path,
                    line: 1,
                    version,
                    supported,
                },
                None => LogError::damaged(
                    path,
                    1,
                    format!("the header line is not valid: {}", codec::json_reason(&e)),
                ),
            });
        }
    };
    if let Some(supported) = max_version {
        if header.v > supported {
            return Err(LogError::NewerSchema {
                path,
                line: 1,
                version: header.v,
                supported,
            });
        }
    }
    if header.branch != name {
        return Err(LogError::damaged(
            path,
            1,
            format!(
                "the header names branch {:?} but the file is named for {name:?}",
                header.branch
            ),
        ));
    }
    Ok(HeaderRead {
        header,
        path,
        file,
        end: line_len as u64 + 1,
        len,
    })
}

/// A byte range of one branch file that is part of a chain.
#[derive(Debug)]
pub(crate) struct Segment {
    pub branch: String,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Where records start (just after the header).
    pub start: u64,
    /// Where the visible records end (a line boundary).
    pub end: u64,
    /// The first entry seq that can live in this segment.
    pub first_seq: Seq,
    /// The last entry seq visible in this segment (`first_seq - 1` when it holds none).
    pub last_seq: Seq,
}

/// The bound of a chain's own segment: fixed for snapshot readers, or following the writer's
/// durable length and seq.
#[derive(Clone, Debug)]
pub(crate) enum Bound {
    Fixed { end: u64, last_seq: Seq },
    Durable(Arc<Durable>),
}

/// What the writer has made durable so far.
///
/// The writer stores `len` before `seq`, and readers load `seq` before `len`, so a reader
/// never sees a seq whose line lies beyond the length it reads.
#[derive(Debug)]
pub(crate) struct Durable {
    pub len: AtomicU64,
    pub seq: AtomicU64,
}

impl Bound {
    /// Returns `(end, last_seq)` consistently (see [`Durable`]).
    pub(crate) fn load(&self) -> (u64, Seq) {
        match self {
            Bound::Fixed { end, last_seq } => (*end, *last_seq),
            Bound::Durable(durable) => {
                let seq = durable.seq.load(Ordering::Acquire);
                let len = durable.len.load(Ordering::Acquire);
                (len, seq)
            }
        }
    }
}

/// A resolved branch: its header plus every segment of its visible records, root first.
#[derive(Debug)]
pub(crate) struct Chain {
    pub info: BranchInfo,
    /// The schema version in the branch's header.
    pub header_v: u32,
    /// Ancestor segments, root first; their ends are fixed fork points.
    pub ancestors: Vec<Segment>,
    /// The branch's own file; `end` and `last_seq` are a snapshot from resolve time.
    pub own: Segment,
}

impl Chain {
    /// Resolves `name` in `dir`, reading headers and scanning back for the last entry.
    pub(crate) fn resolve(
        dir: &Path,
        name: &str,
        max_version: Option<u32>,
    ) -> Result<Chain, LogError> {
        validate_name(name)?;
        let read = read_header(dir, name, max_version)?;
        let info = read.info();
        let mut ancestors = Vec::new();
        resolve_ancestors(dir, &read, max_version, &mut ancestors, 0)?;
        let file = Arc::new(read.file);
        // A snapshot reader stops at the last complete line: bytes after it belong to an
        // append in progress (or a torn one the writer will truncate), not to the log.
        let end =
            lines::last_line_boundary(&file, &read.path, read.end, read.len)?.unwrap_or(read.end);
        let first_seq = read.header.fork.as_ref().map_or(1, |f| f.at_seq + 1);
        let last_seq = last_entry_seq(&file, &read.path, read.end, end)?.unwrap_or(first_seq - 1);
        Ok(Chain {
            info,
            header_v: read.header.v,
            ancestors,
            own: Segment {
                branch: name.to_string(),
                path: read.path,
                file,
                start: read.end,
                end,
                first_seq,
                last_seq,
            },
        })
    }
}

/// Finds the seq of the last entry line in `[start, end)` by scanning backward.
pub(crate) fn last_entry_seq(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
) -> Result<Option<Seq>, LogError> {
    lines::scan_lines_backward(file, path, start, end, |offset, line| {
        match codec::probe(line) {
            Ok(kind) if kind.is_entry => Ok(ControlFlow::Break(kind.seq)),
            Ok(_) => Ok(ControlFlow::Continue(())),
            Err(reason) => Err(lines::damaged_at(file, path, offset, reason)),
        }
    })
}

/// Appends the ancestor segments of `child` to `out`, root first.
fn resolve_ancestors(
    dir: &Path,
    child: &HeaderRead,
    max_version: Option<u32>,
    out: &mut Vec<Segment>,
    depth: usize,
) -> Result<(), LogError> {
    let Some(fork) = &child.header.fork else {
        return Ok(());
    };
    // Seq 0 is the empty prefix: nothing of the parent (or its ancestors) is visible.
    if fork.at_seq == 0 {
        return Ok(());
    }
    let bad_header = |reason: String| LogError::damaged(&child.path, 1, reason);
    if depth >= MAX_CHAIN_DEPTH {
        return Err(bad_header(format!(
            "the fork chain is deeper than {MAX_CHAIN_DEPTH} branches or loops back on itself"
        )));
    }
    validate_name(&fork.from)
        .map_err(|e| bad_header(format!("the fork names an invalid parent: {e}")))?;
    let parent = match read_header(dir, &fork.from, max_version) {
        Err(LogError::UnknownBranch { .. }) => {
            return Err(bad_header(format!(
                "the branch forks from {:?}, but {} does not exist",
                fork.from,
                branch_path(dir, &fork.from).display()
            )))
        }
        other => other?,
    };
    if fork.at_offset < parent.end || fork.at_offset > parent.len {
        return Err(bad_header(format!(
            "the fork offset {} lies outside the records of {} ({}..={})",
            fork.at_offset,
            parent.path.display(),
            parent.end,
            parent.len
        )));
    }
    if fork.at_offset > parent.end {
        let mut last = [0u8; 1];
        lines::read_exact_at(&parent.file, &mut last, fork.at_offset - 1)
            .map_err(|e| LogError::io(&parent.path, e))?;
        if last[0] != b'\n' {
            return Err(bad_header(format!(
                "the fork offset {} is not at a line boundary of {}",
                fork.at_offset,
                parent.path.display()
            )));
        }
    }
    let parent_first = parent.header.fork.as_ref().map_or(1, |f| f.at_seq + 1);
    if fork.at_seq + 1 < parent_first {
        return Err(bad_header(format!(
            "the fork point {} lies before {}'s own fork point {}",
            fork.at_seq,
            fork.from,
            parent_first - 1
        )));
    }
    resolve_ancestors(dir, &parent, max_version, out, depth + 1)?;
    out.push(Segment {
        branch: fork.from.clone(),
        path: parent.path,
        file: Arc::new(parent.file),
        start: parent.end,
        end: fork.at_offset,
        first_seq: parent_first,
        last_seq: fork.at_seq,
    });
    Ok(())
}

/// Distinguishes temporary files of concurrent creators within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates `<dir>/<name>.jsonl` holding exactly `contents`, durably and atomically.
///
/// The contents are written to a temporary file, synced, then hard-linked into place: the link
/// fails if the branch already exists (so two creators cannot both win), and a crash leaves
/// either no branch or the complete file, never a header cut in half.
pub(crate) fn create_file_atomically(
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<PathBuf, LogError> {
    let path = branch_path(dir, name);
    let temp = dir.join(format!(
        ".{name}.jsonl.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_and_link(&temp, &path, contents);
    // The temporary name is only scaffolding; failing to remove it leaves a harmless dot-file
    // that list_branches ignores, so the result of the link is what matters.
    let _ = std::fs::remove_file(&temp);
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(LogError::BranchExists {
                name: name.to_string(),
                path,
            })
        }
        Err(e) => return Err(LogError::io(&path, e)),
    }
    sync_dir(dir)?;
    Ok(path)
}

fn write_and_link(temp: &Path, path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(temp)?;
    file.write_all(contents)?;
    // fdatasync also persists the file size, which is all a new file needs to be readable.
    file.sync_data()?;
    drop(file);
    std::fs::hard_link(temp, path)
}

/// Makes a directory entry durable (a new file survives a crash only once its directory is
/// synced). Windows has no equivalent operation and does not need one.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| LogError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// Builds a header for a new branch.
pub(crate) fn new_header(v: u32, name: &str, fork: Option<Fork>) -> Header {
    Header {
        v,
        branch: name.to_string(),
        fork,
        created: now_millis(),
    }
}
