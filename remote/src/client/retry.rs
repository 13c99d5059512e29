//! Retries with exponential backoff and a deadline per attempt. Only errors a retry can cure are
//! retried; a deadline that passes is not (the server is hanging, and time is what we save).

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Status};

/// How to retry one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Wait before the first retry; doubled each time.
    pub backoff: Duration,
    /// Deadline of each attempt.
    pub deadline: Duration,
}

impl Policy {
    /// The same policy with a longer deadline for moving `size` bytes.
    pub fn for_size(self, size: u64) -> Policy {
        let factor = u32::try_from(1 + size / (16 << 20)).unwrap_or(u32::MAX);
        Policy {
            deadline: self.deadline.saturating_mul(factor),
            ..self
        }
    }
}

/// Whether a retry may succeed where the call failed.
pub(crate) fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unknown
    )
}

/// Runs `call` until it succeeds, fails for good, or runs out of retries.
pub(crate) async fn retry<T, F, Fut>(policy: &Policy, mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut attempt = 0;
    loop {
        let status = match tokio::time::timeout(policy.deadline, call()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(status)) => status,
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "no answer within {:.1} s",
                    policy.deadline.as_secs_f64()
                )))
            }
        };
        if !transient(status.code()) || attempt >= policy.retries {
            return Err(status);
        }
        tokio::time::sleep(policy.backoff * 2u32.pow(attempt)).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy() -> Policy {
        Policy {
            retries: 3,
            backoff: Duration::from_millis(1),
            deadline: Duration::from_millis(200),
        }
    }

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn large_transfers_get_longer_deadlines_without_overflow() {
        assert_eq!(policy().for_size(0).deadline, Duration::from_millis(200));
        assert_eq!(
            policy().for_size(40 << 20).deadline,
            Duration::from_millis(600)
        );
        let huge = Policy {
            deadline: Duration::from_secs(u64::MAX / 2),
            ..policy()
        };
        assert_eq!(huge.for_size(u64::MAX).deadline, Duration::MAX);
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = run(retry(&policy(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Status::unavailable("down"))
            } else {
                Ok(7)
            }
        }));
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn retries_run_out() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Status> = run(retry(&policy(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Status::resource_exhausted("busy"))
        }));
        assert_eq!(result.unwrap_err().code(), Code::ResourceExhausted);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn permanent_errors_and_deadlines_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Status> = run(retry(&policy(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Status::not_found("miss"))
        }));
        assert_eq!(result.unwrap_err().code(), Code::NotFound);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: Result<(), Status> = run(retry(&policy(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(())
        }));
        assert_eq!(result.unwrap_err().code(), Code::DeadlineExceeded);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn large_transfers_get_more_time() {
        let p = policy();
        assert_eq!(p.for_size(1 << 20).deadline, p.deadline);
        assert_eq!(p.for_size(40 << 20).deadline, p.deadline * 3);
    }
}
