//! The one retry policy for work with other systems (the outbox, the inbox): exponential
//! backoff with jitter, and one place for its limits. A permanent failure is given up at
//! once; a transient one is tried again until the policy gives up.

use std::time::Duration;

use lintel_store::Attempt;

use crate::error::ServiceError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles with each further one.
    pub first: Duration,
    pub max_delay: Duration,
    /// Failed attempts after which the work is kept as failed, for the operator.
    pub max_attempts: i64,
}

/// 5 s, 10 s, 20 s, ... up to 30 minutes between attempts, given up after 80 attempts
/// (about a day and a half).
pub const RETRY: RetryPolicy =
    RetryPolicy { first: Duration::from_secs(5), max_delay: Duration::from_secs(1800), max_attempts: 80 };

/// Outbound webhooks: 5 s doubling up to 2 hours between attempts, given up after 60
/// attempts (about three days, what receivers of Standard Webhooks expect).
pub const WEBHOOKS: RetryPolicy =
    RetryPolicy { first: Duration::from_secs(5), max_delay: Duration::from_secs(7200), max_attempts: 60 };

impl RetryPolicy {
    /// The wait before attempt `attempts + 1`, `jitter` in `[0, 1)` spreading it over its
    /// upper half, so that work failed together does not come back together.
    pub fn delay(&self, attempts: i64, jitter: f64) -> Duration {
        let doublings = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
        let full = self.first.saturating_mul(1 << doublings).min(self.max_delay);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// What becomes of work whose attempt number `attempts + 1` failed with `error`.
    pub fn after_failure(&self, attempts: i64, error: &ServiceError) -> Attempt {
        if !error.is_transient() || attempts + 1 >= self.max_attempts {
            return Attempt::Failed(error.to_string());
        }
        let wait = self.delay(attempts, jitter());
        let at = chrono::Utc::now().timestamp_micros() + i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
        Attempt::RetryAt(at, error.to_string())
    }
}

fn jitter() -> f64 {
    f64::from(getrandom::u32().unwrap_or(0)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_their_upper_half_up_to_the_cap() {
        let p = RETRY;
        assert_eq!(p.delay(0, 0.999_999).as_secs(), 4, "just under the first 5 s");
        assert_eq!(p.delay(0, 0.0), Duration::from_millis(2500), "at least half of it");
        assert_eq!(p.delay(3, 0.0), Duration::from_secs(20), "40 s, halved");
        assert_eq!(p.delay(40, 0.0), Duration::from_secs(900), "the cap, halved");
        assert!(p.delay(40, 0.99) <= p.max_delay);
    }

    #[test]
    fn permanent_failures_and_the_last_attempt_give_up() {
        let transient = ServiceError::upstream("platform", "HTTP 503", true);
        let permanent = ServiceError::upstream("platform", "HTTP 422", false);
        assert!(matches!(RETRY.after_failure(0, &transient), Attempt::RetryAt(..)));
        assert!(matches!(RETRY.after_failure(0, &permanent), Attempt::Failed(_)), "not retried");
        assert!(matches!(RETRY.after_failure(RETRY.max_attempts - 1, &transient), Attempt::Failed(_)));
        let Attempt::RetryAt(at, _) = RETRY.after_failure(2, &transient) else { panic!("retried") };
        let wait = at - chrono::Utc::now().timestamp_micros();
        assert!((9_000_000..=20_100_000).contains(&wait), "10 to 20 s: {wait} µs");
    }
}
