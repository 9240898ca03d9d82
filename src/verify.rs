//! Running a shell assertion against a project directory, bounded in time, memory and side effects.
//!
//! This module owns the lifecycle of one verification command: it spawns `sh -c <command>` in its own
//! process group, captures a bounded tail of stdout and stderr, and enforces a deadline and a
//! cancellation token by killing the whole group, so that background grandchildren cannot outlive the
//! check or keep its pipes open. The result is a [`CheckReport`] that callers can judge with
//! [`CheckReport::passed`].

use std::collections::VecDeque;
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

#[cfg(test)]
mod tests;

/// How long to keep draining output pipes, and to wait for a killed shell, before giving up.
///
/// A grandchild that escaped the process group (for example via `setsid`) can inherit the pipes and
/// hold them open indefinitely; without this bound, reading to end-of-file would hang the check.
const GRACE: Duration = Duration::from_secs(2);

/// Size of each read from a pipe; small enough to keep memory flat, large enough to keep syscalls few.
const READ_CHUNK: usize = 8 * 1024;

/// What to run, where, and within which limits.
#[derive(Debug, Clone, Copy)]
pub struct AssertionSpec<'a> {
    /// Shell source passed to `sh -c`.
    pub command: &'a str,
    /// Working directory of the command; it must already exist.
    pub dir: &'a Path,
    /// Wall-clock budget after which the whole process group is killed.
    pub timeout: Duration,
    /// Maximum number of output bytes kept in [`CheckReport::output_tail`], e.g. 4096.
    pub output_limit: usize,
}

/// Outcome of one assertion run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Exit code of the shell, when it exited normally.
    pub exit_code: Option<i32>,
    /// Signal that terminated the shell, when it was killed.
    pub signal: Option<i32>,
    /// True when the deadline elapsed and the process group was killed.
    pub timed_out: bool,
    /// True when the cancellation token fired and the process group was killed.
    pub cancelled: bool,
    /// The last `output_limit` bytes of stdout followed by stderr, as lossy UTF-8 starting on a
    /// character boundary.
    pub output_tail: String,
    /// Wall-clock time from spawn to the end of output collection.
    pub duration: Duration,
}

impl CheckReport {
    /// True when the command exited with code 0 and was neither timed out nor cancelled.
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }
}

/// Failures that prevent an assertion from being run or observed at all.
///
/// A command that runs and fails is not an error; it is a [`CheckReport`] that did not pass.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The working directory is missing or unreadable.
    #[error(
        "project directory {} does not exist or cannot be accessed ({source}); \
         create it or fix the project path before running assertions",
        dir.display()
    )]
    DirNotFound {
        /// The directory that was requested.
        dir: PathBuf,
        /// Why it could not be inspected.
        source: io::Error,
    },
    /// The working directory path names something other than a directory.
    #[error(
        "project path {} is not a directory; point the project at its root directory",
        dir.display()
    )]
    NotADirectory {
        /// The path that was requested.
        dir: PathBuf,
    },
    /// The shell could not be started.
    #[error(
        "could not spawn `sh` to run the assertion ({source}); \
         make sure a POSIX shell is installed as `sh` on PATH and the process may create children"
    )]
    Spawn {
        /// The error reported by the operating system.
        source: io::Error,
    },
    /// Waiting for the shell to exit failed, so its status is unknown.
    #[error(
        "could not wait for the assertion shell to exit ({source}); \
         check that nothing else in this process reaps child processes"
    )]
    Wait {
        /// The error reported by the operating system.
        source: io::Error,
    },
}

/// How the wait for the shell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited,
    TimedOut,
    Cancelled,
}

/// Runs `spec.command` with `sh -c` in `spec.dir` and reports how it ended.
///
/// The shell runs in a new process group with stdin closed. On timeout or cancellation the whole group
/// receives `SIGKILL`. Output is read concurrently from both pipes and only the last
/// `spec.output_limit` bytes of each are kept, so memory stays bounded however much the command prints.
///
/// # Errors
///
/// Returns [`VerifyError`] when the directory is unusable, `sh` cannot be spawned, or the shell's exit
/// status cannot be collected. A failing, timed-out or cancelled command is reported in the
/// [`CheckReport`] instead.
pub async fn run_assertion(
    spec: AssertionSpec<'_>,
    cancel: &CancellationToken,
) -> Result<CheckReport, VerifyError> {
    check_dir(spec.dir)?;

    let started = Instant::now();
    // Spawning work that has already been abandoned would only produce side effects nobody wants.
    if cancel.is_cancelled() {
        return Ok(CheckReport {
            exit_code: None,
            signal: None,
            timed_out: false,
            cancelled: true,
            output_tail: String::new(),
            duration: started.elapsed(),
        });
    }

    let mut child = Command::new("sh")
        .arg("-c")
        .arg(spec.command)
        .current_dir(spec.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A fresh group lets one signal reach every descendant that did not deliberately leave it.
        .process_group(0)
        // If this future is dropped mid-run, at least the shell itself must not be left behind.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| VerifyError::Spawn { source })?;

    // With `process_group(0)` the group id equals the shell's pid. It is read before any wait, while
    // the id is guaranteed to be known.
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let mut out_tail = Tail::new(spec.output_limit);
    let mut err_tail = Tail::new(spec.output_limit);

    let (status, ending) = {
        let reader = async {
            tokio::join!(
                pump(stdout, &mut out_tail, "stdout"),
                pump(stderr, &mut err_tail, "stderr")
            );
        };
        tokio::pin!(reader);
        let deadline = tokio::time::sleep(spec.timeout);
        tokio::pin!(deadline);
        let mut output_done = false;

        // `biased` makes simultaneous events resolve the same way every time: a shell that has
        // already exited is reported as exited even if the deadline or cancellation fired alongside.
        let (status, ending) = loop {
            tokio::select! {
                biased;
                waited = child.wait() => {
                    let status = waited.map_err(|source| VerifyError::Wait { source })?;
                    break (Some(status), Ending::Exited);
                }
                () = &mut reader, if !output_done => output_done = true,
                () = &mut deadline => break (None, Ending::TimedOut),
                () = cancel.cancelled() => break (None, Ending::Cancelled),
            }
        };

        let status = match ending {
            Ending::Exited => status,
            Ending::TimedOut | Ending::Cancelled => {
                kill_group(pgid, &mut child);
                wait_after_kill(&mut child).await?
            }
        };

        if !output_done {
            // The drain is bounded because a grandchild outside the group may still hold the pipes.
            let drained = tokio::time::timeout(GRACE, &mut reader).await.is_ok();
            if !drained && ending == Ending::Exited {
                // The shell exited but something it started still holds the pipes, which in practice
                // means background jobs left in its group. The kernel does not reuse a group id while
                // the group has members, so the kill reaches those stragglers and lets the pipes close
                // instead of leaking them past the check.
                tracing::warn!(
                    command = spec.command,
                    "assertion left background processes holding its output; killing its process group"
                );
                kill_group(pgid, &mut child);
                if tokio::time::timeout(GRACE, &mut reader).await.is_err() {
                    tracing::warn!(
                        command = spec.command,
                        "assertion output still open after killing its process group; output may be incomplete"
                    );
                }
            } else if !drained {
                tracing::warn!(
                    command = spec.command,
                    "a process outside the killed group holds the assertion's output open; output may be incomplete"
                );
            }
        }
        (status, ending)
    };

    Ok(CheckReport {
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out: ending == Ending::TimedOut,
        cancelled: ending == Ending::Cancelled,
        output_tail: combine_tails(&out_tail, &err_tail, spec.output_limit),
        duration: started.elapsed(),
    })
}

/// Confirms that `dir` exists and is a directory, so the caller gets a precise error instead of a
/// generic spawn failure from `chdir`.
///
/// This uses blocking `std::fs` on purpose: it is a single `stat` call, cheaper than handing the work
/// to a blocking thread, and it keeps Tokio's `fs` feature out of the dependency set.
fn check_dir(dir: &Path) -> Result<(), VerifyError> {
    let metadata = std::fs::metadata(dir).map_err(|source| VerifyError::DirNotFound {
        dir: dir.to_path_buf(),
        source,
    })?;
    if metadata.is_dir() {
        Ok(())
    } else {
        Err(VerifyError::NotADirectory {
            dir: dir.to_path_buf(),
        })
    }
}

/// Sends `SIGKILL` to the assertion's process group, falling back to the shell alone.
///
/// Callers invoke this while the shell is still unreaped, or right after it exited while its pipes are
/// still held by group members; in both cases the kernel keeps the group id reserved for this
/// assertion, so the signal cannot reach an unrelated process.
fn kill_group(pgid: Option<Pid>, child: &mut Child) {
    let result = match pgid {
        Some(pgid) => killpg(pgid, Signal::SIGKILL),
        None => Err(Errno::ESRCH),
    };
    match result {
        Ok(()) => {}
        // Nobody left in the group: everything already exited, which is what the kill wanted.
        Err(Errno::ESRCH) if pgid.is_some() => {}
        Err(errno) => {
            tracing::warn!(%errno, "could not kill assertion process group; killing the shell only");
            // The shell may already have been reaped, in which case there is nothing left to kill.
            if let Err(error) = child.start_kill() {
                tracing::debug!(%error, "assertion shell was already gone");
            }
        }
    }
}

/// Waits for the killed shell, bounded so that a process stuck in the kernel cannot hang the check.
///
/// If the bound elapses the status is reported as unknown; `kill_on_drop` and Tokio's orphan reaping
/// still collect the process later.
async fn wait_after_kill(child: &mut Child) -> Result<Option<ExitStatus>, VerifyError> {
    match tokio::time::timeout(GRACE, child.wait()).await {
        Ok(Ok(status)) => Ok(Some(status)),
        Ok(Err(source)) => Err(VerifyError::Wait { source }),
        Err(_) => {
            tracing::warn!("assertion shell did not exit after SIGKILL; its status is unknown");
            Ok(None)
        }
    }
}

/// Reads `source` to end-of-file into `tail`.
///
/// Read errors end the stream with a warning rather than failing the check, because the exit status is
/// the verdict and the output is only supporting evidence.
async fn pump<R: AsyncRead + Unpin>(source: Option<R>, tail: &mut Tail, stream: &'static str) {
    let Some(mut source) = source else {
        return;
    };
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        match source.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => tail.push(&chunk[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::warn!(%error, stream, "failed to read assertion output; keeping what was read");
                return;
            }
        }
    }
}

/// The last `limit` bytes of a stream, with a note of whether anything earlier was discarded.
#[derive(Debug)]
struct Tail {
    bytes: VecDeque<u8>,
    limit: usize,
    truncated: bool,
}

impl Tail {
    fn new(limit: usize) -> Self {
        Self {
            // The buffer grows on demand, so a huge limit costs nothing for a quiet command.
            bytes: VecDeque::new(),
            limit,
            truncated: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= self.limit {
            self.truncated |= chunk.len() > self.limit || !self.bytes.is_empty();
            self.bytes.clear();
            self.bytes.extend(&chunk[chunk.len() - self.limit..]);
            return;
        }
        self.bytes.extend(chunk);
        let excess = self.bytes.len().saturating_sub(self.limit);
        if excess > 0 {
            self.bytes.drain(..excess);
            self.truncated = true;
        }
    }

    /// The kept bytes, starting at a UTF-8 character boundary when the front was cut off.
    fn to_bytes(&self) -> Vec<u8> {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        if self.truncated {
            skip_partial_char(&bytes).to_vec()
        } else {
            bytes
        }
    }
}

/// Builds the report's output: stdout's tail then stderr's tail, cut to the last `limit` bytes, decoded
/// lossily and never longer than `limit` bytes.
fn combine_tails(stdout: &Tail, stderr: &Tail, limit: usize) -> String {
    let mut combined = stdout.to_bytes();
    combined.extend(stderr.to_bytes());
    let start = combined.len().saturating_sub(limit);
    let kept = if start > 0 {
        skip_partial_char(&combined[start..])
    } else {
        &combined[..]
    };
    let text = String::from_utf8_lossy(kept);
    // Lossy decoding turns each invalid byte into a three-byte U+FFFD, which can overshoot the limit;
    // trimming from the front again keeps the promise that the tail fits in `limit` bytes.
    let overshoot = text.len().saturating_sub(limit);
    if overshoot == 0 {
        return text.into_owned();
    }
    let boundary = (overshoot..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[boundary..].to_owned()
}

/// Drops the continuation bytes of a character whose first bytes were cut away.
///
/// A UTF-8 character has at most three continuation bytes, so at most three bytes are skipped; anything
/// longer is genuinely invalid output and is left for lossy decoding to mark.
fn skip_partial_char(bytes: &[u8]) -> &[u8] {
    let skip = bytes
        .iter()
        .take(3)
        .take_while(|&&b| b & 0b1100_0000 == 0b1000_0000)
        .count();
    &bytes[skip..]
}
