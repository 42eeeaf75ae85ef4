//! The hourly request budget behind the `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` headers: 3600 requests per
//! hour, one more every second, `Reset` the UNIX time the budget is full
//! again (ANCHORS-WAVE2.md §1 "Rate limits"). An empty budget answers 429
//! `rate_limit_exceeded`, as does an injected [`super::Fault::RateLimit`].

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The default limit of a project.
pub(crate) const LIMIT: u32 = 3600;

#[derive(Debug)]
pub(crate) struct Budget {
    remaining: f64,
    updated: Instant,
}

/// The three header values of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Headers {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset: u64,
}

impl Budget {
    pub(crate) fn new(now: Instant) -> Budget {
        Budget {
            remaining: f64::from(LIMIT),
            updated: now,
        }
    }

    /// Spend one request; None when none is left (answer 429).
    pub(crate) fn spend(&mut self, now: Instant) -> Option<Headers> {
        let refill = now.duration_since(self.updated).as_secs_f64();
        self.remaining = (self.remaining + refill).min(f64::from(LIMIT));
        self.updated = now;
        if self.remaining < 1.0 {
            return None;
        }
        self.remaining -= 1.0;
        Some(self.headers())
    }

    /// The headers as they stand (for a refused request: remaining 0).
    pub(crate) fn headers(&self) -> Headers {
        let missing = f64::from(LIMIT) - self.remaining;
        Headers {
            limit: LIMIT,
            // Whole requests left; the fraction is the next one refilling.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            remaining: self.remaining.floor() as u32,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            reset: unix_now() + missing.ceil() as u64,
        }
    }

    /// Headers for an injected 429: nothing left, full again in a second.
    pub(crate) fn exhausted() -> Headers {
        Headers {
            limit: LIMIT,
            remaining: 0,
            reset: unix_now() + 1,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_request_costs_one_and_a_second_gives_one_back() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        let first = budget.spend(start).unwrap();
        assert_eq!((first.limit, first.remaining), (3600, 3599));
        assert!(first.reset > unix_now());
        assert_eq!(budget.spend(start).unwrap().remaining, 3598);
        assert_eq!(
            budget
                .spend(start + Duration::from_secs(5))
                .unwrap()
                .remaining,
            3599
        );
        for _ in 0..3599 {
            assert!(budget.spend(start + Duration::from_secs(5)).is_some());
        }
        assert_eq!(budget.spend(start + Duration::from_secs(5)), None);
        assert_eq!(budget.headers().remaining, 0);
    }
}
