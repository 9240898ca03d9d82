//! The global budget: a sliding window over all channels in which a request in flight holds its slot.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{self, Instant};

/// A sliding window of requests over all channels, in which requests in flight hold their slot.
pub(super) struct Bucket {
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
pub(super) struct Permit<'a> {
    bucket: &'a Bucket,
}

impl Bucket {
    pub(super) fn new(limit: usize, span: Duration) -> Bucket {
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
    pub(super) fn try_take(&self) -> Result<Permit<'_>, Option<Instant>> {
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
    pub(super) async fn acquire(&self) -> Permit<'_> {
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
    pub(super) fn try_acquire(&self) -> Option<Permit<'_>> {
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
