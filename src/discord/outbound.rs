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

use tokio::sync::oneshot;
use tokio::time::{self, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod bucket;
mod request;
mod split;
mod worker;

#[cfg(test)]
mod tests;

use bucket::Bucket;
pub use request::{ApiError, DiscordApi, OutMessage};
pub(crate) use split::truncate;
pub use split::{
    as_attachment, split_message, thread_name, ATTACHMENT_NAME, ATTACHMENT_OVER_CHARS,
    ATTACHMENT_OVER_PIECES, MAX_FILES_PER_MESSAGE, MESSAGE_LIMIT, THREAD_NAME_LIMIT,
};
use split::{prepare, preview};

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
