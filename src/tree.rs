//! The supervisor tree: one task per live agent, started, stopped and restarted by a supervisor.
//!
//! The tree's shape and states live in the log and the state; this module owns the *tasks*. Each live
//! agent has a tree-management task that waits for input and takes turns (its model I/O runs in the
//! sidecar). When a task fails, the supervisor records a `RestartAgent` intent and restarts it according
//! to its parent's strategy: restart-one restarts that agent, restart-all restarts every live child of
//! the parent. Past the restart limit the agent is reaped instead (Jake, the root, is always restarted).
//! Every task runs under the tavern's tracker and a cancellation token, and every exit is reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tavern_plugin_api::{AgentState, RestartStrategy};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::domain::{Actor, Intent, Outcome, TavernState};
use crate::executor::{Event, ExecError, Receipt, Tavern};
use crate::log::Seq;
use crate::model::{KindModels, Models};
use crate::sidecar::Sidecar;
use crate::turn::{run_turn, AgentRuntime, TurnEnd};

/// Why an agent's task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentExit {
    /// It was stopped (shutdown, restart, or its agent died).
    Stopped,
    /// Its agent is dead.
    Dead,
    /// A turn failed.
    Failed(String),
}

struct Running {
    stop: CancellationToken,
    generation: u64,
    handle: tokio::task::JoinHandle<()>,
    /// Wakes the task when an event concerns its agent (see [`concerned`]).
    wake: Arc<Notify>,
}

/// A replacement task never starts while the old one still runs (two tasks would run one turn twice),
/// so starting one waits for the old task to reach a safe point; this bounds that wait, so a stuck
/// plugin shows up as an error instead of a silent hang.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// The delay before restarting a task after its `attempt`-th recent failure: 0.1 s, doubling, at most
/// 10 s, so a short model outage does not use up every restart in milliseconds.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    Duration::from_millis(100u64.saturating_mul(1 << exp)).min(Duration::from_secs(10))
}

/// Starts and watches the agents' tasks.
pub struct Supervisor {
    tavern: Tavern,
    models: Models,
    sidecar: Sidecar,
    running: HashMap<String, Running>,
    /// Tasks told to stop that may not have finished yet, by agent.
    stopping: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Agents whose task must not start now: backing off before a restart, or waiting for an old task
    /// to end. A message on `respawns` releases each.
    held: std::collections::HashSet<String>,
    generation: u64,
    exits_tx: mpsc::UnboundedSender<(String, u64, AgentExit)>,
    exits: mpsc::UnboundedReceiver<(String, u64, AgentExit)>,
    respawn_tx: mpsc::UnboundedSender<String>,
    respawns: mpsc::UnboundedReceiver<String>,
}

/// Whether an agent should take a turn now: alive, in a state that takes turns, with unread input that
/// wakes it, and with a model to think with.
pub fn wants_turn(state: &TavernState, agent: &str, models: &KindModels) -> bool {
    state.agent(agent).is_some_and(|node| {
        models.effective(node.model.as_deref(), node.kind).is_some()
            && matches!(
                node.state,
                AgentState::Summoned
                    | AgentState::Working
                    | AgentState::WaitingForInput
                    | AgentState::WaitingForWakeup
            )
            && state.has_waking_input(agent)
    })
}

/// The agent an outcome concerns, whose task should look again at what it has to do.
fn concerned(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::MessagePosted(m) => match &m.to {
            crate::domain::Party::Agent(a) => Some(a),
            _ => None,
        },
        Outcome::StateChanged { agent, .. } | Outcome::InboxRewound { agent, .. } => Some(agent),
        _ => None,
    }
}

/// Ends an agent's task. A turn left open because its agent died will never resume, so it is recorded
/// as cancelled; a turn left open by shutdown or a restart stays open for the next task to resume.
async fn stopped(tavern: &Tavern, agent: &str) -> AgentExit {
    if let Some(seq) = tavern.read_head(|s| s.open_turn(agent)) {
        close_abandoned_turn(tavern, agent, seq).await;
    }
    AgentExit::Stopped
}

async fn close_abandoned_turn(tavern: &Tavern, agent: &str, seq: Seq) {
    if tavern.cancel_token().is_cancelled() {
        return;
    }
    let dead = tavern.read_head(|s| s.agent(agent).is_none_or(|n| n.state.is_dead()));
    if !dead {
        return;
    }
    let result = tavern
        .update(
            seq,
            crate::log::Status::Cancelled,
            Vec::new(),
            Some(format!("{agent} was stopped during this turn")),
        )
        .await;
    match result {
        // The agent's own task closed it first.
        Ok(()) | Err(ExecError::NotOpen(_)) => {}
        Err(e) => tracing::error!("could not record that {agent}'s turn #{seq} was cancelled: {e}"),
    }
}

async fn agent_task(
    tavern: Tavern,
    models: Models,
    sidecar: Sidecar,
    agent: String,
    stop: CancellationToken,
    wake: Arc<Notify>,
) -> AgentExit {
    // The agent's runtime (its Claude Code CLI process, if it uses one) lives as long as this task, and
    // ends with it: the process never outlives the agent's supervision.
    let mut runtime = AgentRuntime::default();
    let exit = agent_loop(
        &tavern,
        &models,
        &sidecar,
        &agent,
        &stop,
        &wake,
        &mut runtime,
    )
    .await;
    runtime.close().await;
    exit
}

async fn agent_loop(
    tavern: &Tavern,
    models: &Models,
    sidecar: &Sidecar,
    agent: &str,
    stop: &CancellationToken,
    wake: &Notify,
    runtime: &mut AgentRuntime,
) -> AgentExit {
    // Bounded: each iteration either takes a turn (which consumes input) or waits to be woken.
    loop {
        if stop.is_cancelled() {
            return stopped(tavern, agent).await;
        }
        if let Some(seq) = tavern.read_head(|s| s.open_turn(agent)) {
            match run_turn(tavern, models, sidecar, agent, seq, stop, runtime).await {
                TurnEnd::Completed => continue,
                TurnEnd::Cancelled => return stopped(tavern, agent).await,
                TurnEnd::Failed(error) => return AgentExit::Failed(error),
            }
        }
        let (dead, wants) = tavern.read_head(|s| {
            (
                s.agent(agent).is_none_or(|n| n.state.is_dead()),
                wants_turn(s, agent, &tavern.settings().models),
            )
        });
        if dead {
            return AgentExit::Dead;
        }
        if wants {
            match tavern
                .submit(
                    Actor::Agent(agent.to_string()),
                    Intent::TakeTurn {
                        agent: agent.to_string(),
                    },
                    None,
                )
                .await
            {
                Ok(Receipt::Accepted { .. }) => continue,
                Ok(Receipt::Rejected { error, .. }) => {
                    tracing::debug!("{agent} could not take a turn: {error}");
                }
                Err(ExecError::ShuttingDown) => return AgentExit::Stopped,
                Err(e) => return AgentExit::Failed(e.to_string()),
            }
        }
        // Wait for something that concerns this agent. The supervisor wakes it (a wake-up that comes
        // before this wait is kept as a permit, so none is lost), rather than every task looking at
        // every event: that made each event cost as much as there are live agents.
        tokio::select! {
            _ = stop.cancelled() => return stopped(tavern, agent).await,
            _ = wake.notified() => {}
        }
    }
}

impl Supervisor {
    /// A supervisor for the tavern's agents.
    pub fn new(tavern: Tavern, models: Models, sidecar: Sidecar) -> Supervisor {
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let (respawn_tx, respawns) = mpsc::unbounded_channel();
        Supervisor {
            tavern,
            models,
            sidecar,
            running: HashMap::new(),
            stopping: HashMap::new(),
            held: std::collections::HashSet::new(),
            generation: 0,
            exits_tx,
            exits,
            respawn_tx,
            respawns,
        }
    }

    /// Starts a task for the agent. If it still has a task that was told to stop and has not ended, the
    /// agent is held and a waiter restarts it once that task ends: two tasks never run one agent.
    fn spawn(&mut self, agent: &str) {
        let key = agent.to_lowercase();
        self.stop(&key);
        if let Some(mut old) = self.stopping.remove(&key) {
            self.held.insert(key);
            let (tx, cancel, agent) = (
                self.respawn_tx.clone(),
                self.tavern.cancel_token().clone(),
                agent.to_string(),
            );
            self.tavern.tracker().spawn(async move {
                // Bounded per wait; a task that never stops is reported every STOP_WAIT, not hidden.
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        ended = tokio::time::timeout(STOP_WAIT, &mut old) => match ended {
                            Ok(_) => break,
                            Err(_) => tracing::error!(
                                "{agent}'s old task has not stopped after {STOP_WAIT:?}; its new one waits"
                            ),
                        },
                    }
                }
                let _ = tx.send(agent);
            });
            return;
        }
        if self
            .tavern
            .read_head(|s| s.agent(agent).is_none_or(|n| n.state.is_dead()))
        {
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        let stop = self.tavern.cancel_token().child_token();
        let (tavern, models, sidecar, exits) = (
            self.tavern.clone(),
            self.models.clone(),
            self.sidecar.clone(),
            self.exits_tx.clone(),
        );
        let name = agent.to_string();
        let task_stop = stop.clone();
        let wake = Arc::new(Notify::new());
        let task_wake = wake.clone();
        let handle = self.tavern.tracker().spawn(async move {
            let exit =
                agent_task(tavern, models, sidecar, name.clone(), task_stop, task_wake).await;
            // The supervisor may already be gone at shutdown; then nobody needs the report.
            let _ = exits.send((name, generation, exit));
        });
        self.running.insert(
            key,
            Running {
                stop,
                generation,
                handle,
                wake,
            },
        );
    }

    /// Restarts the agent's task after `delay`, holding it meanwhile (so no sync starts it early) and
    /// without holding up the supervisor.
    fn respawn_later(&mut self, agent: &str, delay: Duration) {
        self.held.insert(agent.to_lowercase());
        let tx = self.respawn_tx.clone();
        let cancel = self.tavern.cancel_token().clone();
        let agent = agent.to_string();
        self.tavern.tracker().spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    let _ = tx.send(agent);
                }
            }
        });
    }

    /// Stops a dead agent's task and, once it has ended, closes any turn it left open. (The task closes
    /// its own turn when it sees it is stopped; this also covers a dead agent whose task never started,
    /// such as one reaped right after a restart, before its interrupted turn could resume.)
    fn bury(&mut self, agent: &str) {
        self.stop(agent);
        let handle = self.stopping.remove(&agent.to_lowercase());
        let tavern = self.tavern.clone();
        let agent = agent.to_string();
        self.tavern.tracker().spawn(async move {
            if let Some(handle) = handle {
                if tokio::time::timeout(STOP_WAIT, handle).await.is_err() {
                    tracing::error!("{agent}'s task did not stop within {STOP_WAIT:?}");
                    return;
                }
            }
            stopped(&tavern, &agent).await;
        });
    }

    fn stop(&mut self, agent: &str) {
        let key = agent.to_lowercase();
        if let Some(running) = self.running.remove(&key) {
            running.stop.cancel();
            self.stopping.insert(key, running.handle);
        }
        // Forget stopped tasks that have finished, so the map stays small.
        self.stopping.retain(|_, handle| !handle.is_finished());
    }

    /// Makes the running tasks match the live agents (agents being held for a restart are left alone).
    fn sync(&mut self) {
        let live: Vec<String> = self.tavern.read_head(|s| {
            s.agents_in_order()
                .filter(|n| !n.state.is_dead())
                .map(|n| n.name.clone())
                .collect()
        });
        let live_keys: std::collections::HashSet<String> =
            live.iter().map(|n| n.to_lowercase()).collect();
        let stale: Vec<String> = self
            .running
            .keys()
            .filter(|k| !live_keys.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            self.stop(&key);
        }
        for name in live {
            let key = name.to_lowercase();
            if !self.running.contains_key(&key) && !self.held.contains(&key) {
                self.spawn(&name);
            }
        }
    }

    /// Records a restart of `agent`; returns the attempt number if the agent is still alive after it.
    async fn record_restart(&self, agent: &str, reason: String) -> Option<u32> {
        let receipt = self
            .tavern
            .submit(
                Actor::Tavern,
                Intent::RestartAgent {
                    agent: agent.to_string(),
                    reason,
                },
                None,
            )
            .await;
        match receipt {
            Ok(Receipt::Accepted { outcomes, .. }) => outcomes.iter().find_map(|o| match o {
                Outcome::TaskRestarted { attempt, .. } => Some(*attempt),
                _ => None,
            }),
            Ok(Receipt::Rejected { error, .. }) => {
                tracing::warn!("{agent} was not restarted: {error}");
                None
            }
            Err(e) => {
                tracing::error!("could not record the restart of {agent}: {e}");
                None
            }
        }
    }

    async fn on_failure(&mut self, agent: &str, reason: String) {
        tracing::warn!("{agent}'s task failed: {reason}");
        let (strategy, siblings) = self.tavern.read_head(|s| {
            let parent = s
                .agent(agent)
                .and_then(|n| n.parent.as_deref())
                .and_then(|p| s.agent(p));
            (
                parent.map(|p| p.restart).unwrap_or_default(),
                parent
                    .map(|p| {
                        p.children
                            .iter()
                            .filter(|c| !c.eq_ignore_ascii_case(agent))
                            .filter(|c| s.agent(c).is_some_and(|n| !n.state.is_dead()))
                            .cloned()
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
            )
        });
        let Some(attempt) = self.record_restart(agent, reason).await else {
            // Reaped at the limit (or not restartable): make the tasks match the tree again.
            self.sync();
            return;
        };
        let delay = backoff(attempt);
        self.respawn_later(agent, delay);
        if strategy == RestartStrategy::RestartAll {
            // Every live sibling is restarted too, and each restart is recorded (it counts toward
            // that sibling's own limit like any other).
            for sibling in siblings {
                self.stop(&sibling);
                let why = format!("restart-all: its sibling {agent} failed");
                if self.record_restart(&sibling, why).await.is_some() {
                    self.respawn_later(&sibling, delay);
                }
            }
            // Siblings that were stopped but not restarted (reaped at their own limit) are tidied up;
            // the restarted ones are held until their backoff ends.
            self.sync();
        }
    }

    /// Runs until the tavern shuts down.
    pub async fn run(mut self) {
        let mut events = self.tavern.subscribe();
        self.sync();
        let cancel = self.tavern.cancel_token().clone();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = events.recv() => match event {
                    Ok(event) => self.on_event(&event),
                    Err(RecvError::Lagged(_)) => {
                        // Events were missed, so any task may have missed its wake-up.
                        self.sync();
                        for running in self.running.values() {
                            running.wake.notify_one();
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                Some(agent) = self.respawns.recv() => {
                    self.held.remove(&agent.to_lowercase());
                    self.spawn(&agent);
                }
                Some((agent, generation, exit)) = self.exits.recv() => {
                    let current = self
                        .running
                        .get(&agent.to_lowercase())
                        .is_some_and(|r| r.generation == generation);
                    if !current {
                        continue;
                    }
                    if let Some(running) = self.running.remove(&agent.to_lowercase()) {
                        self.stopping.insert(agent.to_lowercase(), running.handle);
                    }
                    match exit {
                        AgentExit::Failed(reason) => self.on_failure(&agent, reason).await,
                        AgentExit::Stopped | AgentExit::Dead => self.sync(),
                    }
                }
            }
        }
        for (_, running) in self.running.drain() {
            running.stop.cancel();
        }
        // The tasks themselves are awaited through the tavern's tracker.
        self.stopping.clear();
    }

    fn on_event(&mut self, event: &Arc<Event>) {
        for agent in event.outcomes.iter().filter_map(concerned) {
            if let Some(running) = self.running.get(&agent.to_lowercase()) {
                running.wake.notify_one();
            }
        }
        for outcome in &event.outcomes {
            match outcome {
                Outcome::AgentSummoned(new)
                    if !self.running.contains_key(&new.name.to_lowercase()) =>
                {
                    self.spawn(&new.name)
                }
                Outcome::StateChanged { agent, to, .. } if to.is_dead() => self.bury(agent),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn restarts_back_off_exponentially_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(10), Duration::from_secs(10));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(10));
    }
}
