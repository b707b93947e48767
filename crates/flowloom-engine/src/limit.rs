//! The engine's bound on runs in flight: one atomic count on the way in and out, and a
//! queue only for the runs that have to wait.
//!
//! A run that finds a free slot takes it with one compare-and-swap and gives it back with one
//! subtraction; no lock is taken unless some run is waiting. (A shared semaphore takes a lock
//! on every release, which two busy threads contend for at thousands of runs in flight.)
//! Waiting runs are woken one per freed slot; a run arriving while others wait may take a slot
//! first (the bound, not the order, is what is kept).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Counts runs in flight against a bound.
#[derive(Debug)]
pub(crate) struct RunLimiter {
    max: usize,
    in_flight: AtomicUsize,
    /// Runs in [`RunLimiter::acquire`] that found no free slot.
    waiting: AtomicUsize,
    freed: Notify,
}

/// A run's slot among the runs in flight, given back when dropped.
#[derive(Debug)]
pub(crate) struct RunSlot<'a>(&'a RunLimiter);

/// Counts a run as waiting while it lives (also when the wait is abandoned).
struct Waiting<'a>(&'a RunLimiter);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RunLimiter {
    /// A bound of `max` runs in flight.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// Runs in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// A slot if one is free now.
    pub(crate) fn try_acquire(&self) -> Option<RunSlot<'_>> {
        let mut now = self.in_flight.load(Ordering::Relaxed);
        loop {
            if now >= self.max {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                now,
                now + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(RunSlot(self)),
                Err(seen) => now = seen,
            }
        }
    }

    /// A slot, waiting for one to be freed if none is free.
    pub(crate) async fn acquire(&self) -> RunSlot<'_> {
        if let Some(slot) = self.try_acquire() {
            return slot;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(self);
        loop {
            // Registered before the second look, so a slot freed in between wakes it: the
            // releaser either sees this run waiting (and notifies) or freed the slot before
            // the look (which then takes it).
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            freed.await;
        }
    }
}

impl Drop for RunSlot<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            self.0.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back_on_drop() {
        let l = RunLimiter::new(2);
        let a = l.try_acquire().unwrap();
        let b = l.try_acquire().unwrap();
        assert!(l.try_acquire().is_none());
        assert_eq!(l.in_flight(), 2);
        drop(a);
        assert_eq!(l.in_flight(), 1);
        let _c = l.try_acquire().unwrap();
        drop(b);
        assert_eq!(l.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_run_gets_the_next_freed_slot_and_an_abandoned_wait_counts_no_more() {
        let l = Arc::new(RunLimiter::new(1));
        let held = l.try_acquire().unwrap();
        // A wait abandoned (a timeout around it) leaves no waiter behind.
        assert!(
            tokio::time::timeout(Duration::from_millis(5), l.acquire())
                .await
                .is_err()
        );
        assert_eq!(l.waiting.load(Ordering::SeqCst), 0);
        let l2 = Arc::clone(&l);
        let waiter = tokio::spawn(async move {
            let _s = l2.acquire().await;
            l2.in_flight()
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!waiter.is_finished());
        drop(held);
        assert_eq!(waiter.await.unwrap(), 1);
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn many_threads_never_pass_the_bound_and_every_run_gets_through() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let l = Arc::new(RunLimiter::new(3));
        let peak = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let tasks: Vec<_> = (0..2_000)
                .map(|_| {
                    let (l, peak, done) = (Arc::clone(&l), Arc::clone(&peak), Arc::clone(&done));
                    tokio::spawn(async move {
                        let _slot = l.acquire().await;
                        peak.fetch_max(l.in_flight(), Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        done.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 2_000);
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.waiting.load(Ordering::SeqCst), 0);
    }
}
