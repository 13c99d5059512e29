//! The circuit breaker: a server whose calls keep failing after their retries leaves the build.
//! A server that is down or hangs is dropped on its first failure (UNAVAILABLE, a deadline); one
//! that answers every call with an error the retries cannot cure (INTERNAL, RESOURCE_EXHAUSTED,
//! ...) would otherwise cost each call its retries and backoff (about 0.7 s) for the whole build.
//! Any answer resets the count, so a server that fails now and then stays in use.

use std::sync::Mutex;

/// Consecutive failed calls (each after its retries) that drop the remote for the rest of the
/// build: about 2 s of backoff, and room for a few unrelated failures between successes.
pub(crate) const TRIP_AFTER: u32 = 3;

/// Counts consecutive failed calls, and the warnings they raised.
#[derive(Default)]
pub(crate) struct Breaker {
    streak: Mutex<Streak>,
}

#[derive(Default)]
struct Streak {
    failures: u32,
    warnings: Vec<String>,
}

impl Breaker {
    /// A call the server answered: the streak ends.
    pub fn success(&self) {
        if let Ok(mut streak) = self.streak.lock() {
            *streak = Streak::default();
        }
    }

    /// A call that failed after its retries, and the warning it raised (`None` if that warning
    /// was given before). When this failure completes the streak, returns the streak's warnings:
    /// the one warning that drops the remote replaces them.
    pub fn failure(&self, warning: Option<String>) -> Option<Vec<String>> {
        let Ok(mut streak) = self.streak.lock() else {
            return None;
        };
        streak.failures += 1;
        streak.warnings.extend(warning);
        (streak.failures == TRIP_AFTER).then(|| std::mem::take(&mut streak.warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_trip_once_with_their_warnings() {
        let breaker = Breaker::default();
        for i in 1..TRIP_AFTER {
            assert_eq!(breaker.failure(Some(format!("w{i}"))), None);
        }
        let trip = breaker.failure(None).expect("tripped");
        let expected: Vec<String> = (1..TRIP_AFTER).map(|i| format!("w{i}")).collect();
        assert_eq!(trip, expected);
        // Calls already in flight when it tripped do not trip it again.
        assert_eq!(breaker.failure(Some("late".into())), None);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::default();
        for _ in 0..3 {
            for _ in 1..TRIP_AFTER {
                assert_eq!(breaker.failure(Some("w".into())), None);
            }
            breaker.success();
        }
        for _ in 1..TRIP_AFTER {
            assert_eq!(breaker.failure(None), None);
        }
        assert_eq!(breaker.failure(None), Some(Vec::new()));
    }
}
