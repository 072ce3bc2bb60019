//! Work that one node at a time must do, with several nodes on one database: a platform's
//! sync and reconciliation (each node would call the platform again), the queue of signed
//! unlocks (each node would drive the door again), a chat workspace's reconciliation. Each
//! such worker names a lease; a keeper takes the leases this node wants when they are free
//! and renews those it holds every few seconds, so a worker's tick only asks memory. A node
//! that dies stops renewing; another takes over once the lease expires (at most
//! [`TTL`] + [`RENEW_EVERY`]). On SQLite there is one node, which holds every lease.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use lintel_store::Store;
use tokio::time::Instant;

/// How long a lease lasts unless renewed.
pub const TTL: Duration = Duration::from_secs(15);
/// How often the keeper renews what it holds and tries to take what it wants.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

pub struct Leases {
    store: Store,
    /// The leases this node's workers want, and what this node knows of each.
    wanted: Mutex<HashMap<&'static str, Held>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Held {
    /// Until when this node holds it, by its own clock (a margin short of the store's
    /// expiry); `None` while another node does.
    until: Option<Instant>,
    /// When the store was last asked.
    asked: Option<Instant>,
}

impl Leases {
    pub fn new(store: Store) -> Self {
        Self { store, wanted: Mutex::new(HashMap::new()) }
    }

    fn known(&self, name: &'static str) -> Held {
        *self.wanted.lock().unwrap_or_else(PoisonError::into_inner).entry(name).or_default()
    }

    /// Whether this node holds `name` now. The first ask makes the keeper want it; a lease
    /// not held is asked for again here when the keeper has not asked lately, so that a
    /// worker need not wait for the keeper's round to start or to take over.
    pub async fn holds(&self, name: &'static str) -> bool {
        let now = Instant::now();
        let held = self.known(name);
        if held.until.is_some_and(|until| now < until) {
            return true;
        }
        if held.asked.is_some_and(|asked| now < asked + RENEW_EVERY) {
            return false;
        }
        self.ask(name).await
    }

    /// Takes or renews `name` in the store; whether this node holds it.
    async fn ask(&self, name: &'static str) -> bool {
        let asked = Instant::now();
        let held = match self.store.hold_lease(name, TTL).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "lease not renewed");
                false
            }
        };
        // Held until shortly before the store lets another take it, counted from before
        // the ask: a slow answer must not make this node believe it holds it longer.
        let until = held.then(|| asked + TTL - RENEW_EVERY);
        metrics::gauge!("lintel_lease_held", "lease" => name).set(f64::from(u8::from(held)));
        let before =
            self.wanted.lock().unwrap_or_else(PoisonError::into_inner).insert(name, Held { until, asked: Some(asked) });
        match (before.and_then(|b| b.until).is_some(), held) {
            (false, true) => tracing::info!(lease = name, "this node does this work now"),
            (true, false) => tracing::warn!(lease = name, "another node does this work now"),
            _ => {}
        }
        held
    }

    /// Takes or renews every wanted lease once.
    pub async fn renew(&self) {
        let names: Vec<&'static str> =
            self.wanted.lock().unwrap_or_else(PoisonError::into_inner).keys().copied().collect();
        for name in names {
            self.ask(name).await;
        }
    }

    /// Gives up every lease held, so that another node takes over at once.
    pub async fn release_all(&self) {
        let held: Vec<&'static str> = {
            let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
            let held = wanted.iter().filter(|(_, held)| held.until.is_some()).map(|(name, _)| *name).collect();
            wanted.values_mut().for_each(|held| held.until = None);
            held
        };
        for name in held {
            if let Err(e) = self.store.release_lease(name).await {
                tracing::warn!(lease = name, error = %e, "lease not released; it expires by itself");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_node_holds_a_lease_until_it_lets_go() {
        let (_dir, store) = crate::testing::store().await;
        let url = format!("sqlite://{}", _dir.path().join("lintel.db").display());
        let other = Store::open(&url, lintel_store::SqliteSync::Normal).await.expect("a second process");
        let (a, b) = (Leases::new(store), Leases::new(other));
        assert!(a.holds("sync").await, "the first to ask");
        assert!(!b.holds("sync").await, "the second");
        a.renew().await;
        b.renew().await;
        assert!(a.holds("sync").await && !b.holds("sync").await, "renewed, not taken");
        a.release_all().await;
        b.renew().await;
        assert!(b.holds("sync").await, "taken over once let go");
        a.renew().await;
        assert!(!a.holds("sync").await, "not back while the other holds it");
    }
}
