//! The single writer of one branch file, with durable group commit.
//!
//! # Design
//!
//! Callers decide and apply an intent under their own mutex and rely on "file order == call
//! order", so assigning a seq and queueing the line must be synchronous. [`Log::enqueue_entry`]
//! therefore serializes the record and hands the bytes to a dedicated writer thread over a
//! channel without awaiting anything, and returns a [`Ticket`] that resolves once the bytes are
//! durable.
//!
//! The writer thread drains everything queued, writes the batch with one `write_all`, makes it
//! durable with one `fdatasync`, publishes the new durable length for readers, and only then
//! completes the batch's tickets. Under load one sync covers many records (group commit).
//!
//! If a write or sync fails the log is poisoned: the failed batch's tickets and every later
//! enqueue report [`LogError::WriterFailed`]. Nothing is retried, because after a failed sync
//! the kernel may have dropped the dirty pages and a retry could report success for data that
//! is gone.
//!
//! # Locking
//!
//! One `std::sync::Mutex` guards `{last_seq, sender}`. It is held only for the synchronous part
//! of an enqueue (seq assignment, serialization, channel send) and never across an `.await`.
//! `close` serializes on a separate async mutex so that concurrent closes all wait for the
//! thread to finish.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::chain::{self, Bound, Chain, Durable};
use super::codec;
use super::lines;
use super::reader::LogReader;
use super::{EntryDraft, LogError, Schema, Seq, Update};

/// How a [`Log`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// Sync each batch to disk (`fdatasync`) before confirming it. Keep this on in production;
    /// only tests and benchmarks that say so turn it off, and then a ticket means "written to
    /// the page cache", and a single sync happens when the log is closed.
    pub fsync: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { fsync: true }
    }
}

/// What [`Log::open`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// Bytes of a torn last line (an append cut short by a crash) that were cut off.
    pub truncated_bytes: u64,
    /// Whether the branch file was created by this open (only `main` is created on demand).
    pub created: bool,
    /// The last entry's seq after opening.
    pub last_seq: Seq,
    /// The file length after opening.
    pub len: u64,
}

/// Counters of the writer thread since the log was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Batches written (one `write_all` each).
    pub batches: u64,
    /// `fdatasync` calls made.
    pub fsyncs: u64,
    /// Records written.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// A point in a commit where tests can inject a delay or a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Just before the batch is written.
    Write,
    /// Just before the batch is synced.
    Sync,
}

/// A test hook called at each [`Phase`]; an error is treated as a failure of that step.
#[cfg(test)]
pub(crate) type Hook = Arc<dyn Fn(Phase) -> std::io::Result<()> + Send + Sync>;

/// Production builds carry no hook: this type has no values, so `Option<Hook>` is always `None`.
#[cfg(not(test))]
pub(crate) enum Hook {}

fn call_hook(hook: &Option<Hook>, phase: Phase) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some(hook) = hook {
        return hook(phase);
    }
    #[cfg(not(test))]
    if let Some(hook) = hook {
        match *hook {}
    }
    let _ = phase;
    Ok(())
}

/// Branch files that have a writer in this process.
///
/// The format has no way to tell two writers apart, and two writers would hand out the same
/// seqs, so a second `Log::open` of the same file is refused: at once within this process (this
/// set), and across processes by an exclusive lock on the open file itself (see
/// [`lock_exclusive`]), which no one can take away by deleting a lock file.
static OPEN_WRITERS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Membership in [`OPEN_WRITERS`], released when the writer thread ends.
struct WriterClaim {
    key: PathBuf,
}

impl WriterClaim {
    fn acquire(key: PathBuf, path: &Path) -> Result<Self, LogError> {
        let mut open = OPEN_WRITERS.lock().unwrap_or_else(PoisonError::into_inner);
        if !open.insert(key.clone()) {
            return Err(LogError::Busy {
                path: path.to_path_buf(),
            });
        }
        Ok(WriterClaim { key })
    }
}

impl Drop for WriterClaim {
    fn drop(&mut self) {
        OPEN_WRITERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Takes an exclusive advisory lock (`flock`) on the branch file for as long as `file` is open.
///
/// The lock belongs to the open file, not to a path, so deleting or replacing a lock file cannot
/// let a second writer in. A process that was just killed, or this process while it starts a
/// child, can hold the lock for a moment through a forked child that has not yet exec'd (the
/// descriptor is close-on-exec), so a held lock is retried briefly before it is reported.
fn lock_exclusive(file: &File, path: &Path) -> Result<(), LogError> {
    const ATTEMPTS: u32 = 100;
    for attempt in 1..=ATTEMPTS {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if attempt < ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => break,
            Err(std::fs::TryLockError::Error(e)) => return Err(LogError::io(path, e)),
        }
    }
    Err(LogError::LockedByOther {
        path: path.to_path_buf(),
    })
}

/// One queued record.
struct Msg {
    bytes: Vec<u8>,
    /// The seq of the entry this line records, if it is an entry line.
    entry_seq: Option<Seq>,
    done: oneshot::Sender<Result<(), LogError>>,
}

/// State shared by the handles and the writer thread.
struct Shared {
    durable: Arc<Durable>,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    /// Why the log is poisoned, once it is.
    poison: Mutex<Option<String>>,
}

impl Shared {
    fn poison_message(&self) -> Option<String> {
        self.poison
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_poison(&self, message: String) {
        let mut poison = self.poison.lock().unwrap_or_else(PoisonError::into_inner);
        // The first failure is the cause; later ones are consequences.
        poison.get_or_insert(message);
    }
}

/// The part of the handle guarded by the enqueue mutex.
struct State {
    last_seq: Seq,
    /// `None` once the log is closed.
    sender: Option<mpsc::Sender<Msg>>,
}

/// The writer thread and its exit signal.
struct Worker {
    handle: JoinHandle<()>,
    exited: oneshot::Receiver<()>,
}

struct Inner {
    path: Arc<Path>,
    branch: String,
    chain: Arc<Chain>,
    shared: Arc<Shared>,
    state: Mutex<State>,
    worker: tokio::sync::Mutex<Option<Worker>>,
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held (for example in a payload's Serialize impl) cannot
        // leave the state half-updated: `last_seq` changes only after a successful send.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn writer_failed(&self, message: impl Into<String>) -> LogError {
        LogError::WriterFailed {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    /// Refuses new records once the log is poisoned or closed.
    fn check_open(&self, state: &State) -> Result<(), LogError> {
        if let Some(message) = self.shared.poison_message() {
            return Err(self.writer_failed(message));
        }
        if state.sender.is_none() {
            return Err(self.writer_failed("the log was closed; open it again to append"));
        }
        Ok(())
    }

    /// Queues one serialized line for the writer thread.
    fn send(
        &self,
        state: &State,
        bytes: Vec<u8>,
        entry_seq: Option<Seq>,
    ) -> Result<Ticket, LogError> {
        let Some(sender) = state.sender.as_ref() else {
            return Err(self.writer_failed("the log was closed; open it again to append"));
        };
        let (done, rx) = oneshot::channel();
        sender
            .send(Msg {
                bytes,
                entry_seq,
                done,
            })
            .map_err(|_| self.writer_failed("the writer thread has stopped"))?;
        Ok(Ticket {
            rx,
            path: Arc::clone(&self.path),
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the sender lets the thread write what is queued and exit; joining here keeps
        // the promise that no work outlives the last handle. The thread holds no reference to
        // `Inner`, so it cannot be waiting on this drop.
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        drop(state.sender.take());
        if let Some(worker) = self.worker.get_mut().take() {
            if worker.handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "the command log writer thread panicked");
            }
        }
    }
}

/// Resolves once a queued record is durable (or the write failed).
#[must_use = "await the ticket to know the record is durable"]
pub struct Ticket {
    rx: oneshot::Receiver<Result<(), LogError>>,
    path: Arc<Path>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("path", &self.path).finish()
    }
}

impl Future for Ticket {
    type Output = Result<(), LogError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(_)) => Poll::Ready(Err(LogError::WriterFailed {
                path: self.path.to_path_buf(),
                message: "the writer thread stopped before confirming this record".to_string(),
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The writer of one branch file. Cloning shares the same writer.
///
/// Prefer [`Log::close`] at shutdown: dropping the last handle also writes, syncs and joins the
/// writer thread, but it has to block the dropping thread while it does.
pub struct Log<S: Schema> {
    inner: Arc<Inner>,
    _schema: PhantomData<fn() -> S>,
}

impl<S: Schema> Clone for Log<S> {
    fn clone(&self) -> Self {
        Log {
            inner: Arc::clone(&self.inner),
            _schema: PhantomData,
        }
    }
}

impl<S: Schema> std::fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("branch", &self.inner.branch)
            .field("path", &self.inner.path)
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

impl<S: Schema> Log<S> {
    /// Opens `branch` in `dir` for appending, creating the directory and `main.jsonl` (with its
    /// header) if they are absent; other branches are made with [`super::create_branch`].
    ///
    /// This is O(1) in the log's length: it reads the headers of the fork chain and finds the
    /// last entry by scanning backward from the end. A torn last line (bytes after the final
    /// `'\n'`, left by a crash mid-append) is truncated with a warning and reported in
    /// [`OpenReport::truncated_bytes`]; damage anywhere else is found by reads and replay.
    pub fn open(
        dir: &Path,
        branch: &str,
        opts: LogOptions,
    ) -> Result<(Log<S>, OpenReport), LogError> {
        Self::open_with(dir, branch, opts, None)
    }

    /// Like [`Log::open`], with a hook into the writer thread's commit steps.
    #[cfg(test)]
    pub(crate) fn open_with_hook(
        dir: &Path,
        branch: &str,
        opts: LogOptions,
        hook: Hook,
    ) -> Result<(Log<S>, OpenReport), LogError> {
        Self::open_with(dir, branch, opts, Some(hook))
    }

    fn open_with(
        dir: &Path,
        branch: &str,
        opts: LogOptions,
        hook: Option<Hook>,
    ) -> Result<(Log<S>, OpenReport), LogError> {
        chain::validate_name(branch)?;
        std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
        let path = chain::branch_path(dir, branch);
        let mut created = false;
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if branch != "main" {
                    return Err(LogError::UnknownBranch {
                        name: branch.to_string(),
                        dir: dir.to_path_buf(),
                    });
                }
                let header = chain::new_header(S::VERSION, branch, None);
                let contents =
                    codec::encode_header(&header).map_err(|reason| LogError::Encode {
                        path: path.clone(),
                        reason,
                    })?;
                match chain::create_file_atomically(dir, branch, &contents) {
                    Ok(_) => created = true,
                    // Someone created it between our check and our link; use theirs.
                    Err(LogError::BranchExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(LogError::io(path, e)),
        }

        let key = std::fs::canonicalize(&path).map_err(|e| LogError::io(&path, e))?;
        let claim = WriterClaim::acquire(key, &path)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        lock_exclusive(&file, &path)?;

        let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        let boundary = lines::last_line_boundary(&file, &path, 0, len)?.ok_or_else(|| {
            LogError::damaged(&path, 1, "the header line is missing or incomplete")
        })?;
        let truncated_bytes = len - boundary;
        if truncated_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                truncated_bytes,
                "the last line of the command log was torn (an append was cut short); truncating it"
            );
            file.set_len(boundary).map_err(|e| LogError::io(&path, e))?;
            file.sync_data().map_err(|e| LogError::io(&path, e))?;
        }

        let chain = Chain::resolve(dir, branch, Some(S::VERSION))?;
        let last_seq = chain.own.last_seq;
        let durable = Arc::new(Durable {
            len: AtomicU64::new(chain.own.end),
            seq: AtomicU64::new(last_seq),
        });
        let shared = Arc::new(Shared {
            durable,
            batches: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            poison: Mutex::new(None),
        });
        let path: Arc<Path> = Arc::from(path);
        let (sender, rx) = mpsc::channel();
        let (exit, exited) = oneshot::channel();
        let thread = WriterThread {
            file,
            path: Arc::clone(&path),
            fsync: opts.fsync,
            shared: Arc::clone(&shared),
            rx,
            claim,
            exit,
            hook,
        };
        let handle = std::thread::Builder::new()
            .name(format!("tavern-log-{branch}"))
            .spawn(move || thread.run())
            .map_err(|e| LogError::io(path.to_path_buf(), e))?;

        let report = OpenReport {
            truncated_bytes,
            created,
            last_seq,
            len: chain.own.end,
        };
        let inner = Inner {
            path,
            branch: branch.to_string(),
            chain: Arc::new(chain),
            shared,
            state: Mutex::new(State {
                last_seq,
                sender: Some(sender),
            }),
            worker: tokio::sync::Mutex::new(Some(Worker { handle, exited })),
        };
        Ok((
            Log {
                inner: Arc::new(inner),
                _schema: PhantomData,
            },
            report,
        ))
    }

    /// The branch this log writes.
    pub fn branch_name(&self) -> &str {
        &self.inner.branch
    }

    /// The seq of the last entry queued, durable or not (0 if there is none).
    ///
    /// Use `reader().last_seq()` for the last durable entry.
    pub fn last_seq(&self) -> Seq {
        self.inner.lock_state().last_seq
    }

    /// The branch file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The writer thread's counters.
    pub fn stats(&self) -> LogStats {
        let shared = &self.inner.shared;
        LogStats {
            batches: shared.batches.load(Ordering::Relaxed),
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            records: shared.records.load(Ordering::Relaxed),
            bytes: shared.bytes.load(Ordering::Relaxed),
        }
    }

    /// A reader of this branch that sees exactly the records made durable so far, including
    /// ones made durable after the reader was created.
    pub fn reader(&self) -> LogReader<S> {
        LogReader::from_chain(
            Arc::clone(&self.inner.chain),
            Bound::Durable(Arc::clone(&self.inner.shared.durable)),
        )
    }

    /// Queues a new entry and returns its seq and a ticket to await durability.
    ///
    /// It assigns seq = last + 1, parent = last (`None` for seq 1) and this branch's name. It
    /// never awaits, so it can be called inside the caller's own critical section; the order of
    /// calls is the order of lines on disk.
    pub fn enqueue_entry(&self, draft: EntryDraft<S>) -> Result<(Seq, Ticket), LogError> {
        self.enqueue(None, draft)
    }

    /// Like [`Log::enqueue_entry`], but fails with [`LogError::Conflict`] unless the last seq is
    /// `expected` (optimistic concurrency for callers that decided based on a read).
    pub fn enqueue_entry_expect(
        &self,
        expected: Seq,
        draft: EntryDraft<S>,
    ) -> Result<(Seq, Ticket), LogError> {
        self.enqueue(Some(expected), draft)
    }

    fn enqueue(
        &self,
        expected: Option<Seq>,
        draft: EntryDraft<S>,
    ) -> Result<(Seq, Ticket), LogError> {
        let inner = &*self.inner;
        let mut state = inner.lock_state();
        inner.check_open(&state)?;
        if let Some(expected) = expected {
            if state.last_seq != expected {
                return Err(LogError::Conflict {
                    path: inner.path.to_path_buf(),
                    expected,
                    actual: state.last_seq,
                });
            }
        }
        let seq = state.last_seq + 1;
        let parent = (state.last_seq > 0).then_some(state.last_seq);
        let bytes =
            codec::encode_entry::<S>(seq, parent, &inner.branch, &draft).map_err(|reason| {
                LogError::Encode {
                    path: inner.path.to_path_buf(),
                    reason,
                }
            })?;
        let ticket = inner.send(&state, bytes, Some(seq))?;
        state.last_seq = seq;
        Ok((seq, ticket))
    }

    /// Queues an update (status change and/or more outcomes) for entry `update.seq`, which must
    /// already be queued on this branch or visible in its fork prefix.
    pub fn enqueue_update(&self, update: Update<S>) -> Result<Ticket, LogError> {
        let inner = &*self.inner;
        let state = inner.lock_state();
        inner.check_open(&state)?;
        if update.seq == 0 || update.seq > state.last_seq {
            return Err(LogError::SeqOutOfRange {
                path: inner.path.to_path_buf(),
                seq: update.seq,
                last: state.last_seq,
            });
        }
        let bytes = codec::encode_update::<S>(&update).map_err(|reason| LogError::Encode {
            path: inner.path.to_path_buf(),
            reason,
        })?;
        inner.send(&state, bytes, None)
    }

    /// Queues a new entry and waits until it is durable; returns its seq.
    pub async fn append(&self, draft: EntryDraft<S>) -> Result<Seq, LogError> {
        let (seq, ticket) = self.enqueue_entry(draft)?;
        ticket.await?;
        Ok(seq)
    }

    /// Writes and syncs everything queued, stops the writer thread and joins it.
    ///
    /// Later enqueues fail. Closing again (or concurrently) waits for the same shutdown and
    /// returns the same result; a poisoned log reports why it was poisoned.
    pub async fn close(&self) -> Result<(), LogError> {
        let inner = &*self.inner;
        let mut worker = inner.worker.lock().await;
        drop(inner.lock_state().sender.take());
        if let Some(Worker { handle, exited }) = worker.take() {
            // An error here only means the thread ended without signalling (it panicked);
            // `join` below tells which.
            let _ = exited.await;
            if handle.join().is_err() {
                inner
                    .shared
                    .set_poison("the writer thread panicked".to_string());
            }
        }
        match inner.shared.poison_message() {
            Some(message) => Err(inner.writer_failed(message)),
            None => Ok(()),
        }
    }
}

/// Everything the writer thread owns. It holds no reference to the handles, so dropping the
/// last handle is what lets it finish.
struct WriterThread {
    file: File,
    path: Arc<Path>,
    fsync: bool,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Msg>,
    claim: WriterClaim,
    exit: oneshot::Sender<()>,
    hook: Option<Hook>,
}

impl WriterThread {
    fn run(self) {
        let WriterThread {
            mut file,
            path,
            fsync,
            shared,
            rx,
            claim,
            exit,
            hook,
        } = self;
        let mut batch: Vec<Msg> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut unsynced = false;
        while let Ok(first) = rx.recv() {
            batch.push(first);
            batch.extend(rx.try_iter());
            let outcome = match shared.poison_message() {
                Some(message) => Err(message),
                None => commit(&mut file, fsync, &shared, &hook, &batch, &mut buf),
            };
            match outcome {
                Ok(()) => {
                    unsynced |= !fsync;
                    for msg in batch.drain(..) {
                        // A dropped ticket is fine: its owner chose not to wait.
                        let _ = msg.done.send(Ok(()));
                    }
                }
                Err(message) => {
                    tracing::error!(path = %path.display(), %message, "the command log writer failed");
                    shared.set_poison(message.clone());
                    for msg in batch.drain(..) {
                        let _ = msg.done.send(Err(LogError::WriterFailed {
                            path: path.to_path_buf(),
                            message: message.clone(),
                        }));
                    }
                }
            }
        }
        // Without per-batch syncs, closing is the one point where the data is made durable.
        if unsynced && shared.poison_message().is_none() {
            if let Err(e) = file.sync_data() {
                shared.set_poison(format!("the final sync failed: {e}"));
            }
        }
        drop(file);
        drop(claim);
        // The handle may already be gone (dropped rather than closed); nobody needs the signal.
        let _ = exit.send(());
    }
}

/// Writes and syncs one batch, then publishes it to readers and counters.
fn commit(
    file: &mut File,
    fsync: bool,
    shared: &Shared,
    hook: &Option<Hook>,
    batch: &[Msg],
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    buf.clear();
    for msg in batch {
        buf.extend_from_slice(&msg.bytes);
    }
    let durable_len = shared.durable.len.load(Ordering::Acquire);
    let written = call_hook(hook, Phase::Write).and_then(|()| file.write_all(buf));
    if let Err(e) = written {
        return Err(roll_back(file, durable_len, format!("write failed: {e}")));
    }
    if fsync {
        let synced = call_hook(hook, Phase::Sync).and_then(|()| file.sync_data());
        if let Err(e) = synced {
            return Err(roll_back(
                file,
                durable_len,
                format!("fdatasync failed: {e}"),
            ));
        }
        shared.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    // Length before seq: see `Durable` for why readers rely on this order.
    shared
        .durable
        .len
        .store(durable_len + buf.len() as u64, Ordering::Release);
    if let Some(seq) = batch.iter().rev().find_map(|m| m.entry_seq) {
        shared.durable.seq.store(seq, Ordering::Release);
    }
    shared.batches.fetch_add(1, Ordering::Relaxed);
    shared
        .records
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    shared.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Cuts a failed batch off the file so that records whose tickets report failure do not
/// reappear when the log is reopened; says in the message whether that worked.
fn roll_back(file: &File, durable_len: u64, message: String) -> String {
    match file.set_len(durable_len) {
        Ok(()) => format!("{message}; the unconfirmed batch was cut off the file"),
        Err(e) => format!(
            "{message}; cutting the unconfirmed batch off the file also failed ({e}), so some of \
             its records may reappear when the log is reopened"
        ),
    }
}
