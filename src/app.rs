//! Starting and stopping a tavern: open `.tavern/`, replay the log, repair the documents, resume
//! interrupted work, and start the supervisor and the document watcher. Shared by every surface.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::blackboard::{DocId, DocStore, FsStore, StoreError, Watch};
use crate::config::Config;
use crate::domain::{Actor, Intent, TavernState};
use crate::executor::{
    DocumentState, ExecError, ExecutorTasks, ExternalEdit, Receipt, SetAside, Settings, Tavern,
    PROJECTED,
};
use crate::log::{Log, LogError, LogOptions, Seq, Status};
use crate::model::Models;
use crate::sidecar::Sidecar;
use crate::tree::Supervisor;

/// Why a tavern could not start. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file or directory could not be created or opened.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another Tavern process has this project open.
    #[error("another Tavern is already running on this project (it holds the lock on {path}); stop it first — there is exactly one Jake per project")]
    Locked {
        /// The locked directory.
        path: PathBuf,
    },
    /// The command log could not be opened or replayed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The document store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The executor failed while starting.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The tavern could not be opened.
    #[error("could not open the tavern: {0}")]
    Open(String),
    /// The log is gone (or empty) while documents of an earlier tavern remain.
    #[error(
        "{} holds {documents} documents of an earlier tavern (agents/, messages/, work/), but its \
         command log {} {problem}. The log is the tavern's state: starting now would orphan those \
         documents and overwrite any whose name is used again. Restore the log (from a backup or \
         version control), or move {} away to start a new tavern there.",
        tavern_dir.display(),
        log.display(),
        tavern_dir.display()
    )]
    LogMissing {
        /// The `.tavern/` directory.
        tavern_dir: PathBuf,
        /// The missing or empty branch file.
        log: PathBuf,
        /// "is missing", "is empty" or "holds no entries".
        problem: &'static str,
        /// How many documents were found.
        documents: usize,
    },
}

/// What happened at start, for the person starting it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Bytes of a torn last log line that were cut off.
    pub torn_bytes: u64,
    /// Documents rewritten from the log because they were missing or out of date.
    pub repaired_documents: usize,
    /// Documents a person edited while Tavern was stopped; each was recorded as an intent.
    pub offline_edits: usize,
    /// Documents moved into `.tavern/attic/` (unreadable, or not accounted for by the log).
    pub set_aside: Vec<SetAside>,
    /// Entries that were still running when Tavern stopped, and are being resumed.
    pub resumed: Vec<Seq>,
    /// Entries that were interrupted and could not be resumed (marked cancelled).
    pub cancelled: Vec<Seq>,
    /// Whether this start opened a new tavern.
    pub opened: bool,
    /// Entries in the log after start.
    pub entries: Seq,
}

impl StartReport {
    /// Lines worth telling a person.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.opened {
            lines.push("A new tavern: Jake is behind the bar.".to_string());
        } else {
            lines.push(format!(
                "Reopened the tavern: {} log entries replayed.",
                self.entries
            ));
        }
        if self.torn_bytes > 0 {
            lines.push(format!(
                "warning: the log's last line was torn by a crash; {} bytes of an unacknowledged write were cut off",
                self.torn_bytes
            ));
        }
        if self.repaired_documents > 0 {
            lines.push(format!(
                "repaired {} documents in .tavern/ from the log",
                self.repaired_documents
            ));
        }
        // Each is said, up to a few; a log restored from an old backup can leave thousands.
        const SHOWN: usize = 5;
        for set in self.set_aside.iter().take(SHOWN) {
            lines.push(format!(
                "warning: .tavern/{} {}; moved it to .tavern/{}",
                set.from.display(),
                set.reason,
                set.to.display()
            ));
        }
        if self.set_aside.len() > SHOWN {
            lines.push(format!(
                "warning: and {} more documents, moved to .tavern/attic/ for the same reasons",
                self.set_aside.len() - SHOWN
            ));
        }
        if self.offline_edits > 0 {
            lines.push(format!(
                "recorded {} edits made to .tavern/ files while Tavern was stopped",
                self.offline_edits
            ));
        }
        if !self.resumed.is_empty() {
            lines.push(format!(
                "resuming interrupted work: {}",
                self.resumed
                    .iter()
                    .map(|s| format!("#{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.cancelled.is_empty() {
            lines.push(format!(
                "cancelled interrupted entries that cannot resume: {}",
                self.cancelled
                    .iter()
                    .map(|s| format!("#{s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        lines
    }
}

/// A running tavern.
pub struct App {
    /// The executor handle.
    pub tavern: Tavern,
    /// The model cache.
    pub models: Models,
    /// The sidecar.
    pub sidecar: Sidecar,
    /// The configuration it runs with.
    pub config: Config,
    /// What happened at start.
    pub report: StartReport,
    tasks: Option<ExecutorTasks>,
    /// Events from before any work resumed, for the surface that shows them (see [`App::take_events`]).
    events: Option<tokio::sync::broadcast::Receiver<std::sync::Arc<crate::executor::Event>>>,
    /// The `.tavern/` directory's locks, held for as long as this tavern runs.
    _lock: ProjectLock,
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Replays a tavern's log into its state. Pure: it reads the log and folds it, nothing else.
pub fn replay(
    log_dir: &std::path::Path,
    branch: &str,
    upto: Option<Seq>,
) -> Result<TavernState, LogError> {
    let reader = crate::log::LogReader::<crate::domain::TavernSchema>::open(log_dir, branch)?;
    let mut state = TavernState::default();
    reader.replay(upto, |record| state.apply(&record))?;
    Ok(state)
}

impl App {
    /// Opens (or creates) the tavern of `config.project` and starts it.
    pub async fn start(config: Config) -> Result<App, StartError> {
        let dir = config.tavern_dir.clone();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock = acquire_lock(&dir).await?;
        let store: Arc<dyn DocStore> = Arc::new(FsStore::open(&dir)?);
        let log_dir = dir.join("log");
        let main_log = log_dir.join("main.jsonl");
        match std::fs::metadata(&main_log) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                refuse_orphaned_documents(&dir, &main_log, store.as_ref(), "is missing")?
            }
            Ok(meta) if meta.len() == 0 => {
                refuse_orphaned_documents(&dir, &main_log, store.as_ref(), "is empty")?
            }
            _ => {}
        }
        let (log, open_report) = Log::open(&log_dir, "main", LogOptions::default())?;
        let state = replay(&log_dir, "main", None)?;
        if state.jake.is_none() {
            refuse_orphaned_documents(&dir, &main_log, store.as_ref(), "holds no entries")?;
        }

        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let settings = Settings {
            project: config.project.clone(),
            models: config.models.clone(),
            permissions: config.permissions.clone(),
            claude_cli: crate::claude::find_cli().map_err(|e| e.to_string()),
            max_restarts: config.max_restarts,
            approve_own_commitments: config.approve_own_commitments,
            restart_window: config.restart_window,
            verify_timeout: config.verify_timeout,
            output_limit: config.output_limit,
        };
        let (tavern, mut tasks) = Tavern::new(
            state,
            log,
            store.clone(),
            settings,
            tracker.clone(),
            cancel.clone(),
        );
        let mut report = StartReport {
            torn_bytes: open_report.truncated_bytes,
            ..StartReport::default()
        };
        // Watch before repairing, so an edit made while Tavern starts is not missed.
        let watch = store.watch()?;
        let found = tavern.reproject_all();
        report.repaired_documents = found.repaired;
        report.set_aside = found.set_aside;
        let offline_edits = found.edited;

        if tavern.read(|s| s.jake.is_none()) {
            let receipt = tavern
                .submit(
                    Actor::Tavern,
                    Intent::OpenTavern {
                        theme: config.theme.clone(),
                    },
                    None,
                )
                .await?;
            if let Receipt::Rejected { error, .. } = receipt {
                return Err(StartError::Open(error.to_string()));
            }
            report.opened = true;
        }
        // A surface must see everything resumed work does, so the subscription it will use starts now,
        // before anything resumes.
        let events = tavern.subscribe();
        // Edits people made while Tavern was stopped are recorded like any other, then restored.
        for (id, content) in offline_edits {
            report.offline_edits += 1;
            record_edit(&tavern, id, content).await;
        }
        resume(&tavern, &mut report).await?;
        report.entries = tavern.read(|s| s.last_seq);

        let models = Models::with_retries(config.max_retries);
        let sidecar = Sidecar::new(config.max_concurrent_calls, tracker.clone(), cancel.clone());
        let supervisor = Supervisor::new(tavern.clone(), models.clone(), sidecar.clone());
        tracker.spawn(supervisor.run());
        let edits = std::mem::replace(
            &mut tasks.external_edits,
            tokio::sync::mpsc::unbounded_channel().1,
        );
        tracker.spawn(watch_documents(tavern.clone(), watch, edits));
        Ok(App {
            tavern,
            models,
            sidecar,
            config,
            report,
            tasks: Some(tasks),
            events: Some(events),
            _lock: lock,
        })
    }

    /// The events of this tavern from just before any interrupted work resumed; the first caller gets
    /// them, later callers a fresh subscription.
    pub fn take_events(
        &mut self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<crate::executor::Event>> {
        self.events
            .take()
            .unwrap_or_else(|| self.tavern.subscribe())
    }

    /// Shuts down: stops every task at a safe point, writes what is queued, closes the log.
    pub async fn shutdown(mut self) -> Result<(), ExecError> {
        match self.tasks.take() {
            Some(tasks) => self.tavern.close(tasks).await,
            None => Ok(()),
        }
    }
}

/// Takes the project's lock, so exactly one Tavern (one Jake) runs per project.
///
/// The lock is an exclusive `flock` on the `.tavern/` directory itself, not only on a file inside it: a
/// lock file can be deleted while a Tavern runs, and a second Tavern would then create and lock a new
/// one. (The command log's writer also locks its file, so even a second process that got past this
/// could not append.) `.tavern/lock` is locked as well, because that is the lock earlier versions of
/// Tavern take: a Tavern being upgraded while the old one still runs must see it. A Tavern that was just
/// killed can leave a lock held for a moment by a child process it was starting (a fork that has not
/// exec'd yet shares it), so a held lock is retried for up to two seconds before it is reported.
async fn acquire_lock(dir: &std::path::Path) -> Result<ProjectLock, StartError> {
    let lock_file = dir.join("lock");
    let lock = ProjectLock {
        _dir: lock_exclusive(File::open(dir).map_err(io(dir))?, dir).await?,
        _file: lock_exclusive(File::create(&lock_file).map_err(io(&lock_file))?, dir).await?,
    };
    Ok(lock)
}

/// The locks that keep a project to one Tavern, released when dropped.
struct ProjectLock {
    _dir: File,
    _file: File,
}

async fn lock_exclusive(file: File, dir: &std::path::Path) -> Result<File, StartError> {
    const ATTEMPTS: u32 = 40;
    for attempt in 1..=ATTEMPTS {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if attempt < ATTEMPTS => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => break,
            Err(std::fs::TryLockError::Error(e)) => return Err(io(dir)(e)),
        }
    }
    Err(StartError::Locked {
        path: dir.to_path_buf(),
    })
}

/// Refuses to start a tavern over the documents of an earlier one whose log is gone: they would be
/// orphaned, and a name used again would overwrite its old document. Prompt overrides do not count
/// (people put them in place before a tavern's first start).
fn refuse_orphaned_documents(
    tavern_dir: &std::path::Path,
    log: &std::path::Path,
    store: &dyn DocStore,
    problem: &'static str,
) -> Result<(), StartError> {
    // Only Tavern's own writing counts (its seal is intact): a file a person put there is theirs.
    let mut documents = 0;
    for collection in PROJECTED {
        for id in store.list(collection)? {
            let sealed = match store.read(&id) {
                Ok(Some(text)) => {
                    crate::domain::projection::unseal(&text).1
                        == crate::domain::projection::Seal::Intact
                }
                Ok(None) => false,
                // Unreadable, but in a collection Tavern writes: count it rather than guess.
                Err(_) => true,
            };
            documents += usize::from(sealed);
        }
    }
    if documents == 0 {
        return Ok(());
    }
    Err(StartError::LogMissing {
        tavern_dir: tavern_dir.to_path_buf(),
        log: log.to_path_buf(),
        problem,
        documents,
    })
}

/// Resumes entries that were running when Tavern stopped: verifications run again; turns are resumed
/// by their agents' tasks; anything else is marked cancelled.
async fn resume(tavern: &Tavern, report: &mut StartReport) -> Result<(), ExecError> {
    let open: Vec<(Seq, Intent)> = tavern.read(|s| {
        s.open
            .iter()
            .map(|(seq, o)| (*seq, o.intent.clone()))
            .collect()
    });
    for (seq, intent) in open {
        match intent {
            Intent::SignalDone { agent } => {
                report.resumed.push(seq);
                tavern.spawn_verification(seq, agent);
            }
            Intent::TakeTurn { agent }
                if tavern.read(|s| s.agent(&agent).is_some_and(|n| !n.state.is_dead())) =>
            {
                report.resumed.push(seq);
            }
            _ => {
                report.cancelled.push(seq);
                tavern
                    .update(
                        seq,
                        Status::Cancelled,
                        Vec::new(),
                        Some("interrupted by a restart and cannot be resumed".to_string()),
                    )
                    .await?;
            }
        }
    }
    Ok(())
}

/// How long a document must stay unchanged before an edit to it is read. Editors and scripts often write
/// a file in steps (truncate, then write); reading in between would see a half-saved file.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);
/// The longest a changed document waits, however busy the folder is.
const SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Records edits that people make to `.tavern/` files, and restores files whose edit was refused.
async fn watch_documents(
    tavern: Tavern,
    mut watch: Watch,
    mut found_by_projector: tokio::sync::mpsc::UnboundedReceiver<ExternalEdit>,
) {
    let cancel = tavern.cancel_token().clone();
    let mut settling: std::collections::BTreeSet<DocId> = std::collections::BTreeSet::new();
    // Documents found not to be UTF-8, with the bytes they held, until they hold still or change.
    let mut unreadable: std::collections::HashMap<DocId, Vec<u8>> =
        std::collections::HashMap::new();
    // When the oldest document now settling first changed; SETTLE_MAX counts from there.
    let mut oldest = tokio::time::Instant::now();
    let changed = |settling: &mut std::collections::BTreeSet<DocId>,
                   oldest: &mut tokio::time::Instant,
                   id: DocId| {
        if settling.is_empty() {
            *oldest = tokio::time::Instant::now();
        }
        settling.insert(id);
    };
    loop {
        let wait = SETTLE
            .min((oldest + SETTLE_MAX).saturating_duration_since(tokio::time::Instant::now()));
        tokio::select! {
            _ = cancel.cancelled() => break,
            change = watch.next() => match change {
                Some(change) => changed(&mut settling, &mut oldest, change.id),
                None => break,
            },
            edit = found_by_projector.recv() => {
                if let Some(id) = edit {
                    changed(&mut settling, &mut oldest, id);
                }
            }
            // Quiet for SETTLE (or waiting SETTLE_MAX already): read every document that changed and
            // record what is not Tavern's own.
            _ = tokio::time::sleep(wait), if !settling.is_empty() => {
                for id in std::mem::take(&mut settling) {
                    let content = match tavern.store().read(&id) {
                        Ok(content) => {
                            unreadable.remove(&id);
                            content
                        }
                        // Not text. Only when it held the same bytes a settle period ago is it taken for
                        // what it is (and set aside): until then it may be a save in progress.
                        Err(StoreError::NotUtf8 { source, .. }) => {
                            let error = source.utf8_error();
                            let bytes = source.into_bytes();
                            if unreadable.get(&id) == Some(&bytes) {
                                unreadable.remove(&id);
                                let tavern = tavern.clone();
                                let _ = tokio::task::spawn_blocking(move || {
                                    tavern.unreadable(&id, error)
                                })
                                .await;
                            } else {
                                unreadable.insert(id.clone(), bytes);
                                changed(&mut settling, &mut oldest, id);
                            }
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!("cannot read {id} after it changed: {e}");
                            continue;
                        }
                    };
                    match tavern.classify(&id, content.as_deref()) {
                        DocumentState::Current => {}
                        // Tavern's own writing, but out of date (an editor's undo, a checkout of an
                        // old version): put the current one back.
                        DocumentState::Stale => tavern.restore(id, content.as_deref()),
                        DocumentState::Edited => record_edit(&tavern, id, content).await,
                    }
                }
            }
        }
    }
}

async fn record_edit(tavern: &Tavern, id: DocId, content: Option<String>) {
    let path = id.relative_path().to_string_lossy().into_owned();
    let base = tavern.edit_base(&id, content.as_deref());
    let intent = Intent::EditDocument {
        path,
        content: content.clone(),
        base,
    };
    match tavern.submit(Actor::File, intent, None).await {
        // Taken or refused, the file is then rewritten in Tavern's form from the state (a refused edit's
        // text stays in the log).
        Ok(_) => tavern.restore(id, content.as_deref()),
        Err(e) => tracing::warn!("could not record the edit of {id}: {e}"),
    }
}
