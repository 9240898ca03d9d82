//! The per-channel workers: taking jobs off a channel's queue in order, keeping the channel's and the
//! global budgets, retrying what Discord refused, and failing what is left at shutdown.

use super::bucket::Permit;
use super::*;

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Channels> {
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
    pub(super) fn queue(
        self: &Arc<Self>,
        channel: u64,
        change: impl FnOnce(&mut Queue, Instant),
    ) -> bool {
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
    pub(super) fn queue_job(self: &Arc<Self>, channel: u64, job: Job) -> Result<(), Job> {
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
    pub(super) fn refuse(&self, channel: u64, job: Job) -> bool {
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
