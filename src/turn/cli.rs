//! Turns run by the Claude Code CLI: the agent's own headless `claude` process does the thinking and
//! the editing, and Tavern stays in charge of everything that matters to the tree.
//!
//! One process lives per working agent (in its supervisor task's [`AgentRuntime`]), started with a
//! session id Tavern chose and resumed with it after a restart. Each turn sends one user line: what
//! the agent needs to know this turn (its state and commitments) and its new messages. While the turn
//! runs, the CLI's stream is recorded on the turn's entry as it happens (text, tool calls and results),
//! Tavern's tools arrive as MCP calls and become intents exactly like an API model's tool calls, and
//! every permission request is decided by Tavern's rules or, when no rule covers it, by a person
//! through a pending approval. Nothing the CLI asks about runs before that answer, and the CLI reads no
//! settings of its own that could let it skip asking.
//!
//! A turn interrupted by a crash or a shutdown resumes in a new process on the same session. Unlike an
//! API turn it cannot be replayed call by call (the CLI runs its own loop), so effects recorded before
//! the interruption stand as they are, the model is told to carry on rather than given its input again,
//! and anything it asks for now is asked afresh.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tavern_plugin_api::{ModelReply, StopReason, ToolCall, ToolName, ToolResult, Usage};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    close_interrupted, complete, fail, Act, Effect, Interrupts, Recorder, TurnEnd, TurnPlan,
};
use crate::claude::{
    CliEvent, CliOptions, CliSession, ExitInfo, McpCall, McpTool, SessionStart, TurnResult,
};
use crate::domain::one_line as clip;
use crate::domain::{
    input_summary, Activity, Actor, Intent, Outcome, PendingItem, Settled, TavernState,
};
use crate::executor::{ExecError, Receipt, Tavern};
use crate::log::Seq;
use crate::model::secret::Secret;
use crate::permission::{Decision, Rule, Rules};
use crate::registry;

/// How long Tavern waits for a CLI turn's next event before it interrupts the turn and fails it. Long,
/// because a model may think (or a sub-agent explore) for many minutes, but finite, so a wedged process
/// cannot hold its agent forever.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long an interrupted CLI gets to end its turn before its process is stopped.
const INTERRUPT_GRACE: Duration = Duration::from_secs(30);

/// How long Tavern waits, after a failed turn, to see whether the CLI exits.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// Tools the CLI has that Tavern replaces: its own question tool would ask nobody (Tavern's `ask_user`
/// reaches the person who asked for the work).
const REPLACED_TOOLS: [&str; 1] = ["AskUserQuestion"];

/// What an agent's supervisor task keeps between turns: its CLI process, once started.
#[derive(Default)]
pub struct AgentRuntime {
    cli: Option<CliSession>,
    /// The CLI had no record of the agent's session (it was stopped before it saved any), so the next
    /// process starts the session afresh under the same id.
    session_lost: bool,
    /// The process's running `total_cost_usd` so far (the CLI reports a running total per process).
    cost_so_far: u64,
}

impl AgentRuntime {
    /// Ends the agent's CLI process, if it has one (closing its input lets it exit cleanly), and says
    /// how it ended (the default [`ExitInfo`] when there was none).
    pub async fn close(&mut self) -> ExitInfo {
        let Some(session) = self.cli.take() else {
            return ExitInfo::default();
        };
        let exit = session.shutdown().await;
        tracing::debug!("CLI process ended: {:?}", exit.code);
        exit
    }
}

/// The tools Tavern serves over the CLI's pipe for an agent type.
fn mcp_tools(tools: &[ToolName]) -> Vec<McpTool> {
    tools
        .iter()
        .map(|tool| McpTool {
            name: tool.wire().to_string(),
            description: tool.description().to_string(),
            input_schema: tool.input_schema(),
        })
        .collect()
}

/// Deny rules no configuration can lift: agents never write Tavern's own state (which would bypass the
/// log) or the project's git hooks (which would run code outside any agent's permissions).
fn built_in_denies(project: &std::path::Path) -> Vec<String> {
    let mut rules = Vec::new();
    for tool in ["Write", "Edit", "NotebookEdit"] {
        for dir in [".tavern", ".git/hooks"] {
            // Absolute (`//` in the rule syntax), so they hold whatever directory the agent works in.
            rules.push(format!("{tool}(/{}/{dir}/**)", project.display()));
        }
    }
    rules
}

/// The rules that decide this agent's tool calls: Tavern's own denies, the project's, its type's, and
/// the ones people added for it by answering "always".
fn rules_for(tavern: &Tavern, state: &TavernState, agent: &str) -> Rules {
    let settings = tavern.settings();
    let parse = |texts: &[String]| -> Vec<Rule> {
        texts
            .iter()
            .filter_map(|text| match Rule::parse(text) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    // Configured rules were checked at load and people's rules are built by Tavern, so
                    // this is a damaged log or document; say so rather than drop it silently.
                    tracing::warn!("ignoring the permission rule {text:?}: {e}");
                    None
                }
            })
            .collect()
    };
    let built_in = Rules {
        allow: Vec::new(),
        deny: parse(&built_in_denies(&settings.project)),
    };
    let project = Rules {
        allow: parse(&settings.permissions.allow),
        deny: parse(&settings.permissions.deny),
    };
    let node = state.agent(agent);
    let kind = settings
        .permissions
        .kinds
        .iter()
        .find(|(k, _, _)| Some(*k) == node.map(|n| n.kind))
        .map(|(_, allow, deny)| Rules {
            allow: parse(allow),
            deny: parse(deny),
        })
        .unwrap_or_default();
    let own = Rules {
        allow: node.map(|n| parse(&n.rules)).unwrap_or_default(),
        deny: Vec::new(),
    };
    Rules::merged(&[&built_in, &project, &kind, &own])
}

/// The user line of one turn: what the agent needs to know now, then its new messages.
fn turn_text(plan: &TurnPlan, carry_on: bool, state: &TavernState, agent: &str) -> String {
    let mut out = String::new();
    if let Some(node) = state.agent(agent) {
        out.push_str(&format!("[tavern] You are {} ({}).", node.name, node.state));
        if !node.commitments.is_empty() {
            out.push_str(" Your commitments:");
            for (i, c) in node.commitments.iter().enumerate() {
                out.push_str(&format!(
                    " {}. {} `{}` ({});",
                    i + 1,
                    c.description,
                    c.assertion,
                    c.check_status()
                ));
            }
        }
        out.push('\n');
    }
    if carry_on {
        out.push_str(
            "[tavern] Tavern restarted while you were working on your last input. Check where you got \
             to and carry on from there; what you did before the restart stands.\n",
        );
        return out;
    }
    for message in &plan.new_input {
        out.push_str(message);
        out.push('\n');
    }
    out
}

/// Values of secrets in Tavern's environment, which recorded text must never carry (an agent may read
/// or print one). Read once: the environment does not change while Tavern runs.
fn secrets() -> &'static [Secret] {
    static SECRETS: OnceLock<Vec<Secret>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        std::env::vars()
            .filter(|(name, value)| is_secret_name(name) && value.len() >= 8)
            .map(|(_, value)| Secret::new(value))
            .collect()
    })
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["_KEY", "_TOKEN", "_SECRET", "PASSWORD"]
        .iter()
        .any(|marker| name.ends_with(marker) || name.contains(&format!("{marker}_")))
}

/// `text` with every secret value of the environment redacted (see [`Secret::redact`]).
fn redact(text: &str) -> String {
    secrets()
        .iter()
        .fold(text.to_owned(), |text, secret| secret.redact(&text))
}

/// Variables of Tavern's environment the CLI has no use for and must not see: other backends' keys,
/// Tavern's own settings and tokens. It keeps `ANTHROPIC_*`, which it needs.
fn hidden_from_cli() -> Vec<String> {
    std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| {
            name.starts_with("OPENAI_")
                || name.starts_with("TAVERN_")
                || name.starts_with("DISCORD_")
        })
        .collect()
}

/// Runs (or resumes) one CLI turn of `agent`, recorded as entry `seq`.
pub(super) async fn run(
    recorder: Arc<Recorder>,
    plan: TurnPlan,
    model: Option<String>,
    runtime: &mut AgentRuntime,
    mut interrupts: Interrupts,
) -> TurnEnd {
    let tavern = recorder.tavern.clone();
    let agent = recorder.agent.clone();
    let seq = recorder.seq;
    let inbox_from = plan.inbox_from;
    // The turn runs under one of the sidecar's permits, like any model call, so the global cap holds
    // across runtimes; it is given back while the turn waits for a person.
    let waited = take_permit(recorder.sidecar.permit(&recorder.stop), &mut interrupts).await;
    let mut permit = match waited {
        Ok(permit) => Some(permit),
        Err(Waited::Interrupted(by)) => return close_interrupted(&tavern, &agent, seq, &by).await,
        Err(_) => return TurnEnd::Cancelled,
    };
    // Approvals opened by an earlier run of this agent's turns wait for nothing now.
    withdraw_stale_approvals(&recorder).await;
    let text = tavern.read_head(|s| turn_text(&plan, plan.input_sent, s, &agent));
    // A process that died between turns is started again once (on the same session) before the agent
    // is given up on.
    let mut attempts = 0;
    let mut session = loop {
        attempts += 1;
        let session = match ensure_session(&recorder, &plan, model.clone(), runtime).await {
            Ok(session) => session,
            Err(SessionError::Stopping) => return TurnEnd::Cancelled,
            Err(SessionError::Failed(error)) => {
                return fail(&tavern, &agent, seq, inbox_from, error).await
            }
        };
        match session.send_user(&text).await {
            Ok(()) => break session,
            Err(e) if attempts < 2 => {
                tracing::warn!("{agent}'s CLI did not take its input ({e}); starting it again");
                runtime.close().await;
            }
            Err(e) => {
                let tail = runtime.close().await.stderr_tail;
                return crashed(&tavern, &agent, seq, inbox_from, e.to_string(), &tail).await;
            }
        }
    };
    // Recorded once the CLI has the input, so a resumed turn knows not to send it again.
    if !recorder
        .record(vec![Outcome::InputSent {
            agent: agent.clone(),
        }])
        .await
    {
        return TurnEnd::Cancelled;
    }
    let mut turn = CliTurn::default();
    let mut started_afresh = false;
    // Bounded by the CLI: each iteration consumes one event, and the process ends its turn with a result
    // line or exits; a silent process is interrupted after EVENT_TIMEOUT.
    loop {
        let event = tokio::select! {
            _ = recorder.stop.cancelled() => None,
            _ = tavern.cancel_token().cancelled() => None,
            by = interrupts.next() => return interrupt(&tavern, &agent, seq, runtime, &by).await,
            event = tokio::time::timeout(EVENT_TIMEOUT, session.next()) => Some(event),
        };
        let event = match event {
            None => {
                // The agent or Tavern is stopping. The process is killed rather than interrupted: an
                // interrupted CLI goes on with its turn (calling the model, running tools it needs no
                // permission for) until it is stopped, and nothing it did then would be recorded. The
                // entry stays open, and the next start resumes the session.
                runtime.cli = None;
                return TurnEnd::Cancelled;
            }
            Some(Err(_)) => {
                let silent = format!(
                    "its CLI reported nothing for {} minutes, so Tavern interrupted the turn",
                    EVENT_TIMEOUT.as_secs() / 60
                );
                let _ = stop_cli_turn(runtime, &agent, &silent).await;
                return fail(&tavern, &agent, seq, inbox_from, silent).await;
            }
            Some(Ok(event)) => event,
        };
        match event {
            None | Some(CliEvent::Exited(_)) => {
                let exit = match event {
                    Some(CliEvent::Exited(exit)) => {
                        runtime.cli = None;
                        exit
                    }
                    _ => runtime.close().await,
                };
                let what = format!(
                    "its Claude Code CLI ended with {} in the middle of a turn",
                    exit_code(&exit)
                );
                return crashed(&tavern, &agent, seq, inbox_from, what, &exit.stderr_tail).await;
            }
            Some(CliEvent::Init { session_id, .. }) => {
                let known = tavern.read_head(|s| {
                    s.agent(&agent)
                        .and_then(|n| n.session.clone())
                        .is_some_and(|known| known == session_id)
                });
                if !known {
                    recorder
                        .record(vec![Outcome::SessionStarted {
                            agent: agent.clone(),
                            session: session_id,
                        }])
                        .await;
                }
            }
            Some(CliEvent::Text { text, message_uuid }) => {
                turn.uuids.push(message_uuid);
                activity(
                    &recorder,
                    Activity::Text {
                        text: redact(&text),
                    },
                )
                .await;
            }
            Some(CliEvent::ToolUse {
                id,
                name,
                input,
                message_uuid,
            }) => {
                turn.uuids.push(message_uuid);
                turn.tool_names.push((id, name.clone()));
                let input = clip(&redact(&input_summary(&input)), 200);
                activity(&recorder, Activity::ToolUse { tool: name, input }).await;
            }
            Some(CliEvent::ToolResult {
                tool_use_id,
                text,
                is_error,
                ..
            }) => {
                let tool = turn
                    .tool_names
                    .iter()
                    .find(|(id, _)| *id == tool_use_id)
                    .map(|(_, name)| name.clone())
                    .unwrap_or_else(|| "tool".to_string());
                let text = clip(&redact(&text), 200);
                let ok = !is_error;
                activity(&recorder, Activity::ToolResult { tool, ok, text }).await;
            }
            Some(CliEvent::Permission {
                request_id,
                tool_name,
                input,
                ..
            }) => {
                let waited = permission(
                    &recorder,
                    session,
                    &mut interrupts,
                    &mut permit,
                    &request_id,
                    &tool_name,
                    input,
                )
                .await;
                match waited {
                    Waited::Answered => {}
                    Waited::Stopped => {
                        // Killed, not left to run on: a CLI whose permission request goes unanswered
                        // carries on with its turn (observed: more model calls) until it is stopped.
                        runtime.cli = None;
                        return TurnEnd::Cancelled;
                    }
                    Waited::Interrupted(by) => {
                        let reason = format!("@{by} interrupted this turn");
                        if let Err(e) = session.deny(&request_id, &reason).await {
                            tracing::debug!("could not deny {agent}'s pending call: {e}");
                        }
                        return interrupt(&tavern, &agent, seq, runtime, &by).await;
                    }
                }
            }
            Some(CliEvent::McpCall(call)) => {
                let Some(result) = mcp_call(&recorder, &plan, &call, &mut turn).await else {
                    runtime.cli = None;
                    return TurnEnd::Cancelled;
                };
                if let Err(e) = session.tool_result(&call, &result.text, !result.ok).await {
                    tracing::warn!("could not answer {agent}'s {} call: {e}", call.tool);
                }
            }
            Some(CliEvent::Retry {
                attempt,
                max_retries,
                status,
                error,
            }) => {
                tracing::warn!(
                    "{agent}'s CLI retries its API call ({attempt}/{max_retries}, {status:?}: {error})"
                );
            }
            Some(CliEvent::TurnEnd(result))
                if result.is_error
                    && !started_afresh
                    && failure_text(&result).contains("No conversation found") =>
            {
                started_afresh = true;
                // The CLI was stopped before it saved the session (a turn cut short on its first
                // line): start it afresh under the same id, with the turn's whole input.
                tracing::warn!("{agent}'s CLI had no record of its session; starting it afresh");
                runtime.close().await;
                runtime.session_lost = true;
                session = match ensure_session(&recorder, &plan, model.clone(), runtime).await {
                    Ok(session) => session,
                    Err(SessionError::Stopping) => return TurnEnd::Cancelled,
                    Err(SessionError::Failed(error)) => {
                        return fail(&tavern, &agent, seq, inbox_from, error).await
                    }
                };
                let text = tavern.read_head(|s| turn_text(&plan, false, s, &agent));
                if let Err(e) = session.send_user(&text).await {
                    return fail(&tavern, &agent, seq, inbox_from, e.to_string()).await;
                }
            }
            Some(CliEvent::TurnEnd(result)) if result.is_error => {
                // A failed turn may be the CLI giving up for good (it exits after a fatal error, such
                // as a session it cannot resume); then the agent is reaped with what it said, rather
                // than restarted into the same failure.
                if let Some(exit) = exited_soon(runtime).await {
                    let what = format!(
                        "its Claude Code CLI failed ({}) and exited with {}",
                        clip(&redact(&failure_text(&result)), 300),
                        exit_code(&exit)
                    );
                    return crashed(&tavern, &agent, seq, inbox_from, what, &exit.stderr_tail)
                        .await;
                }
                let message = format!(
                    "the Claude Code CLI's turn failed: {}",
                    redact(&failure_text(&result))
                );
                return fail(&tavern, &agent, seq, inbox_from, message).await;
            }
            Some(CliEvent::TurnEnd(result)) => {
                return finish(&recorder, runtime, result, turn).await;
            }
        }
    }
}

/// What a CLI turn has gathered so far.
#[derive(Default)]
struct CliTurn {
    /// The session's assistant message uuids, in order: the points a later fork can name.
    uuids: Vec<String>,
    /// Tool-use ids and names, to label results.
    tool_names: Vec<(String, String)>,
    /// Tavern tool calls the model made through MCP.
    calls: Vec<ToolCall>,
    /// The call that ended the turn (ask, done), once one has: later Tavern tool calls are refused,
    /// as an API model's are.
    ended_by: Option<ToolName>,
}

impl CliTurn {
    /// Notes a Tavern tool call that ran and its result.
    fn ran(&mut self, call: ToolCall, result: &ToolResult) {
        if call.ends_turn() && result.ok {
            self.ended_by = Some(call.name());
        }
        self.calls.push(call);
    }
}

fn exit_code(exit: &ExitInfo) -> String {
    exit.code
        .map(|c| format!("code {c}"))
        .unwrap_or_else(|| "a signal".to_string())
}

async fn activity(recorder: &Recorder, activity: Activity) {
    recorder
        .record(vec![Outcome::Activity {
            agent: recorder.agent.clone(),
            activity,
        }])
        .await;
}

/// How a wait ended without the thing waited for.
enum Waited {
    /// The request was answered (to the CLI too).
    Answered,
    /// The agent or Tavern is stopping.
    Stopped,
    /// A person interrupted the turn while it waited.
    Interrupted(String),
}

/// Waits for a sidecar permit (`permit`, the sidecar's wait for it), unless the turn is interrupted or
/// stopped first.
async fn take_permit(
    permit: impl Future<Output = Option<OwnedSemaphorePermit>>,
    interrupts: &mut Interrupts,
) -> Result<OwnedSemaphorePermit, Waited> {
    tokio::select! {
        permit = permit => permit.ok_or(Waited::Stopped),
        by = interrupts.next() => Err(Waited::Interrupted(by)),
    }
}

/// Why the agent's CLI could not be started.
enum SessionError {
    /// The agent or Tavern is stopping.
    Stopping,
    /// Starting failed; the message says why.
    Failed(String),
}

/// The agent's CLI process, started if it has none.
async fn ensure_session<'r>(
    recorder: &Recorder,
    plan: &TurnPlan,
    model: Option<String>,
    runtime: &'r mut AgentRuntime,
) -> Result<&'r mut CliSession, SessionError> {
    // Taken out and put back: a borrow of it returned from one branch would keep `runtime` borrowed in
    // the other too (a limit of the borrow checker).
    let session = match runtime.cli.take() {
        Some(session) => session,
        None => {
            let session = start_session(recorder, plan, model, runtime.session_lost).await?;
            runtime.cost_so_far = 0;
            // Started afresh once; from now on the session exists and is resumed.
            runtime.session_lost = false;
            session
        }
    };
    Ok(runtime.cli.insert(session))
}

/// Starts a CLI process for the agent. Its session is resumed once the CLI has had input on it, unless
/// the CLI lost it (`lost`); a session id that was recorded but never used (the process never got its
/// first line) is started afresh under the same id, and an agent without one gets a new id, recorded
/// before the process runs.
async fn start_session(
    recorder: &Recorder,
    plan: &TurnPlan,
    model: Option<String>,
    lost: bool,
) -> Result<CliSession, SessionError> {
    let tavern = &recorder.tavern;
    let program = tavern
        .settings()
        .claude_cli
        .clone()
        .map_err(|e| SessionError::Failed(format!("cannot start the Claude Code CLI: {e}")))?;
    let (recorded, used) = tavern.read_head(|s| {
        s.agent(&recorder.agent).map_or((None, false), |n| {
            (n.session.clone(), !n.session_turns.is_empty())
        })
    });
    let start = match recorded {
        Some(id) => {
            let id = Uuid::parse_str(&id).map_err(|e| {
                SessionError::Failed(format!("the recorded session id {id:?} is not a UUID: {e}"))
            })?;
            if (used || plan.input_sent) && !lost {
                SessionStart::Resume(id)
            } else {
                SessionStart::New(id)
            }
        }
        None => {
            let id = Uuid::new_v4();
            if !recorder
                .record(vec![Outcome::SessionStarted {
                    agent: recorder.agent.clone(),
                    session: id.to_string(),
                }])
                .await
            {
                return Err(SessionError::Stopping);
            }
            SessionStart::New(id)
        }
    };
    let prompt = registry::prompt_text(tavern.store().as_ref(), plan.kind, plan.view.expert);
    let rules = tavern.read_head(|s| rules_for(tavern, s, &recorder.agent));
    let mut disallowed: Vec<String> = rules.deny.iter().map(|rule| rule.to_string()).collect();
    disallowed.extend(REPLACED_TOOLS.iter().map(|tool| tool.to_string()));
    let options = CliOptions {
        program,
        cwd: working_dir(tavern, &recorder.agent),
        session: start,
        model,
        append_system_prompt: tavern_plugin_api::compose_system_prompt(&prompt, &plan.view),
        tools: mcp_tools(plan.tools),
        env: Vec::new(),
        env_remove: hidden_from_cli(),
        disallowed_tools: disallowed,
    };
    CliSession::spawn(options, tavern.tracker())
        .await
        .map_err(|e| SessionError::Failed(e.to_string()))
}

/// Where the agent's CLI runs: its own working directory if it was given one, else the project.
fn working_dir(tavern: &Tavern, agent: &str) -> PathBuf {
    tavern
        .read_head(|s| s.agent(agent).and_then(|n| n.workdir.clone()))
        .map(PathBuf::from)
        .unwrap_or_else(|| tavern.settings().project.clone())
}

/// Records that approvals the agent opened earlier wait for nothing now (their turn was interrupted,
/// or Tavern restarted during it), so nobody answers a question that is no longer asked.
async fn withdraw_stale_approvals(recorder: &Recorder) {
    let stale: Vec<u32> = recorder.tavern.read_head(|s| {
        s.open_pending()
            .filter(|p| {
                p.agent.eq_ignore_ascii_case(&recorder.agent)
                    && matches!(p.item, PendingItem::Approval { .. })
            })
            .map(|p| p.id)
            .collect()
    });
    for id in stale {
        withdraw(recorder, id, "its turn ended before anyone answered").await;
    }
}

async fn withdraw(recorder: &Recorder, id: u32, reason: &str) {
    recorder
        .record(vec![Outcome::PendingSettled {
            id,
            by: "tavern".to_string(),
            settled: Settled::Withdrawn {
                reason: reason.to_string(),
            },
        }])
        .await;
}

/// Decides one permission request and answers the CLI.
async fn permission(
    recorder: &Arc<Recorder>,
    session: &CliSession,
    interrupts: &mut Interrupts,
    permit: &mut Option<OwnedSemaphorePermit>,
    request_id: &str,
    tool: &str,
    input: serde_json::Value,
) -> Waited {
    let tavern = &recorder.tavern;
    let rules = tavern.read_head(|s| rules_for(tavern, s, &recorder.agent));
    let decision = rules.decide(tool, &input, &tavern.settings().project);
    let summary = clip(&redact(&input_summary(&input)), 200);
    let allowed = matches!(decision, Decision::Allow(_));
    let answer = match decision {
        Decision::Allow(rule) | Decision::Deny(rule) => {
            let decided = Activity::RuleDecided {
                tool: tool.to_string(),
                input: summary,
                allowed,
                rule: rule.to_string(),
            };
            activity(recorder, decided).await;
            if allowed {
                Ok(())
            } else {
                Err(format!("Tavern's rule {rule} denies this call"))
            }
        }
        Decision::Ask => {
            // A person may take a while: the permit goes back meanwhile, so other agents' model calls
            // are not held up by this one's wait.
            *permit = None;
            let answer = match ask_person(recorder, interrupts, tool, &input).await {
                Ok(answer) => answer,
                Err(waited) => return waited,
            };
            let waited = take_permit(recorder.sidecar.permit_again(&recorder.stop), interrupts);
            match waited.await {
                Ok(taken) => *permit = Some(taken),
                Err(waited) => return waited,
            }
            answer
        }
    };
    let sent = match answer {
        Ok(()) => session.allow(request_id, input).await,
        Err(message) => session.deny(request_id, &message).await,
    };
    if let Err(e) = sent {
        tracing::warn!(
            "could not answer {}'s permission request: {e}",
            recorder.agent
        );
    }
    Waited::Answered
}

/// Opens a pending approval and waits for a person's answer: allowed, or denied with the reason for
/// the model. The answer counts once it is durable (read from the durable state, never the head), so
/// nothing runs on an approval the log could still lose. Ends early if the agent stops or the turn is
/// interrupted; the approval is then withdrawn.
async fn ask_person(
    recorder: &Arc<Recorder>,
    interrupts: &mut Interrupts,
    tool: &str,
    input: &serde_json::Value,
) -> Result<Result<(), String>, Waited> {
    let tavern = &recorder.tavern;
    // Subscribed before asking, so the answer cannot slip past between the request and the wait.
    let mut events = tavern.subscribe();
    let intent = Intent::RequestApproval {
        agent: recorder.agent.clone(),
        tool: tool.to_string(),
        input: input.clone(),
    };
    let outcomes = match recorder.effect(Act::Intent(intent)).await {
        Effect::Done(_, Some(Receipt::Accepted { outcomes, .. })) => outcomes,
        Effect::Done(result, _) => return Ok(Err(result.text)),
        Effect::Aborted => return Err(Waited::Stopped),
    };
    let id = outcomes.iter().find_map(|o| match o {
        Outcome::PendingOpened { id, .. } => Some(*id),
        _ => None,
    });
    let Some(id) = id else {
        return Ok(Err("Tavern could not open the approval request".into()));
    };
    // Bounded by people: each iteration handles one event, and the wait ends with the answer, the
    // agent's stop, an interrupt, or Tavern's shutdown.
    loop {
        let settled = tavern.read(|s| s.pending.get(&id).and_then(|p| p.settled.clone()));
        if let Some((_, settled)) = settled {
            return Ok(match settled {
                Settled::Allowed | Settled::AllowedAlways { .. } | Settled::Answered => Ok(()),
                Settled::Denied { reason } | Settled::Withdrawn { reason } => Err(reason),
            });
        }
        tokio::select! {
            _ = recorder.stop.cancelled() => return Err(Waited::Stopped),
            _ = tavern.cancel_token().cancelled() => return Err(Waited::Stopped),
            by = interrupts.next() => {
                withdraw(recorder, id, &format!("@{by} interrupted the turn")).await;
                return Err(Waited::Interrupted(by));
            }
            event = events.recv() => match event {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err(Waited::Stopped),
            },
        }
    }
}

/// Runs one of Tavern's tools called over MCP, under the same rules as an API model's calls (see
/// [`tavern_plugin_api::AgentView::refusal`]); `None` if the agent is stopping.
async fn mcp_call(
    recorder: &Arc<Recorder>,
    plan: &TurnPlan,
    call: &McpCall,
    turn: &mut CliTurn,
) -> Option<ToolResult> {
    let parsed = match ToolCall::from_wire(&call.tool, call.arguments.clone()) {
        Ok(parsed) => parsed,
        Err(e) => return Some(ToolResult::err(e)),
    };
    if let Some(refusal) = plan.view.refusal(plan.tools, turn.ended_by, &parsed) {
        return Some(refusal);
    }
    let tools = super::TurnTools(recorder.clone());
    let result = tavern_plugin_api::Tools::call(&tools, parsed.clone()).await;
    if recorder.stopping() {
        return None;
    }
    turn.ran(parsed, &result);
    Some(result)
}

/// The CLI's exit, if it exits within [`EXIT_GRACE`] (what it says meanwhile is discarded); the session
/// is gone from the runtime then.
async fn exited_soon(runtime: &mut AgentRuntime) -> Option<ExitInfo> {
    let session = runtime.cli.as_mut()?;
    let exit = session.drain_until_exit(Instant::now() + EXIT_GRACE).await;
    if exit.is_some() {
        runtime.cli = None;
    }
    exit
}

/// What a failed turn's result says: its text and its errors.
fn failure_text(result: &TurnResult) -> String {
    let mut message = result.text.trim().to_string();
    for error in &result.errors {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(error.trim());
    }
    message
}

/// Records the end of a CLI turn in one terminal record: its output for replay (text, Tavern tool
/// calls, usage and this turn's cost), the session's message ids, and the reply as the agent's message.
async fn finish(
    recorder: &Recorder,
    runtime: &mut AgentRuntime,
    result: TurnResult,
    turn: CliTurn,
) -> TurnEnd {
    let agent = recorder.agent.clone();
    // The CLI reports the running cost of its process; the turn's is what it added.
    let cost_micros = result.cost_micros.map(|total| {
        let turn_cost = total.saturating_sub(runtime.cost_so_far);
        runtime.cost_so_far = total;
        turn_cost
    });
    let reply = ModelReply {
        text: redact(&result.text),
        tool_calls: turn.calls,
        stop: StopReason::EndTurn,
        usage: Some(Usage {
            input_tokens: result.usage_input_tokens,
            output_tokens: result.usage_output_tokens,
            cost_micros,
        }),
    };
    let text = reply.text.clone();
    let outcomes = vec![
        Outcome::ModelReplied {
            agent: agent.clone(),
            model: "claude-code".to_string(),
            scripted: false,
            reply,
        },
        Outcome::SessionTurn {
            agent: agent.clone(),
            session: result.session_id,
            messages: turn.uuids,
        },
    ];
    complete(&recorder.tavern, &agent, recorder.seq, text, outcomes).await
}

/// Asks the CLI to stop its turn and waits (bounded) for it to end, refusing anything it still asks;
/// a CLI that does not end its turn in time is stopped. True if the process is ready for another turn.
async fn stop_cli_turn(runtime: &mut AgentRuntime, agent: &str, reason: &str) -> bool {
    let Some(session) = runtime.cli.as_mut() else {
        return false;
    };
    let settled = tokio::time::timeout(INTERRUPT_GRACE, async {
        if let Err(e) = session.interrupt().await {
            tracing::debug!("could not interrupt {agent}'s CLI: {e}");
            return false;
        }
        // Bounded by the grace period around it; each iteration consumes one line.
        loop {
            match session.next().await {
                None | Some(CliEvent::Exited(_)) => return false,
                Some(CliEvent::TurnEnd(_)) => return true,
                Some(CliEvent::Permission { request_id, .. }) => {
                    let _ = session.deny(&request_id, reason).await;
                }
                Some(CliEvent::McpCall(call)) => {
                    let _ = session.tool_result(&call, reason, true).await;
                }
                Some(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    if !settled {
        runtime.close().await;
    }
    settled
}

/// Interrupts the CLI's turn and closes it with what it did.
async fn interrupt(
    tavern: &Tavern,
    agent: &str,
    seq: Seq,
    runtime: &mut AgentRuntime,
    by: &str,
) -> TurnEnd {
    stop_cli_turn(runtime, agent, &format!("@{by} interrupted this turn")).await;
    close_interrupted(tavern, agent, seq, by).await
}

/// The CLI process died: the turn fails and the agent is reaped, with the stderr tail in the reason its
/// parent and the person see.
async fn crashed(
    tavern: &Tavern,
    agent: &str,
    seq: Seq,
    inbox_from: usize,
    what: String,
    stderr_tail: &str,
) -> TurnEnd {
    let tail = redact(stderr_tail.trim());
    let reason = if tail.is_empty() {
        what
    } else {
        format!("{what}; its stderr ends: {}", clip(&tail, 600))
    };
    let end = fail(tavern, agent, seq, inbox_from, reason.clone()).await;
    if end == TurnEnd::Cancelled {
        // Tavern is shutting down, so nothing more is recorded: the turn stays open and resumes at
        // the next start.
        return end;
    }
    let reaped = tavern
        .submit(
            Actor::Tavern,
            Intent::Reap {
                agent: agent.to_string(),
                reason,
            },
            None,
        )
        .await;
    match reaped {
        Ok(_) | Err(ExecError::ShuttingDown) => {}
        Err(e) => tracing::error!("could not reap {agent} after its CLI died: {e}"),
    }
    end
}

#[cfg(test)]
mod tests;
