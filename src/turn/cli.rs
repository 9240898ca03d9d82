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

mod permissions;
mod session;

use permissions::*;
use session::*;

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
