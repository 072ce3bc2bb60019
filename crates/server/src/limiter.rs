//! Guessing protection for short or guessable credentials (PINs, secrets, backup codes):
//! failures are counted per source (a keypad's door, a client address); after a few, the
//! source is locked for a while that doubles with each further failure, up to an hour.
//! Failures age out, so a legitimate user is never locked out for good.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    /// Wrong attempts from one source before it is locked: the next attempt is refused.
    pub free_failures: u32,
    pub first_lock: Duration,
    pub max_lock: Duration,
    /// A source with no failure for this long starts afresh.
    pub forget_after: Duration,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            free_failures: 5,
            first_lock: Duration::from_secs(30),
            max_lock: Duration::from_secs(3600),
            forget_after: Duration::from_secs(900),
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

pub struct FailureLimiter {
    config: LimiterConfig,
    sources: Mutex<HashMap<String, Record>>,
}

impl FailureLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        Self { config, sources: Mutex::new(HashMap::new()) }
    }

    /// Whether the source is locked now, and for how much longer.
    pub fn locked(&self, source: &str, now: Instant) -> Option<Lock> {
        let mut sources = self.sources.lock().expect("limiter lock");
        let record = sources.get_mut(source)?;
        let until = record.locked_until.filter(|until| *until > now)?;
        let first_refusal = !std::mem::replace(&mut record.refusal_recorded, true);
        Some(Lock { wait: until - now, first_refusal })
    }

    pub fn failure(&self, source: &str, now: Instant) {
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
        let record = sources.entry(source.to_owned()).or_insert(Record {
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
        if record.failures >= self.config.free_failures {
            let doublings = (record.failures - self.config.free_failures).min(16);
            let lock = self.config.first_lock.saturating_mul(1 << doublings).min(self.config.max_lock);
            record.locked_until = Some(now + lock);
            record.refusal_recorded = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_free_failures_and_doubles() {
        let l = FailureLimiter::new(LimiterConfig::default());
        let t0 = Instant::now();
        for _ in 0..4 {
            l.failure("door:front", t0);
        }
        assert_eq!(l.locked("door:front", t0), None);
        l.failure("door:front", t0);
        assert_eq!(
            l.locked("door:front", t0),
            Some(Lock { wait: Duration::from_secs(30), first_refusal: true }),
            "the attempt after five wrong ones is refused"
        );
        assert_eq!(l.locked("door:front", t0).map(|l| l.first_refusal), Some(false), "recorded once per lock");
        assert_eq!(l.locked("door:back", t0), None, "other sources are not affected");
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(l.locked("door:front", t1), None, "the lock ends");
        l.failure("door:front", t1);
        assert_eq!(l.locked("door:front", t1).map(|l| l.wait), Some(Duration::from_secs(60)));
    }

    #[test]
    fn failures_age_out_and_locks_are_capped() {
        let l = FailureLimiter::new(LimiterConfig::default());
        let t0 = Instant::now();
        for _ in 0..40 {
            l.failure("ip:1", t0);
        }
        assert_eq!(l.locked("ip:1", t0).map(|l| l.wait), Some(Duration::from_secs(3600)));
        let later = t0 + Duration::from_secs(3600 + 901);
        l.failure("ip:1", later);
        assert_eq!(l.locked("ip:1", later), None, "an old streak is forgotten");
    }
}
