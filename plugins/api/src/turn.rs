//! The trait an agent type implements, the context it receives, and the standard turn.

use async_trait::async_trait;
use std::sync::Arc;

use crate::kinds::{AgentKind, Expert, KindPolicy};
use crate::lifecycle::{AgentState, Modes, TaskMode};
use crate::model::{ChatMessage, Model, ModelError, ModelReply, ModelRequest, StopReason};
use crate::tools::{Bus, Commitment, ToolCall, ToolName, ToolResult, Tools};

/// A read-only snapshot of an agent's node, as its type sees it this turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    /// The agent's name (its id: unique across the tavern and never reused).
    pub name: String,
    /// Its type.
    pub kind: AgentKind,
    /// Its expert prompt, if any.
    pub expert: Option<Expert>,
    /// Its parent's name; `None` only for Jake.
    pub parent: Option<String>,
    /// Its children's names, live or dead, in summon order.
    pub children: Vec<String>,
    /// Its lifecycle state.
    pub state: AgentState,
    /// What it was asked to do.
    pub assignment: Option<String>,
    /// The original ask plus current status, editable by people and by the agent.
    pub description: String,
    /// Its commitments, in the order they were added.
    pub commitments: Vec<Commitment>,
    /// Its mode flags.
    pub modes: Modes,
    /// Its task mode.
    pub task_mode: TaskMode,
    /// The person who asked for the work.
    pub requester: Option<String>,
}

impl AgentView {
    /// `mortal`, or `mortal/reviewer` for an expert.
    pub fn kind_label(&self) -> String {
        match self.expert {
            Some(expert) => format!("{}/{}", self.kind, expert),
            None => self.kind.to_string(),
        }
    }

    /// What the model is told instead of running `call`, if this agent may not run it now: any call
    /// after `ended_by`, the call that ended the turn (see [`ToolCall::ends_turn`]), or a tool outside
    /// `tools` (its type's policy). `None` when the call may run. Every runtime asks this before it
    /// runs a call, so an API model and the Claude Code CLI keep the same rules and hear the same words.
    pub fn refusal(
        &self,
        tools: &[ToolName],
        ended_by: Option<ToolName>,
        call: &ToolCall,
    ) -> Option<ToolResult> {
        if let Some(ender) = ended_by {
            return Some(ToolResult::err(format!(
                "not run: the turn ended at {}",
                ender.wire()
            )));
        }
        let name = call.name();
        if !tools.contains(&name) {
            return Some(ToolResult::err(format!(
                "{} ({}) may not use the {} tool",
                self.name,
                self.kind_label(),
                name.wire()
            )));
        }
        None
    }
}

/// What an agent type is handed for a turn: the only way it reaches the world.
#[derive(Clone)]
pub struct AgentContext {
    /// Its node.
    pub node: AgentView,
    /// Its model, behind Tavern's sidecar (global concurrency cap, recorded in the log).
    pub model: Arc<dyn Model>,
    /// Tavern's tools, acting as this agent.
    pub tools: Arc<dyn Tools>,
    /// The message bus, sending as this agent.
    pub bus: Arc<dyn Bus>,
}

/// The input of one turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnInput {
    /// The composed system prompt (see [`crate::compose_system_prompt`]).
    pub system_prompt: String,
    /// The conversation so far, ending with the new inputs.
    pub messages: Vec<ChatMessage>,
    /// How many turns the agent has taken before.
    pub turn: u32,
}

/// What a turn produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnOutput {
    /// The model's reply.
    pub reply: ModelReply,
    /// One result per tool call in the reply, in order (refused and skipped calls included).
    pub results: Vec<ToolResult>,
}

/// A turn that could not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The model call failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The model kept calling tools without answering.
    #[error(
        "the model made {0} calls in one turn without finishing its answer; Tavern ended the turn"
    )]
    TooManySteps(usize),
}

/// An agent type. Implemented once per plugin crate; Tavern holds them in a closed registry.
#[async_trait]
pub trait AgentType: Send + Sync {
    /// Which kind this is.
    fn kind(&self) -> AgentKind;
    /// The compiled-in prompt text for this type (and expert, for mortals). A project may override the
    /// text with a file in `.tavern/prompts/`, but cannot add types.
    fn prompt(&self, expert: Option<Expert>) -> &'static str;
    /// What the type may do.
    fn policy(&self) -> KindPolicy;
    /// Takes one turn. The default is [`standard_turn`].
    async fn turn(&self, ctx: &AgentContext, input: TurnInput) -> Result<TurnOutput, AgentError> {
        standard_turn(self.policy(), ctx, input).await
    }
}

/// How many model calls one turn may make before Tavern ends it: a model that keeps calling tools
/// without ever answering must not loop forever.
pub const MAX_STEPS_PER_TURN: usize = 16;

/// The turn every built-in type uses: ask the model, run its tool calls in order through Tavern, and,
/// when the model asked for the results (stop reason `tool_use`), hand them back and ask again, up to
/// [`MAX_STEPS_PER_TURN`] calls. Tools outside the type's policy are refused, and a call that ends the
/// turn (ask, done) stops it: the calls after it are not run and the model is not asked again.
pub async fn standard_turn(
    policy: KindPolicy,
    ctx: &AgentContext,
    input: TurnInput,
) -> Result<TurnOutput, AgentError> {
    let mut request = ModelRequest {
        agent: ctx.node.name.clone(),
        kind: ctx.node.kind_label(),
        assignment: ctx.node.assignment.clone(),
        turn: input.turn,
        system: input.system_prompt,
        messages: input.messages,
        tools: policy.tools.to_vec(),
    };
    let mut combined = ModelReply::default();
    let mut all_results = Vec::new();
    for _ in 0..MAX_STEPS_PER_TURN {
        let reply = ctx.model.complete(request.clone()).await?;
        let (results, ended) = run_calls(policy, ctx, &reply.tool_calls).await;
        if !reply.text.is_empty() {
            if !combined.text.is_empty() {
                combined.text.push_str("\n\n");
            }
            combined.text.push_str(&reply.text);
        }
        combined.tool_calls.extend(reply.tool_calls.iter().cloned());
        all_results.extend(results.iter().cloned());
        if let Some(usage) = &reply.usage {
            combined
                .usage
                .get_or_insert_with(Default::default)
                .add(usage);
        }
        combined.stop = reply.stop;
        if ended || reply.stop != StopReason::ToolUse || reply.tool_calls.is_empty() {
            return Ok(TurnOutput {
                reply: combined,
                results: all_results,
            });
        }
        request.messages.push(ChatMessage {
            tool_calls: reply.tool_calls,
            ..ChatMessage::assistant(reply.text)
        });
        request.messages.push(ChatMessage {
            tool_results: results,
            ..ChatMessage::user("")
        });
    }
    Err(AgentError::TooManySteps(MAX_STEPS_PER_TURN))
}

/// Runs one reply's tool calls; says whether one of them ended the turn.
async fn run_calls(
    policy: KindPolicy,
    ctx: &AgentContext,
    calls: &[ToolCall],
) -> (Vec<ToolResult>, bool) {
    let mut results = Vec::with_capacity(calls.len());
    let mut ended_by = None;
    for call in calls {
        if let Some(refusal) = ctx.node.refusal(policy.tools, ended_by, call) {
            results.push(refusal);
            continue;
        }
        let result = ctx.tools.call(call.clone()).await;
        if call.ends_turn() && result.ok {
            ended_by = Some(call.name());
        }
        results.push(result);
    }
    (results, ended_by.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    use crate::tools::BroadcastScope;
    use crate::BusError;

    /// The output of a future that never waits (every fake here answers at once).
    fn now<F: Future>(future: F) -> F::Output {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the future waited, but nothing here waits"),
        }
    }

    /// A model that gives one reply, whatever it is asked.
    struct OneReply(ModelReply);

    #[async_trait]
    impl Model for OneReply {
        fn label(&self) -> String {
            "one-reply".into()
        }
        fn is_scripted(&self) -> bool {
            true
        }
        async fn complete(&self, _request: ModelRequest) -> Result<ModelReply, ModelError> {
            Ok(self.0.clone())
        }
    }

    /// Tools that succeed and remember every call that reached them.
    #[derive(Default)]
    struct Ran(Mutex<Vec<ToolCall>>);

    #[async_trait]
    impl Tools for Ran {
        async fn call(&self, call: ToolCall) -> ToolResult {
            self.0.lock().unwrap().push(call);
            ToolResult::ok("ran")
        }
    }

    struct NoBus;

    #[async_trait]
    impl Bus for NoBus {
        async fn send(&self, _to: &str, _text: &str) -> Result<(), BusError> {
            Ok(())
        }
        async fn broadcast(&self, _scope: BroadcastScope, _text: &str) -> Result<usize, BusError> {
            Ok(0)
        }
    }

    fn view() -> AgentView {
        AgentView {
            name: "Sam".into(),
            kind: AgentKind::Mortal,
            expert: None,
            parent: Some("Jake".into()),
            children: Vec::new(),
            state: AgentState::Working,
            assignment: None,
            description: String::new(),
            commitments: Vec::new(),
            modes: Modes::default(),
            task_mode: TaskMode::default(),
            requester: None,
        }
    }

    const TOOLS: &[ToolName] = &[ToolName::Done, ToolName::Message];

    #[test]
    fn calls_after_the_one_that_ended_the_turn_are_refused_and_not_run() {
        let message = ToolCall::Message {
            to: "parent".into(),
            text: "still here".into(),
        };
        let tools = Arc::new(Ran::default());
        let ctx = AgentContext {
            node: view(),
            model: Arc::new(OneReply(ModelReply {
                tool_calls: vec![ToolCall::ListAgents {}, ToolCall::Done {}, message.clone()],
                stop: StopReason::ToolUse,
                ..ModelReply::default()
            })),
            tools: tools.clone(),
            bus: Arc::new(NoBus),
        };
        let policy = KindPolicy {
            tools: TOOLS,
            dismiss_when_done: false,
            summonable_by_users: false,
            requires_jake_parent: false,
        };
        let input = TurnInput {
            system_prompt: String::new(),
            messages: Vec::new(),
            turn: 0,
        };
        let output = now(standard_turn(policy, &ctx, input)).unwrap();
        assert_eq!(
            output.results,
            vec![
                ToolResult::err("Sam (mortal) may not use the list_agents tool"),
                ToolResult::ok("ran"),
                ToolResult::err("not run: the turn ended at signal_done"),
            ]
        );
        assert_eq!(*tools.0.lock().unwrap(), vec![ToolCall::Done {}]);
    }
}
