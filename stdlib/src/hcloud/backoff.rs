//! How long to wait, as pure functions: jittered exponential backoff for
//! `locked`/`conflict`/5xx (bounded by a total budget), the wait a 429 asks
//! for through `RateLimit-Reset`, and the poll interval of the action waiter
//! (1 s → 10 s by default, ×1.5 per poll).

use std::time::Duration;

/// Total time one request may spend retrying `locked`, `conflict` and 5xx
/// answers (the Terraform provider's experience: ~30–60 s covers the
/// locks a running action holds).
pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// Longest single wait between two retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// First retry delay (before jitter).
const BASE_RETRY_DELAY: Duration = Duration::from_millis(500);

/// The delay before retry number `attempt` (0-based): `base × 2^attempt`,
/// capped, scaled by `jitter` in [0, 1) to between half and all of it (so
/// many clients waiting on one lock do not come back at the same instant).
pub(crate) fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    let exponential = BASE_RETRY_DELAY.saturating_mul(2u32.saturating_pow(attempt.min(16)));
    let capped = exponential.min(MAX_RETRY_DELAY);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// How long a 429 asks us to wait: until `RateLimit-Reset` (a UNIX time,
/// when the budget is full again) when `RateLimit-Remaining` is 0, but at
/// least a second and at most `cap`; one second when the headers are missing.
pub(crate) fn rate_limit_wait(reset: Option<i64>, now: i64, cap: Duration) -> Duration {
    match reset {
        Some(reset) if reset > now => {
            let seconds = u64::try_from(reset - now).unwrap_or(0);
            Duration::from_secs(seconds).clamp(Duration::from_secs(1), cap)
        }
        _ => Duration::from_secs(1),
    }
}

/// With `remaining` requests left of the hourly budget, whether to slow
/// down before sending (the budget refills by one per second, so one
/// request a second is always sustainable).
pub(crate) fn throttle(remaining: Option<u64>) -> Option<Duration> {
    match remaining {
        Some(0..=2) => Some(Duration::from_secs(1)),
        _ => None,
    }
}

/// The action waiter's poll intervals: `first`, then ×1.5 up to `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollInterval {
    next: Duration,
    max: Duration,
}

impl PollInterval {
    pub(crate) fn new(first: Duration, max: Duration) -> PollInterval {
        PollInterval {
            next: first.min(max),
            max,
        }
    }
}

impl Iterator for PollInterval {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = self.next.mul_f64(1.5).min(self.max);
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stay_within_the_cap() {
        assert_eq!(retry_delay(0, 1.0), Duration::from_millis(500));
        assert_eq!(retry_delay(0, 0.0), Duration::from_millis(250));
        assert_eq!(retry_delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(10, 1.0), Duration::from_secs(10));
        assert_eq!(retry_delay(40, 0.0), Duration::from_secs(5));
        // A budget of 60 s allows a handful of retries, not hundreds.
        let mut total = Duration::ZERO;
        let mut attempts = 0;
        while total < RETRY_BUDGET {
            total += retry_delay(attempts, 0.5);
            attempts += 1;
        }
        assert!((6..=12).contains(&attempts), "{attempts}");
    }

    #[test]
    fn a_rate_limit_waits_until_the_reset() {
        let cap = Duration::from_secs(120);
        assert_eq!(
            rate_limit_wait(Some(1_005), 1_000, cap),
            Duration::from_secs(5)
        );
        assert_eq!(
            rate_limit_wait(Some(1_000), 1_000, cap),
            Duration::from_secs(1)
        );
        assert_eq!(rate_limit_wait(None, 1_000, cap), Duration::from_secs(1));
        assert_eq!(rate_limit_wait(Some(9_999), 1_000, cap), cap);
        assert_eq!(throttle(Some(0)), Some(Duration::from_secs(1)));
        assert_eq!(throttle(Some(3600)), None);
        assert_eq!(throttle(None), None);
    }

    #[test]
    fn poll_intervals_go_from_one_to_ten_seconds() {
        let polls: Vec<Duration> =
            PollInterval::new(Duration::from_secs(1), Duration::from_secs(10))
                .take(8)
                .collect();
        assert_eq!(polls[0], Duration::from_secs(1));
        assert_eq!(polls[1], Duration::from_millis(1500));
        assert!(polls.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(polls[7], Duration::from_secs(10));
    }
}
