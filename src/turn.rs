//! One agent turn: the context handed to the agent's plugin, and the recording around it.
//!
//! A turn is a `TakeTurn` entry in the log. Its model reply and each tool call's result are recorded as
//! updates while it runs, so a turn interrupted by a crash resumes without calling the model again and
//! without repeating a tool call that already became an intent.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tavern_plugin_api::{
    compose_system_prompt, AgentContext, AgentError, AgentKind, ChatMessage, Model, ModelError,
    ModelReply, ModelRequest, Role, ToolCall, ToolResult, Tools, TurnInput,
};
use tokio_util::sync::CancellationToken;

use crate::bus::AgentBus;
use crate::domain::{Actor, Intent, Outcome, Party, Summon, TavernState};
use crate::executor::{Receipt, Tavern};
use crate::log::{Cause, Seq, Status};
use crate::model::{ModelSpec, Models};
use crate::registry;
use crate::sidecar::Sidecar;

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEnd {
    /// It completed and its results are recorded.
    Completed,
    /// It was cancelled (shutdown or the agent was stopped); the entry stays open to be resumed.
    Cancelled,
    /// It failed; the failure is recorded.
    Failed(String),
}

/// Everything a turn needs from the state, gathered under one lock.
struct TurnPlan {
    kind: AgentKind,
    view: tavern_plugin_api::AgentView,
    model_spec: Option<String>,
    turn: u32,
    messages: Vec<ChatMessage>,
    inbox_from: usize,
    recorded_reply: Option<ModelReply>,
    recorded_results: HashMap<u32, ToolResult>,
    caused: HashMap<u32, Seq>,
}

fn plan(state: &TavernState, agent: &str, seq: Seq) -> Option<TurnPlan> {
    let node = state.agent(agent)?;
    let open = state.open.get(&seq)?;
    let mut inbox_from = node.read_upto;
    let mut inbox_upto = node.inbox.len();
    let mut recorded_reply = None;
    let mut recorded_results = HashMap::new();
    for outcome in &open.outcomes {
        match outcome {
            Outcome::InboxRead { from, upto, .. } => {
                inbox_from = *from;
                inbox_upto = *upto;
            }
            Outcome::ModelReplied { reply, .. } => recorded_reply = Some(reply.clone()),
            Outcome::ToolCalled { call, result, .. } => {
                recorded_results.insert(*call, result.clone());
            }
            _ => {}
        }
    }
    // The conversation ends at this turn's last input: anything that arrived later is the next turn's.
    let cutoff = inbox_upto
        .checked_sub(1)
        .and_then(|i| node.inbox.get(i))
        .copied();
    let messages = node
        .conversation
        .iter()
        .filter(|&&i| cutoff.is_some_and(|c| i <= c))
        .map(|&i| {
            let m = &state.messages[i];
            match &m.from {
                Party::Agent(from) if from.eq_ignore_ascii_case(&node.name) => ChatMessage {
                    role: Role::Assistant,
                    text: m.text.clone(),
                },
                from => ChatMessage {
                    role: Role::User,
                    text: format!("[{from}] {}", m.text),
                },
            }
        })
        .collect();
    let caused = state
        .caused
        .range((seq, 0)..=(seq, u32::MAX))
        .map(|((_, call), entry)| (*call, *entry))
        .collect();
    Some(TurnPlan {
        kind: node.kind,
        view: node.view(),
        model_spec: node.model.clone(),
        turn: node.turns,
        messages,
        inbox_from,
        recorded_reply,
        recorded_results,
        caused,
    })
}

/// Runs (or resumes) the turn recorded as entry `seq` for `agent`.
pub async fn run_turn(
    tavern: &Tavern,
    models: &Models,
    sidecar: &Sidecar,
    agent: &str,
    seq: Seq,
    stop: &CancellationToken,
) -> TurnEnd {
    let Some(plan) = tavern.read_head(|s| plan(s, agent, seq)) else {
        return TurnEnd::Failed(format!("turn #{seq} of {agent} is not open"));
    };
    let inbox_from = plan.inbox_from;
    let model = match resolve_model(tavern, models, plan.model_spec.as_deref(), agent) {
        Ok(model) => model,
        Err(e) => return fail(tavern, agent, seq, inbox_from, e.to_string()).await,
    };
    let prompt = registry::prompt_text(tavern.store().as_ref(), plan.kind, plan.view.expert);
    let input = TurnInput {
        system_prompt: compose_system_prompt(&prompt, &plan.view),
        messages: plan.messages,
        turn: plan.turn,
    };
    let ctx = AgentContext {
        node: plan.view,
        model: Arc::new(RecordingModel {
            tavern: tavern.clone(),
            sidecar: sidecar.clone(),
            inner: model,
            seq,
            agent: agent.to_string(),
            recorded: Mutex::new(plan.recorded_reply),
            stop: stop.clone(),
        }),
        tools: Arc::new(AgentTools {
            tavern: tavern.clone(),
            agent: agent.to_string(),
            seq,
            next_call: AtomicU32::new(0),
            recorded: plan.recorded_results,
            caused: plan.caused,
        }),
        bus: Arc::new(AgentBus::new(tavern.clone(), agent.to_string())),
    };
    match registry::plugin(plan.kind).turn(&ctx, input).await {
        Ok(output) => {
            let agent_name = agent.to_string();
            let text = output.reply.text.clone();
            let recorded = tavern
                .update_with(seq, move |state, env| {
                    (
                        Status::Executed,
                        crate::domain::decide::finish_turn(state, &agent_name, &text, env),
                        None,
                    )
                })
                .await;
            match recorded {
                Ok(_) => TurnEnd::Completed,
                Err(e) => TurnEnd::Failed(e.to_string()),
            }
        }
        Err(AgentError::Model(ModelError::Cancelled)) => TurnEnd::Cancelled,
        Err(e) => fail(tavern, agent, seq, inbox_from, e.to_string()).await,
    }
}

fn resolve_model(
    tavern: &Tavern,
    models: &Models,
    spec: Option<&str>,
    agent: &str,
) -> Result<Arc<dyn Model>, ModelError> {
    let spec = spec.ok_or_else(|| ModelError::NotConfigured {
        agent: agent.to_string(),
    })?;
    let parsed = ModelSpec::parse(spec, &tavern.settings().project)
        .map_err(|message| ModelError::Backend {
            model: spec.to_string(),
            message,
        })?
        .ok_or_else(|| ModelError::NotConfigured {
            agent: agent.to_string(),
        })?;
    models.get(&parsed)
}

/// Records a failed turn. Its input is handed back so a restarted task reads it again, unless the agent
/// has used up its restarts (then the input is dropped and the failure stands, visibly).
async fn fail(tavern: &Tavern, agent: &str, seq: Seq, inbox_from: usize, error: String) -> TurnEnd {
    let max = tavern.settings().max_restarts;
    let agent_name = agent.to_string();
    let message = error.clone();
    let recorded = tavern
        .update_with(seq, move |state, _| {
            let retry = state.agent(&agent_name).is_some_and(|n| n.restarts < max);
            let outcomes = if retry {
                vec![Outcome::InboxRewound {
                    agent: agent_name.clone(),
                    upto: inbox_from,
                }]
            } else {
                Vec::new()
            };
            (Status::Failed, outcomes, Some(message))
        })
        .await;
    if let Err(e) = recorded {
        tracing::error!("could not record the failure of {agent}'s turn #{seq}: {e}");
    }
    TurnEnd::Failed(error)
}

/// The model handle a plugin gets: calls run in the sidecar and their replies are recorded.
struct RecordingModel {
    tavern: Tavern,
    sidecar: Sidecar,
    inner: Arc<dyn Model>,
    seq: Seq,
    agent: String,
    /// A reply recorded before a restart; returned instead of calling the model again.
    recorded: Mutex<Option<ModelReply>>,
    stop: CancellationToken,
}

#[async_trait]
impl Model for RecordingModel {
    fn label(&self) -> String {
        self.inner.label()
    }

    fn is_scripted(&self) -> bool {
        self.inner.is_scripted()
    }

    async fn complete(&self, request: ModelRequest) -> Result<ModelReply, ModelError> {
        let recorded = self
            .recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(reply) = recorded {
            return Ok(reply);
        }
        let reply = self
            .sidecar
            .call(self.inner.clone(), request, self.stop.clone())
            .await?;
        self.tavern
            .update(
                self.seq,
                Status::Executing,
                vec![Outcome::ModelReplied {
                    agent: self.agent.clone(),
                    model: self.inner.label(),
                    scripted: self.inner.is_scripted(),
                    reply: reply.clone(),
                }],
                None,
            )
            .await
            .map_err(|e| ModelError::Backend {
                model: self.inner.label(),
                message: format!("the reply could not be recorded: {e}"),
            })?;
        Ok(reply)
    }
}

/// Tavern's tools as one agent calls them during one turn.
struct AgentTools {
    tavern: Tavern,
    agent: String,
    seq: Seq,
    next_call: AtomicU32,
    /// Results recorded before a restart, by call index.
    recorded: HashMap<u32, ToolResult>,
    /// Entries that calls became before a restart, by call index.
    caused: HashMap<u32, Seq>,
}

/// What a tool call asks of Tavern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolRequest {
    /// An intent, the same one a person's command produces.
    Intent(Intent),
    /// A read-only question (list the agents), answered from the state.
    ListAgents,
}

/// Turns `agent`'s tool call into what it asks for. The intents are exactly those the console's
/// commands produce, with the agent as the actor: a summon by tool and by `/summon` are one intent.
pub fn tool_request(agent: &str, call: ToolCall) -> Result<ToolRequest, String> {
    let me = agent.to_string();
    Ok(ToolRequest::Intent(match call {
        ToolCall::Summon {
            assignment,
            kind,
            name,
            model,
        } => {
            let (kind, expert) = match kind {
                Some(k) => AgentKind::parse_summonable(&k).map_err(|e| e.to_string())?,
                None => (AgentKind::Mortal, None),
            };
            Intent::Summon(Summon {
                parent: me,
                assignment: Some(assignment),
                kind,
                expert,
                name,
                model,
            })
        }
        ToolCall::Ask { question, class } => Intent::AskUser {
            agent: me,
            question,
            class,
        },
        ToolCall::Commit {
            description,
            assertion,
            needs_signoff,
        } => Intent::AddCommitment {
            agent: me,
            description,
            assertion,
            needs_signoff,
        },
        ToolCall::Done {} => Intent::SignalDone { agent: me },
        ToolCall::Message { to, text } => Intent::SendMessage { to, text },
        ToolCall::Broadcast { scope, text } => Intent::Broadcast { scope, text },
        ToolCall::SetDescription { text } => Intent::SetDescription { agent: me, text },
        ToolCall::Dismiss { name } => Intent::Dismiss { agent: name },
        ToolCall::ListAgents {} => return Ok(ToolRequest::ListAgents),
    }))
}

impl AgentTools {
    async fn dispatch(&self, index: u32, call: ToolCall) -> (Option<Seq>, ToolResult) {
        let intent = match tool_request(&self.agent, call) {
            Ok(ToolRequest::Intent(intent)) => intent,
            Ok(ToolRequest::ListAgents) => {
                return (
                    None,
                    ToolResult::ok(self.tavern.read(crate::console::render::agent_tree)),
                )
            }
            Err(error) => return (None, ToolResult::err(error)),
        };
        let cause = Cause {
            seq: self.seq,
            call: Some(index),
        };
        match self
            .tavern
            .submit(
                Actor::Agent(self.agent.clone()),
                intent.clone(),
                Some(cause),
            )
            .await
        {
            Ok(Receipt::Accepted { seq, outcomes, .. }) => {
                (Some(seq), ToolResult::ok(describe(&intent, &outcomes)))
            }
            Ok(Receipt::Rejected { seq, error }) => (Some(seq), ToolResult::err(error.to_string())),
            Err(e) => (None, ToolResult::err(e.to_string())),
        }
    }
}

/// The text a tool call's result gives the model.
fn describe(intent: &Intent, outcomes: &[Outcome]) -> String {
    match intent {
        Intent::Summon(_) => outcomes
            .iter()
            .find_map(|o| match o {
                Outcome::AgentSummoned(new) => Some(format!("Summoned {}", new.name)),
                _ => None,
            })
            .unwrap_or_else(|| "Summoned".to_string()),
        Intent::AskUser { .. } => outcomes
            .iter()
            .find_map(|o| match o {
                Outcome::MessagePosted(m) => Some(format!(
                    "Your question went to {}; you are waiting for the answer.",
                    m.to
                )),
                _ => None,
            })
            .unwrap_or_else(|| "Asked.".to_string()),
        Intent::AddCommitment { description, .. } => format!("Commitment added: {description}"),
        Intent::SignalDone { .. } => "Verification started: Tavern is running your commitments' \
             assertions; the result comes to you as a message."
            .to_string(),
        Intent::SendMessage { to, .. } => format!("Sent to {to}."),
        Intent::Broadcast { .. } => format!(
            "Sent to {} agents.",
            outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::MessagePosted(_)))
                .count()
        ),
        Intent::SetDescription { .. } => "Description updated.".to_string(),
        Intent::Dismiss { agent } => format!("Dismissed {agent}."),
        other => format!("Done: {}", other.summary()),
    }
}

#[async_trait]
impl Tools for AgentTools {
    async fn call(&self, call: ToolCall) -> ToolResult {
        let index = self.next_call.fetch_add(1, Ordering::SeqCst);
        if let Some(result) = self.recorded.get(&index) {
            return result.clone();
        }
        let (entry, result) = if let Some(&entry) = self.caused.get(&index) {
            // The call became an intent before a restart but its result was not recorded on the turn:
            // report that entry's fate instead of doing it twice.
            let result = match self.tavern.log().reader().read_range(entry, entry) {
                Ok(entries) => match entries.first() {
                    Some(e) if e.status == Status::Failed => ToolResult::err(
                        e.error
                            .clone()
                            .unwrap_or_else(|| format!("entry #{entry} failed")),
                    ),
                    Some(_) => ToolResult::ok(format!("Already done as entry #{entry}.")),
                    None => ToolResult::err(format!("entry #{entry} is missing from the log")),
                },
                Err(e) => ToolResult::err(e.to_string()),
            };
            (Some(entry), result)
        } else {
            self.dispatch(index, call).await
        };
        if let Err(e) = self
            .tavern
            .update(
                self.seq,
                Status::Executing,
                vec![Outcome::ToolCalled {
                    call: index,
                    entry,
                    result: result.clone(),
                }],
                None,
            )
            .await
        {
            return ToolResult::err(format!("the result could not be recorded: {e}"));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::{parse, Command};

    #[test]
    fn a_summon_by_tool_and_by_command_is_the_same_intent() {
        let by_tool = tool_request(
            "Frodo",
            ToolCall::Summon {
                assignment: "write the tests".into(),
                kind: Some("tester".into()),
                name: None,
                model: Some("scripted:x.toml".into()),
            },
        )
        .unwrap();
        let by_command = parse(
            "/summon write the tests --type tester --parent Frodo --model scripted:x.toml",
            "Jake",
        )
        .unwrap()
        .unwrap();
        match (by_tool, by_command) {
            (ToolRequest::Intent(a), Command::Submit(b)) => assert_eq!(a, b),
            other => panic!("{other:?}"),
        }
        let commit = tool_request(
            "Sam",
            ToolCall::Commit {
                description: "tests pass".into(),
                assertion: "cargo test".into(),
                needs_signoff: false,
            },
        )
        .unwrap();
        match parse("/commit Sam tests pass -- cargo test", "Jake")
            .unwrap()
            .unwrap()
        {
            Command::Submit(b) => assert_eq!(commit, ToolRequest::Intent(b)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            tool_request("Sam", ToolCall::Done {}).unwrap(),
            ToolRequest::Intent(Intent::SignalDone {
                agent: "Sam".into()
            })
        );
        assert!(tool_request(
            "Sam",
            ToolCall::Summon {
                assignment: "x".into(),
                kind: Some("wizard".into()),
                name: None,
                model: None
            }
        )
        .unwrap_err()
        .contains("unknown agent type"));
    }
}
