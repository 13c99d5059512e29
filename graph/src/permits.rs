//! Execution permits: `--jobs N` bounds the actions that *execute* at once, while the scheduler
//! keeps more in flight. An action in flight is keyed and looked up in the caches without a
//! permit (a hit never needs one); only a miss waits for one, before it stages its inputs.
//!
//! Why: a cache hit costs tens of microseconds, but each one dispatched by the scheduler costs
//! a round trip between threads, and with only `jobs` actions in flight a chain of hits (the
//! unchanged libraries between an edited package and the binaries that link it) runs at the
//! speed of those round trips while the cores idle. Waiting misses hold no sandbox and no
//! staged tree, so the machine still runs at most `jobs` processes.
//!
//! Critical-path order is kept, as the ready queue alone kept it without a lookahead:
//! - the scheduler *announces* every action it dispatches ([`ExecPermits::announce`]), and a
//!   free permit goes to a waiting miss only when no announced action of higher priority is
//!   still being looked up (it may be a miss too, and it is the one to run next);
//! - a permit an action gives back is *returned*, and becomes free only when the scheduler
//!   [`recycle`](ExecPermits::recycle)s it, after it has dispatched (and so announced) what
//!   that action's outputs made ready. Otherwise a miss waiting since earlier would take the
//!   permit before the action on the critical path that was just released even asked.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How often a waiting action looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(10);

/// A pool of `jobs` execution permits.
#[derive(Debug)]
pub struct ExecPermits {
    state: Mutex<PermitState>,
    changed: Condvar,
}

/// An announced action's place in line: (priority, arrival reversed), so that the largest is
/// the highest priority that asked first.
type Place = (u64, std::cmp::Reverse<u64>);

#[derive(Debug)]
struct PermitState {
    free: usize,
    /// Given back, not yet recycled by the scheduler.
    returned: usize,
    /// Every dispatched action that has neither taken a permit nor withdrawn.
    announced: BTreeSet<Place>,
    arrivals: u64,
}

/// A dispatched action's claim to a permit; dropping it unused withdraws it (a cache hit).
#[derive(Debug)]
pub struct PermitTicket<'a> {
    pool: &'a ExecPermits,
    place: Place,
    /// Taken or withdrawn: no longer announced.
    done: AtomicBool,
}

/// A held permit; dropping it gives it back to the pool (see [`ExecPermits::recycle`]).
#[derive(Debug)]
pub struct ExecPermit<'a> {
    pool: &'a ExecPermits,
}

impl ExecPermits {
    /// A pool of `jobs` permits (at least one).
    pub fn new(jobs: usize) -> ExecPermits {
        ExecPermits {
            state: Mutex::new(PermitState {
                free: jobs.max(1),
                returned: 0,
                announced: BTreeSet::new(),
                arrivals: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// Announces a dispatched action of critical-path `priority` (higher runs first).
    pub fn announce(&self, priority: u64) -> PermitTicket<'_> {
        let mut state = self.lock();
        let place = (priority, std::cmp::Reverse(state.arrivals));
        state.arrivals += 1;
        state.announced.insert(place);
        PermitTicket {
            pool: self,
            place,
            done: AtomicBool::new(false),
        }
    }

    /// Makes the permits given back since the last call free again. The scheduler calls it
    /// after dispatching what the finished actions made ready.
    pub fn recycle(&self) {
        let mut state = self.lock();
        if state.returned > 0 {
            state.free += state.returned;
            state.returned = 0;
            drop(state);
            self.changed.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, PermitState> {
        // The state stays consistent through a panic elsewhere: every change is a few integer and
        // set operations that cannot panic halfway.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PermitTicket<'_> {
    /// Waits for a permit: one must be free, and this action must be the highest-priority one
    /// announced. `None` if `cancel` is raised first (the ticket is withdrawn then).
    pub fn acquire(&self, cancel: Option<&AtomicBool>) -> Option<ExecPermit<'_>> {
        let pool = self.pool;
        let mut state = pool.lock();
        if self.done.load(Ordering::SeqCst) {
            return None;
        }
        loop {
            if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                drop(state);
                self.withdraw();
                return None;
            }
            if state.free > 0 && state.announced.last() == Some(&self.place) {
                state.announced.remove(&self.place);
                state.free -= 1;
                self.done.store(true, Ordering::SeqCst);
                // The next in line may be served by another free permit.
                pool.changed.notify_all();
                return Some(ExecPermit { pool });
            }
            state = match pool.changed.wait_timeout(state, CANCEL_POLL) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// No longer in line (a hit, or given up).
    fn withdraw(&self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        self.pool.lock().announced.remove(&self.place);
        // A lower-priority waiter may have been held back by this ticket.
        self.pool.changed.notify_all();
    }
}

impl Drop for PermitTicket<'_> {
    fn drop(&mut self) {
        self.withdraw();
    }
}

impl Drop for ExecPermit<'_> {
    fn drop(&mut self) {
        self.pool.lock().returned += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Recycles returned permits until `done` is raised, as the scheduler's loop does.
    fn recycler(permits: Arc<ExecPermits>, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                permits.recycle();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    }

    #[test]
    fn no_more_than_jobs_hold_a_permit_at_once() {
        let permits = Arc::new(ExecPermits::new(2));
        let holding = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let recycling = recycler(permits.clone(), stop.clone());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (permits, holding, most) = (permits.clone(), holding.clone(), most.clone());
                std::thread::spawn(move || {
                    let ticket = permits.announce(i);
                    let permit = ticket.acquire(None).expect("a permit");
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    holding.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        stop.store(true, Ordering::SeqCst);
        recycling.join().expect("no panic");
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_recycled_permit_goes_to_the_highest_priority_waiter() {
        let permits = Arc::new(ExecPermits::new(1));
        let first = permits.announce(0);
        let held = first.acquire(None).expect("the only permit");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for priority in [3u64, 9, 1, 5] {
            let (pool, order) = (permits.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let ticket = pool.announce(priority);
                let permit = ticket.acquire(None).expect("a permit");
                order.lock().expect("lock").push(priority);
                drop(permit);
                pool.recycle();
            }));
            // Each is in line before the next asks.
            while permits.lock().announced.len() < threads.len() {
                std::thread::yield_now();
            }
        }
        drop(held);
        permits.recycle();
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert_eq!(*order.lock().expect("lock"), vec![9, 5, 3, 1]);
    }

    #[test]
    fn a_returned_permit_waits_for_recycling_and_for_a_higher_announced_action() {
        let permits = Arc::new(ExecPermits::new(1));
        let running = permits.announce(10);
        let held = running.acquire(None).expect("the only permit");
        // A low-priority miss is waiting.
        let low = {
            let pool = permits.clone();
            std::thread::spawn(move || {
                let ticket = pool.announce(1);
                let _permit = ticket.acquire(None).expect("a permit");
            })
        };
        while permits.lock().announced.is_empty() {
            std::thread::yield_now();
        }
        drop(held);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(permits.lock().free, 0, "not free before it is recycled");
        // What the finished action released is announced, then the permit recycled: the
        // high-priority action is still being looked up, so the waiter is held back.
        let high = permits.announce(50);
        permits.recycle();
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !low.is_finished(),
            "the low-priority miss must not jump the queue"
        );
        let permit = high.acquire(None).expect("the freed permit");
        drop(permit);
        permits.recycle();
        low.join().expect("no panic");
    }

    #[test]
    fn a_hit_withdraws_and_a_cancelled_waiter_gives_up() {
        let permits = Arc::new(ExecPermits::new(1));
        let holder = permits.announce(0);
        let held = holder.acquire(None).expect("the only permit");
        let cancel = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (pool, cancel) = (permits.clone(), cancel.clone());
            std::thread::spawn(move || pool.announce(10).acquire(Some(&cancel)).is_some())
        };
        while permits.lock().announced.is_empty() {
            std::thread::yield_now();
        }
        cancel.store(true, Ordering::SeqCst);
        assert!(
            !waiter.join().expect("no panic"),
            "a cancelled wait gets no permit"
        );
        // A hit: announced, then dropped unused.
        drop(permits.announce(20));
        drop(held);
        permits.recycle();
        // Neither the cancelled ticket (10) nor the hit (20) holds back a low-priority miss.
        assert!(permits.announce(1).acquire(None).is_some());
    }
}
