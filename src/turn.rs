//! One agent turn: the context handed to the agent's plugin, and the recording around it.
//!
//! A turn is a `TakeTurn` entry in the log. Every model reply and every effect of the turn (a tool call,
//! a message sent through the bus) is recorded as an update while it runs, in order. A turn interrupted
//! by a crash or a shutdown resumes from that record: recorded replies are handed back instead of
//! calling the model again, and effects that already happened are not repeated. A turn never records
//! anything after its agent is told to stop, so an interrupted turn stays open and resumes whole.

use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tavern_plugin_api::{
    compose_system_prompt, AgentContext, AgentError, AgentKind, BroadcastScope, Bus, BusError,
    ChatMessage, Model, ModelError, ModelReply, ModelRequest, ToolCall, ToolResult, Tools,
    TurnInput,
};
use tokio_util::sync::CancellationToken;

use crate::domain::{Actor, DomainError, Intent, Outcome, Party, Summon, TavernState};
use crate::executor::{ExecError, Receipt, Tavern};
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

pub mod cli;

pub use cli::AgentRuntime;

/// Everything a turn needs from the state, gathered under one lock.
struct TurnPlan {
    kind: AgentKind,
    /// The tools the agent's type may use.
    tools: &'static [tavern_plugin_api::ToolName],
    /// This turn's new inputs, each starting with who sent it (for runtimes that keep their own
    /// conversation, like the Claude Code CLI).
    new_input: Vec<String>,
    /// Whether such a runtime already had this turn's input before the turn was interrupted.
    input_sent: bool,
    view: tavern_plugin_api::AgentView,
    model_spec: Option<String>,
    turn: u32,
    messages: Vec<ChatMessage>,
    inbox_from: usize,
    replies: VecDeque<ModelReply>,
    results: HashMap<u32, ToolResult>,
    caused: HashMap<u32, Seq>,
}

fn plan(state: &TavernState, agent: &str, seq: Seq) -> Option<TurnPlan> {
    let node = state.agent(agent)?;
    let open = state.open.get(&seq)?;
    let mut inbox_from = node.read_upto;
    let mut inbox_upto = node.inbox.len();
    let mut replies = VecDeque::new();
    let mut results = HashMap::new();
    let mut turns_before = node.turns;
    for outcome in &open.outcomes {
        match outcome {
            Outcome::InboxRead { from, upto, .. } => {
                inbox_from = *from;
                inbox_upto = *upto;
            }
            Outcome::ModelReplied { reply, .. } => {
                replies.push_back(reply.clone());
                // The turn number is the one this turn started with, however many replies it recorded.
                turns_before = turns_before.saturating_sub(1);
            }
            Outcome::ToolCalled { call, result, .. } => {
                results.insert(*call, result.clone());
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
                Party::Agent(from) if from.eq_ignore_ascii_case(&node.name) => {
                    ChatMessage::assistant(m.text.clone())
                }
                from => ChatMessage::user(format!("[{from}] {}", m.text)),
            }
        })
        .collect();
    let caused = state
        .caused
        .range((seq, 0)..=(seq, u32::MAX))
        .map(|((_, call), entry)| (*call, *entry))
        .collect();
    let new_input = node.inbox[inbox_from.min(inbox_upto)..inbox_upto.min(node.inbox.len())]
        .iter()
        .map(|&i| {
            let m = &state.messages[i];
            format!("[{}] {}", m.from, m.text)
        })
        .collect();
    let input_sent = open
        .outcomes
        .iter()
        .any(|o| matches!(o, Outcome::InputSent { .. }));
    Some(TurnPlan {
        kind: node.kind,
        tools: registry::plugin(node.kind).policy().tools,
        new_input,
        input_sent,
        view: node.view(),
        model_spec: node.model.clone(),
        turn: turns_before,
        messages,
        inbox_from,
        replies,
        results,
        caused,
    })
}

/// The record of one running turn, shared by its model handle, its tools and its bus.
struct Recorder {
    tavern: Tavern,
    sidecar: Sidecar,
    seq: Seq,
    agent: String,
    stop: CancellationToken,
    /// Set once the turn must not record anything more (its agent is stopping, or Tavern is).
    aborted: AtomicBool,
    /// Replies recorded before a restart, in order; handed back instead of calling the model again.
    replies: Mutex<VecDeque<ModelReply>>,
    /// The index of the next effect (tool call or bus send) of this turn.
    next_effect: AtomicU32,
    /// Results recorded before a restart, by effect index.
    results: HashMap<u32, ToolResult>,
    /// Entries that effects became before a restart, by effect index.
    caused: HashMap<u32, Seq>,
}

/// One effect of a turn: an intent to submit, or the answer to a read-only question, which is only
/// recorded (so a resumed turn gives the model the same answer).
enum Act {
    Intent(Intent),
    Answer(ToolResult),
}

/// What an effect of the turn came to.
enum Effect {
    /// It ran (or had run before a restart): what to tell the model, and the receipt if it ran now.
    Done(ToolResult, Option<Receipt>),
    /// The agent is stopping: nothing was done or recorded.
    Aborted,
}

impl Recorder {
    fn stopping(&self) -> bool {
        if self.stop.is_cancelled() || self.tavern.cancel_token().is_cancelled() {
            self.aborted.store(true, Ordering::SeqCst);
        }
        self.aborted.load(Ordering::SeqCst)
    }

    /// Records outcomes on the turn's entry; any failure to record aborts the turn.
    async fn record(&self, outcomes: Vec<Outcome>) -> bool {
        if self.stopping() {
            return false;
        }
        match self
            .tavern
            .update(self.seq, Status::Executing, outcomes, None)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("{}'s turn #{} stops: {e}", self.agent, self.seq);
                self.aborted.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    /// Runs one effect of the turn: an intent caused by it, unless it already ran before a restart.
    async fn effect(&self, act: Act) -> Effect {
        if self.stopping() {
            return Effect::Aborted;
        }
        let index = self.next_effect.fetch_add(1, Ordering::SeqCst);
        if let Some(result) = self.results.get(&index) {
            return Effect::Done(result.clone(), None);
        }
        let (entry, result, receipt) = match (act, self.caused.get(&index)) {
            (Act::Answer(answer), _) => (None, answer, None),
            (Act::Intent(_), Some(&entry)) => (Some(entry), self.already_done(entry), None),
            (Act::Intent(intent), None) => {
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
                    Ok(receipt) => {
                        let result = match &receipt {
                            Receipt::Accepted { outcomes, .. } => {
                                ToolResult::ok(describe(&intent, outcomes))
                            }
                            Receipt::Rejected { error, .. } => ToolResult::err(error.to_string()),
                        };
                        (Some(receipt.seq()), result, Some(receipt))
                    }
                    Err(ExecError::ShuttingDown) => {
                        self.aborted.store(true, Ordering::SeqCst);
                        return Effect::Aborted;
                    }
                    Err(e) => (None, ToolResult::err(e.to_string()), None),
                }
            }
        };
        let recorded = self
            .record(vec![Outcome::ToolCalled {
                call: index,
                entry,
                result: result.clone(),
            }])
            .await;
        // An effect that happened is reported even if its result could not be recorded; the caused
        // index keeps a resumed turn from doing it again.
        if !recorded && entry.is_none() {
            return Effect::Aborted;
        }
        Effect::Done(result, receipt)
    }

    /// The fate of an entry an effect became before a restart.
    fn already_done(&self, entry: Seq) -> ToolResult {
        match self.tavern.log().reader().read_range(entry, entry) {
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
        }
    }
}

/// Runs (or resumes) the turn recorded as entry `seq` for `agent`.
pub async fn run_turn(
    tavern: &Tavern,
    models: &Models,
    sidecar: &Sidecar,
    agent: &str,
    seq: Seq,
    stop: &CancellationToken,
    runtime: &mut AgentRuntime,
) -> TurnEnd {
    // Subscribed before anything runs, so an interrupt cannot slip past unseen.
    let interrupts = Interrupts::watch(tavern, agent, seq);
    let Some(mut plan) = tavern.read_head(|s| plan(s, agent, seq)) else {
        return TurnEnd::Failed(format!("turn #{seq} of {agent} is not open"));
    };
    let inbox_from = plan.inbox_from;
    // The turn's own stop: the agent's stop, or a person's interrupt of this turn only.
    let turn_stop = stop.child_token();
    let stop = &turn_stop;
    let spec = tavern
        .settings()
        .models
        .effective(plan.model_spec.as_deref(), plan.kind)
        .map(str::to_string);
    let parsed = match parse_spec(tavern, spec.as_deref(), agent) {
        Ok(parsed) => parsed,
        Err(e) => return fail(tavern, agent, seq, inbox_from, e.to_string()).await,
    };
    // An API turn replays call by call, so a resumed one gets its recorded replies and results back by
    // position. The CLI runs its own loop and cannot replay: what it did before stands, and its effects
    // are numbered after the recorded ones so none is mistaken for another.
    let replayable = !matches!(parsed, ModelSpec::ClaudeCode { .. });
    let (first_effect, results, caused) = if replayable {
        (
            0,
            std::mem::take(&mut plan.results),
            std::mem::take(&mut plan.caused),
        )
    } else {
        let recorded = plan.results.keys().chain(plan.caused.keys()).max();
        (
            recorded.map_or(0, |last| last + 1),
            HashMap::new(),
            HashMap::new(),
        )
    };
    let recorder = Arc::new(Recorder {
        tavern: tavern.clone(),
        sidecar: sidecar.clone(),
        seq,
        agent: agent.to_string(),
        stop: stop.clone(),
        aborted: AtomicBool::new(false),
        replies: Mutex::new(std::mem::take(&mut plan.replies)),
        next_effect: AtomicU32::new(first_effect),
        results,
        caused,
    });
    if let ModelSpec::ClaudeCode { model } = parsed {
        return cli::run(recorder, plan, model, runtime, interrupts).await;
    }
    let model = match models.get(&parsed) {
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
            recorder: recorder.clone(),
            inner: model,
        }),
        tools: Arc::new(TurnTools(recorder.clone())),
        bus: Arc::new(TurnBus(recorder.clone())),
    };
    let mut interrupts = interrupts;
    let turn = registry::plugin(plan.kind).turn(&ctx, input);
    tokio::pin!(turn);
    let outcome = tokio::select! {
        outcome = &mut turn => outcome,
        by = interrupts.next() => {
            // The model call is cancelled and further effects are refused; the plugin returns at
            // once, and the turn closes with what it did so far.
            turn_stop.cancel();
            let _ = turn.await;
            return close_interrupted(tavern, agent, seq, &by).await;
        }
    };
    if recorder.stopping() {
        // Whatever the plugin made of it, a stopped turn records nothing more: it stays open and the
        // agent's next task resumes it from what was recorded.
        return TurnEnd::Cancelled;
    }
    match outcome {
        Ok(output) => complete(tavern, agent, seq, output.reply.text, Vec::new()).await,
        Err(AgentError::Model(ModelError::Cancelled)) => TurnEnd::Cancelled,
        Err(e) => fail(tavern, agent, seq, inbox_from, e.to_string()).await,
    }
}

/// Watches for people interrupting one agent's turn.
struct Interrupts {
    tavern: Tavern,
    agent: String,
    events: tokio::sync::broadcast::Receiver<Arc<crate::executor::Event>>,
    /// The turn's entry.
    seq: Seq,
}

impl Interrupts {
    fn watch(tavern: &Tavern, agent: &str, seq: Seq) -> Interrupts {
        Interrupts {
            tavern: tavern.clone(),
            agent: agent.to_string(),
            events: tavern.subscribe(),
            seq,
        }
    }

    /// Resolves with who interrupted, once someone does; pending forever if Tavern's events end.
    /// Cancellation-safe, so it can sit in a `select!` for the whole turn.
    async fn next(&mut self) -> String {
        use tokio::sync::broadcast::error::RecvError;
        // Bounded by events: each iteration waits for one. The state, not the event, says whether an
        // interrupt happened, so a lagged receiver or an event still in flight cannot hide one.
        loop {
            let by = self.tavern.read_head(|s| {
                s.agent(&self.agent)
                    .and_then(|n| n.interrupted.clone())
                    .filter(|(turn, _)| *turn == self.seq)
                    .map(|(_, by)| by)
            });
            if let Some(by) = by {
                return by;
            }
            match self.events.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

/// Closes a turn a person interrupted: what it did stands, its input counts as read, and the agent
/// waits for new input.
async fn close_interrupted(tavern: &Tavern, agent: &str, seq: Seq, by: &str) -> TurnEnd {
    let result = tavern
        .update(
            seq,
            Status::Cancelled,
            Vec::new(),
            Some(format!("{agent}'s turn was interrupted by @{by}")),
        )
        .await;
    match result {
        Ok(()) | Err(ExecError::NotOpen(_)) => TurnEnd::Completed,
        Err(ExecError::ShuttingDown) => TurnEnd::Cancelled,
        Err(e) => {
            tracing::error!("could not record that {agent}'s turn #{seq} was interrupted: {e}");
            TurnEnd::Failed(e.to_string())
        }
    }
}

fn parse_spec(tavern: &Tavern, spec: Option<&str>, agent: &str) -> Result<ModelSpec, ModelError> {
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
    Ok(parsed)
}

/// Records a finished turn in one terminal record: `first` (what the turn produced, when not recorded
/// already), then its reply as the agent's message (see [`crate::domain::decide::finish_turn`]).
async fn complete(
    tavern: &Tavern,
    agent: &str,
    seq: Seq,
    text: String,
    first: Vec<Outcome>,
) -> TurnEnd {
    let agent = agent.to_string();
    let recorded = tavern
        .update_with(seq, move |state, env| {
            // `first` (a reply, usage, session ids) changes nothing the reply's message depends on (who
            // the agent speaks to), so deciding the message against the state before it is the same.
            let mut outcomes = first;
            outcomes.extend(crate::domain::decide::finish_turn(
                state, &agent, &text, env,
            ));
            (Status::Executed, outcomes, None)
        })
        .await;
    match recorded {
        Ok(_) => TurnEnd::Completed,
        Err(ExecError::ShuttingDown) => TurnEnd::Cancelled,
        Err(e) => TurnEnd::Failed(e.to_string()),
    }
}

/// Records a failed turn (see [`crate::domain::decide::fail_turn`] for what happens to its input).
async fn fail(tavern: &Tavern, agent: &str, seq: Seq, inbox_from: usize, error: String) -> TurnEnd {
    let agent_name = agent.to_string();
    let message = error.clone();
    let recorded = tavern
        .update_with(seq, move |state, env| {
            // The entry's error names the agent: surfaces show it without the entry's intent at hand.
            (
                Status::Failed,
                crate::domain::decide::fail_turn(state, &agent_name, inbox_from, &message, env),
                Some(format!("{agent_name}'s turn failed: {message}")),
            )
        })
        .await;
    match recorded {
        Ok(_) => TurnEnd::Failed(error),
        Err(ExecError::ShuttingDown) => TurnEnd::Cancelled,
        Err(e) => {
            tracing::error!("could not record the failure of {agent}'s turn #{seq}: {e}");
            TurnEnd::Failed(error)
        }
    }
}

/// The model handle a plugin gets: calls run in the sidecar and their replies are recorded.
struct RecordingModel {
    recorder: Arc<Recorder>,
    inner: Arc<dyn Model>,
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
        let r = &self.recorder;
        let recorded = r
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        if let Some(reply) = recorded {
            return Ok(reply);
        }
        if r.stopping() {
            return Err(ModelError::Cancelled);
        }
        let reply = r
            .sidecar
            .call(self.inner.clone(), request, r.stop.clone())
            .await?;
        let recorded = r
            .record(vec![Outcome::ModelReplied {
                agent: r.agent.clone(),
                model: self.inner.label(),
                scripted: self.inner.is_scripted(),
                reply: reply.clone(),
            }])
            .await;
        if !recorded {
            return Err(ModelError::Cancelled);
        }
        Ok(reply)
    }
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
                workdir: None,
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
        Intent::RequestApproval { .. } => outcomes
            .iter()
            .find_map(|o| match o {
                Outcome::PendingOpened { id, .. } => Some(format!("Waiting for approval #{id}.")),
                _ => None,
            })
            .unwrap_or_else(|| "Approval requested.".to_string()),
        Intent::Dismiss { agent } => format!("Dismissed {agent}."),
        other => format!("Done: {}", other.summary()),
    }
}

/// Tavern's tools as one agent calls them during one turn.
struct TurnTools(Arc<Recorder>);

#[async_trait]
impl Tools for TurnTools {
    async fn call(&self, call: ToolCall) -> ToolResult {
        let r = &self.0;
        let request = match tool_request(&r.agent, call) {
            Ok(request) => request,
            Err(error) => return ToolResult::err(error),
        };
        let effect = match request {
            ToolRequest::Intent(intent) => r.effect(Act::Intent(intent)).await,
            ToolRequest::ListAgents => {
                let tree = r.tavern.read(crate::console::render::agent_tree);
                r.effect(Act::Answer(ToolResult::ok(tree))).await
            }
        };
        match effect {
            Effect::Done(result, _) => result,
            Effect::Aborted => ToolResult::err("not run: the agent is stopping"),
        }
    }
}

/// The bus as one agent's plugin sees it during a turn: sends are effects of the turn, recorded and
/// never repeated on resume.
struct TurnBus(Arc<Recorder>);

fn bus_result(effect: Effect) -> Result<Vec<Outcome>, BusError> {
    match effect {
        Effect::Done(_, Some(Receipt::Accepted { outcomes, .. })) => Ok(outcomes),
        Effect::Done(_, Some(Receipt::Rejected { error, .. })) => Err(match error {
            DomainError::UnknownAgent(name) => BusError::UnknownAgent(name),
            DomainError::AgentDead { name, state } => BusError::AgentDead { name, state },
            other => BusError::NotRecorded(other.to_string()),
        }),
        // Sent before a restart: it stands.
        Effect::Done(result, None) if result.ok => Ok(Vec::new()),
        Effect::Done(result, None) => Err(BusError::NotRecorded(result.text)),
        Effect::Aborted => Err(BusError::NotRecorded("the agent is stopping".into())),
    }
}

#[async_trait]
impl Bus for TurnBus {
    async fn send(&self, to: &str, text: &str) -> Result<(), BusError> {
        let intent = Intent::SendMessage {
            to: to.to_string(),
            text: text.to_string(),
        };
        bus_result(self.0.effect(Act::Intent(intent)).await).map(|_| ())
    }

    async fn broadcast(&self, scope: BroadcastScope, text: &str) -> Result<usize, BusError> {
        let intent = Intent::Broadcast {
            scope,
            text: text.to_string(),
        };
        bus_result(self.0.effect(Act::Intent(intent)).await).map(|outcomes| {
            outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::MessagePosted(_)))
                .count()
        })
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
