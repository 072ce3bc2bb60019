//! Background work, where it runs and how it ends: workers wait for their next tick or
//! message through [`Workers::unless_stopping`], so none takes new work once shutdown
//! begins, and shutdown waits for what is running (within its grace) before the store
//! closes. Work that one node at a time must do ticks only on the node holding its lease
//! ([`Workers::one_node_every`]).

use std::sync::Arc;

use lintel_store::Store;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

use crate::leases::{Leases, RENEW_EVERY};

#[derive(Clone)]
pub struct Workers {
    stopping: CancellationToken,
    tracker: TaskTracker,
    leases: Arc<Leases>,
}

impl Workers {
    pub fn new(store: Store) -> Self {
        Self { stopping: CancellationToken::new(), tracker: TaskTracker::new(), leases: Arc::new(Leases::new(store)) }
    }

    /// Keeps the leases of this node's one-node work: renews them every few seconds, gives
    /// them up on shutdown.
    pub fn spawn_lease_keeper(&self) {
        let (leases, mut ticks) = (self.leases.clone(), self.every(RENEW_EVERY));
        self.spawn(async move {
            while ticks.next().await {
                leases.renew().await;
            }
            leases.release_all().await;
        });
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
        Ticks { interval, workers: self.clone(), lease: None }
    }

    /// [`Workers::every`] for work that one node at a time must do: it ticks only while
    /// this node holds the lease `name`.
    pub fn one_node_every(&self, name: &'static str, period: std::time::Duration) -> Ticks {
        Ticks { lease: Some(name), ..self.every(period) }
    }

    /// Whether this node holds the lease `name` now (asking for it when it has not lately).
    pub async fn holds(&self, name: &'static str) -> bool {
        self.leases.holds(name).await
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
    /// Ticks only while this node holds it.
    lease: Option<&'static str>,
}

impl Ticks {
    /// Waits for the next tick (on this node's turn); `false` once shutdown has begun.
    pub async fn next(&mut self) -> bool {
        loop {
            if self.workers.unless_stopping(self.interval.tick()).await.is_none() {
                return false;
            }
            match self.lease {
                None => return true,
                Some(name) if self.workers.leases.holds(name).await => return true,
                Some(_) => {}
            }
        }
    }
}
