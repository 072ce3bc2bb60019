//! Guessing protection for short or guessable credentials (PINs, secrets, backup codes):
//! failures are counted per source (a keypad, a client address); after a few, the source
//! is locked for a while that doubles with each further failure, up to an hour for a
//! client and a few minutes for a keypad (anyone standing at a keypad can lock it, and then
//! every PIN user of that door waits). Failures age out, so a legitimate user is never
//! locked out for good.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use lintel_store::{Backend, GuessRecord, Store};

#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    /// Wrong attempts from one source before it is locked: the next attempt is refused.
    pub free_failures: u32,
    pub first_lock: Duration,
    pub max_lock: Duration,
    /// The longest lock of a keypad (at most `max_lock`).
    pub keypad_max_lock: Duration,
    /// A source with no failure for this long starts afresh.
    pub forget_after: Duration,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            free_failures: 5,
            first_lock: Duration::from_secs(30),
            max_lock: Duration::from_secs(3600),
            keypad_max_lock: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
        }
    }
}

/// Where guesses come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A keypad at a door: asked about through the API (`door:<id>`), a door controller's
    /// (`mqtt:<id>`), an OSDP reader's (`osdp:<id>`).
    Keypad(String),
    /// A client on the network (`ip:<address>`, `ui-login:<address>`, ...).
    Client(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keypad(name) | Self::Client(name) => f.write_str(name),
        }
    }
}

/// A source's lock: how long it still lasts, and whether this is the first refusal under
/// it (only that one is recorded, so a locked-out guesser cannot fill the event log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    pub wait: Duration,
    pub first_refusal: bool,
}

/// A lock that a failure has just begun: after how many failures, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub failures: u32,
    pub lock: Duration,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

impl LimiterConfig {
    /// A source's record after a wrong guess at `now` (unix microseconds), and the lock it
    /// begins when it begins one.
    fn after_failure(&self, source: &Source, before: Option<GuessRecord>, now: i64) -> (GuessRecord, Option<Locked>) {
        let mut record = before.unwrap_or(GuessRecord { last_failure: now, ..GuessRecord::default() });
        if now - record.last_failure >= micros(self.forget_after) {
            record.failures = 0;
        }
        record.failures += 1;
        record.last_failure = now;
        let failures = u32::try_from(record.failures).unwrap_or(u32::MAX);
        if failures < self.free_failures {
            return (record, None);
        }
        let max_lock = match source {
            Source::Keypad(_) => self.keypad_max_lock.min(self.max_lock),
            Source::Client(_) => self.max_lock,
        };
        let doublings = (failures - self.free_failures).min(16);
        let lock = self.first_lock.saturating_mul(1 << doublings).min(max_lock);
        let was_locked = record.locked_until > now;
        record.locked_until = now + micros(lock);
        record.refusal_recorded = false;
        (record, (!was_locked).then_some(Locked { failures, lock }))
    }
}

/// Counts wrong guesses per source: in this process's memory (one node), or in the store
/// that several nodes share, so that a guesser spreading attempts over them meets one limit.
pub struct FailureLimiter {
    config: LimiterConfig,
    counts: Counts,
}

enum Counts {
    Memory(Mutex<HashMap<Source, GuessRecord>>),
    Shared(Store),
}

/// The time guesses are counted in: the wall clock, which every node shares.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl FailureLimiter {
    /// Counts in this process's memory.
    pub fn new(config: LimiterConfig) -> Self {
        Self { config, counts: Counts::Memory(Mutex::new(HashMap::new())) }
    }

    /// Counts where every process on `store` sees them when several can share it
    /// (PostgreSQL); in memory on SQLite, which one process serves.
    pub fn for_store(config: LimiterConfig, store: &Store) -> Self {
        match store.backend() {
            Backend::Postgres => Self { config, counts: Counts::Shared(store.clone()) },
            Backend::Sqlite => Self::new(config),
        }
    }

    /// Whether the source is locked at `now` (unix microseconds), and for how much longer.
    /// A store that cannot answer locks nobody: the guesser still has to guess right.
    pub async fn locked(&self, source: &Source, now: i64) -> Option<Lock> {
        let key = source.to_string();
        let (until, first_refusal) = match &self.counts {
            Counts::Memory(sources) => {
                let mut sources = sources.lock().unwrap_or_else(PoisonError::into_inner);
                let record = sources.get_mut(source).filter(|r| r.locked_until > now)?;
                (record.locked_until, !std::mem::replace(&mut record.refusal_recorded, true))
            }
            Counts::Shared(store) => {
                let record = store.guesses(&key).await.ok().flatten().filter(|r| r.locked_until > now)?;
                let first = !record.refusal_recorded && store.first_refusal(&key, now).await.unwrap_or(false);
                (record.locked_until, first)
            }
        };
        let wait = Duration::from_micros(u64::try_from(until - now).unwrap_or(0));
        Some(Lock { wait, first_refusal })
    }

    /// Counts a failure at `now`; `Some` when it locks a source that was not locked (the
    /// moment worth an alarm), `None` otherwise.
    pub async fn failure(&self, source: &Source, now: i64) -> Option<Locked> {
        match &self.counts {
            Counts::Memory(sources) => {
                let mut sources = sources.lock().unwrap_or_else(PoisonError::into_inner);
                if sources.len() > 100_000 {
                    // Bounded memory under a spray of sources: forget the stale ones.
                    let forget = micros(self.config.forget_after);
                    sources.retain(|_, r| now - r.last_failure < forget);
                    if sources.len() > 100_000 {
                        // Still too many fresh ones (a spray of addresses): keep only the locked.
                        sources.retain(|_, r| r.locked_until > now);
                    }
                }
                let (after, locked) = self.config.after_failure(source, sources.get(source).copied(), now);
                sources.insert(source.clone(), after);
                locked
            }
            Counts::Shared(store) => {
                let mut locked = None;
                let counted = store
                    .guessed_wrong(&source.to_string(), now, micros(self.config.forget_after), |before| {
                        let (after, began) = self.config.after_failure(source, before, now);
                        locked = began;
                        after
                    })
                    .await;
                if let Err(e) = counted {
                    tracing::error!(%source, error = %e, "a wrong guess was not counted");
                }
                locked
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    fn keypad(door: &str) -> Source {
        Source::Keypad(format!("door:{door}"))
    }

    #[tokio::test]
    async fn locks_after_free_failures_and_doubles() {
        let l = FailureLimiter::new(LimiterConfig::default());
        let front = keypad("front");
        let t0: i64 = 1_800_000_000 * SEC;
        for _ in 0..4 {
            assert_eq!(l.failure(&front, t0).await, None);
        }
        assert_eq!(l.locked(&front, t0).await, None);
        assert_eq!(
            l.failure(&front, t0).await,
            Some(Locked { failures: 5, lock: Duration::from_secs(30) }),
            "the fifth failure locks"
        );
        assert_eq!(
            l.locked(&front, t0).await,
            Some(Lock { wait: Duration::from_secs(30), first_refusal: true }),
            "the attempt after five wrong ones is refused"
        );
        assert_eq!(l.locked(&front, t0).await.map(|l| l.first_refusal), Some(false), "recorded once per lock");
        assert_eq!(l.locked(&keypad("back"), t0).await, None, "other sources are not affected");
        let t1 = t0 + 31 * SEC;
        assert_eq!(l.locked(&front, t1).await, None, "the lock ends");
        assert_eq!(l.failure(&front, t1).await, Some(Locked { failures: 6, lock: Duration::from_secs(60) }));
        assert_eq!(l.locked(&front, t1).await.map(|l| l.wait), Some(Duration::from_secs(60)));
    }

    #[tokio::test]
    async fn a_lock_is_reported_when_it_begins_only() {
        let l = FailureLimiter::new(LimiterConfig { free_failures: 2, ..LimiterConfig::default() });
        let front = keypad("front");
        let t0: i64 = 1_800_000_000 * SEC;
        assert_eq!(l.failure(&front, t0).await, None);
        assert!(l.failure(&front, t0).await.is_some(), "the second failure locks");
        assert_eq!(l.failure(&front, t0 + SEC).await, None, "a failure under the lock only extends it");
        assert_eq!(l.locked(&front, t0 + SEC).await.map(|l| l.wait), Some(Duration::from_secs(60)));
        let after = t0 + 200 * SEC;
        assert_eq!(l.locked(&front, after).await, None);
        assert!(l.failure(&front, after).await.is_some(), "a new lock after the last one ended");
    }

    #[tokio::test]
    async fn failures_age_out_and_locks_are_capped() {
        let l = FailureLimiter::new(LimiterConfig::default());
        let client = Source::Client("ip:1".into());
        let t0: i64 = 1_800_000_000 * SEC;
        for _ in 0..40 {
            l.failure(&client, t0).await;
        }
        assert_eq!(l.locked(&client, t0).await.map(|l| l.wait), Some(Duration::from_secs(3600)));
        let later = t0 + (3600 + 901) * SEC;
        assert_eq!(l.failure(&client, later).await, None);
        assert_eq!(l.locked(&client, later).await, None, "an old streak is forgotten");
    }

    #[tokio::test]
    async fn keypad_locks_are_capped_shorter_than_clients() {
        let l = FailureLimiter::new(LimiterConfig::default());
        let (front, client) = (keypad("front"), Source::Client("ip:192.0.2.7".into()));
        let t0: i64 = 1_800_000_000 * SEC;
        let mut longest = Duration::ZERO;
        let mut at = t0;
        for _ in 0..40 {
            // Each failure comes after the lock before it ended, as a guesser's would.
            if let Some(lock) = l.failure(&front, at).await {
                longest = longest.max(lock.lock);
                at += micros(lock.lock) + SEC;
            }
            l.failure(&client, t0).await;
        }
        assert_eq!(longest, Duration::from_secs(300), "a keypad is locked for 5 minutes at most");
        assert_eq!(
            l.locked(&client, t0).await.map(|l| l.wait),
            Some(Duration::from_secs(3600)),
            "a client for an hour"
        );
        let capped = FailureLimiter::new(LimiterConfig {
            keypad_max_lock: Duration::from_secs(7200),
            ..LimiterConfig::default()
        });
        for _ in 0..40 {
            capped.failure(&front, t0).await;
        }
        assert_eq!(
            capped.locked(&front, t0).await.map(|l| l.wait),
            Some(Duration::from_secs(3600)),
            "never beyond max_lock"
        );
    }
}

#[cfg(test)]
mod shared {
    use super::*;

    /// Two processes on one store (as two nodes on PostgreSQL would be, through the same SQL):
    /// their wrong guesses add up, and one of them records the refusal.
    #[tokio::test]
    async fn guesses_on_two_nodes_meet_one_limit() {
        let (dir, store) = crate::testing::store().await;
        let url = format!("sqlite://{}", dir.path().join("lintel.db").display());
        let other = Store::open(&url, lintel_store::SqliteSync::Normal).await.expect("a second process");
        let config = LimiterConfig::default();
        let (a, b) = (
            FailureLimiter { config, counts: Counts::Shared(store) },
            FailureLimiter { config, counts: Counts::Shared(other) },
        );
        let client = Source::Client("ip:192.0.2.9".into());
        let now = now_micros();
        for i in 0..4 {
            let limiter = if i % 2 == 0 { &a } else { &b };
            assert_eq!(limiter.failure(&client, now).await, None);
        }
        assert_eq!(b.failure(&client, now).await, Some(Locked { failures: 5, lock: Duration::from_secs(30) }));
        let (on_a, on_b) = (a.locked(&client, now).await, b.locked(&client, now).await);
        assert!(on_a.is_some() && on_b.is_some(), "locked on both");
        assert_eq!(on_a.map(|l| l.first_refusal), Some(true), "one refusal recorded");
        assert_eq!(on_b.map(|l| l.first_refusal), Some(false));
        assert_eq!(a.locked(&Source::Client("ip:192.0.2.10".into()), now).await, None, "others are not");
    }
}
