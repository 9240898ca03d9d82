//! The Claude Code CLI session driver: one long-lived headless `claude` process per agent, driven over
//! its pipes.
//!
//! This module owns the process and its three pipes. The CLI runs with stream-json input and output, so
//! stdin carries user turns and Tavern's answers, and stdout carries what the agent does, one JSON
//! object per line (see `claude-code-cli.md` in the shared notes for the observed protocol). Three
//! tasks, all on the caller's [`TaskTracker`], do the I/O:
//!
//! - a writer owns stdin and writes one JSON object per line, in the order the lines were sent, so a
//!   line that is not JSON (which would kill the CLI) can never be written;
//! - a reader turns stdout lines into [`CliEvent`]s and answers the SDK MCP server's handshake
//!   (`initialize`, notifications, `tools/list`, `ping`) by itself, so only `tools/call` reaches the
//!   host; when stdout closes it waits for the process and reports [`CliEvent::Exited`] last;
//! - a stderr task keeps the last couple of kilobytes, for the exit report.
//!
//! Permission prompts (`can_use_tool`) and Tavern's tools (an SDK MCP server named `tavern`, tunnelled
//! over the same pipes) are answered by the host through [`CliSession::allow`], [`CliSession::deny`]
//! and [`CliSession::tool_result`]. Nothing here decides anything: policy lives with the caller.
//!
//! The decoding and encoding of lines is pure (the `protocol` submodule) and the tasks are generic over
//! `AsyncRead`/`AsyncWrite`, so the unit tests drive a session over in-memory pipes without a process.

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

mod pipes;
mod protocol;

#[cfg(test)]
mod tests;

use pipes::{Outgoing, Process, Stderr, StderrTail};
use protocol::McpServer;

/// The environment variable naming the `claude` executable, checked before `PATH`.
pub const BIN_ENV: &str = "TAVERN_CLAUDE_BIN";

/// How long one line of input may wait for the CLI to take it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The name under which Tavern's tools are served; the model sees them as `mcp__tavern__<tool>`.
pub const MCP_SERVER: &str = "tavern";

/// How long [`CliSession::shutdown`] waits for the CLI to exit after its stdin closed before killing it.
///
/// The CLI exits at once when idle, and about two seconds after stdin closes when a control request is
/// still unanswered, so five seconds leaves room without making a stuck process slow to stop.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// How long to wait for the exit report after killing the process group.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Events buffered between the reader and [`CliSession::next`]. When the host falls behind, the reader
/// stops reading and the CLI blocks on its stdout, so memory stays bounded.
const EVENT_QUEUE: usize = 256;

/// Lines buffered for the writer.
const WRITE_QUEUE: usize = 64;

/// How to start one agent's CLI process.
pub struct CliOptions {
    /// The `claude` executable (see [`find_cli`]).
    pub program: PathBuf,
    /// The agent's working directory, normally the project. Sessions are scoped to it: a resume must
    /// use the same directory (and the same `HOME`) as the run that created the session.
    pub cwd: PathBuf,
    /// Whether to start a new session, resume one, or fork one at a past message.
    pub session: SessionStart,
    /// `--model`, an alias (`opus`, `sonnet`, `haiku`) or a full model id; the CLI's default if `None`.
    pub model: Option<String>,
    /// Appended to the CLI's own system prompt (`--append-system-prompt`); skipped when empty.
    pub append_system_prompt: String,
    /// Tavern's tools, served by the SDK MCP server [`MCP_SERVER`] and allowed without prompting.
    pub tools: Vec<McpTool>,
    /// Extra environment on top of Tavern's own. Values may be secrets, so they are never logged.
    pub env: Vec<(String, String)>,
    /// Variables of Tavern's own environment the CLI must not see (secrets it has no use for).
    pub env_remove: Vec<String>,
    /// Tools the CLI must never run, in its permission-rule syntax (`--disallowedTools`). Tavern's deny
    /// rules go here too, so they hold for calls the CLI makes without asking (reads in its directory).
    pub disallowed_tools: Vec<String>,
}

impl fmt::Debug for CliOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the names of the environment variables: their values may be API keys.
        let env_names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        let tool_names: Vec<&str> = self.tools.iter().map(|tool| tool.name.as_str()).collect();
        f.debug_struct("CliOptions")
            .field("program", &self.program)
            .field("cwd", &self.cwd)
            .field("session", &self.session)
            .field("model", &self.model)
            .field("append_system_prompt_len", &self.append_system_prompt.len())
            .field("tools", &tool_names)
            .field("env", &env_names)
            .finish()
    }
}

/// One tool of Tavern's MCP server, as `tools/list` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// The tool's name without the `mcp__tavern__` prefix.
    pub name: String,
    /// What the model reads to decide when to call it.
    pub description: String,
    /// JSON Schema of its arguments (an object schema).
    pub input_schema: Value,
}

/// Which conversation the process continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStart {
    /// A new session with this id (`--session-id`). The id must not have been used in this directory.
    New(Uuid),
    /// The existing session with this id, with its whole history (`--resume`).
    Resume(Uuid),
    /// A new session `new_id` whose history is `from`'s up to and including the message `at_message`
    /// (`--resume FROM --resume-session-at MSG --fork-session --session-id NEW`). `at_message` is the
    /// `message_uuid` of an assistant event ([`CliEvent::Text`] or [`CliEvent::ToolUse`]); `from` is
    /// left as it was. `--resume-session-at` is undocumented, so this was verified against CLI 2.1.197
    /// only: an unknown message uuid ends the first turn with an error result and exit code 1.
    ForkAt {
        /// The session to copy history from.
        from: Uuid,
        /// The last message kept: the uuid of an assistant line of `from`.
        at_message: String,
        /// The id of the new session.
        new_id: Uuid,
    },
}

/// One thing the CLI did, in the order it printed them.
#[derive(Debug, Clone, PartialEq)]
pub enum CliEvent {
    /// A turn started (the CLI repeats this at the start of every turn).
    Init {
        /// The session the process is writing to (for a fork, the new one).
        session_id: String,
        /// The model the CLI resolved, e.g. `claude-opus-4-8[1m]`.
        model: String,
    },
    /// A text block of an assistant message.
    Text {
        /// The text.
        text: String,
        /// The uuid of the assistant line, the name of this point for [`SessionStart::ForkAt`].
        message_uuid: String,
    },
    /// The model called a tool (any tool; Tavern's arrive again as [`CliEvent::McpCall`]).
    ToolUse {
        /// The tool call id (`toolu_…`), matched by [`CliEvent::ToolResult`].
        id: String,
        /// The tool's full name, e.g. `Bash` or `mcp__tavern__add_commitment`.
        name: String,
        /// The tool's input.
        input: Value,
        /// The uuid of the assistant line.
        message_uuid: String,
    },
    /// What a tool call returned to the model.
    ToolResult {
        /// The call this answers.
        tool_use_id: String,
        /// The result's text (text blocks joined by newlines; other blocks named in brackets).
        text: String,
        /// True when the tool failed or was denied.
        is_error: bool,
        /// The uuid of the user line that carried it.
        message_uuid: String,
    },
    /// The CLI asks whether a tool may run; answer with [`CliSession::allow`] or [`CliSession::deny`].
    /// It waits as long as it takes.
    Permission {
        /// The control request to answer.
        request_id: String,
        /// The tool's name, e.g. `Bash`.
        tool_name: String,
        /// The tool's input (for `AskUserQuestion`, the questions).
        input: Value,
        /// The tool call id, when the CLI sent one.
        tool_use_id: Option<String>,
    },
    /// The model called one of Tavern's tools; answer with [`CliSession::tool_result`].
    McpCall(McpCall),
    /// The API call failed and the CLI will retry it.
    Retry {
        /// Which retry this is, from 1.
        attempt: u32,
        /// How many retries the CLI makes in all.
        max_retries: u32,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// The CLI's short name for the failure (`rate_limit`, `overloaded`, `server_error`, …).
        error: String,
    },
    /// The turn ended (successfully or not: see [`TurnResult::is_error`]).
    TurnEnd(TurnResult),
    /// The process exited and its stdout closed; this is the last event.
    Exited(ExitInfo),
}

/// A call of one of Tavern's tools, tunnelled as an MCP `tools/call` request.
#[derive(Debug, Clone, PartialEq)]
pub struct McpCall {
    /// The control request carrying it.
    pub request_id: String,
    /// The JSON-RPC id, echoed in the answer.
    pub rpc_id: Value,
    /// The tool's name without the `mcp__tavern__` prefix.
    pub tool: String,
    /// The tool's arguments.
    pub arguments: Value,
    /// The model's tool call id, which ties the call to its [`CliEvent::ToolUse`], when sent.
    pub tool_use_id: Option<String>,
}

/// How a turn ended: the CLI's `result` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnResult {
    /// True when the turn failed (an API error after retries, an interrupt, an unknown session, …).
    /// The CLI reports API failures with subtype `success`, so this, not the subtype, is the verdict.
    pub is_error: bool,
    /// The final text ("" when the CLI gave none, as on errors).
    pub text: String,
    /// The session the turn belongs to.
    pub session_id: String,
    /// The uuid of the result line.
    pub uuid: String,
    /// Input tokens of the whole turn, including cache reads and writes.
    pub usage_input_tokens: u64,
    /// Output tokens of the whole turn.
    pub usage_output_tokens: u64,
    /// `total_cost_usd` in millionths of a dollar, as the CLI computed it from its price table.
    pub cost_micros: Option<u64>,
    /// The HTTP status of the API failure that ended the turn, if any.
    pub api_error_status: Option<u16>,
    /// The CLI's error messages, e.g. `No conversation found with session ID: …`.
    pub errors: Vec<String>,
    /// Model calls made in the turn.
    pub num_turns: u32,
}

/// How the process ended. The default is a process whose end nobody saw: no code, nothing on stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code; `None` when it was killed by a signal or its status could not be collected.
    pub code: Option<i32>,
    /// The last ~2 KB of its stderr, where the CLI explains fatal errors.
    pub stderr_tail: String,
}

/// Failures to start or talk to the CLI.
#[derive(Debug, Error)]
pub enum CliError {
    /// The process did not take a line of input in time: it has stopped reading.
    #[error("the Claude Code CLI took no input for {0:?}; it seems stuck")]
    Stalled(Duration),
    /// The executable could not be found. Handling: show the message; nothing can run without it.
    #[error(
        "could not find the Claude Code CLI: {looked_for}; install it with \
         `npm install -g @anthropic-ai/claude-code`, or set {BIN_ENV} to the path of the `claude` \
         executable"
    )]
    NotFound {
        /// What was looked for, and where.
        looked_for: String,
    },
    /// The agent's working directory is missing or not a directory.
    #[error(
        "the agent's working directory {} is not usable ({reason}); create it or fix the project path",
        cwd.display()
    )]
    Cwd {
        /// The directory.
        cwd: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The operating system refused to start the process.
    #[error(
        "could not start the Claude Code CLI at {} ({source}); check that it is an executable for \
         this machine and that the process may create children",
        program.display()
    )]
    Spawn {
        /// The executable.
        program: PathBuf,
        /// The error from the operating system.
        source: io::Error,
    },
    /// Writing to the CLI's stdin failed for a reason other than the process being gone.
    #[error(
        "could not write to the Claude Code CLI's stdin ({0}); stop the session and start it again"
    )]
    Io(#[source] io::Error),
    /// The process is gone (or its stdin was closed by [`CliSession::shutdown`]). Handling: read the
    /// remaining events up to [`CliEvent::Exited`] for the reason, then resume the session in a new
    /// process.
    #[error(
        "the Claude Code CLI process has exited; read its Exited event for the exit code and stderr, \
         then resume the session in a new process"
    )]
    Closed,
}

/// Finds the `claude` executable: `$TAVERN_CLAUDE_BIN` if set, else `claude` on `PATH`.
///
/// # Errors
///
/// [`CliError::NotFound`] saying what was looked for, when `$TAVERN_CLAUDE_BIN` does not name an
/// executable file or no `PATH` directory holds one called `claude`.
pub fn find_cli() -> Result<PathBuf, CliError> {
    let env_value = std::env::var_os(BIN_ENV).map(|v| v.to_string_lossy().into_owned());
    let path_var = std::env::var_os("PATH").map(|v| v.to_string_lossy().into_owned());
    find_cli_in(env_value.as_deref(), path_var.as_deref())
}

/// [`find_cli`] with the two environment variables passed in, so it can be tested without touching
/// the process environment (tests run in parallel threads that share it).
///
/// An empty `env_value` counts as unset, so `TAVERN_CLAUDE_BIN=` does not hide the `PATH` lookup.
///
/// # Errors
///
/// As [`find_cli`].
pub fn find_cli_in(env_value: Option<&str>, path_var: Option<&str>) -> Result<PathBuf, CliError> {
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return match executable_problem(&path) {
            None => Ok(path),
            Some(problem) => Err(CliError::NotFound {
                looked_for: format!("{BIN_ENV}={} {problem}", path.display()),
            }),
        };
    }
    let dirs: Vec<&str> = path_var
        .unwrap_or_default()
        .split(':')
        .filter(|dir| !dir.is_empty())
        .collect();
    for dir in &dirs {
        let candidate = Path::new(dir).join("claude");
        if executable_problem(&candidate).is_none() {
            return Ok(candidate);
        }
    }
    Err(CliError::NotFound {
        looked_for: format!(
            "{BIN_ENV} is not set and no executable `claude` is in any of the {} PATH directories",
            dirs.len()
        ),
    })
}

/// Why `path` cannot be run, or `None` when it is an executable file.
fn executable_problem(path: &Path) -> Option<&'static str> {
    match std::fs::metadata(path) {
        Err(_) => Some("does not exist"),
        Ok(meta) if !meta.is_file() => Some("is not a file"),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Some("is not executable"),
        Ok(_) => None,
    }
}

/// The command line for `opts`, without the program: kept apart so tests can check it.
fn cli_args(opts: &CliOptions) -> Vec<String> {
    let mcp_config = serde_json::json!({
        "mcpServers": { MCP_SERVER: { "type": "sdk", "name": MCP_SERVER } }
    });
    let mut args: Vec<String> = [
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        // stream-json output in print mode refuses to run without it.
        "--verbose",
        // Permission prompts come to Tavern over stdin/stdout instead of a terminal nobody watches.
        "--permission-prompt-tool",
        "stdio",
        "--permission-mode",
        "default",
        "--mcp-config",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.push(mcp_config.to_string());
    // Only Tavern's server: the user's and the project's MCP configs are not the agent's business.
    args.push("--strict-mcp-config".to_owned());
    // No settings files either: a user's or project's `permissions.allow` (or hooks) would let the CLI run
    // tools without asking Tavern, which decides every permission.
    args.push("--setting-sources".to_owned());
    args.push(String::new());
    if !opts.disallowed_tools.is_empty() {
        args.push("--disallowedTools".to_owned());
        args.push(opts.disallowed_tools.join(","));
    }
    args.push("--allowedTools".to_owned());
    args.push(format!("mcp__{MCP_SERVER}"));
    if let Some(model) = &opts.model {
        args.push("--model".to_owned());
        args.push(model.clone());
    }
    match &opts.session {
        SessionStart::New(id) => {
            args.push("--session-id".to_owned());
            args.push(id.to_string());
        }
        SessionStart::Resume(id) => {
            args.push("--resume".to_owned());
            args.push(id.to_string());
        }
        SessionStart::ForkAt {
            from,
            at_message,
            new_id,
        } => {
            args.push("--resume".to_owned());
            args.push(from.to_string());
            args.push("--resume-session-at".to_owned());
            args.push(at_message.clone());
            args.push("--fork-session".to_owned());
            // With --fork-session, --session-id names the new session instead of a random one.
            args.push("--session-id".to_owned());
            args.push(new_id.to_string());
        }
    }
    if !opts.append_system_prompt.is_empty() {
        args.push("--append-system-prompt".to_owned());
        args.push(opts.append_system_prompt.clone());
    }
    args
}

/// A running CLI process: the host's handle for sending turns and answers and reading events.
///
/// Dropping it kills the process group; [`CliSession::shutdown`] stops it gracefully instead.
pub struct CliSession {
    events: mpsc::Receiver<CliEvent>,
    writer: mpsc::Sender<Outgoing>,
    /// Cancelled to kill the process group (by [`CliSession::shutdown`] after its grace period).
    kill: CancellationToken,
    /// Kills the process when the session is dropped without a shutdown.
    _kill_on_drop: DropGuard,
    /// The process id, while known.
    pid: Option<u32>,
    /// The exit report, once [`CliSession::next`] has returned it.
    exited: Option<ExitInfo>,
}

impl fmt::Debug for CliSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CliSession")
            .field("pid", &self.pid)
            .field("exited", &self.exited)
            .finish_non_exhaustive()
    }
}

impl CliSession {
    /// Starts the CLI for one agent, its I/O tasks on `tracker`.
    ///
    /// The process runs in `opts.cwd`, in its own process group (so a kill takes its tool processes
    /// too), with Tavern's environment plus `opts.env`. It makes no API call until the first
    /// [`CliSession::send_user`].
    ///
    /// # Errors
    ///
    /// [`CliError::Cwd`] when the directory is unusable, [`CliError::NotFound`] when the program does
    /// not exist, [`CliError::Spawn`] when it cannot be started.
    pub async fn spawn(opts: CliOptions, tracker: &TaskTracker) -> Result<CliSession, CliError> {
        match tokio::fs::metadata(&opts.cwd).await {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(CliError::Cwd {
                    cwd: opts.cwd,
                    reason: "not a directory".to_owned(),
                })
            }
            Err(error) => {
                return Err(CliError::Cwd {
                    cwd: opts.cwd,
                    reason: error.to_string(),
                })
            }
        }
        let mut command = Command::new(&opts.program);
        for name in &opts.env_remove {
            command.env_remove(name);
        }
        command
            .args(cli_args(&opts))
            .current_dir(&opts.cwd)
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own lets one signal reach the CLI and every tool process it started.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| {
            // The working directory was checked above, so a missing file is the program.
            if source.kind() == io::ErrorKind::NotFound {
                CliError::NotFound {
                    looked_for: format!("{} does not exist", opts.program.display()),
                }
            } else {
                CliError::Spawn {
                    program: opts.program.clone(),
                    source,
                }
            }
        })?;
        let pid = child.id();
        tracing::debug!(?pid, options = ?opts, "started the Claude Code CLI");
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            // Unreachable with all three piped above; killed on drop if it ever happens.
            return Err(CliError::Spawn {
                program: opts.program,
                source: io::Error::other("the child's pipes were not captured"),
            });
        };
        let server = McpServer::new(&opts.tools);
        Ok(CliSession::start(
            stdout,
            stdin,
            stderr,
            Some(Process::new(child)),
            server,
            tracker,
        ))
    }

    /// Starts the session's tasks over the given pipes. `process` is `None` in tests, which play the
    /// CLI over in-memory pipes; the exit code is then unknown.
    fn start<R, W, E>(
        stdout: R,
        stdin: W,
        stderr: E,
        process: Option<Process>,
        server: McpServer,
        tracker: &TaskTracker,
    ) -> CliSession
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
        E: AsyncRead + Unpin + Send + 'static,
    {
        let pid = process.as_ref().and_then(Process::pid);
        let (writer, to_write) = mpsc::channel(WRITE_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let kill = CancellationToken::new();
        let stderr_tail = StderrTail::default();
        tracker.spawn(pipes::write_stdin(stdin, to_write));
        let stderr = Stderr {
            task: tracker.spawn(pipes::keep_stderr_tail(stderr, stderr_tail.clone())),
            tail: stderr_tail,
        };
        tracker.spawn(pipes::run(
            stdout,
            process,
            stderr,
            server,
            writer.clone(),
            events_tx,
            kill.clone(),
        ));
        CliSession {
            events,
            writer,
            _kill_on_drop: kill.clone().drop_guard(),
            kill,
            pid,
            exited: None,
        }
    }

    /// The CLI's process id, for diagnostics; `None` once unknown.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Sends one user turn. Sent during a turn, it is queued by the CLI and becomes the next turn.
    ///
    /// # Errors
    ///
    /// [`CliError::Closed`] when the process is gone; [`CliError::Io`] when the write failed.
    pub async fn send_user(&self, text: &str) -> Result<(), CliError> {
        self.write(protocol::user_turn(text)).await
    }

    /// The next event; `None` after [`CliEvent::Exited`].
    ///
    /// Cancellation-safe: dropping the future (for example in a `select!` with a stop token) loses no
    /// event.
    pub async fn next(&mut self) -> Option<CliEvent> {
        let event = self.events.recv().await;
        if let Some(CliEvent::Exited(info)) = &event {
            self.exited = Some(info.clone());
        }
        event
    }

    /// Lets a tool run, with `updated_input` as its input (normally the input as asked; for
    /// `AskUserQuestion` the input plus `answers`).
    ///
    /// # Errors
    ///
    /// As [`CliSession::send_user`].
    pub async fn allow(&self, request_id: &str, updated_input: Value) -> Result<(), CliError> {
        self.write(protocol::allow(request_id, updated_input)).await
    }

    /// Refuses a tool; the model gets `message` as an error result and the turn goes on.
    ///
    /// # Errors
    ///
    /// As [`CliSession::send_user`].
    pub async fn deny(&self, request_id: &str, message: &str) -> Result<(), CliError> {
        self.write(protocol::deny(request_id, message)).await
    }

    /// Answers a call of one of Tavern's tools with a text result.
    ///
    /// # Errors
    ///
    /// As [`CliSession::send_user`].
    pub async fn tool_result(
        &self,
        call: &McpCall,
        text: &str,
        is_error: bool,
    ) -> Result<(), CliError> {
        self.write(protocol::tool_result(call, text, is_error))
            .await
    }

    /// Interrupts the running turn: the in-flight API request is aborted and the turn ends with an
    /// error [`CliEvent::TurnEnd`]; the process then takes the next turn normally. Between turns the
    /// CLI only acknowledges it, so a race with the turn's end is harmless.
    ///
    /// # Errors
    ///
    /// As [`CliSession::send_user`].
    pub async fn interrupt(&self) -> Result<(), CliError> {
        let request_id = format!("tavern-interrupt-{}", Uuid::new_v4());
        self.write(protocol::interrupt(&request_id)).await
    }

    /// Stops the process: closes its stdin (the CLI then exits on its own), waits up to five seconds,
    /// then kills its process group. Events not yet read are discarded.
    pub async fn shutdown(mut self) -> ExitInfo {
        if let Some(info) = self.exited.take() {
            return info;
        }
        let deadline = Instant::now() + EXIT_GRACE;
        // The writer closes stdin when it reaches this; a writer that is already gone closed it too.
        let _ = timeout_at(deadline, self.writer.send(Outgoing::Close)).await;
        if let Some(info) = self.drain_until_exit(deadline).await {
            return info;
        }
        tracing::warn!(
            pid = ?self.pid,
            "the Claude Code CLI did not exit within {EXIT_GRACE:?} of its stdin closing; killing it"
        );
        self.kill.cancel();
        let deadline = Instant::now() + KILL_GRACE;
        self.drain_until_exit(deadline).await.unwrap_or_default()
    }

    /// Discards events until the exit report, or `None` at `deadline` or when the events end without
    /// one. Bounded by the deadline.
    pub(crate) async fn drain_until_exit(&mut self, deadline: Instant) -> Option<ExitInfo> {
        loop {
            match timeout_at(deadline, self.next()).await {
                Ok(Some(CliEvent::Exited(info))) => return Some(info),
                Ok(Some(event)) => tracing::debug!(?event, "discarded while waiting for the exit"),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Hands `line` to the writer and waits until it is written.
    async fn write(&self, line: Value) -> Result<(), CliError> {
        if self.exited.is_some() {
            return Err(CliError::Closed);
        }
        // A CLI that stops reading its input would otherwise hold the writer (and its agent) forever.
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let (done, written) = oneshot::channel();
        timeout_at(
            deadline,
            self.writer.send(Outgoing::Line {
                line,
                done: Some(done),
            }),
        )
        .await
        .map_err(|_| CliError::Stalled(WRITE_TIMEOUT))?
        .map_err(|_| CliError::Closed)?;
        match timeout_at(deadline, written).await {
            Err(_) => Err(CliError::Stalled(WRITE_TIMEOUT)),
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) if error.kind() == io::ErrorKind::BrokenPipe => {
                Err(CliError::Closed)
            }
            Ok(Ok(Err(error))) => Err(CliError::Io(error)),
            // The writer ended (stdin closed) before reaching the line.
            Ok(Err(_)) => Err(CliError::Closed),
        }
    }
}
