//! [`Budget`]: the bytes forge answers may hold in the sidecar.
//!
//! Two things hold the memory a slow or hostile forge (or caller) can make
//! the sidecar spend: forge answers being read, and answers waiting for
//! their callers. Both are counted here, in one number, instead of bounding
//! how many forge calls run at once:
//!
//! - A forge call is admitted once the bytes held are under [`HELD_BYTES`]
//!   less its first reservation ([`ADMIT_BYTES`]), so many ordinary calls
//!   (answers of a few KB) run in parallel against a slow forge.
//! - While an answer is read ([`Charged`]) its bytes are charged against
//!   the same bound, a piece ([`CHARGE_STEP`]) ahead of the read. A read that
//!   would go over waits — reading stops, the forge's connection is left
//!   unread — unless it holds the one *lane*: the first read to find the
//!   bound full takes the lane and may go over it by its own bytes (up to
//!   the forge response cap) once what the others hold fits under it, so
//!   one read always progresses and reads waiting for each other's bytes
//!   cannot deadlock (paused reads hold at most the bound: they were only
//!   ever granted bytes under it). The lane passes on when its read ends.
//! - The bytes of a call stay charged ([`Held`]) until its answer is handed
//!   to the HTTP layer, which counts the answer until its caller has taken it
//!   ([`Budget::answer_waiting`]).
//!
//! So the memory of answers is about `HELD_BYTES` plus one forge answer
//! (the lane's) plus the parsed and serialised copies of the answers on
//! their way out.

use std::cell::RefCell;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Bytes of forge answers (being read or waiting for their callers) above
/// which new forge calls wait and reads in progress pause.
pub const HELD_BYTES: usize = 8 * 1024 * 1024;
/// What a forge call reserves when it is admitted: more than an ordinary
/// answer, so most calls never charge again.
pub const ADMIT_BYTES: usize = 256 * 1024;
/// How far ahead of the read a growing answer is charged.
pub const CHARGE_STEP: usize = 64 * 1024;

#[derive(Debug, Default)]
struct State {
    /// Bytes charged now: reservations of forge calls plus answers waiting.
    held: usize,
    /// Whether a read holds the lane (may go over the bound).
    lane: bool,
}

/// The shared count of bytes held by forge answers.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    state: Mutex<State>,
    /// Wakes reads paused on a blocking-pool thread.
    freed_sync: Condvar,
    /// Wakes forge calls waiting to be admitted.
    freed: Notify,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(HELD_BYTES)
    }
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Budget {
            limit,
            state: Mutex::default(),
            freed_sync: Condvar::new(),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes charged now.
    pub fn bytes(&self) -> usize {
        self.lock().held
    }

    /// Wait until a forge call may start, and reserve [`ADMIT_BYTES`] for it.
    pub async fn admit(self: &Arc<Self>) -> Held {
        let want = ADMIT_BYTES.min(self.limit);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.held + want <= self.limit {
                    state.held += want;
                    return Held {
                        budget: Arc::clone(self),
                        reserved: want,
                        used: 0,
                        lane: false,
                    };
                }
            }
            freed.await;
        }
    }

    /// An answer of `n` bytes now waits for its caller: counted (over the
    /// bound if need be: it is already in memory) until [`Budget::answer_taken`].
    pub fn answer_waiting(&self, n: usize) {
        self.lock().held += n;
    }

    /// An answer counted by [`Budget::answer_waiting`] was taken or dropped.
    pub fn answer_taken(&self, n: usize) {
        self.release(n, false);
    }

    fn release(&self, n: usize, lane: bool) {
        {
            let mut state = self.lock();
            state.held = state.held.saturating_sub(n);
            if lane {
                state.lane = false;
            }
        }
        self.freed_sync.notify_all();
        self.freed.notify_waiters();
    }

    /// Charge `n` more bytes to `held`, waiting (this thread) while the
    /// bound is full and another read holds the lane.
    fn grow(&self, held: &mut Held, n: usize) {
        let mut state = self.lock();
        loop {
            if held.lane {
                // The lane goes over the bound by this read's bytes alone:
                // what the others hold must fit (answers waiting drain).
                if state.held - held.reserved <= self.limit {
                    break;
                }
            } else if state.held + n <= self.limit {
                break;
            } else if !state.lane {
                state.lane = true;
                held.lane = true;
                continue;
            }
            state = self
                .freed_sync
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.held += n;
        held.reserved += n;
    }
}

/// The bytes one forge call holds; released when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    reserved: usize,
    used: usize,
    lane: bool,
}

impl Held {
    /// Bytes charged to this call.
    pub fn bytes(&self) -> usize {
        self.reserved
    }

    /// Run `f` (a forge call, on this thread) with this reservation as the
    /// one its reads charge ([`Charged`]); the lane, if taken, is passed on
    /// when `f` returns.
    pub fn during<T>(self, f: impl FnOnce() -> T) -> (T, Held) {
        /// Puts back what the thread had before, even if `f` panics (the
        /// reservation is then dropped, releasing its bytes).
        struct Restore(Option<Held>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let earlier = self.0.take();
                let ours = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), earlier));
                drop(ours);
            }
        }
        let earlier = CURRENT.with(|c| c.borrow_mut().replace(self));
        let restore = Restore(earlier);
        let value = f();
        let mut held = CURRENT
            .with(|c| c.borrow_mut().take())
            .expect("the reservation stays in place during the call");
        drop(restore);
        if held.lane {
            held.lane = false;
            held.budget.release(0, true);
        }
        (value, held)
    }

    fn charge(&mut self, n: usize) {
        self.used += n;
        if self.used > self.reserved {
            let more = (self.used - self.reserved).div_ceil(CHARGE_STEP) * CHARGE_STEP;
            let budget = Arc::clone(&self.budget);
            budget.grow(self, more);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.release(self.reserved, self.lane);
    }
}

thread_local! {
    /// The reservation of the forge call running on this thread, if any.
    static CURRENT: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// A reader of a forge answer whose bytes are charged, ahead of each read,
/// to the forge call running on this thread (if any: reads outside a
/// [`Held::during`] are not charged).
pub struct Charged<R>(pub R);

impl<R: Read> Read for Charged<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(CHARGE_STEP);
        // Charge before reading, so a paused read holds nothing uncounted.
        CURRENT.with(|c| {
            if let Some(held) = c.borrow_mut().as_mut() {
                held.charge(want);
            }
        });
        let n = self.0.read(&mut buf[..want])?;
        CURRENT.with(|c| {
            if let Some(held) = c.borrow_mut().as_mut() {
                held.used -= want - n;
            }
        });
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn read_all(len: usize) -> usize {
        let mut out = Vec::new();
        Charged(&vec![7u8; len][..])
            .read_to_end(&mut out)
            .expect("read");
        out.len()
    }

    #[tokio::test]
    async fn a_call_holds_its_reservation_and_what_it_read_until_dropped() {
        let budget = Arc::new(Budget::new(1024 * 1024));
        let held = budget.admit().await;
        assert_eq!(budget.bytes(), ADMIT_BYTES);
        let (n, held) = held.during(|| read_all(600 * 1024));
        assert_eq!(n, 600 * 1024);
        assert!(held.bytes() >= 600 * 1024, "{}", held.bytes());
        assert_eq!(budget.bytes(), held.bytes());
        drop(held);
        assert_eq!(budget.bytes(), 0);
    }

    #[tokio::test]
    async fn calls_wait_while_the_bound_is_full_and_start_when_bytes_are_freed() {
        let budget = Arc::new(Budget::new(2 * ADMIT_BYTES));
        let a = budget.admit().await;
        let _b = budget.admit().await;
        let third = tokio::time::timeout(Duration::from_millis(50), budget.admit()).await;
        assert!(third.is_err(), "admitted over the bound");
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.admit().await.bytes() }
        });
        drop(a);
        let admitted = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("admitted once freed")
            .expect("task");
        assert_eq!(admitted, ADMIT_BYTES);
    }

    #[tokio::test]
    async fn answers_waiting_for_callers_hold_back_new_calls() {
        let budget = Arc::new(Budget::new(ADMIT_BYTES + 10));
        budget.answer_waiting(100);
        let blocked = tokio::time::timeout(Duration::from_millis(50), budget.admit()).await;
        assert!(blocked.is_err(), "admitted over the bound");
        budget.answer_taken(100);
        let held = tokio::time::timeout(Duration::from_secs(5), budget.admit())
            .await
            .expect("admitted once the answer was taken");
        assert_eq!(held.bytes(), ADMIT_BYTES);
    }

    #[test]
    fn reads_over_the_bound_take_turns_on_the_lane_and_never_deadlock() {
        // Eight reads of 1 MiB each against a 1 MiB bound: every one must
        // go over it, so they can only finish one lane-holder at a time.
        let budget = Arc::new(Budget::new(1024 * 1024));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let helds: Vec<Held> = (0..4).map(|_| rt.block_on(budget.admit())).collect();
        let threads: Vec<_> = helds
            .into_iter()
            .map(|held| {
                std::thread::spawn(move || {
                    let (n, held) = held.during(|| read_all(1024 * 1024));
                    drop(held);
                    n
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("reader"), 1024 * 1024);
        }
        assert_eq!(budget.bytes(), 0);
        assert!(!budget.lock().lane, "the lane is passed on");
    }

    #[test]
    fn reads_outside_a_call_are_not_charged() {
        assert_eq!(read_all(100_000), 100_000);
    }
}
