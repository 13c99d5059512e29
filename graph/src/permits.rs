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
//! - the scheduler *announces* every action it dispatches ([`ExecPermits::announce`]); with `k`
//!   permits free, a waiting miss takes one only when fewer than `k` announced actions of higher
//!   priority are still unsettled (being looked up: each may be a miss, and would run first);
//!   a hit, or an action that fails before it runs, leaves the line at once;
//! - a permit belongs to its [`PermitTicket`]. It goes back to the pool when the action's
//!   process ends ([`PermitTicket::ran`]), so that the next miss stages and runs while this
//!   one's outputs are hashed and stored; but until the ticket is dropped, which the scheduler
//!   does only after it has dispatched (and so announced) what that action's outputs made
//!   ready, a stand-in for its highest-priority dependent stays in line. Otherwise a miss
//!   waiting since earlier would take the permit before the action on the critical path that
//!   is about to be released even asked.
//!
//! [`ExecPermits::close`] (a failure without `--keep_going`, or a stopped build) refuses every
//! waiting and later request: those actions never start.

use std::collections::BTreeSet;
use std::ops::Bound;
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
    /// Every dispatched action that has neither taken a permit nor left the line, and the
    /// stand-ins of actions that ran and gave their permit back (see [`PermitTicket::ran`]).
    announced: BTreeSet<Place>,
    arrivals: u64,
    /// No permit is granted any more.
    closed: bool,
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// In line.
    Announced,
    /// Holds a permit, freed when the action's process ends or the ticket is dropped.
    Holding,
    /// Ran and gave its permit back; the stand-in for its dependents (if it has any) stays in
    /// line until the ticket is dropped.
    Ran(Option<Place>),
    /// Left the line without a permit: a hit, an error before running, or cancelled.
    Withdrawn,
    /// The pool was closed while it waited: the action did not run.
    Refused,
}

/// A dispatched action's place in line for a permit, then the permit itself, then (once its
/// process ended, [`PermitTicket::ran`]) its dependents' stand-in. The scheduler drops it once it
/// has dispatched what the action released; dropping it frees a permit still held and removes
/// the stand-in.
#[derive(Debug)]
pub struct PermitTicket<'a> {
    pool: &'a ExecPermits,
    place: Place,
    /// The highest priority among the actions waiting for this one's outputs, if any.
    successor: Option<u64>,
    stage: Mutex<Stage>,
}

impl ExecPermits {
    /// A pool of `jobs` permits (at least one).
    pub fn new(jobs: usize) -> ExecPermits {
        ExecPermits {
            state: Mutex::new(PermitState {
                free: jobs.max(1),
                announced: BTreeSet::new(),
                arrivals: 0,
                closed: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Announces a dispatched action of critical-path `priority` (higher runs first);
    /// `successor` is the highest priority among the actions waiting for its outputs.
    pub fn announce(&self, priority: u64, successor: Option<u64>) -> PermitTicket<'_> {
        let mut state = self.lock();
        let place = state.place(priority);
        state.announced.insert(place);
        PermitTicket {
            pool: self,
            place,
            successor,
            stage: Mutex::new(Stage::Announced),
        }
    }

    /// Refuses every waiting and later request (the build stops starting actions).
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, PermitState> {
        // Every change under this lock is a few integer and set operations that cannot panic
        // halfway, so a poisoned lock still guards a consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PermitState {
    /// A new place in line at `priority`, behind those already there.
    fn place(&mut self, priority: u64) -> Place {
        let place = (priority, std::cmp::Reverse(self.arrivals));
        self.arrivals += 1;
        place
    }
}

impl PermitTicket<'_> {
    /// Waits for a permit (see the module's rules). `false` if `cancel` is raised or the pool
    /// is closed first, or if the ticket already left the line; the action must not run then.
    pub fn acquire(&self, cancel: Option<&AtomicBool>) -> bool {
        let mut stage = self.stage();
        if *stage != Stage::Announced {
            return false;
        }
        let pool = self.pool;
        let mut state = pool.lock();
        loop {
            let cancelled = cancel.is_some_and(|c| c.load(Ordering::SeqCst));
            if cancelled || state.closed {
                state.announced.remove(&self.place);
                *stage = if cancelled {
                    Stage::Withdrawn
                } else {
                    Stage::Refused
                };
                drop(state);
                // A waiter of lower priority may have been held back by this ticket.
                pool.changed.notify_all();
                return false;
            }
            let ahead = state
                .announced
                .range((Bound::Excluded(self.place), Bound::Unbounded))
                .count();
            if ahead < state.free {
                state.announced.remove(&self.place);
                state.free -= 1;
                *stage = Stage::Holding;
                return true;
            }
            state = match pool.changed.wait_timeout(state, CANCEL_POLL) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Leaves the line unless it holds a permit (a hit, or an error before running). The
    /// scheduler's worker calls it as soon as the action's run returns.
    pub fn withdraw(&self) {
        let mut stage = self.stage();
        if *stage == Stage::Announced {
            self.pool.lock().announced.remove(&self.place);
            *stage = Stage::Withdrawn;
            drop(stage);
            self.pool.changed.notify_all();
        }
    }

    /// The action's process has ended: its permit goes back to the pool, and a stand-in for
    /// its highest-priority dependent (if any waits for its outputs) takes its place in line
    /// until the ticket is dropped. Does nothing unless the ticket holds a permit.
    pub fn ran(&self) {
        let mut stage = self.stage();
        if *stage != Stage::Holding {
            return;
        }
        let mut state = self.pool.lock();
        state.free += 1;
        let stand_in = self.successor.map(|priority| state.place(priority));
        if let Some(place) = stand_in {
            state.announced.insert(place);
        }
        *stage = Stage::Ran(stand_in);
        drop(state);
        drop(stage);
        self.pool.changed.notify_all();
    }

    /// The highest priority among the actions waiting for this one's outputs, as announced.
    pub fn successor(&self) -> Option<u64> {
        self.successor
    }

    /// Whether the pool was closed before this action got a permit: it did not run.
    pub fn refused(&self) -> bool {
        *self.stage() == Stage::Refused
    }

    fn stage(&self) -> MutexGuard<'_, Stage> {
        self.stage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for PermitTicket<'_> {
    fn drop(&mut self) {
        let stage = *self.stage();
        match stage {
            Stage::Announced => self.withdraw(),
            Stage::Holding => {
                self.pool.lock().free += 1;
                self.pool.changed.notify_all();
            }
            Stage::Ran(Some(stand_in)) => {
                self.pool.lock().announced.remove(&stand_in);
                self.pool.changed.notify_all();
            }
            Stage::Ran(None) | Stage::Withdrawn | Stage::Refused => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// A miss of priority 1 that waits for a permit on its own thread (and must get one).
    fn low_waiter(permits: &Arc<ExecPermits>) -> std::thread::JoinHandle<()> {
        let pool = Arc::clone(permits);
        std::thread::spawn(move || assert!(pool.announce(1, None).acquire(None)))
    }

    /// Waits until `n` tickets are in line.
    fn until_in_line(permits: &ExecPermits, n: usize) {
        while permits.lock().announced.len() < n {
            std::thread::yield_now();
        }
    }

    #[test]
    fn no_more_than_jobs_hold_a_permit_at_once() {
        let permits = Arc::new(ExecPermits::new(2));
        let holding = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (permits, holding, most) = (permits.clone(), holding.clone(), most.clone());
                std::thread::spawn(move || {
                    let ticket = permits.announce(i, None);
                    assert!(ticket.acquire(None));
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    holding.fetch_sub(1, Ordering::SeqCst);
                    drop(ticket);
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_freed_permit_goes_to_the_highest_priority_waiter() {
        let permits = Arc::new(ExecPermits::new(1));
        let held = permits.announce(0, None);
        assert!(held.acquire(None));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for priority in [3u64, 9, 1, 5] {
            let (pool, order) = (permits.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let ticket = pool.announce(priority, None);
                assert!(ticket.acquire(None));
                order.lock().expect("lock").push(priority);
            }));
            // Each is in line before the next asks.
            until_in_line(&permits, threads.len());
        }
        drop(held);
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert_eq!(*order.lock().expect("lock"), vec![9, 5, 3, 1]);
    }

    #[test]
    fn a_waiter_lets_a_higher_action_still_being_looked_up_go_first() {
        let permits = Arc::new(ExecPermits::new(1));
        let running = permits.announce(10, None);
        assert!(running.acquire(None));
        // A low-priority miss is waiting.
        let low = low_waiter(&permits);
        until_in_line(&permits, 1);
        // What the running action released is announced before its permit is freed: the
        // high-priority action is still being looked up, so the waiter is held back.
        let high = permits.announce(50, None);
        drop(running);
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !low.is_finished(),
            "the low-priority miss must not jump the queue"
        );
        assert!(high.acquire(None));
        drop(high);
        low.join().expect("no panic");
    }

    #[test]
    fn a_permit_goes_back_when_the_process_ends_and_a_stand_in_holds_back_lower_waiters() {
        let permits = Arc::new(ExecPermits::new(1));
        // Its outputs are awaited by an action of priority 5.
        let running = permits.announce(10, Some(5));
        assert!(running.acquire(None));
        let low = low_waiter(&permits);
        until_in_line(&permits, 1);
        running.ran();
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !low.is_finished(),
            "the stand-in for the dependent (5) is ahead of the waiter (1)"
        );
        // A miss above the dependent takes the permit the process gave back.
        let above = permits.announce(7, None);
        assert!(
            above.acquire(None),
            "the permit is free once the process ended"
        );
        drop(above);
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            !low.is_finished(),
            "the stand-in stays until the ticket goes"
        );
        // The scheduler drops the ticket once the dependent is dispatched.
        drop(running);
        low.join().expect("no panic");
    }

    #[test]
    fn an_action_nothing_waits_for_frees_its_permit_when_its_process_ends() {
        let permits = Arc::new(ExecPermits::new(1));
        let running = permits.announce(10, None);
        assert!(running.acquire(None));
        let low = low_waiter(&permits);
        until_in_line(&permits, 1);
        running.ran();
        // The waiter runs while the finished action still stores its outputs.
        low.join().expect("no panic");
        drop(running);
        assert_eq!(permits.lock().free, 1, "the permit was returned once");
    }

    #[test]
    fn with_two_free_permits_one_higher_action_in_lookup_does_not_hold_back_a_waiter() {
        let permits = ExecPermits::new(2);
        let _looking_up = permits.announce(50, None);
        let waiter = permits.announce(1, None);
        assert!(
            waiter.acquire(None),
            "one permit for the lookup, one for the waiter"
        );
    }

    #[test]
    fn a_hit_withdraws_a_cancelled_waiter_gives_up_and_closing_refuses_the_rest() {
        let permits = Arc::new(ExecPermits::new(1));
        let holder = permits.announce(0, None);
        assert!(holder.acquire(None));
        let cancel = Arc::new(AtomicBool::new(false));
        let cancelled = {
            let (pool, cancel) = (permits.clone(), cancel.clone());
            std::thread::spawn(move || {
                let ticket = pool.announce(10, None);
                (ticket.acquire(Some(&cancel)), ticket.refused())
            })
        };
        until_in_line(&permits, 1);
        cancel.store(true, Ordering::SeqCst);
        assert_eq!(cancelled.join().expect("no panic"), (false, false));
        // A hit: in line, then out without a permit.
        let hit = permits.announce(20, None);
        hit.withdraw();
        assert!(!hit.acquire(None), "a withdrawn ticket gets no permit");
        drop(holder);
        // Neither the cancelled ticket (10) nor the hit (20) holds back a low-priority miss.
        let low = permits.announce(1, None);
        assert!(low.acquire(None));
        // Closed: a waiter is refused, and so is any later request.
        let refused = {
            let pool = permits.clone();
            std::thread::spawn(move || {
                let ticket = pool.announce(5, None);
                (ticket.acquire(None), ticket.refused())
            })
        };
        until_in_line(&permits, 1);
        permits.close();
        assert_eq!(refused.join().expect("no panic"), (false, true));
        drop(low);
        let late = permits.announce(99, None);
        assert!(!late.acquire(None));
        assert!(late.refused());
    }
}
