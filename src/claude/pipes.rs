//! The session's I/O tasks: the writer that owns the CLI's stdin, the reader that turns stdout into
//! events and answers the MCP handshake, the stderr tail, and the process's exit and kill.
//!
//! The tasks are generic over `AsyncRead`/`AsyncWrite` so that the unit tests can play the CLI over
//! in-memory pipes; only [`Process`] needs a real child.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _};
use tokio::io::{AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, McpServer};
use super::{CliEvent, ExitInfo};

/// How long to wait for the last output after the process exited or was killed, and for a killed
/// process to be reaped. A grandchild that left the process group can hold the pipes open forever, so
/// these waits must be bounded.
const GRACE: Duration = Duration::from_secs(2);

/// The longest stdout line kept. Tool results (a file the agent read, a command's output) can be
/// large, but a line beyond this is skipped with a warning rather than grown without bound.
pub(super) const MAX_LINE: usize = 64 * 1024 * 1024;

/// Bytes of stderr kept for [`ExitInfo::stderr_tail`].
pub(super) const STDERR_TAIL: usize = 2048;

/// A line for the writer, or the instruction to close stdin.
pub(super) enum Outgoing {
    /// One JSON object, written as one line. `done` learns whether the write succeeded.
    Line {
        line: Value,
        done: Option<oneshot::Sender<io::Result<()>>>,
    },
    /// Close stdin, which makes the CLI finish and exit.
    Close,
}

/// The child process and its group.
pub(super) struct Process {
    child: Child,
    /// The group id, equal to the child's pid because it was started with `process_group(0)`. Read
    /// at spawn, while the id is certainly known.
    pgid: Option<Pid>,
}

impl Process {
    pub(super) fn new(child: Child) -> Process {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Process { child, pgid }
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `SIGKILL` to the whole group, falling back to the CLI alone.
    ///
    /// Only called before the child is reaped, so the group id still belongs to this process.
    fn kill(&mut self) {
        let result = match self.pgid {
            Some(pgid) => killpg(pgid, Signal::SIGKILL),
            None => Err(Errno::ESRCH),
        };
        if let Err(errno) = result {
            tracing::debug!(%errno, "could not kill the CLI's process group; killing the CLI only");
            if let Err(error) = self.child.start_kill() {
                tracing::debug!(%error, "the CLI was already gone");
            }
        }
    }

    /// Waits for the exit, killing the group first if `kill` fires. Returns the exit code, `None` if
    /// it was killed by a signal or could not be collected.
    async fn wait(&mut self, kill: &CancellationToken) -> Option<i32> {
        let status = tokio::select! {
            biased;
            status = self.child.wait() => status,
            () = kill.cancelled() => {
                self.kill();
                match timeout(GRACE, self.child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        tracing::warn!("the Claude Code CLI did not exit after SIGKILL; its status is unknown");
                        return None;
                    }
                }
            }
        };
        match status {
            Ok(status) => status.code(),
            Err(error) => {
                tracing::warn!(%error, "could not collect the Claude Code CLI's exit status");
                None
            }
        }
    }
}

/// Owns stdin: writes each line in order until told to close or until a write fails.
///
/// Every line is a serialized `serde_json::Value` plus a newline, so nothing that is not one JSON
/// object per line can reach the CLI (it exits on such a line).
pub(super) async fn write_stdin<W: AsyncWrite + Unpin>(
    mut stdin: W,
    mut lines: mpsc::Receiver<Outgoing>,
) {
    while let Some(outgoing) = lines.recv().await {
        let (line, done) = match outgoing {
            Outgoing::Line { line, done } => (line, done),
            Outgoing::Close => break,
        };
        let mut text = line.to_string();
        text.push('\n');
        let result = async {
            stdin.write_all(text.as_bytes()).await?;
            stdin.flush().await
        }
        .await;
        let failed = result.is_err();
        if let Err(error) = &result {
            tracing::debug!(%error, "writing to the Claude Code CLI's stdin failed; it has probably exited");
        }
        if let Some(done) = done {
            // The sender may have stopped waiting; the line was still written (or not) either way.
            let _ = done.send(result);
        }
        if failed {
            // A broken pipe does not heal; later lines fail at once when this receiver is dropped.
            break;
        }
    }
    // Closing stdin is how the CLI learns that no more turns are coming.
    if let Err(error) = stdin.shutdown().await {
        tracing::debug!(%error, "closing the Claude Code CLI's stdin failed");
    }
}

/// The last [`STDERR_TAIL`] bytes of stderr, shared between the stderr task and the exit report.
#[derive(Clone, Default)]
pub(super) struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tail.extend_from_slice(bytes);
        if tail.len() > STDERR_TAIL {
            let excess = tail.len() - STDERR_TAIL;
            tail.drain(..excess);
        }
    }

    /// The tail as text, starting on a character boundary.
    fn text(&self) -> String {
        let tail = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Cutting may have split a UTF-8 sequence; continuation bytes at the start are dropped.
        let start = tail
            .iter()
            .take(3)
            .take_while(|&&byte| byte & 0b1100_0000 == 0b1000_0000)
            .count();
        String::from_utf8_lossy(&tail[start..]).into_owned()
    }
}

/// The stderr task and what it keeps.
pub(super) struct Stderr {
    /// Ends when stderr closes.
    pub(super) task: JoinHandle<()>,
    /// The last bytes read so far.
    pub(super) tail: StderrTail,
}

/// Reads stderr to its end into `tail`.
pub(super) async fn keep_stderr_tail<E: AsyncRead + Unpin>(mut stderr: E, tail: StderrTail) {
    let mut chunk = vec![0u8; 4096];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => tail.push(&chunk[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::debug!(%error, "reading the Claude Code CLI's stderr failed");
                return;
            }
        }
    }
}

/// The session's main task: reads stdout until it closes (or until a kill), waits for the process,
/// and reports [`CliEvent::Exited`] as the last event.
pub(super) async fn run<R: AsyncRead + Unpin>(
    stdout: R,
    mut process: Option<Process>,
    stderr: Stderr,
    server: McpServer,
    replies: mpsc::Sender<Outgoing>,
    events: mpsc::Sender<CliEvent>,
    kill: CancellationToken,
) {
    let read = read_stdout(stdout, &server, &replies, &events);
    tokio::pin!(read);
    let killed = tokio::select! {
        () = &mut read => false,
        () = kill.cancelled() => true,
    };
    if killed {
        if let Some(process) = process.as_mut() {
            process.kill();
        }
        // Whatever the CLI printed before the kill is still delivered, for a bounded while.
        if timeout(GRACE, &mut read).await.is_err() {
            tracing::warn!(
                "a process outside the killed group holds the Claude Code CLI's stdout open"
            );
        }
    }
    let code = match process.as_mut() {
        Some(process) => process.wait(&kill).await,
        None => None,
    };
    if timeout(GRACE, stderr.task).await.is_err() {
        tracing::debug!("the Claude Code CLI's stderr is still open after it exited");
    }
    let info = ExitInfo {
        code,
        stderr_tail: stderr.tail.text(),
    };
    tracing::debug!(?info.code, "the Claude Code CLI exited");
    // A host that dropped its session no longer wants the report.
    let _ = events.send(CliEvent::Exited(info)).await;
}

/// Decodes stdout line by line until it closes, writing the MCP handshake answers back and sending
/// the events to the host.
pub(super) async fn read_stdout<R: AsyncRead + Unpin>(
    stdout: R,
    server: &McpServer,
    replies: &mpsc::Sender<Outgoing>,
    events: &mpsc::Sender<CliEvent>,
) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        match next_line(&mut reader, &mut line, MAX_LINE).await {
            Ok(LineRead::Eof) => return,
            Ok(LineRead::TooLong) => {
                tracing::warn!(
                    "the Claude Code CLI printed a line longer than {MAX_LINE} bytes; skipping it"
                );
            }
            Ok(LineRead::Line) => {
                let decoded = protocol::decode(&String::from_utf8_lossy(&line), server);
                for reply in decoded.replies {
                    // A closed writer means the process is going away; its exit is reported anyway.
                    let _ = replies
                        .send(Outgoing::Line {
                            line: reply,
                            done: None,
                        })
                        .await;
                }
                for event in decoded.events {
                    // A host that dropped its session has also killed the process; keep draining.
                    let _ = events.send(event).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading the Claude Code CLI's stdout failed");
                return;
            }
        }
    }
}

/// What [`next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LineRead {
    /// A line (without its newline) is in the buffer.
    Line,
    /// A line longer than the limit was read and thrown away.
    TooLong,
    /// The stream ended.
    Eof,
}

/// Reads the next line into `line` (cleared first), keeping at most `max` bytes of it.
///
/// Unlike `read_until`, memory stays bounded by `max` however long the line is.
pub(super) async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if too_long {
                LineRead::TooLong
            } else if line.is_empty() {
                LineRead::Eof
            } else {
                // The last line had no newline.
                LineRead::Line
            });
        }
        let (chunk, found) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&available[..end], end + 1),
            None => (available, available.len()),
        };
        let complete = found > chunk.len();
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        reader.consume(found);
        if complete {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}
