//! The one outbound path for every Discord write: messages, header edits, threads, reactions and
//! typing indicators all queue here, and nothing else in Tavern asks Discord to change anything.
//!
//! # Why Tavern paces itself
//!
//! serenity's own ratelimiter is disabled: it ignores the HTTP proxy that the fake Discord (and users
//! of twilight-http-proxy or nirn-proxy) need (serenity#1739). With it disabled serenity never waits,
//! never retries and never shows the rate-limit headers, so this module keeps Discord's budgets itself,
//! conservatively, and retries what Discord refused:
//!
//! - a sliding window per channel (by default 5 requests in 5 s) that counts *every* request naming the
//!   channel: messages, edits, reactions, typing, thread creation (on the parent) and archiving (on the
//!   thread). Discord's real buckets are per route and looser; counting them together means Tavern
//!   never sends into an exhausted bucket however the buckets are drawn;
//! - a sliding window over all channels (by default 50 requests a second), in which a request still in
//!   flight holds its slot until it ends;
//! - both windows are timed from when a request *ended*, plus a little slack. Discord counts a request
//!   when it arrives, somewhere between its start and its end, so a slow request followed by a fast one
//!   can never land closer together than the window.
//!
//! # Ordering
//!
//! Every channel (a thread is a channel too) has a FIFO queue and at most one worker task, started on
//! the tavern's `TaskTracker` when work arrives and ending when the queue is empty. A channel's
//! requests go one at a time, in the order they were queued: a request being retried holds back the
//! requests behind it in its own channel and nowhere else. A message split into pieces is one queue
//! entry, so nothing else lands between its pieces.
//!
//! # What may be dropped
//!
//! Messages, reactions, thread creation and archiving are retried on 429, 5xx and transport errors, up
//! to [`Limits::max_attempts`] attempts in all; one that still fails is logged with `tracing::error!`,
//! its caller gets the error, and the requests behind it go on. Nothing else is dropped, with two
//! deliberate exceptions: a header edit is replaced by a newer edit of the same message queued before
//! it went out (the latest state wins), and typing indicators are best effort (skipped while the
//! channel has work queued or its window is nearly spent).
//!
//! # Shutdown
//!
//! When the tavern's token is cancelled, workers keep sending for [`Limits::shutdown_grace`], and new
//! work is still taken meanwhile so that an agent's last words go out. Past that deadline whatever is
//! left fails with [`ApiError::Stopped`], logged, and new work is refused. So `cancel.cancel()`
//! followed by [`Outbound::flush`] ends within the grace, however Discord behaves, whereas a flush
//! before cancelling waits for every retry.
//!
//! # Locking
//!
//! The queues live in one `std::sync::Mutex`, only ever held for a few map operations and never across
//! an `.await`. The global window has a `tokio::sync::Mutex` that guards no data: it only makes
//! channels wanting a global slot take turns in arrival order (tokio's mutex is fair).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, Notify};
use tokio::time::{self, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[cfg(test)]
mod tests;

/// Discord's limit on a message's content, in characters (`chars()`, as serenity counts them).
pub const MESSAGE_LIMIT: usize = 2000;

/// Discord's limit on a thread's name, in characters.
pub const THREAD_NAME_LIMIT: usize = 100;

/// How many files Discord takes on one message.
pub const MAX_FILES_PER_MESSAGE: usize = 10;

/// Text longer than this many characters goes as a file attachment (see [`as_attachment`]).
pub const ATTACHMENT_OVER_CHARS: usize = 8000;

/// Text that would take more than this many messages goes as a file attachment.
pub const ATTACHMENT_OVER_PIECES: usize = 4;

/// The name of the file that carries text too long for messages.
pub const ATTACHMENT_NAME: &str = "message.md";

/// How much of a text sent as an attachment is shown in the message itself.
const PREVIEW_CHARS: usize = 1500;

/// Added to every window: a request leaves a window only this long after the window has passed, so a
/// fake or a proxy that counts a window's end as inside it still never sees one request too many.
const WINDOW_SLACK: Duration = Duration::from_millis(20);

/// The window of the global budget (Discord's is "50 requests per second").
const GLOBAL_WINDOW: Duration = Duration::from_secs(1);

/// The longest the doubling backoff waits between two attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The longest Tavern waits when Discord asks for it with a 429. Longer waits fail at once instead,
/// with the wait in the error: a channel silently stuck for an hour is worse than an error.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long a typing indicator is taken to last. Discord shows it for about 10 s, or until the bot's
/// next message, so asking again sooner is wasted budget.
const TYPING_LASTS: Duration = Duration::from_secs(8);

/// How long a typing request may take before it is given up; it is never retried.
const TYPING_TIMEOUT: Duration = Duration::from_secs(5);

/// Below this many channel entries the map is never swept for idle channels.
const SWEEP_MIN: usize = 64;

/// What Discord can be asked to do: implemented over serenity's `Http` in `src/discord/api.rs`, and by a
/// recording fake in this module's tests. Every call is one REST request; Tavern's [`Outbound`] decides
/// when to make it and whether to try again, so an implementation neither waits nor retries.
#[async_trait]
pub trait DiscordApi: Send + Sync + 'static {
    /// Posts one message (content at most [`MESSAGE_LIMIT`] characters, at most
    /// [`MAX_FILES_PER_MESSAGE`] files) and returns its id: one request, nothing more. [`Outbound`]
    /// always passes `msg.reactions` empty and adds them afterwards with [`DiscordApi::react`], so
    /// that a failed reaction is retried on its own instead of the whole message being resent.
    async fn send(&self, channel: u64, msg: &OutMessage) -> Result<u64, ApiError>;
    /// Replaces the content of one of the bot's messages.
    async fn edit(&self, channel: u64, message: u64, content: &str) -> Result<(), ApiError>;
    /// Creates a public thread in `channel` (not from a message) and returns its id.
    async fn create_thread(&self, channel: u64, name: &str) -> Result<u64, ApiError>;
    /// Archives a thread (an implementation may lock it too).
    async fn archive_thread(&self, thread: u64) -> Result<(), ApiError>;
    /// Adds the bot's reaction `emoji` (a unicode emoji, or `name:id` for a custom one) to a message.
    async fn react(&self, channel: u64, message: u64, emoji: &str) -> Result<(), ApiError>;
    /// Shows the bot as typing in `channel`.
    async fn typing(&self, channel: u64) -> Result<(), ApiError>;
}

/// One message as Tavern means it; [`Outbound::send`] may turn it into several Discord messages.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OutMessage {
    /// The text, of any length: it is split at [`MESSAGE_LIMIT`] characters, or sent as a file when
    /// it is very long (see [`as_attachment`]).
    pub content: String,
    /// The one user this message may ping; every other mention in the content stays silent.
    pub mention_user: Option<u64>,
    /// Files to attach, as (file name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
    /// Reactions the bot adds to the message after sending it, in order (for instance the choices of
    /// an approval). On a message sent in pieces they go on the last piece.
    pub reactions: Vec<String>,
}

impl OutMessage {
    /// A plain text message.
    pub fn text(content: impl Into<String>) -> OutMessage {
        OutMessage {
            content: content.into(),
            ..OutMessage::default()
        }
    }

    /// Lets this message ping `user`.
    pub fn mentioning(mut self, user: u64) -> OutMessage {
        self.mention_user = Some(user);
        self
    }

    /// Attaches a file.
    pub fn with_file(mut self, name: impl Into<String>, bytes: Vec<u8>) -> OutMessage {
        self.files.push((name.into(), bytes));
        self
    }

    /// Adds a reaction the bot puts on the message once it is sent.
    pub fn with_reaction(mut self, emoji: impl Into<String>) -> OutMessage {
        self.reactions.push(emoji.into());
        self
    }
}

// Written out so that a log line never dumps a file's bytes or a whole agent's reply.
impl fmt::Debug for OutMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<(&str, usize)> = self
            .files
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.len()))
            .collect();
        f.debug_struct("OutMessage")
            .field("content", &preview(&self.content))
            .field("chars", &self.content.chars().count())
            .field("mention_user", &self.mention_user)
            .field("files", &files)
            .field("reactions", &self.reactions)
            .finish()
    }
}

/// Why a Discord request failed. 429, 5xx and transport errors are worth another attempt
/// ([`ApiError::is_retryable`]); the rest are final.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 429: Discord's rate limit. Retried after `retry_after` when Discord said (serenity with its
    /// ratelimiter disabled does not show it, so usually `None`), else after the backoff.
    #[error("Discord rate-limited the request (429{})", retry_note(.retry_after))]
    RateLimited {
        /// How long Discord asked us to wait.
        retry_after: Option<Duration>,
    },
    /// A 5xx answer: Discord or Cloudflare had trouble. Retried with backoff.
    #[error("Discord answered {0} (a server error)")]
    Server(u16),
    /// Any other 4xx: the request itself is wrong (missing permission, unknown channel, bad body).
    /// Never retried; the message says what Discord objected to.
    #[error("Discord refused the request ({status}): {message}")]
    Client {
        /// The HTTP status.
        status: u16,
        /// Discord's error message, e.g. `Missing Permissions`.
        message: String,
    },
    /// No answer: the connection failed, or the request took longer than [`Limits::request_timeout`].
    /// Retried with backoff (a message that did arrive may then show twice, which beats losing it).
    #[error("could not reach Discord: {0}")]
    Transport(String),
    /// Anything else the Discord client reported (a body serenity refused to build, say). Final.
    #[error("{0}")]
    Other(String),
    /// Tavern shut down before the request could be made (past [`Limits::shutdown_grace`]). Never
    /// returned by a [`DiscordApi`]; only by [`Outbound`].
    #[error("Tavern stopped before the request could be made")]
    Stopped,
}

impl ApiError {
    /// Classifies an HTTP error status: 429 is [`ApiError::RateLimited`], 5xx [`ApiError::Server`],
    /// anything else [`ApiError::Client`].
    pub fn from_status(status: u16, message: impl Into<String>) -> ApiError {
        match status {
            429 => ApiError::RateLimited { retry_after: None },
            500..=599 => ApiError::Server(status),
            _ => ApiError::Client {
                status,
                message: message.into(),
            },
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::RateLimited { .. } | ApiError::Server(_) | ApiError::Transport(_) => true,
            ApiError::Client { .. } | ApiError::Other(_) | ApiError::Stopped => false,
        }
    }

    /// How long Discord asked us to wait before the next attempt, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// The part of a 429's message that says how long Discord asked us to wait.
fn retry_note(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(", retry after {:.3} s", wait.as_secs_f64()),
        None => String::new(),
    }
}

/// Tavern's own budgets and retry policy for Discord requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Requests per channel per [`Limits::per_channel_window`] (at least 1).
    pub per_channel: u32,
    /// The window of the per-channel budget.
    pub per_channel_window: Duration,
    /// Requests per second over all channels (at least 1).
    pub global_per_second: u32,
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the second attempt when Discord did not say; it doubles for each further
    /// attempt, up to a minute.
    pub backoff: Duration,
    /// How long one request may take before it is abandoned and counted as a transport error.
    pub request_timeout: Duration,
    /// How long, once the tavern's token is cancelled, queued work is still sent.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    /// 5 requests per 5 s per channel (Discord's folk limit for messages), 50 per second in all,
    /// 6 attempts with 1 s backoff doubling (31 s of waiting at most), a minute per request, and 10 s
    /// to send what is left at shutdown.
    fn default() -> Limits {
        Limits {
            per_channel: 5,
            per_channel_window: Duration::from_secs(5),
            global_per_second: 50,
            max_attempts: 6,
            backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The wait before attempt `attempt + 1` when Discord did not say how long.
    fn backoff_after(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(BACKOFF_CAP)
    }

    /// How long a request counts against its channel's budget after it ended.
    fn channel_span(&self) -> Duration {
        self.per_channel_window + WINDOW_SLACK
    }
}

/// The handle through which Tavern writes to Discord; cheap to clone. See the module documentation
/// for the budgets, ordering and shutdown it keeps.
#[derive(Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// Starts the outbound path. Channel workers run on `tracker`; `cancel` starts the shutdown
    /// described in the module documentation.
    pub fn start(
        api: Arc<dyn DiscordApi>,
        limits: Limits,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Outbound {
        let limits = Limits {
            per_channel: limits.per_channel.max(1),
            global_per_second: limits.global_per_second.max(1),
            max_attempts: limits.max_attempts.max(1),
            ..limits
        };
        let shared = Arc::new(Shared {
            api,
            global: Bucket::new(
                limits.global_per_second as usize,
                GLOBAL_WINDOW + WINDOW_SLACK,
            ),
            limits,
            tracker: tracker.clone(),
            cancel,
            deadline: OnceLock::new(),
            channels: Mutex::new(Channels {
                map: HashMap::new(),
                sweep_at: SWEEP_MIN,
            }),
        });
        // No task watches `cancel` for the deadline: one would outlive an outbound whose token is
        // never cancelled and keep the tracker from ever finishing. Every wait of a running worker
        // notices the cancellation at once instead; with no worker running, nothing is queued.
        Outbound { shared }
    }

    /// Queues a message (split into pieces as needed, or sent as a file when very long; see
    /// [`split_message`] and [`as_attachment`]) and waits until it is sent. Returns the ids of the
    /// Discord messages it became, in order, or the first error of a piece that could not be sent
    /// after its retries (the other pieces are still sent). An empty message sends nothing.
    pub async fn send(&self, channel: u64, msg: OutMessage) -> Result<Vec<u64>, ApiError> {
        let pieces = prepare(msg);
        if pieces.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        let job = Job::Send {
            pieces,
            reply: Some(tx),
        };
        if let Err(job) = self.shared.queue_job(channel, job) {
            self.shared.refuse(channel, job);
            return Err(ApiError::Stopped);
        }
        rx.await.unwrap_or(Err(ApiError::Stopped))
    }

    /// Like [`Outbound::send`], but returns at once; a failure is only logged.
    pub fn post(&self, channel: u64, msg: OutMessage) {
        let pieces = prepare(msg);
        if pieces.is_empty() {
            return;
        }
        let job = Job::Send {
            pieces,
            reply: None,
        };
        if let Err(job) = self.shared.queue_job(channel, job) {
            self.shared.refuse(channel, job);
        }
    }

    /// Sets the content of a header message (the bot's own), truncated to [`MESSAGE_LIMIT`]
    /// characters. Coalesced: while an edit of the same message is still queued, it is given this
    /// content instead of a second edit being queued, so only the latest state is sent.
    pub fn edit_header(&self, channel: u64, message: u64, content: String) {
        let content = truncate(content, MESSAGE_LIMIT);
        let queued = self
            .shared
            .queue(channel, |queue, _| match queue.edits.entry(message) {
                Entry::Occupied(mut pending) => {
                    pending.insert(content);
                }
                Entry::Vacant(slot) => {
                    slot.insert(content);
                    queue.jobs.push_back(Job::Edit { message });
                }
            });
        if !queued {
            tracing::error!(
                channel,
                message,
                "Tavern has stopped; a header edit was not sent"
            );
        }
    }

    /// Creates a public thread in `parent`, queued behind what was queued in `parent` before it, and
    /// returns its id. The name is made fit for Discord (see [`thread_name`]).
    pub async fn create_thread(&self, parent: u64, name: &str) -> Result<u64, ApiError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::CreateThread {
            name: thread_name(name),
            reply: tx,
        };
        if let Err(job) = self.shared.queue_job(parent, job) {
            self.shared.refuse(parent, job);
            return Err(ApiError::Stopped);
        }
        rx.await.unwrap_or(Err(ApiError::Stopped))
    }

    /// Archives a thread once everything queued in it before has been sent.
    pub fn archive(&self, thread: u64) {
        if let Err(job) = self.shared.queue_job(thread, Job::Archive) {
            self.shared.refuse(thread, job);
        }
    }

    /// Adds the bot's reaction to a message, in order with the channel's other requests.
    pub fn react(&self, channel: u64, message: u64, emoji: &str) {
        let job = Job::React {
            message,
            emoji: emoji.to_owned(),
        };
        if let Err(job) = self.shared.queue_job(channel, job) {
            self.shared.refuse(channel, job);
        }
    }

    /// Shows the bot as typing in `channel`, best effort: skipped while the channel has work queued
    /// (its messages matter more, and the next one ends the indicator anyway), while an indicator
    /// sent recently still shows, or when the channel's window has fewer than two free slots.
    pub fn typing(&self, channel: u64) {
        self.shared.queue(channel, |queue, now| {
            let showing = queue.typing_until.is_some_and(|until| until > now);
            if !queue.worker && !showing {
                queue.jobs.push_back(Job::Typing);
            }
        });
    }

    /// Waits until everything queued before this call has been sent or has failed. Work queued
    /// meanwhile is not waited for, so a steady stream of posts cannot keep it waiting forever.
    pub async fn flush(&self) {
        let waits: Vec<oneshot::Receiver<()>> = {
            let mut channels = self.shared.lock();
            channels
                .map
                .values_mut()
                .filter(|queue| queue.worker)
                .map(|queue| {
                    let (tx, rx) = oneshot::channel();
                    queue.jobs.push_back(Job::Flushed(tx));
                    rx
                })
                .collect()
        };
        for wait in waits {
            // An error means the worker went away, which also means it is done with the channel.
            let _ = wait.await;
        }
    }
}

/// One entry of a channel's queue.
enum Job {
    /// A message in pieces, sent one after the other; `reply` is `None` for [`Outbound::post`].
    Send {
        pieces: Vec<OutMessage>,
        reply: Option<oneshot::Sender<Result<Vec<u64>, ApiError>>>,
    },
    /// An edit of a header message; its content is in [`Queue::edits`], where newer edits replace it.
    Edit { message: u64 },
    /// A thread to create in the channel.
    CreateThread {
        name: String,
        reply: oneshot::Sender<Result<u64, ApiError>>,
    },
    /// Archiving the channel, which is a thread.
    Archive,
    /// A reaction of the bot's on a message.
    React { message: u64, emoji: String },
    /// A typing indicator, sent only if the budget allows it there and then.
    Typing,
    /// A [`Outbound::flush`] waiting for everything queued before it.
    Flushed(oneshot::Sender<()>),
}

/// What the outbound handle and every channel worker share.
struct Shared {
    api: Arc<dyn DiscordApi>,
    limits: Limits,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// When queued work stops being sent: `shutdown_grace` after the cancellation was first noticed
    /// (by a worker, at once, or by the next call queueing work).
    deadline: OnceLock<Instant>,
    global: Bucket,
    channels: Mutex<Channels>,
}

/// Every channel's queue and budget.
struct Channels {
    map: HashMap<u64, Queue>,
    /// When the map reaches this size, idle channels are swept out of it (amortised: the threshold
    /// doubles with what is left).
    sweep_at: usize,
}

/// One channel's queue and recent requests. It outlives its worker while its window still holds
/// requests, so that a worker started soon after still respects them.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The latest content of each header edit still queued, by message id.
    edits: HashMap<u64, String>,
    /// Whether a worker is running for the channel; it is while `jobs` is not empty.
    worker: bool,
    /// When this channel's recent requests ended, oldest first.
    window: VecDeque<Instant>,
    /// Until when the typing indicator last sent is taken to show.
    typing_until: Option<Instant>,
}

impl Queue {
    /// Forgets requests that have left the window; then returns when the next request may go, or
    /// `None` if it may go now.
    fn full_until(&mut self, now: Instant, limits: &Limits) -> Option<Instant> {
        let span = limits.channel_span();
        while self
            .window
            .front()
            .is_some_and(|&ended| ended + span <= now)
        {
            self.window.pop_front();
        }
        if self.window.len() < limits.per_channel as usize {
            None
        } else {
            self.window.front().map(|&ended| ended + span)
        }
    }

    /// Whether nothing about this channel needs remembering any more.
    fn idle(&self, now: Instant, limits: &Limits) -> bool {
        !self.worker
            && self.jobs.is_empty()
            && self
                .window
                .back()
                .is_none_or(|&ended| ended + limits.channel_span() <= now)
            && self.typing_until.is_none_or(|until| until <= now)
    }
}

impl Channels {
    /// The queue of `channel`, created if need be.
    fn queue(&mut self, channel: u64, now: Instant, limits: &Limits) -> &mut Queue {
        if !self.map.contains_key(&channel) && self.map.len() >= self.sweep_at {
            self.map.retain(|_, queue| !queue.idle(now, limits));
            self.sweep_at = (self.map.len() * 2).max(SWEEP_MIN);
        }
        self.map.entry(channel).or_default()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When queued work stops being sent; only asked once `cancel` has fired.
    fn deadline(&self) -> Instant {
        *self
            .deadline
            .get_or_init(|| Instant::now() + self.limits.shutdown_grace)
    }

    /// Whether the shutdown grace has run out: nothing more is sent or taken.
    fn stopped(&self) -> bool {
        self.cancel.is_cancelled() && Instant::now() >= self.deadline()
    }

    /// Completes once the shutdown grace has run out; never before the token is cancelled.
    async fn past_deadline(&self) {
        self.cancel.cancelled().await;
        time::sleep_until(self.deadline()).await;
    }

    /// Sleeps until `until`, or fails at once with [`ApiError::Stopped`] when shutdown's deadline
    /// comes first (there is no point waiting for a slot that will not be used).
    async fn sleep_until(&self, until: Instant) -> Result<(), ApiError> {
        if !self.cancel.is_cancelled() {
            tokio::select! {
                () = time::sleep_until(until) => return Ok(()),
                () = self.cancel.cancelled() => {}
            }
        }
        if until > self.deadline() {
            return Err(ApiError::Stopped);
        }
        time::sleep_until(until).await;
        Ok(())
    }

    /// Runs `change` on `channel`'s queue and starts the channel's worker if it queued work and no
    /// worker runs. False (and nothing done) once Tavern has stopped.
    fn queue(self: &Arc<Self>, channel: u64, change: impl FnOnce(&mut Queue, Instant)) -> bool {
        if self.stopped() {
            return false;
        }
        let now = Instant::now();
        let start = {
            let mut channels = self.lock();
            let queue = channels.queue(channel, now, &self.limits);
            change(queue, now);
            let start = !queue.worker && !queue.jobs.is_empty();
            queue.worker |= start;
            start
        };
        if start {
            let shared = Arc::clone(self);
            self.tracker
                .spawn(async move { shared.work(channel).await });
        }
        true
    }

    /// Queues one job, or hands it back once Tavern has stopped.
    fn queue_job(self: &Arc<Self>, channel: u64, job: Job) -> Result<(), Job> {
        let mut job = Some(job);
        let queued = self.queue(channel, |queue, _| {
            queue.jobs.extend(job.take());
        });
        match job {
            Some(job) if !queued => Err(job),
            _ => Ok(()),
        }
    }

    /// Fails a job that will never be sent, visibly; true if it was a request (not a typing
    /// indicator or a flush).
    fn refuse(&self, channel: u64, job: Job) -> bool {
        match job {
            Job::Send { pieces, reply } => {
                for piece in &pieces {
                    tracing::error!(
                        channel,
                        content = %preview(&piece.content),
                        files = piece.files.len(),
                        "Tavern stopped before this message could be sent to Discord"
                    );
                }
                if let Some(reply) = reply {
                    let _ = reply.send(Err(ApiError::Stopped));
                }
                true
            }
            Job::CreateThread { name, reply } => {
                tracing::error!(channel, %name, "Tavern stopped before this thread could be created");
                let _ = reply.send(Err(ApiError::Stopped));
                true
            }
            Job::Edit { message } => {
                tracing::error!(
                    channel,
                    message,
                    "Tavern stopped before this header edit went out"
                );
                true
            }
            Job::Archive => {
                tracing::error!(
                    channel,
                    "Tavern stopped before this thread could be archived"
                );
                true
            }
            Job::React { message, emoji } => {
                tracing::error!(channel, message, %emoji, "Tavern stopped before this reaction went out");
                true
            }
            Job::Typing => false,
            Job::Flushed(done) => {
                let _ = done.send(());
                false
            }
        }
    }

    /// A channel's worker: runs the channel's jobs in order and ends when the queue is empty. Bounded:
    /// every job is bounded (attempts, timeouts, the shutdown deadline), and after the deadline every
    /// job left fails at once and no new one can be queued.
    async fn work(self: Arc<Self>, channel: u64) {
        let mut guard = WorkerGuard {
            shared: &self,
            channel,
            finished: false,
        };
        loop {
            let job = {
                let mut channels = self.lock();
                let Some(queue) = channels.map.get_mut(&channel) else {
                    break;
                };
                match queue.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        queue.worker = false;
                        if queue.idle(Instant::now(), &self.limits) {
                            channels.map.remove(&channel);
                        }
                        break;
                    }
                }
            };
            if self.stopped() {
                self.refuse(channel, job);
            } else {
                self.run(channel, job).await;
            }
        }
        guard.finished = true;
    }

    /// Runs one job, handing its result to whoever waits for it.
    async fn run(&self, channel: u64, job: Job) {
        match job {
            Job::Send { pieces, reply } => {
                let result = self.send_pieces(channel, pieces).await;
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Job::Edit { message } => self.edit(channel, message).await,
            Job::CreateThread { name, reply } => {
                let result = self
                    .request(channel, "create a thread", &name, || {
                        self.api.create_thread(channel, &name)
                    })
                    .await;
                cut_short(channel, "create a thread", &name, &result);
                let _ = reply.send(result);
            }
            Job::Archive => {
                let result = self
                    .request(channel, "archive a thread", "", || {
                        self.api.archive_thread(channel)
                    })
                    .await;
                cut_short(channel, "archive a thread", "", &result);
            }
            Job::React { message, emoji } => {
                let result = self
                    .request(channel, "react", &emoji, || {
                        self.api.react(channel, message, &emoji)
                    })
                    .await;
                cut_short(channel, "react", &emoji, &result);
            }
            Job::Typing => self.type_in(channel).await,
            Job::Flushed(done) => {
                let _ = done.send(());
            }
        }
    }

    /// Sends a message's pieces in order, each followed by its reactions. A piece that fails after
    /// its retries does not stop the ones after it: they carry the rest of what was said.
    async fn send_pieces(
        &self,
        channel: u64,
        pieces: Vec<OutMessage>,
    ) -> Result<Vec<u64>, ApiError> {
        let mut ids = Vec::with_capacity(pieces.len());
        let mut first_error = None;
        let mut pieces = pieces.into_iter();
        while let Some(mut piece) = pieces.next() {
            // Reactions are added here, after the send and each with its own retries: an
            // implementation adding them inside `send` would turn a failed reaction into a
            // resent, duplicated message.
            let reactions = std::mem::take(&mut piece.reactions);
            let sent = self
                .request(channel, "send a message", &preview(&piece.content), || {
                    self.api.send(channel, &piece)
                })
                .await;
            let id = match sent {
                Ok(id) => id,
                Err(ApiError::Stopped) => {
                    // Shutdown's deadline: the rest cannot go either; say so for each piece.
                    let rest = Job::Send {
                        pieces: std::iter::once(piece).chain(pieces).collect(),
                        reply: None,
                    };
                    self.refuse(channel, rest);
                    return Err(ApiError::Stopped);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                    continue;
                }
            };
            ids.push(id);
            if let Some(queue) = self.lock().map.get_mut(&channel) {
                // A message ends the typing indicator in every client.
                queue.typing_until = None;
            }
            for emoji in &reactions {
                let reacted = self
                    .request(channel, "react", emoji, || {
                        self.api.react(channel, id, emoji)
                    })
                    .await;
                // A missing reaction is logged by `request`; the message itself went out, and people
                // can still react by hand, so the caller gets the ids.
                if reacted == Err(ApiError::Stopped) {
                    cut_short(channel, "react", emoji, &reacted);
                    break;
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(ids),
        }
    }

    /// Sends the latest content queued for a header message; before every attempt it takes newer
    /// content if some was queued meanwhile, so a retried edit never sends a stale state.
    async fn edit(&self, channel: u64, message: u64) {
        let take = || {
            self.lock()
                .map
                .get_mut(&channel)
                .and_then(|queue| queue.edits.remove(&message))
        };
        // None: a retry of an earlier edit of the same message already sent this content.
        let Some(mut content) = take() else {
            return;
        };
        let result = self
            .request(channel, "edit a header", "", || {
                if let Some(newer) = take() {
                    content = newer;
                }
                let content = content.clone();
                async move { self.api.edit(channel, message, &content).await }
            })
            .await;
        cut_short(channel, "edit a header", "", &result);
    }

    /// A typing indicator: sent only if both budgets have room right now (the channel's with a slot
    /// to spare for the message it announces), never waited for and never retried.
    async fn type_in(&self, channel: u64) {
        if self.cancel.is_cancelled() {
            return;
        }
        let room = {
            let mut channels = self.lock();
            let Some(queue) = channels.map.get_mut(&channel) else {
                return;
            };
            queue.full_until(Instant::now(), &self.limits);
            queue.window.len() + 2 <= self.limits.per_channel as usize
        };
        if !room {
            return;
        }
        let Some(permit) = self.global.try_acquire() else {
            return;
        };
        let result = tokio::select! {
            result = self.api.typing(channel) => result,
            () = time::sleep(TYPING_TIMEOUT) => Err(ApiError::Transport("typing timed out".into())),
        };
        self.ended(channel, permit);
        match result {
            Ok(()) => {
                if let Some(queue) = self.lock().map.get_mut(&channel) {
                    queue.typing_until = Some(Instant::now() + TYPING_LASTS);
                }
            }
            Err(error) => {
                tracing::debug!(channel, %error, "a typing indicator failed; not retried")
            }
        }
    }

    /// Makes one request within both budgets, retrying what is worth retrying. A failure after the
    /// last attempt, or one not worth retrying, is logged as an error here; [`ApiError::Stopped`] is
    /// left to the caller, which logs what was not sent. `detail` identifies the request in logs.
    async fn request<T, F, Fut>(
        &self,
        channel: u64,
        what: &'static str,
        detail: &str,
        mut attempt_once: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let max_attempts = self.limits.max_attempts;
        // Bounded by `max_attempts`; every wait inside is bounded by the shutdown deadline.
        for attempt in 1..=max_attempts {
            let permit = self.pace(channel).await?;
            let timeout = self.limits.request_timeout;
            let result = tokio::select! {
                result = attempt_once() => result,
                () = time::sleep(timeout) => Err(ApiError::Transport(format!(
                    "no answer within {:.1} s", timeout.as_secs_f64()
                ))),
                () = self.past_deadline() => Err(ApiError::Stopped),
            };
            self.ended(channel, permit);
            let error = match result {
                Ok(value) => return Ok(value),
                Err(ApiError::Stopped) => return Err(ApiError::Stopped),
                Err(error) => error,
            };
            if !error.is_retryable() || attempt == max_attempts {
                tracing::error!(
                    channel, what, detail, attempts = attempt, %error,
                    "a Discord request failed; giving up on it"
                );
                return Err(error);
            }
            let wait = match error.retry_after() {
                Some(wait) if wait > MAX_RETRY_AFTER => {
                    tracing::error!(
                        channel, what, detail, attempts = attempt, %error,
                        "Discord asked for a longer wait than Tavern makes; giving up on the request"
                    );
                    return Err(error);
                }
                Some(wait) => wait,
                None => self.limits.backoff_after(attempt),
            };
            tracing::warn!(
                channel, what, detail, attempt, %error, wait_ms = wait.as_millis() as u64,
                "a Discord request failed; trying again"
            );
            self.sleep_until(Instant::now() + wait).await?;
        }
        // `max_attempts` is at least 1 and the last attempt always returns above.
        Err(ApiError::Other("no attempt was made".into()))
    }

    /// Waits until the channel's window and then the global one have room, and takes the global slot.
    async fn pace(&self, channel: u64) -> Result<Permit<'_>, ApiError> {
        // Only this channel's worker adds to its window, so every wait lets the oldest request out
        // and at most `per_channel` waits are ever needed.
        for _ in 0..=self.limits.per_channel {
            let until = {
                let mut channels = self.lock();
                match channels.map.get_mut(&channel) {
                    Some(queue) => queue.full_until(Instant::now(), &self.limits),
                    None => None,
                }
            };
            match until {
                Some(until) => self.sleep_until(until).await?,
                None => break,
            }
        }
        tokio::select! {
            permit = self.global.acquire() => Ok(permit),
            () = self.past_deadline() => Err(ApiError::Stopped),
        }
    }

    /// Records that a request in `channel` has ended, in both windows.
    fn ended(&self, channel: u64, permit: Permit<'_>) {
        if let Some(queue) = self.lock().map.get_mut(&channel) {
            queue.window.push_back(Instant::now());
        }
        drop(permit);
    }
}

/// Logs a request that shutdown's deadline cut short ([`Shared::request`] logs every other failure).
fn cut_short<T>(channel: u64, what: &'static str, detail: &str, result: &Result<T, ApiError>) {
    if let Err(ApiError::Stopped) = result {
        tracing::error!(
            channel,
            what,
            detail,
            "Tavern stopped before this Discord request could be made"
        );
    }
}

/// Cleans up after a worker that ended without emptying its queue: it panicked (a `DiscordApi` bug)
/// or the runtime dropped it. What was queued fails visibly instead of hanging its callers and
/// flushes, and the next job queued starts a fresh worker.
struct WorkerGuard<'a> {
    shared: &'a Shared,
    channel: u64,
    finished: bool,
}

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let jobs = {
            let mut channels = self.shared.lock();
            match channels.map.get_mut(&self.channel) {
                Some(queue) => {
                    queue.worker = false;
                    queue.edits.clear();
                    std::mem::take(&mut queue.jobs)
                }
                None => VecDeque::new(),
            }
        };
        tracing::error!(
            channel = self.channel,
            queued = jobs.len(),
            "a Discord channel worker stopped unexpectedly; failing what it had queued"
        );
        for job in jobs {
            self.shared.refuse(self.channel, job);
        }
    }
}

/// A sliding window of requests over all channels, in which requests in flight hold their slot.
struct Bucket {
    limit: usize,
    /// How long a request holds its slot after it ended.
    span: Duration,
    /// Guards no data: waiters take turns in arrival order (tokio's mutex is fair), so one busy
    /// channel cannot starve the others. The only lock in this module held across an `.await`.
    turn: tokio::sync::Mutex<()>,
    state: Mutex<BucketState>,
    /// Signalled whenever a request in flight ends.
    ended: Notify,
}

struct BucketState {
    in_flight: usize,
    /// When recent requests ended, oldest first.
    ended: VecDeque<Instant>,
}

/// A slot of the global window held by a request in flight; dropping it records the request's end.
struct Permit<'a> {
    bucket: &'a Bucket,
}

impl Bucket {
    fn new(limit: usize, span: Duration) -> Bucket {
        Bucket {
            limit,
            span,
            turn: tokio::sync::Mutex::new(()),
            state: Mutex::new(BucketState {
                in_flight: 0,
                ended: VecDeque::new(),
            }),
            ended: Notify::new(),
        }
    }

    /// Takes a slot if one is free now; otherwise says when to look again (`None`: when a request in
    /// flight ends).
    fn try_take(&self) -> Result<Permit<'_>, Option<Instant>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while state
            .ended
            .front()
            .is_some_and(|&ended| ended + self.span <= now)
        {
            state.ended.pop_front();
        }
        if state.in_flight + state.ended.len() < self.limit {
            state.in_flight += 1;
            return Ok(Permit { bucket: self });
        }
        Err(state.ended.front().map(|&ended| ended + self.span))
    }

    /// Waits for a slot, in turn with the other channels.
    async fn acquire(&self) -> Permit<'_> {
        let _turn = self.turn.lock().await;
        // Ends: every pass waits for the oldest slot to leave the window or for a request in flight
        // to end (which starts its own slot's way out), and nobody else takes slots meanwhile.
        loop {
            match self.try_take() {
                Ok(permit) => return permit,
                Err(Some(until)) => time::sleep_until(until).await,
                // `notify_one` stores a wake-up if it comes before this wait starts.
                Err(None) => self.ended.notified().await,
            }
        }
    }

    /// A slot if one is free right now and nobody is waiting for one.
    fn try_acquire(&self) -> Option<Permit<'_>> {
        let _turn = self.turn.try_lock().ok()?;
        self.try_take().ok()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        {
            let mut state = self
                .bucket
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.in_flight -= 1;
            state.ended.push_back(Instant::now());
        }
        self.bucket.ended.notify_one();
    }
}

/// Turns one message into what is sent: the text split into pieces (or, when very long, a preview
/// with the whole text attached), files at most [`MAX_FILES_PER_MESSAGE`] to a message (the first
/// ones on the last text piece, the rest on messages of their own), the mention allowed on every
/// piece (it pings only where the text names the user) and the reactions on the very last message.
fn prepare(msg: OutMessage) -> Vec<OutMessage> {
    let OutMessage {
        content,
        mention_user,
        mut files,
        reactions,
    } = msg;
    let texts = if as_attachment(&content) {
        let chars = content.chars().count();
        let head: String = content.chars().take(PREVIEW_CHARS).collect();
        let mut preview = split_message(&head, PREVIEW_CHARS)
            .into_iter()
            .next()
            .unwrap_or_default();
        preview.push_str(&format!(
            "\n\n*(… {chars} characters in all; the whole text is attached as `{ATTACHMENT_NAME}`.)*"
        ));
        files.insert(0, (ATTACHMENT_NAME.to_owned(), content.into_bytes()));
        vec![preview]
    } else {
        split_message(&content, MESSAGE_LIMIT)
    };
    let mut pieces: Vec<OutMessage> = texts
        .into_iter()
        .map(|content| OutMessage {
            content,
            mention_user,
            ..OutMessage::default()
        })
        .collect();
    let mut files = files.into_iter().peekable();
    let mut first_group = true;
    while files.peek().is_some() {
        let group: Vec<_> = files.by_ref().take(MAX_FILES_PER_MESSAGE).collect();
        match pieces.last_mut() {
            Some(last) if first_group => last.files = group,
            _ => pieces.push(OutMessage {
                mention_user,
                files: group,
                ..OutMessage::default()
            }),
        }
        first_group = false;
    }
    if let Some(last) = pieces.last_mut() {
        last.reactions = reactions;
    }
    pieces
}

/// Whether `text` should go as a file attachment rather than as messages: more than
/// [`ATTACHMENT_OVER_CHARS`] characters, or more than [`ATTACHMENT_OVER_PIECES`] messages' worth.
pub fn as_attachment(text: &str) -> bool {
    let chars = text.chars().count();
    chars > ATTACHMENT_OVER_CHARS
        || (chars > MESSAGE_LIMIT
            && split_message(text, MESSAGE_LIMIT).len() > ATTACHMENT_OVER_PIECES)
}

/// A thread name Discord accepts: control characters (newlines included) become spaces, runs of
/// whitespace one space, trimmed, at most [`THREAD_NAME_LIMIT`] characters (cut with `…`), and
/// `thread` when nothing is left.
pub fn thread_name(name: &str) -> String {
    let words: Vec<&str> = name
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let name = words.join(" ");
    if name.is_empty() {
        return "thread".to_owned();
    }
    truncate(name, THREAD_NAME_LIMIT)
}

/// `text` cut to at most `limit` characters, ending in `…` when cut.
pub(crate) fn truncate(text: String, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text;
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The start of a text on one line, for logs.
fn preview(text: &str) -> String {
    const PREVIEW: usize = 80;
    let mut line: String = text
        .chars()
        .take(PREVIEW)
        .map(|c| if c == '\n' { '⏎' } else { c })
        .collect();
    if text.chars().nth(PREVIEW).is_some() {
        line.push('…');
    }
    line
}

/// A code fence's opening backticks.
const FENCE: &str = "```";

/// What closes a fence at the end of a piece: a newline and the backticks.
const CLOSE: &str = "\n```";

/// `CLOSE`'s length in characters.
const CLOSE_LEN: usize = 4;

/// The longest language tag carried over when a fence is reopened.
const MAX_TAG: usize = 20;

/// The smallest limit at which fences can be closed and reopened while still making progress:
/// three backticks, a newline, one character, and the closing newline and backticks.
const MIN_FENCED_LIMIT: usize = 3 + 1 + 1 + CLOSE_LEN;

/// Splits `text` into pieces of at most `limit` characters (`chars()`, not bytes; a `limit` of 0
/// counts as 1), none empty or only whitespace, in order.
///
/// Pieces end at a newline where one is in reach, else at a space, else anywhere (a word longer than
/// a piece is cut hard). A code block that does not fit in what is left of a piece but fits in a
/// piece of its own starts a new piece. A piece that ends inside a code block closes it, and the next
/// piece reopens it with the same language tag, so every piece has whole fences (a fence the text
/// leaves open is closed in its last piece). Text that fits is returned unchanged, as one piece.
///
/// Fences are lines starting (after indentation) with three backticks, as Discord renders them; a
/// fence line too long to fit in a piece beside the closing or reopening backticks is kept as text.
/// The newline or space a piece ends at is dropped.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    if text.trim().is_empty() {
        return Vec::new();
    }
    if text.chars().count() <= limit {
        return vec![text.to_owned()];
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let kinds = classify(&lines, limit);
    let mut splitter = Splitter {
        limit,
        pieces: Vec::new(),
        cur: String::new(),
        cur_len: 0,
        body: false,
        ink: false,
        open: None,
    };
    for (line, kind) in lines.iter().zip(&kinds) {
        splitter.push_line(line, kind);
    }
    splitter.flush();
    splitter.pieces
}

/// What a line of the text is to the splitter.
enum Line {
    Text,
    /// Opens a code block: `tag` is the language tag to reopen it with, `block` the length of the
    /// whole block through its closing fence (`None` if it is never closed).
    Open {
        tag: String,
        block: Option<usize>,
    },
    Close,
}

/// Classifies every line in order. A fence line counts as one only if it fits in a fresh piece with
/// what the splitter adds around it; that is what lets [`Splitter::push_line`] always place it.
fn classify(lines: &[&str], limit: usize) -> Vec<Line> {
    let mut kinds = Vec::with_capacity(lines.len());
    let mut open_tag: Option<usize> = None;
    let mut opened_at = 0;
    for (index, line) in lines.iter().enumerate() {
        let len = line.chars().count();
        let fence = limit >= MIN_FENCED_LIMIT && line.trim_start().starts_with(FENCE);
        let kind = match open_tag {
            _ if !fence => Line::Text,
            None if len + CLOSE_LEN <= limit => {
                let tag = reopen_tag(line, limit);
                open_tag = Some(tag.chars().count());
                opened_at = index;
                Line::Open { tag, block: None }
            }
            Some(tag_len) if FENCE.len() + tag_len + 1 + len <= limit => {
                open_tag = None;
                let block = lines[opened_at..=index]
                    .iter()
                    .map(|line| line.chars().count() + 1)
                    .sum::<usize>()
                    - 1;
                if let Some(Line::Open { block: slot, .. }) = kinds.get_mut(opened_at) {
                    *slot = Some(block);
                }
                Line::Close
            }
            _ => Line::Text,
        };
        kinds.push(kind);
    }
    kinds
}

/// The language tag of an opening fence line, if it is short enough to carry over; else empty.
fn reopen_tag(line: &str, limit: usize) -> String {
    let info = line.trim_start()[FENCE.len()..].trim_start_matches('`');
    let tag = info.split_whitespace().next().unwrap_or("");
    let len = tag.chars().count();
    if len <= MAX_TAG && !tag.contains('`') && FENCE.len() + len + 2 + CLOSE_LEN <= limit {
        tag.to_owned()
    } else {
        String::new()
    }
}

/// Packs lines into pieces; see [`split_message`].
struct Splitter {
    limit: usize,
    pieces: Vec<String>,
    /// The piece being filled, starting with the reopened fence when it continues a code block.
    cur: String,
    /// `cur`'s length in characters.
    cur_len: usize,
    /// Whether `cur` holds any of the text (beyond a reopened fence).
    body: bool,
    /// Whether `cur` holds any of the text other than whitespace and fence lines: a piece without
    /// any is dropped (it would be blank, or an empty code block).
    ink: bool,
    /// The language tag of the code block open at the end of `cur`, if one is.
    open: Option<String>,
}

impl Splitter {
    fn push_line(&mut self, line: &str, kind: &Line) {
        let len = line.chars().count();
        let open_after = match kind {
            Line::Open { .. } => true,
            Line::Close => false,
            Line::Text => self.open.is_some(),
        };
        if let Line::Open {
            block: Some(block), ..
        } = kind
        {
            if self.ink && self.cur_len + 1 + block > self.limit && *block <= self.limit {
                self.flush();
            }
        }
        // At most two passes: the second starts a fresh piece, where a fence line always fits (a
        // piece holding only fence lines and whitespace is dropped rather than sent).
        for _ in 0..2 {
            let sep = usize::from(!self.cur.is_empty());
            let reserve = if open_after { CLOSE_LEN } else { 0 };
            if self.cur_len + sep + len + reserve <= self.limit {
                self.append(line, len, !matches!(kind, Line::Text));
                match kind {
                    Line::Open { tag, .. } => self.open = Some(tag.clone()),
                    Line::Close => self.open = None,
                    Line::Text => {}
                }
                return;
            }
            if !self.body {
                break;
            }
            self.flush();
            if matches!(kind, Line::Close) {
                // The flush closed the block already; reopening it only to close it again would
                // leave an empty code block at the top of the next piece.
                self.open = None;
                self.cur.clear();
                self.cur_len = 0;
                return;
            }
        }
        self.push_long(line);
    }

    /// Places a text line too long for a piece of its own, cutting it at spaces where it can.
    fn push_long(&mut self, line: &str) {
        let mut rest = line;
        let mut rest_len = line.chars().count();
        // Every pass either places all that is left, or places at least one character and starts a
        // new piece, or (room 0) starts a new piece, which always has room (see MIN_FENCED_LIMIT and
        // `reopen_tag`). So it ends within 2 × the line's length passes.
        for _ in 0..=2 * rest_len + 1 {
            let sep = usize::from(!self.cur.is_empty());
            let reserve = if self.open.is_some() { CLOSE_LEN } else { 0 };
            let room = self.limit.saturating_sub(self.cur_len + sep + reserve);
            if rest_len <= room {
                self.append(rest, rest_len, false);
                return;
            }
            if room == 0 {
                self.flush();
                continue;
            }
            let (head, head_len, tail, taken) = cut(rest, room);
            self.append(head, head_len, false);
            self.flush();
            rest = tail;
            rest_len -= taken;
        }
    }

    fn append(&mut self, text: &str, len: usize, fence: bool) {
        if !self.cur.is_empty() {
            self.cur.push('\n');
            self.cur_len += 1;
        }
        self.cur.push_str(text);
        self.cur_len += len;
        self.body = true;
        self.ink |= !fence && !text.trim().is_empty();
    }

    /// Ends the current piece (closing an open code block) and starts the next (reopening it). A
    /// piece without ink is dropped: only whitespace and fence lines are lost, and the state of the
    /// fences carries on.
    fn flush(&mut self) {
        if !self.body {
            return;
        }
        let mut piece = std::mem::take(&mut self.cur);
        if self.open.is_some() {
            piece.push_str(CLOSE);
        }
        if self.ink {
            self.pieces.push(piece);
        }
        self.cur = match &self.open {
            Some(tag) => format!("{FENCE}{tag}"),
            None => String::new(),
        };
        self.cur_len = self.cur.chars().count();
        self.body = false;
        self.ink = false;
    }
}

/// Cuts `rest` (longer than `room` characters) to a head of at most `room` characters: at the last
/// space in reach (the space dropped), else hard. Returns the head, its length in characters, the
/// tail, and how many characters the tail lacks of `rest` (the head's, and the space's if one).
fn cut(rest: &str, room: usize) -> (&str, usize, &str, usize) {
    let mut end = rest.len();
    let mut space = None;
    for (n, (at, c)) in rest.char_indices().enumerate() {
        if n == room {
            end = at;
            if c == ' ' {
                space = Some((at, n));
            }
            break;
        }
        if c == ' ' && n > 0 {
            space = Some((at, n));
        }
    }
    match space {
        Some((at, n)) => (&rest[..at], n, &rest[at + 1..], n + 1),
        None => (&rest[..end], room, &rest[end..], room),
    }
}
