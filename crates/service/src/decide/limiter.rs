//! Guessing protection for short or guessable credentials (PINs, secrets, backup codes):
//! failures are counted per source (a keypad, a client address); after a few, the source
//! is locked for a while that doubles with each further failure, up to an hour for a
//! client and a few minutes for a keypad (anyone standing at a keypad can lock it, and then
//! every PIN user of that door waits). Failures age out, so a legitimate user is never
//! locked out for good.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
    /// Whether a refusal under the current lock was already recorded.
    refusal_recorded: bool,
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

pub struct FailureLimiter {
    config: LimiterConfig,
    sources: Mutex<HashMap<Source, Record>>,
}

impl FailureLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        Self { config, sources: Mutex::new(HashMap::new()) }
    }

    /// Whether the source is locked now, and for how much longer.
    pub fn locked(&self, source: &Source, now: Instant) -> Option<Lock> {
        let mut sources = self.sources.lock().expect("limiter lock");
        let record = sources.get_mut(source)?;
        let until = record.locked_until.filter(|until| *until > now)?;
        let first_refusal = !std::mem::replace(&mut record.refusal_recorded, true);
        Some(Lock { wait: until - now, first_refusal })
    }

    /// Counts a failure; `Some` when it locks a source that was not locked (the moment
    /// worth an alarm), `None` otherwise.
    pub fn failure(&self, source: &Source, now: Instant) -> Option<Locked> {
        let mut sources = self.sources.lock().expect("limiter lock");
        if sources.len() > 100_000 {
            // Bounded memory under a spray of sources: forget the stale ones.
            let forget = self.config.forget_after;
            sources.retain(|_, r| now.duration_since(r.last_failure) < forget);
            if sources.len() > 100_000 {
                // Still too many fresh ones (a spray of addresses): keep only the locked.
                sources.retain(|_, r| r.locked_until.is_some_and(|until| until > now));
            }
        }
        let record = sources.entry(source.clone()).or_insert(Record {
            failures: 0,
            last_failure: now,
            locked_until: None,
            refusal_recorded: false,
        });
        if now.duration_since(record.last_failure) >= self.config.forget_after {
            record.failures = 0;
        }
        record.failures += 1;
        record.last_failure = now;
        if record.failures < self.config.free_failures {
            return None;
        }
        let max_lock = match source {
            Source::Keypad(_) => self.config.keypad_max_lock.min(self.config.max_lock),
            Source::Client(_) => self.config.max_lock,
        };
        let doublings = (record.failures - self.config.free_failures).min(16);
        let lock = self.config.first_lock.saturating_mul(1 << doublings).min(max_lock);
        let was_locked = record.locked_until.is_some_and(|until| until > now);
        record.locked_until = Some(now + lock);
        record.refusal_recorded = false;
        (!was_locked).then_some(Locked { failures: record.failures, lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypad(door: &str) -> Source {
        Source::Keypad(format!("door:{door}"))
    }

    #[test]
    fn locks_after_free_failures_and_doubles() {
        let l = FailureLimiter::new(LimiterConfig::default());
        let front = keypad("front");
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(l.failure(&front, t0), None);
        }
        assert_eq!(l.locked(&front, t0), None);
        assert_eq!(
            l.failure(&front, t0),
            Some(Locked { failures: 5, lock: Duration::from_secs(30) }),
            "the fifth failure locks"
        );
        assert_eq!(
            l.locked(&front, t0),
            Some(Lock { wait: Duration::from_secs(30), first_refusal: true }),
            "the attempt after five wrong ones is refused"
        );
        assert_eq!(l.locked(&front, t0).map(|l| l.first_refusal), Some(false), "recorded once per lock");
        assert_eq!(l.locked(&keypad("back"), t0), None, "other sources are not affected");
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(l.locked(&front, t1), None, "the lock ends");
        assert_eq!(l.failure(&front, t1), Some(Locked { failures: 6, lock: Duration::from_secs(60) }));
        assert_eq!(l.locked(&front, t1).map(|l| l.wait), Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_lock_is_reported_when_it_begins_only() {
        let l = FailureLimiter::new(LimiterConfig { free_failures: 2, ..LimiterConfig::default() });
        let front = keypad("front");
        let t0 = Instant::now();
        assert_eq!(l.failure(&front, t0), None);
        assert!(l.failure(&front, t0).is_some(), "the second failure locks");
        assert_eq!(l.failure(&front, t0 + Duration::from_secs(1)), None, "a failure under the lock only extends it");
        assert_eq!(l.locked(&front, t0 + Duration::from_secs(1)).map(|l| l.wait), Some(Duration::from_secs(60)));
        let after = t0 + Duration::from_secs(200);
        assert_eq!(l.locked(&front, after), None);
        assert!(l.failure(&front, after).is_some(), "a new lock after the last one ended");
    }

    #[test]
    fn failures_age_out_and_locks_are_capped() {
        let l = FailureLimiter::new(LimiterConfig::default());
        let client = Source::Client("ip:1".into());
        let t0 = Instant::now();
        for _ in 0..40 {
            l.failure(&client, t0);
        }
        assert_eq!(l.locked(&client, t0).map(|l| l.wait), Some(Duration::from_secs(3600)));
        let later = t0 + Duration::from_secs(3600 + 901);
        assert_eq!(l.failure(&client, later), None);
        assert_eq!(l.locked(&client, later), None, "an old streak is forgotten");
    }

    #[test]
    fn keypad_locks_are_capped_shorter_than_clients() {
        let l = FailureLimiter::new(LimiterConfig::default());
        let (front, client) = (keypad("front"), Source::Client("ip:192.0.2.7".into()));
        let t0 = Instant::now();
        let mut longest = Duration::ZERO;
        let mut at = t0;
        for _ in 0..40 {
            // Each failure comes after the lock before it ended, as a guesser's would.
            if let Some(lock) = l.failure(&front, at) {
                longest = longest.max(lock.lock);
                at += lock.lock + Duration::from_secs(1);
            }
            l.failure(&client, t0);
        }
        assert_eq!(longest, Duration::from_secs(300), "a keypad is locked for 5 minutes at most");
        assert_eq!(l.locked(&client, t0).map(|l| l.wait), Some(Duration::from_secs(3600)), "a client for an hour");
        let capped = FailureLimiter::new(LimiterConfig {
            keypad_max_lock: Duration::from_secs(7200),
            ..LimiterConfig::default()
        });
        for _ in 0..40 {
            capped.failure(&front, t0);
        }
        assert_eq!(capped.locked(&front, t0).map(|l| l.wait), Some(Duration::from_secs(3600)), "never beyond max_lock");
    }
}
