//! Turns run by the Claude Code CLI: the agent's own headless `claude` process does the thinking and
//! the editing, and Tavern stays in charge of everything that matters to the tree.
//!
//! One process lives per working agent (in its supervisor task's [`AgentRuntime`]), started with a
//! session id Tavern chose and resumed with it after a restart. Each turn sends one user line: what
//! the agent needs to know this turn (its state and commitments) and its new messages. While the turn
//! runs, the CLI's stream is recorded on the turn's entry as it happens (text, tool calls and results),
//! Tavern's tools arrive as MCP calls and become intents exactly like an API model's tool calls, and
//! every permission request is decided by Tavern's rules or, when no rule covers it, by a person
//! through a pending approval. Nothing the CLI asks about runs before that answer.

use std::path::PathBuf;
use std::sync::Arc;
use tavern_plugin_api::{ModelReply, StopReason, ToolCall, ToolName, ToolResult, Usage};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::{
    close_interrupted, complete, fail, Act, Effect, Interrupts, Recorder, TurnEnd, TurnPlan,
};
use crate::claude::{CliEvent, CliOptions, CliSession, McpCall, McpTool, SessionStart, TurnResult};
use crate::domain::{
    input_summary, Activity, Actor, Intent, Outcome, PendingItem, Settled, TavernState,
};
use crate::executor::{Receipt, Tavern};
use crate::log::Seq;
use crate::permission::{Decision, Rule, Rules};
use crate::registry;

/// How long Tavern waits for a CLI turn's next line before it gives up on the process. Long, because a
/// model may think for minutes, but finite, so a wedged process cannot hold its agent forever.
const LINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// What an agent's supervisor task keeps between turns: its CLI process, once started.
#[derive(Default)]
pub struct AgentRuntime {
    cli: Option<CliSession>,
}

impl AgentRuntime {
    /// Ends the agent's CLI process, if it has one (closing its input lets it exit cleanly).
    pub async fn close(&mut self) {
        if let Some(session) = self.cli.take() {
            let exit = session.shutdown().await;
            tracing::debug!("CLI process ended: {:?}", exit.code);
        }
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

/// The rules that decide this agent's tool calls: the project's, its type's, and the ones people added
/// for it by answering "always".
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
    Rules::merged(&[&project, &kind, &own])
}

/// The user line of one turn: what the agent needs to know now, then its new messages.
fn turn_text(plan: &TurnPlan, state: &TavernState, agent: &str) -> String {
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
    let session = match ensure_session(&recorder, &plan, model, runtime).await {
        Ok(session) => session,
        Err(error) => return fail(&tavern, &agent, seq, inbox_from, error).await,
    };
    let text = tavern.read_head(|s| turn_text(&plan, s, &agent));
    if let Err(e) = session.send_user(&text).await {
        let exit = runtime.cli.take().map(|s| s.shutdown());
        let tail = match exit {
            Some(exit) => exit.await.stderr_tail,
            None => String::new(),
        };
        return crashed(&tavern, &agent, seq, inbox_from, format!("{e}"), &tail).await;
    }
    let mut turn = CliTurn::default();
    // Bounded by the CLI: each iteration consumes one event, and the process ends its turn with a result
    // line or exits; a silent process is given up on after LINE_TIMEOUT.
    loop {
        let Some(session) = runtime.cli.as_mut() else {
            return fail(
                &tavern,
                &agent,
                seq,
                inbox_from,
                "the CLI session is gone".into(),
            )
            .await;
        };
        let event = tokio::select! {
            _ = recorder.stop.cancelled() => None,
            _ = tavern.cancel_token().cancelled() => None,
            by = interrupts.next() => return interrupt(&tavern, &agent, seq, runtime, &by).await,
            event = tokio::time::timeout(LINE_TIMEOUT, session.next()) => Some(event),
        };
        let event = match event {
            None => {
                // Interrupting the agent interrupts its turn; the entry stays open and resumes whole.
                if let Err(e) = session.interrupt().await {
                    tracing::debug!("could not interrupt {agent}'s CLI: {e}");
                }
                return TurnEnd::Cancelled;
            }
            Some(Err(_)) => {
                let tail = match runtime.cli.take() {
                    Some(s) => s.shutdown().await.stderr_tail,
                    None => String::new(),
                };
                return crashed(
                    &tavern,
                    &agent,
                    seq,
                    inbox_from,
                    format!(
                        "its CLI said nothing for {} minutes",
                        LINE_TIMEOUT.as_secs() / 60
                    ),
                    &tail,
                )
                .await;
            }
            Some(Ok(event)) => event,
        };
        match event {
            None | Some(CliEvent::Exited(_)) => {
                let exit = match (event, runtime.cli.take()) {
                    (Some(CliEvent::Exited(exit)), _) => exit,
                    (_, Some(s)) => s.shutdown().await,
                    (_, None) => continue,
                };
                let code = exit
                    .code
                    .map(|c| format!("exit code {c}"))
                    .unwrap_or_else(|| "a signal".to_string());
                return crashed(
                    &tavern,
                    &agent,
                    seq,
                    inbox_from,
                    format!("its Claude Code CLI ended with {code} in the middle of a turn"),
                    &exit.stderr_tail,
                )
                .await;
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
                activity(&recorder, Activity::Text { text }).await;
            }
            Some(CliEvent::ToolUse {
                id,
                name,
                input,
                message_uuid,
            }) => {
                turn.uuids.push(message_uuid);
                turn.tool_names.push((id, name.clone()));
                activity(
                    &recorder,
                    Activity::ToolUse {
                        tool: name,
                        input: clip(&input_summary(&input), 200),
                    },
                )
                .await;
            }
            Some(CliEvent::ToolResult {
                tool_use_id,
                text,
                is_error,
                message_uuid,
            }) => {
                turn.uuids.push(message_uuid);
                let tool = turn
                    .tool_names
                    .iter()
                    .find(|(id, _)| *id == tool_use_id)
                    .map(|(_, name)| name.clone())
                    .unwrap_or_else(|| "tool".to_string());
                activity(
                    &recorder,
                    Activity::ToolResult {
                        tool,
                        ok: !is_error,
                        text: clip(&text, 200),
                    },
                )
                .await;
            }
            Some(CliEvent::Permission {
                request_id,
                tool_name,
                input,
                ..
            }) => {
                match permission(
                    &recorder,
                    runtime,
                    &mut interrupts,
                    &request_id,
                    &tool_name,
                    input,
                )
                .await
                {
                    Waited::Answered => {}
                    Waited::Stopped => return TurnEnd::Cancelled,
                    Waited::Interrupted(by) => {
                        if let Some(session) = runtime.cli.as_ref() {
                            let reason = format!("@{by} interrupted this turn");
                            if let Err(e) = session.deny(&request_id, &reason).await {
                                tracing::debug!("could not deny {agent}'s pending call: {e}");
                            }
                        }
                        return interrupt(&tavern, &agent, seq, runtime, &by).await;
                    }
                }
            }
            Some(CliEvent::McpCall(call)) => {
                let result = mcp_call(&recorder, &plan, &call, &mut turn).await;
                let Some(result) = result else {
                    return TurnEnd::Cancelled;
                };
                if let Some(session) = runtime.cli.as_ref() {
                    if let Err(e) = session.tool_result(&call, &result.text, !result.ok).await {
                        tracing::warn!("could not answer {agent}'s {} call: {e}", call.tool);
                    }
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
            Some(CliEvent::TurnEnd(result)) if result.is_error => {
                // A failed turn may be the CLI giving up for good (it exits after a fatal error, such
                // as a session it cannot resume); then the agent is reaped with what it said, rather
                // than restarted into the same failure.
                if let Some(exit) = exited_soon(runtime).await {
                    let what = format!(
                        "its Claude Code CLI failed ({}) and exited with {}",
                        clip(&failure_text(&result), 300),
                        exit.code
                            .map(|c| format!("code {c}"))
                            .unwrap_or_else(|| "a signal".into())
                    );
                    return crashed(&tavern, &agent, seq, inbox_from, what, &exit.stderr_tail)
                        .await;
                }
                return finish(&recorder, result, turn, inbox_from).await;
            }
            Some(CliEvent::TurnEnd(result)) => {
                return finish(&recorder, result, turn, inbox_from).await;
            }
        }
    }
}

/// What a CLI turn has gathered so far.
#[derive(Default)]
struct CliTurn {
    /// The session's message uuids, in order.
    uuids: Vec<String>,
    /// Tool-use ids and names, to label results.
    tool_names: Vec<(String, String)>,
    /// Tavern tool calls the model made through MCP.
    calls: Vec<ToolCall>,
}

fn clip(text: &str, max: usize) -> String {
    let one_line = text.trim().replace('\n', " ");
    if one_line.chars().count() > max {
        format!("{}…", one_line.chars().take(max - 1).collect::<String>())
    } else {
        one_line
    }
}

async fn activity(recorder: &Recorder, activity: Activity) {
    recorder
        .record(vec![Outcome::Activity {
            agent: recorder.agent.clone(),
            activity,
        }])
        .await;
}

/// Starts the agent's CLI process if it has none: resuming its recorded session, or starting a new one
/// whose id is recorded before the process runs (so a crash right after still resumes it).
async fn ensure_session<'r>(
    recorder: &Recorder,
    plan: &TurnPlan,
    model: Option<String>,
    runtime: &'r mut AgentRuntime,
) -> Result<&'r CliSession, String> {
    if runtime.cli.is_none() {
        let tavern = &recorder.tavern;
        let program = tavern
            .settings()
            .claude_cli
            .clone()
            .map_err(|e| format!("cannot start the Claude Code CLI: {e}"))?;
        let start = match tavern
            .read_head(|s| s.agent(&recorder.agent).and_then(|n| n.session.clone()))
        {
            Some(id) => SessionStart::Resume(
                Uuid::parse_str(&id)
                    .map_err(|e| format!("the recorded session id {id:?} is not a UUID: {e}"))?,
            ),
            None => {
                let id = Uuid::new_v4();
                if !recorder
                    .record(vec![Outcome::SessionStarted {
                        agent: recorder.agent.clone(),
                        session: id.to_string(),
                    }])
                    .await
                {
                    return Err("the agent is stopping".into());
                }
                SessionStart::New(id)
            }
        };
        let prompt = registry::prompt_text(tavern.store().as_ref(), plan.kind, plan.view.expert);
        let options = CliOptions {
            program,
            cwd: working_dir(tavern, &recorder.agent),
            session: start,
            model,
            append_system_prompt: tavern_plugin_api::compose_system_prompt(&prompt, &plan.view),
            tools: mcp_tools(plan.tools),
            env: Vec::new(),
        };
        let session = CliSession::spawn(options, tavern.tracker())
            .await
            .map_err(|e| e.to_string())?;
        runtime.cli = Some(session);
    }
    runtime
        .cli
        .as_ref()
        .ok_or_else(|| "the CLI session is gone".to_string())
}

/// Where the agent's CLI runs: its own working directory if it was given one, else the project.
fn working_dir(tavern: &Tavern, agent: &str) -> PathBuf {
    tavern
        .read_head(|s| s.agent(agent).and_then(|n| n.workdir.clone()))
        .map(PathBuf::from)
        .unwrap_or_else(|| tavern.settings().project.clone())
}

/// How a wait for a person ended.
enum Waited {
    /// The request was answered (to the CLI too).
    Answered,
    /// The agent or Tavern is stopping.
    Stopped,
    /// A person interrupted the turn while it waited.
    Interrupted(String),
}

/// Decides one permission request and answers the CLI.
async fn permission(
    recorder: &Arc<Recorder>,
    runtime: &mut AgentRuntime,
    interrupts: &mut Interrupts,
    request_id: &str,
    tool: &str,
    input: serde_json::Value,
) -> Waited {
    let tavern = &recorder.tavern;
    let rules = tavern.read_head(|s| rules_for(tavern, s, &recorder.agent));
    let decision = rules.decide(tool, &input, &tavern.settings().project);
    let answer = match decision {
        Decision::Allow(rule) => {
            activity(
                recorder,
                Activity::RuleDecided {
                    tool: tool.to_string(),
                    input: clip(&input_summary(&input), 200),
                    allowed: true,
                    rule: rule.to_string(),
                },
            )
            .await;
            Ok(())
        }
        Decision::Deny(rule) => {
            activity(
                recorder,
                Activity::RuleDecided {
                    tool: tool.to_string(),
                    input: clip(&input_summary(&input), 200),
                    allowed: false,
                    rule: rule.to_string(),
                },
            )
            .await;
            Err(format!("Tavern's rule {rule} denies this call"))
        }
        Decision::Ask => match ask_person(recorder, interrupts, tool, &input).await {
            Ok(answer) => answer,
            Err(waited) => return waited,
        },
    };
    let Some(session) = runtime.cli.as_ref() else {
        return Waited::Answered;
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

/// Opens a pending approval (once, even across a restart) and waits for a person's answer: allowed,
/// or denied with the reason for the model. Ends early if the agent stops or the turn is interrupted.
async fn ask_person(
    recorder: &Arc<Recorder>,
    interrupts: &mut Interrupts,
    tool: &str,
    input: &serde_json::Value,
) -> Result<Result<(), String>, Waited> {
    let tavern = &recorder.tavern;
    // Subscribe before asking, so the answer cannot slip past between the request and the wait.
    let mut events = tavern.subscribe();
    let intent = Intent::RequestApproval {
        agent: recorder.agent.clone(),
        tool: tool.to_string(),
        input: input.clone(),
    };
    let receipt = match recorder.effect(Act::Intent(intent)).await {
        Effect::Done(result, receipt) if result.ok => receipt,
        Effect::Done(result, _) => return Ok(Err(result.text)),
        Effect::Aborted => return Err(Waited::Stopped),
    };
    let id = match receipt {
        Some(Receipt::Accepted { outcomes, .. }) => outcomes.iter().find_map(|o| match o {
            Outcome::PendingOpened { id, .. } => Some(*id),
            _ => None,
        }),
        // Requested before a restart (the resumed turn asks again for the same call): the latest
        // approval this agent opened for exactly this call is the one.
        _ => tavern.read_head(|s| {
            s.pending
                .values()
                .rev()
                .find(|p| {
                    p.agent.eq_ignore_ascii_case(&recorder.agent)
                        && matches!(&p.item, PendingItem::Approval { tool: t, input: i } if t == tool && i == input)
                })
                .map(|p| p.id)
        }),
    };
    let Some(id) = id else {
        return Ok(Err("Tavern could not open the approval request".into()));
    };
    // Bounded by people: each iteration handles one event, and the wait ends with the answer, the
    // agent's stop, or Tavern's shutdown.
    loop {
        if let Some(settled) =
            tavern.read_head(|s| s.pending.get(&id).and_then(|p| p.settled.clone()))
        {
            return Ok(match settled.1 {
                Settled::Allowed | Settled::AllowedAlways { .. } | Settled::Answered => Ok(()),
                Settled::Denied { reason } => Err(reason),
            });
        }
        tokio::select! {
            _ = recorder.stop.cancelled() => return Err(Waited::Stopped),
            _ = tavern.cancel_token().cancelled() => return Err(Waited::Stopped),
            by = interrupts.next() => return Err(Waited::Interrupted(by)),
            event = events.recv() => match event {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err(Waited::Stopped),
            },
        }
    }
}

/// Runs one of Tavern's tools called over MCP; `None` if the agent is stopping.
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
    if !plan.tools.contains(&parsed.name()) {
        return Some(ToolResult::err(format!(
            "{} ({}) may not use the {} tool",
            recorder.agent,
            plan.view.kind_label(),
            call.tool
        )));
    }
    turn.calls.push(parsed.clone());
    let tools = super::TurnTools(recorder.clone());
    let result = tavern_plugin_api::Tools::call(&tools, parsed).await;
    if recorder.stopping() {
        return None;
    }
    Some(result)
}

/// How long Tavern waits, after a failed turn, to see whether the CLI exits.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The CLI's exit, if it exits within [`EXIT_GRACE`] without starting anything new; the session is gone
/// from the runtime then.
async fn exited_soon(runtime: &mut AgentRuntime) -> Option<crate::claude::ExitInfo> {
    let session = runtime.cli.as_mut()?;
    let exit = tokio::time::timeout(EXIT_GRACE, async {
        // Bounded by the grace period; each iteration consumes one line.
        loop {
            match session.next().await {
                Some(CliEvent::Exited(exit)) => return Some(exit),
                None => return None,
                Some(_) => continue,
            }
        }
    })
    .await
    .ok()
    .flatten();
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

/// Records the end of a CLI turn: its output for replay, the session's message ids, and the reply.
async fn finish(
    recorder: &Recorder,
    result: TurnResult,
    turn: CliTurn,
    inbox_from: usize,
) -> TurnEnd {
    let tavern = &recorder.tavern;
    let agent = recorder.agent.clone();
    let seq = recorder.seq;
    if result.is_error {
        let message = format!(
            "the Claude Code CLI's turn failed: {}",
            failure_text(&result)
        );
        return fail(tavern, &agent, seq, inbox_from, message).await;
    }
    let mut uuids = turn.uuids;
    uuids.push(result.uuid.clone());
    let reply = ModelReply {
        text: result.text.clone(),
        tool_calls: turn.calls,
        stop: StopReason::EndTurn,
        usage: Some(Usage {
            input_tokens: result.usage_input_tokens,
            output_tokens: result.usage_output_tokens,
            cost_micros: result.cost_micros,
        }),
    };
    let recorded = recorder
        .record(vec![
            Outcome::ModelReplied {
                agent: agent.clone(),
                model: "claude-code".to_string(),
                scripted: false,
                reply,
            },
            Outcome::SessionTurn {
                agent: agent.clone(),
                session: result.session_id.clone(),
                messages: uuids,
            },
        ])
        .await;
    if !recorded {
        return TurnEnd::Cancelled;
    }
    complete(tavern, &agent, seq, result.text).await
}

/// How long an interrupted CLI gets to end its turn before its process is stopped.
const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Interrupts the CLI's turn and closes it: the CLI stops its model call and ends the turn with an
/// error result, which is awaited (refusing anything it still asks) so the process is ready for the
/// next turn. A CLI that does not end its turn in time is stopped; the next turn resumes its session.
async fn interrupt(
    tavern: &Tavern,
    agent: &str,
    seq: Seq,
    runtime: &mut AgentRuntime,
    by: &str,
) -> TurnEnd {
    let settled = match runtime.cli.as_mut() {
        None => true,
        Some(session) => {
            if let Err(e) = session.interrupt().await {
                tracing::debug!("could not interrupt {agent}'s CLI: {e}");
            }
            let reason = format!("@{by} interrupted this turn");
            let drain = async {
                // Bounded by the grace period around it; each iteration consumes one line.
                loop {
                    match session.next().await {
                        None | Some(CliEvent::Exited(_)) => return false,
                        Some(CliEvent::TurnEnd(_)) => return true,
                        Some(CliEvent::Permission { request_id, .. }) => {
                            let _ = session.deny(&request_id, &reason).await;
                        }
                        Some(CliEvent::McpCall(call)) => {
                            let _ = session.tool_result(&call, &reason, true).await;
                        }
                        Some(_) => {}
                    }
                }
            };
            tokio::time::timeout(INTERRUPT_GRACE, drain)
                .await
                .unwrap_or(false)
        }
    };
    if !settled {
        runtime.close().await;
    }
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
    let tail = stderr_tail.trim();
    let reason = if tail.is_empty() {
        what
    } else {
        format!("{what}; its stderr ends: {}", clip(tail, 600))
    };
    let end = fail(tavern, agent, seq, inbox_from, reason.clone()).await;
    let reaped = tavern
        .submit(
            Actor::Tavern,
            Intent::Reap {
                agent: agent.to_string(),
                reason: reason.clone(),
            },
            None,
        )
        .await;
    if let Err(e) = reaped {
        tracing::error!("could not reap {agent} after its CLI died: {e}");
    }
    end
}
