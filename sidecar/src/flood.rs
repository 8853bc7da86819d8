//! [`AuditRate`]: how fast calls that reach nothing may grow the queue.
//!
//! Every call that reaches the forge or changes the session (a read, a sent
//! write, the first `signal_done`) gets its own `op` event, always. A call
//! that reaches nothing (refused before dispatch, a denied write, `scope`, a
//! second `signal_done`) gets its own `op` while the caller stays within
//! [`AUDIT_BURST`] such calls plus [`AUDIT_RATE_PER_SEC`] per second (a
//! token bucket); beyond that each is counted instead, and the counts are
//! written as one `op` per outcome, `op: "(coalesced)"` with a `coalesced`
//! map (method as called -> calls), at most once per [`FLUSH_INTERVAL`].
//! So a flood of refused calls grows the queue by at most
//! `AUDIT_BURST + 60 * (AUDIT_RATE_PER_SEC + 3)` events in its first minute
//! and `60 * (AUDIT_RATE_PER_SEC + 3)` per minute after.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use forge_protocol::event::Outcome;

/// Calls that reach nothing, audited one event each, per second (sustained).
pub const AUDIT_RATE_PER_SEC: u32 = 5;
/// Calls that reach nothing, audited one event each, in a burst.
pub const AUDIT_BURST: u32 = 20;
/// How often counted calls are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Most distinct method names in one coalesced event; the rest are counted
/// under [`OTHER`].
pub const MAX_COALESCED_NAMES: usize = 16;
/// The name under which further method names are counted.
pub const OTHER: &str = "(other)";

const OUTCOMES: [Outcome; 3] = [Outcome::Ok, Outcome::Denied, Outcome::Error];

/// The token bucket and the calls counted since the last flush.
pub struct AuditRate {
    state: Mutex<State>,
}

struct State {
    tokens: f64,
    refilled: Instant,
    pending: [BTreeMap<String, u64>; 3],
}

impl Default for AuditRate {
    fn default() -> Self {
        AuditRate {
            state: Mutex::new(State {
                tokens: f64::from(AUDIT_BURST),
                refilled: Instant::now(),
                pending: Default::default(),
            }),
        }
    }
}

impl AuditRate {
    /// True if a call that reaches nothing gets its own event now; false if
    /// it was counted for the next coalesced event instead.
    pub fn admit(&self, op: &str, outcome: Outcome) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.refilled).as_secs_f64() * f64::from(AUDIT_RATE_PER_SEC);
        s.tokens = (s.tokens + refill).min(f64::from(AUDIT_BURST));
        s.refilled = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return true;
        }
        let slot = &mut s.pending[index(outcome)];
        let name = if slot.len() < MAX_COALESCED_NAMES || slot.contains_key(op) {
            op
        } else {
            OTHER
        };
        *slot.entry(name.to_string()).or_default() += 1;
        false
    }

    /// The counts since the last call, one map per outcome that has any.
    pub fn take(&self) -> Vec<(Outcome, BTreeMap<String, u64>)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        OUTCOMES
            .into_iter()
            .zip(s.pending.iter_mut())
            .filter(|(_, m)| !m.is_empty())
            .map(|(o, m)| (o, std::mem::take(m)))
            .collect()
    }
}

fn index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Ok => 0,
        Outcome::Denied => 1,
        Outcome::Error => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_calls_are_counted_by_name_and_outcome() {
        let rate = AuditRate::default();
        let admitted = (0..1000)
            .filter(|i| rate.admit(&format!("m{}", i % 40), Outcome::Denied))
            .count();
        // The burst, plus what refilled while the loop ran (well under a second).
        assert!(
            (AUDIT_BURST as usize..AUDIT_BURST as usize + 6).contains(&admitted),
            "{admitted}"
        );
        assert!(!rate.admit("scope", Outcome::Ok));
        let taken = rate.take();
        assert_eq!(taken.len(), 2);
        let (outcome, denied) = &taken[1];
        assert_eq!(*outcome, Outcome::Denied);
        assert_eq!(denied.len(), MAX_COALESCED_NAMES + 1);
        assert_eq!(
            denied.values().sum::<u64>() as usize,
            1000 - admitted,
            "every call is counted"
        );
        assert!(denied.contains_key(OTHER));
        assert_eq!(taken[0].1["scope"], 1);
        assert!(rate.take().is_empty());
    }
}
