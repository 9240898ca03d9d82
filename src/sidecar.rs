//! The sidecar: model I/O runs here, apart from the agents' tree-management tasks, under one global cap.
//!
//! Each call runs in its own tracked task and waits for a permit of a semaphore shared by the whole
//! tavern (default 10 permits). An agent's own task only awaits the result, so one slow model never
//! blocks another agent's state, and shutdown cancels calls that are waiting or running.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tavern_plugin_api::{Model, ModelError, ModelReply, ModelRequest};
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A handle to the sidecar; cheap to clone.
#[derive(Clone)]
pub struct Sidecar {
    permits: Arc<Semaphore>,
    calls: Arc<AtomicU64>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Sidecar {
    /// A sidecar allowing `max_concurrent` calls at once, whose tasks live in `tracker` and stop when
    /// `cancel` fires.
    pub fn new(max_concurrent: usize, tracker: TaskTracker, cancel: CancellationToken) -> Sidecar {
        Sidecar {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            calls: Arc::new(AtomicU64::new(0)),
            tracker,
            cancel,
        }
    }

    /// How many calls could start right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// How many model calls have been made through this sidecar. A Claude Code CLI turn counts as one,
    /// however many calls its process makes.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Waits for one of the cap's permits, for model I/O that runs elsewhere (a Claude Code CLI turn);
    /// `None` if `stop` fires or Tavern shuts down first. The permit is returned when dropped. A granted
    /// permit counts as one model call: take it once per turn, and take it back with
    /// [`Sidecar::permit_again`].
    pub async fn permit(
        &self,
        stop: &CancellationToken,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.permit_again(stop).await?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        Some(permit)
    }

    /// Like [`Sidecar::permit`], for a turn that gave its permit back while it waited (for a person's
    /// answer) and goes on now: it is the same model call, so it is not counted again.
    pub async fn permit_again(
        &self,
        stop: &CancellationToken,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::select! {
            _ = self.cancel.cancelled() => None,
            _ = stop.cancelled() => None,
            permit = self.permits.clone().acquire_owned() => permit.ok(),
        }
    }

    /// Runs one model call in the sidecar and waits for its result. `stop` cancels this call only
    /// (the agent was reaped); the tavern's shutdown cancels every call.
    pub async fn call(
        &self,
        model: Arc<dyn Model>,
        request: ModelRequest,
        stop: CancellationToken,
    ) -> Result<ModelReply, ModelError> {
        let (tx, rx) = oneshot::channel();
        self.calls.fetch_add(1, Ordering::Relaxed);
        let permits = self.permits.clone();
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            let result = tokio::select! {
                _ = cancel.cancelled() => Err(ModelError::Cancelled),
                _ = stop.cancelled() => Err(ModelError::Cancelled),
                result = async {
                    // The semaphore is never closed, so acquiring only fails if it were; treat that as
                    // a cancellation rather than panicking.
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return Err(ModelError::Cancelled);
                    };
                    model.complete(request).await
                } => result,
            };
            // The caller may have gone away (its agent was stopped); then nobody needs the result.
            let _ = tx.send(result);
        });
        rx.await.unwrap_or(Err(ModelError::Cancelled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A model that records how many calls run at once and holds each until released.
    struct Gate {
        running: AtomicUsize,
        peak: AtomicUsize,
        release: Semaphore,
    }

    #[async_trait]
    impl Model for Gate {
        fn label(&self) -> String {
            "gate".into()
        }
        fn is_scripted(&self) -> bool {
            true
        }
        async fn complete(&self, _request: ModelRequest) -> Result<ModelReply, ModelError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            // The gate's semaphore starts closed; the test opens it once the cap has been reached.
            let _ = self.release.acquire().await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(ModelReply::default())
        }
    }

    fn request() -> ModelRequest {
        ModelRequest {
            agent: "a".into(),
            kind: "mortal".into(),
            assignment: None,
            turn: 0,
            system: String::new(),
            messages: Vec::new(),
            tools: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_cap_run_at_once() {
        let tracker = TaskTracker::new();
        let sidecar = Sidecar::new(3, tracker.clone(), CancellationToken::new());
        let gate = Arc::new(Gate {
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            release: Semaphore::new(0),
        });
        let mut calls = Vec::new();
        for _ in 0..10 {
            let sidecar = sidecar.clone();
            let gate: Arc<dyn Model> = gate.clone();
            calls.push(tokio::spawn(async move {
                sidecar
                    .call(gate, request(), CancellationToken::new())
                    .await
            }));
        }
        // Wait until the cap is reached, then release calls one by one until all are done.
        tokio::time::timeout(Duration::from_secs(5), async {
            while gate.running.load(Ordering::SeqCst) < 3 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("three calls should start");
        gate.release.add_permits(100);
        let mut finished = 0;
        for call in calls {
            tokio::time::timeout(Duration::from_secs(5), call)
                .await
                .expect("released calls finish")
                .unwrap()
                .unwrap();
            finished += 1;
        }
        assert_eq!(finished, 10);
        assert_eq!(gate.peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_cli_turn_counts_as_one_call_however_often_it_takes_its_permit_back() {
        let sidecar = Sidecar::new(1, TaskTracker::new(), CancellationToken::new());
        let stop = CancellationToken::new();
        let first = sidecar.permit(&stop).await.expect("a permit is free");
        drop(first);
        let again = sidecar.permit_again(&stop).await.expect("a permit is free");
        assert_eq!(sidecar.calls(), 1);
        // A wait that ends without a permit makes no call.
        let other = CancellationToken::new();
        other.cancel();
        assert!(sidecar.permit(&other).await.is_none());
        drop(again);
        assert_eq!(sidecar.calls(), 1);
    }

    #[tokio::test]
    async fn shutdown_cancels_waiting_and_running_calls() {
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let sidecar = Sidecar::new(1, tracker.clone(), cancel.clone());
        let gate: Arc<dyn Model> = Arc::new(Gate {
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            release: Semaphore::new(0),
        });
        let a = tokio::spawn({
            let (s, g) = (sidecar.clone(), gate.clone());
            async move { s.call(g, request(), CancellationToken::new()).await }
        });
        let b = tokio::spawn({
            let (s, g) = (sidecar.clone(), gate.clone());
            async move { s.call(g, request(), CancellationToken::new()).await }
        });
        tokio::task::yield_now().await;
        cancel.cancel();
        let a = tokio::time::timeout(Duration::from_secs(5), a)
            .await
            .unwrap();
        let b = tokio::time::timeout(Duration::from_secs(5), b)
            .await
            .unwrap();
        assert_eq!(a.unwrap(), Err(ModelError::Cancelled));
        assert_eq!(b.unwrap(), Err(ModelError::Cancelled));
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .unwrap();
    }
}
