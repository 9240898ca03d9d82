//! The executor: the one path by which intents enter the log and change the tavern.
//!
//! [`Tavern`] is the shared handle every surface and agent task holds. Submitting an intent takes the
//! state lock, decides the intent against the head state, queues its entry in the log (which fixes its
//! sequence number and file position), applies it to the head state and hands it to the sequencer —
//! all without awaiting, so file order equals apply order. The caller is acknowledged once the entry is
//! durable; concurrent submitters share fsyncs through the log's group commit.
//!
//! The sequencer task then, in log order, waits for each record's durability, folds it into the
//! *durable* state, publishes it as an [`Event`], and marks the documents it touched for the projector,
//! which rewrites them from the durable state. So documents and events never show anything the log
//! could still lose, and a crash can only leave documents behind the log, which re-projection at
//! startup repairs.
//!
//! Two copies of the state exist for that reason: the head (ahead of the disk by at most one group
//! commit, used to decide) and the durable one (used for reading and projection). Both sit behind std
//! mutexes that are held only for synchronous work and never across an await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blackboard::{DocId, DocStore};
use crate::domain::{
    decide, projection, Actor, DecideEnv, DomainError, EditBase, Intent, Outcome, TavernSchema,
    TavernState,
};
mod documents;

use documents::write_id;
pub use documents::SetAside;
pub(crate) use documents::{DocumentState, Precondition, PROJECTED};

use crate::log::{Cause, EntryDraft, Log, LogError, Millis, Record, Seq, Status, Ticket, Update};

/// The current wall-clock time in milliseconds.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Settings the executor needs, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The project directory; assertions run here.
    pub project: PathBuf,
    /// The configured model spec of each agent type, for agents summoned without one.
    pub models: crate::model::KindModels,
    /// Tool permission rules for agents in the Claude Code CLI.
    pub permissions: crate::config::PermissionConfig,
    /// The Claude Code CLI, or why it cannot be used (said at summon time, not at the first turn).
    pub claude_cli: Result<std::path::PathBuf, String>,
    /// Task restarts within `restart_window` before an agent is reaped.
    pub max_restarts: u32,
    /// The window in which restarts count.
    pub restart_window: Duration,
    /// One assertion's timeout.
    pub verify_timeout: Duration,
    /// Bytes of assertion output kept.
    pub output_limit: usize,
    /// Whether an agent's own commitments wait for a person's approval before they count.
    pub approve_own_commitments: bool,
}

/// A durable record, as published to subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The entry's sequence number.
    pub seq: Seq,
    /// Who asked (present on the entry's first record).
    pub actor: Option<Actor>,
    /// What was asked (present on the entry's first record).
    pub intent: Option<Intent>,
    /// The entry's status after this record.
    pub status: Status,
    /// The outcomes this record added.
    pub outcomes: Vec<Outcome>,
    /// The error this record carries.
    pub error: Option<String>,
}

/// What became of a submitted intent. Either way it is in the log under `seq`.
#[derive(Debug, Clone, PartialEq)]
pub enum Receipt {
    /// It was decided and its first outcomes are durable.
    Accepted {
        /// Its sequence number.
        seq: Seq,
        /// What it did right away.
        outcomes: Vec<Outcome>,
        /// Whether it goes on running (verification, a turn).
        continues: bool,
    },
    /// It was refused; the refusal is recorded.
    Rejected {
        /// Its sequence number.
        seq: Seq,
        /// Why.
        error: DomainError,
    },
}

impl Receipt {
    /// The entry's sequence number.
    pub fn seq(&self) -> Seq {
        match self {
            Receipt::Accepted { seq, .. } | Receipt::Rejected { seq, .. } => *seq,
        }
    }
}

/// An infrastructure failure of the executor (as opposed to a refused intent).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// The log could not be written; nothing after the failure was acknowledged.
    #[error("{0}")]
    Log(Arc<LogError>),
    /// Tavern is shutting down and takes no new intents.
    #[error("Tavern is shutting down and takes no new requests")]
    ShuttingDown,
    /// An update for an entry that has already finished (a bug in the caller; nothing was written).
    #[error("entry #{0} has already finished; its record cannot change")]
    NotOpen(Seq),
}

impl From<LogError> for ExecError {
    fn from(e: LogError) -> Self {
        ExecError::Log(Arc::new(e))
    }
}

/// A record on its way through the sequencer.
struct Job {
    ticket: Ticket,
    record: Record<TavernSchema>,
    event: Event,
    done: oneshot::Sender<Result<(), ExecError>>,
}

/// Work for the projector.
enum ProjectorJob {
    /// Rewrite the documents these outcomes touched.
    Outcomes(Vec<Outcome>),
    /// Rewrite a document from the state after a person's edit of it was recorded; the hash is of the
    /// content that was recorded (`None`: the file had been deleted).
    Restore(DocId, Option<u64>),
    /// Reply once everything queued before has been written.
    Flush(oneshot::Sender<()>),
}

/// A document the projector found edited by someone else before overwriting it, handed to the watcher.
pub(crate) type ExternalEdit = DocId;

struct Inner {
    head: Mutex<TavernState>,
    durable: Mutex<TavernState>,
    log: Log<TavernSchema>,
    store: Arc<dyn DocStore>,
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    projector: mpsc::UnboundedSender<ProjectorJob>,
    events: broadcast::Sender<Arc<Event>>,
    settings: Settings,
    tracker: TaskTracker,
    cancel: CancellationToken,
    projection_errors: AtomicU64,
    last_projection_error: Mutex<Option<String>>,
    external_edits: mpsc::UnboundedSender<ExternalEdit>,
    /// The editable parts of the agent documents Tavern wrote recently, by document and seal, so a
    /// person's edit can be merged against the version it started from (see `EditBase`).
    bases: Mutex<HashMap<DocId, VecDeque<(u64, EditBase)>>>,
}

/// The shared handle to a running tavern. Cheap to clone.
#[derive(Clone)]
pub struct Tavern {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks would be a bug in synchronous code; the state itself is
    // only ever changed by complete applies, so continuing with it is safe.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The background tasks of the executor, returned by [`Tavern::new`] for the caller to drive.
pub struct ExecutorTasks {
    sequencer: tokio::task::JoinHandle<()>,
    projector: tokio::task::JoinHandle<()>,
    /// Edits found by the projector, for the watcher.
    pub external_edits: mpsc::UnboundedReceiver<ExternalEdit>,
}

impl Tavern {
    /// Builds the executor over an opened log and store, starting from `state` (the replay of the log).
    ///
    /// The sequencer and projector run until [`Tavern::close`]; everything else the tavern spawns goes
    /// into `tracker` and stops when `cancel` fires.
    pub fn new(
        state: TavernState,
        log: Log<TavernSchema>,
        store: Arc<dyn DocStore>,
        settings: Settings,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> (Tavern, ExecutorTasks) {
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (projector_tx, projector_rx) = mpsc::unbounded_channel();
        let (edits_tx, edits_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        let tavern = Tavern {
            inner: Arc::new(Inner {
                head: Mutex::new(state.clone()),
                durable: Mutex::new(state),
                log,
                store,
                jobs: Mutex::new(Some(jobs_tx)),
                projector: projector_tx,
                events,
                settings,
                tracker,
                cancel,
                projection_errors: AtomicU64::new(0),
                last_projection_error: Mutex::new(None),
                external_edits: edits_tx,
                bases: Mutex::new(HashMap::new()),
            }),
        };
        let sequencer = tokio::spawn(tavern.clone().run_sequencer(jobs_rx));
        let projector = tokio::spawn(tavern.clone().run_projector(projector_rx));
        (
            tavern,
            ExecutorTasks {
                sequencer,
                projector,
                external_edits: edits_rx,
            },
        )
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The document store.
    pub fn store(&self) -> &Arc<dyn DocStore> {
        &self.inner.store
    }

    /// The log.
    pub fn log(&self) -> &Log<TavernSchema> {
        &self.inner.log
    }

    /// The task tracker every tavern task runs in.
    pub fn tracker(&self) -> &TaskTracker {
        &self.inner.tracker
    }

    /// The shutdown token.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Subscribes to durable records, in log order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// Reads the durable state (everything acknowledged).
    pub fn read<T>(&self, f: impl FnOnce(&TavernState) -> T) -> T {
        f(&lock(&self.inner.durable))
    }

    /// Reads the head state (including records still being synced). Use for deciding what to do next.
    pub fn read_head<T>(&self, f: impl FnOnce(&TavernState) -> T) -> T {
        f(&lock(&self.inner.head))
    }

    /// How many document writes have failed, and the last failure.
    pub fn projection_errors(&self) -> (u64, Option<String>) {
        (
            self.inner.projection_errors.load(Ordering::Relaxed),
            lock(&self.inner.last_projection_error).clone(),
        )
    }

    /// Runs `f` with a deciding environment: the current time, fresh UUIDs, the configured defaults.
    fn with_env<R>(&self, f: impl FnOnce(&mut DecideEnv<'_>) -> R) -> R {
        let mut new_id = || uuid::Uuid::new_v4().to_string();
        let mut env = DecideEnv {
            now: now_ms(),
            new_id: &mut new_id,
            models: &self.inner.settings.models,
            claude_cli_missing: self
                .inner
                .settings
                .claude_cli
                .as_ref()
                .err()
                .map(String::as_str),
            max_restarts: self.inner.settings.max_restarts,
            restart_window: self.inner.settings.restart_window.as_millis() as Millis,
            project: &self.inner.settings.project,
            approve_own_commitments: self.inner.settings.approve_own_commitments,
        };
        f(&mut env)
    }

    /// Submits an intent: decides it, records it durably and applies it. Refusals are recorded too.
    pub async fn submit(
        &self,
        actor: Actor,
        intent: Intent,
        cause: Option<Cause>,
    ) -> Result<Receipt, ExecError> {
        let receipt = self.submit_inner(actor, intent, cause, None).await?;
        Ok(receipt.expect("an intent without an origin is never a redelivery"))
    }

    /// Submits an intent that came from outside Tavern, recording `origin` (a Discord message,
    /// reaction or interaction id) with it. `None` means that origin is already in the log: the same
    /// request delivered again (a gateway resume, say), which is not recorded or run twice.
    pub async fn submit_from(
        &self,
        actor: Actor,
        intent: Intent,
        origin: String,
    ) -> Result<Option<Receipt>, ExecError> {
        self.submit_inner(actor, intent, None, Some(origin)).await
    }

    async fn submit_inner(
        &self,
        actor: Actor,
        intent: Intent,
        cause: Option<Cause>,
        origin: Option<String>,
    ) -> Result<Option<Receipt>, ExecError> {
        if self.inner.cancel.is_cancelled() {
            return Err(ExecError::ShuttingDown);
        }
        let submitted = self.with_env(|env| {
            let now = env.now;
            let mut head = lock(&self.inner.head);
            // Refuse before anything is written if the sequencer is gone: an entry must never be
            // recorded without the caller hearing of it.
            if lock(&self.inner.jobs).is_none() {
                return Err(ExecError::ShuttingDown);
            }
            // Checked under the head lock, so two deliveries racing each other record one entry.
            if origin.as_deref().is_some_and(|o| head.has_origin(o)) {
                return Ok(None);
            }
            let decision = decide(&head, &actor, &intent, env);
            let (status, outcomes, error, continues) = match &decision {
                Ok(d) if d.continues => (Status::Executing, d.outcomes.clone(), None, true),
                Ok(d) => (Status::Executed, d.outcomes.clone(), None, false),
                Err(e) => (Status::Failed, Vec::new(), Some(e.to_string()), false),
            };
            let draft = EntryDraft {
                cause,
                origin,
                ts: now,
                actor: actor.clone(),
                intent: intent.clone(),
                status,
                outcomes: outcomes.clone(),
                error: error.clone(),
            };
            let (seq, ticket) = self.inner.log.enqueue_entry(draft.clone())?;
            let entry = draft.into_entry(seq, self.inner.log.branch_name());
            let record = Record::Entry(entry);
            head.apply(&record);
            let event = Event {
                seq,
                actor: Some(actor),
                intent: Some(intent),
                status,
                outcomes: outcomes.clone(),
                error,
            };
            let done = self.send_job(ticket, record, event)?;
            let receipt = match decision {
                Ok(_) => Receipt::Accepted {
                    seq,
                    outcomes,
                    continues,
                },
                Err(error) => Receipt::Rejected { seq, error },
            };
            Ok::<_, ExecError>(Some((done, receipt)))
        })?;
        let Some((done, receipt)) = submitted else {
            return Ok(None);
        };
        done.await.unwrap_or(Err(ExecError::ShuttingDown))?;
        Ok(Some(receipt))
    }

    fn send_job(
        &self,
        ticket: Ticket,
        record: Record<TavernSchema>,
        event: Event,
    ) -> Result<oneshot::Receiver<Result<(), ExecError>>, ExecError> {
        let (done_tx, done_rx) = oneshot::channel();
        let jobs = lock(&self.inner.jobs);
        let sender = jobs.as_ref().ok_or(ExecError::ShuttingDown)?;
        sender
            .send(Job {
                ticket,
                record,
                event,
                done: done_tx,
            })
            .map_err(|_| ExecError::ShuttingDown)?;
        Ok(done_rx)
    }

    /// Records more outcomes (and a status) for a running entry. `decide` runs under the state lock
    /// against the head state and returns the status, outcomes and error to record.
    pub async fn update_with(
        &self,
        seq: Seq,
        decide: impl FnOnce(&TavernState, &mut DecideEnv<'_>) -> (Status, Vec<Outcome>, Option<String>),
    ) -> Result<Vec<Outcome>, ExecError> {
        let (done, outcomes) = self.with_env(|env| {
            let now = env.now;
            let mut head = lock(&self.inner.head);
            // Only a running entry can change; a second finisher (a bug) must not rewrite history.
            if !head.open.contains_key(&seq) {
                return Err(ExecError::NotOpen(seq));
            }
            let (status, outcomes, error) = decide(&head, env);
            let update = Update {
                seq,
                ts: now,
                status,
                outcomes: outcomes.clone(),
                error: error.clone(),
            };
            let ticket = self.inner.log.enqueue_update(update.clone())?;
            let record = Record::Update(update);
            head.apply(&record);
            let event = Event {
                seq,
                actor: None,
                intent: None,
                status,
                outcomes: outcomes.clone(),
                error,
            };
            Ok::<_, ExecError>((self.send_job(ticket, record, event)?, outcomes))
        })?;
        done.await.unwrap_or(Err(ExecError::ShuttingDown))?;
        Ok(outcomes)
    }

    /// Records a fixed update for a running entry.
    pub async fn update(
        &self,
        seq: Seq,
        status: Status,
        outcomes: Vec<Outcome>,
        error: Option<String>,
    ) -> Result<(), ExecError> {
        self.update_with(seq, move |_, _| (status, outcomes, error))
            .await
            .map(|_| ())
    }

    async fn run_sequencer(self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = jobs.recv().await {
            let result = job.ticket.await.map_err(ExecError::from);
            if result.is_ok() {
                lock(&self.inner.durable).apply(&job.record);
                // A durable SignalDone starts its verification here, whoever submitted it, so a caller
                // that goes away cannot leave an agent Verifying with nobody checking. At shutdown it
                // stays open and the next start resumes it.
                if let Record::Entry(entry) = &job.record {
                    if let (Intent::SignalDone { agent }, Status::Executing) =
                        (&entry.intent, entry.status)
                    {
                        if !self.inner.cancel.is_cancelled() {
                            self.spawn_verification(entry.seq, agent.clone());
                        }
                    }
                }
                let event = Arc::new(job.event);
                // Nobody listening is fine: events are a convenience, the log is the record.
                let _ = self.inner.events.send(event.clone());
                if !event.outcomes.is_empty() {
                    let _ = self
                        .inner
                        .projector
                        .send(ProjectorJob::Outcomes(event.outcomes.clone()));
                }
            } else if let Err(e) = &result {
                tracing::error!("the command log failed; Tavern cannot record anything more: {e}");
            }
            // The submitter may have been cancelled meanwhile; the record stands either way.
            let _ = job.done.send(result);
        }
    }

    async fn run_projector(self, mut jobs: mpsc::UnboundedReceiver<ProjectorJob>) {
        while let Some(first) = jobs.recv().await {
            // Take everything queued so each document is written once per batch, however many records
            // touched it.
            let batch = gather(first, &mut jobs).await;
            let mut flushes = Vec::new();
            let mut writes: BTreeMap<DocId, (projection::DocWrite, Precondition)> = BTreeMap::new();
            {
                let durable = lock(&self.inner.durable);
                for job in batch {
                    match job {
                        ProjectorJob::Outcomes(outcomes) => {
                            for write in projection::documents_for(&durable, &outcomes) {
                                let id = write_id(&write).clone();
                                // A pending restore keeps its precondition; only the content updates.
                                let pre = match writes.remove(&id) {
                                    Some((_, pre)) => pre,
                                    None => Precondition::Ours,
                                };
                                writes.insert(id, (write, pre));
                            }
                        }
                        ProjectorJob::Restore(id, recorded) => {
                            if let Some(content) = projection::expected_content(&durable, &id) {
                                let write = projection::DocWrite::Put(id.clone(), content);
                                writes.insert(id, (write, Precondition::Recorded(recorded)));
                            }
                        }
                        ProjectorJob::Flush(reply) => flushes.push(reply),
                    }
                }
            }
            if !writes.is_empty() {
                let tavern = self.clone();
                let writes: Vec<_> = writes.into_values().collect();
                // Document IO is blocking (fsyncs); keep it off the async workers.
                let outcome =
                    tokio::task::spawn_blocking(move || tavern.write_documents(writes)).await;
                if let Err(e) = outcome {
                    self.projection_failed(format!("the document writer stopped: {e}"));
                }
            }
            for reply in flushes {
                let _ = reply.send(());
            }
        }
    }

    fn projection_failed(&self, message: String) {
        tracing::error!("{message}");
        self.inner.projection_errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.inner.last_projection_error) = Some(message);
    }

    /// Waits until every document change queued so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.projector.send(ProjectorJob::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Starts (or resumes, after a restart) the verification of a SignalDone entry.
    pub(crate) fn spawn_verification(&self, seq: Seq, agent: String) {
        let tavern = self.clone();
        self.inner.tracker.spawn(async move {
            if let Err(e) = crate::verification::run(&tavern, seq, &agent).await {
                tracing::error!(
                    "verification of {agent} (entry #{seq}) could not be recorded: {e}"
                );
            }
        });
    }

    /// Stops the tavern: cancels every task, waits for them, then drains the sequencer and projector and
    /// closes the log, so nothing is left half-written.
    pub async fn close(&self, tasks: ExecutorTasks) -> Result<(), ExecError> {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        // No task can submit any more; closing the job channel lets the sequencer finish the queue. The
        // head lock is held while closing it, so a submit is either wholly before (and queued) or sees
        // the channel closed before it writes anything.
        {
            let _head = lock(&self.inner.head);
            lock(&self.inner.jobs).take();
        }
        if let Err(e) = tasks.sequencer.await {
            // A panic in the sequencer is a bug; say so loudly. The log is still closed below, and the
            // next start re-projects the documents from it.
            tracing::error!("the sequencer stopped abnormally: {e}");
        }
        self.flush().await;
        // The projector ends when the last handle to its channel goes; it has flushed already.
        drop(tasks.projector);
        self.inner.log.close().await?;
        Ok(())
    }
}

/// How long the projector waits for more records before writing, and the longest it lets a batch grow.
/// Waiting lets a burst of intents (a summon storm, a busy turn) rewrite each document once instead of
/// once per record, and keeps the documents' fsyncs out of the way of the log's.
const QUIET: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_millis(250);

/// Collects a batch of projector jobs: everything that arrives until the queue has been quiet for
/// [`QUIET`], or [`MAX_DELAY`] has passed, or someone asks for a flush.
async fn gather(
    first: ProjectorJob,
    jobs: &mut mpsc::UnboundedReceiver<ProjectorJob>,
) -> Vec<ProjectorJob> {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    let mut flushing = matches!(first, ProjectorJob::Flush(_));
    let mut batch = vec![first];
    while !flushing {
        let wait = QUIET.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, jobs.recv()).await {
            Ok(Some(job)) => {
                flushing = matches!(job, ProjectorJob::Flush(_));
                batch.push(job);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Whatever else is already queued rides along.
    while let Ok(job) = jobs.try_recv() {
        batch.push(job);
    }
    batch
}
