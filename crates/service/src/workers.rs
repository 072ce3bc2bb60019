//! Background work, and how it ends: workers wait for their next tick or message through
//! [`Workers::unless_stopping`], so none takes new work once shutdown begins, and shutdown
//! waits for what is running (within its grace) before the store closes.

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Workers {
    stopping: CancellationToken,
    tracker: TaskTracker,
}

impl Workers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs background work that shutdown waits for.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(work);
    }

    /// `work`'s outcome, or `None` when shutdown begins first.
    pub async fn unless_stopping<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            () = self.stopping.cancelled() => None,
            done = work => Some(done),
        }
    }

    /// A tick every `period` (the first at once; a late one is not made up for) until
    /// shutdown begins: `while ticks.next().await { ... }`.
    pub fn every(&self, period: std::time::Duration) -> Ticks {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticks { interval, workers: self.clone() }
    }

    /// Resolves when shutdown begins.
    pub fn stopping(&self) -> WaitForCancellationFutureOwned {
        self.stopping.clone().cancelled_owned()
    }

    /// Cancelled when shutdown begins, for front-ends that end their own streams then.
    pub fn stopping_token(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// Begins shutdown: no worker takes new work from now on.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// Waits for the running work until `deadline`; `false` when some was still running.
    pub async fn finished_by(&self, deadline: tokio::time::Instant) -> bool {
        self.tracker.close();
        let finished = tokio::time::timeout_at(deadline, self.tracker.wait()).await.is_ok();
        if !finished {
            tracing::warn!(
                workers = self.tracker.len(),
                "background work still running at the end of the grace: cut off"
            );
        }
        finished
    }
}

/// The ticks of a periodic worker (see [`Workers::every`]).
pub struct Ticks {
    interval: tokio::time::Interval,
    workers: Workers,
}

impl Ticks {
    /// Waits for the next tick; `false` once shutdown has begun.
    pub async fn next(&mut self) -> bool {
        self.workers.unless_stopping(self.interval.tick()).await.is_some()
    }
}
