//! A `done` the host can trust: one that a checkpoint signed by the
//! sidecar's key covers.
//!
//! Anyone who can write the queue directory can put a `done` event with
//! valid chain hashes into `new/`. [`DoneTrust`] follows a watcher's
//! deliveries (with [`crate::watch::WatchOptions::checkpoint_key`] set) and
//! trusts a delivered `done` only once a verified checkpoint of its session
//! counts it, and the events delivered from the `done` up to the
//! checkpoint's last event link by their hashes to the `last` the
//! checkpoint signed. So the bytes the host acts on are the bytes the
//! sidecar signed.
//!
//! With the run the host expects ([`DoneTrust::for_run`]), a checkpoint
//! must also name that run: a session copied in from another run's queue
//! (same key, repository and issue) is signed for its own run, and its
//! `done` is unverified here. A `done` delivered after its session's
//! `session_end` is unverified at once: the sidecar writes nothing after
//! the end, and no checkpoint will come to settle it.
//!
//! The sidecar publishes a checkpoint right after a `done`, so a genuine
//! one is trusted within moments (at most one heartbeat). A `done` is
//! declared unverified when a checkpoint counts its seq but signed other
//! bytes, or when [`MISSES`] checkpoints of its directory arrived after it
//! without covering it.

use std::collections::HashMap;
use std::path::PathBuf;

use forge_protocol::DoneStatus;
use forge_protocol::event::EventBody;

use crate::watch::{CheckpointNotice, Delivery};

/// Checkpoints that may arrive after a `done` without covering it before it
/// is declared unverified: one may have been signed just before the `done`
/// was written.
pub const MISSES: u32 = 2;

/// What became of a `done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A signed checkpoint covers it.
    Trusted {
        /// The queue directory.
        dir: PathBuf,
        /// Its session.
        session: String,
        /// Its seq.
        seq: u64,
        /// The status it reports.
        status: DoneStatus,
    },
    /// No signed checkpoint covers it: not to be acted on.
    Unverified {
        /// The queue directory.
        dir: PathBuf,
        /// Its session.
        session: String,
        /// Its seq.
        seq: u64,
        /// Why.
        reason: String,
    },
}

/// A delivered `done` waiting for a checkpoint.
#[derive(Debug)]
struct Pending {
    session: String,
    seq: u64,
    status: DoneStatus,
    /// (seq, sha256) of the events delivered from the done on, each linked
    /// to the one before by its `prev`.
    chain: Vec<(u64, String)>,
    /// A checkpoint that counts events not delivered yet: (last seq, last).
    ahead: Option<(u64, String)>,
    misses: u32,
}

/// Tracks the `done` events of several directories until each is trusted
/// or found unverified.
#[derive(Debug, Default)]
pub struct DoneTrust {
    pending: HashMap<PathBuf, Vec<Pending>>,
    checkpoints: HashMap<PathBuf, u64>,
    /// The run every trusted `done` must be signed for, if the host said.
    run: Option<String>,
    /// Per directory and session, the seq of a delivered `session_end`.
    ended: HashMap<(PathBuf, String), u64>,
}

impl DoneTrust {
    /// A tracker with nothing pending.
    pub fn new() -> DoneTrust {
        DoneTrust::default()
    }

    /// A tracker that trusts only a `done` signed for `run`.
    pub fn for_run(run: Option<String>) -> DoneTrust {
        DoneTrust {
            run,
            ..DoneTrust::default()
        }
    }

    /// Follow one delivery; returns the verdicts it settles.
    pub fn observe(&mut self, d: &Delivery) -> Vec<Verdict> {
        let dir = d.dir().to_path_buf();
        let mut verdicts = Vec::new();
        match d {
            Delivery::Event(e) => {
                let key = (dir.clone(), e.event.session.clone());
                if let Some(end) = self.ended.get(&key)
                    && e.event.seq > *end
                    && matches!(e.event.body, EventBody::Done(_))
                {
                    verdicts.push(Verdict::Unverified {
                        dir: dir.clone(),
                        session: e.event.session.clone(),
                        seq: e.event.seq,
                        reason: format!(
                            "it follows session_end (seq {end}), after which the sidecar writes nothing: it was added to the queue afterwards"
                        ),
                    });
                    return verdicts;
                }
                if matches!(e.event.body, EventBody::SessionEnd(_)) {
                    self.ended.insert(key, e.event.seq);
                }
                let pending = self.pending.entry(dir.clone()).or_default();
                for p in pending.iter_mut().filter(|p| p.session == e.event.session) {
                    let Some((last_seq, last_hash)) = p.chain.last() else {
                        continue;
                    };
                    if e.event.seq == last_seq + 1 && e.event.prev.as_deref() == Some(last_hash) {
                        p.chain.push((e.event.seq, e.sha256.clone()));
                    }
                }
                if let EventBody::Done(done) = &e.event.body {
                    pending.push(Pending {
                        session: e.event.session.clone(),
                        seq: e.event.seq,
                        status: done.status,
                        chain: vec![(e.event.seq, e.sha256.clone())],
                        ahead: None,
                        misses: 0,
                    });
                }
                // A checkpoint seen earlier may cover what just arrived.
                let judged: Vec<_> = pending
                    .iter()
                    .map(|p| match &p.ahead {
                        Some((seq, last)) => judge(p, *seq, last),
                        None => Judged::Wait,
                    })
                    .collect();
                settle(&dir, pending, judged, &mut verdicts);
            }
            Delivery::Checkpoint(c) => {
                *self.checkpoints.entry(dir.clone()).or_default() += 1;
                let Some(pending) = self.pending.get_mut(&dir) else {
                    return verdicts;
                };
                let run = self.run.as_deref();
                let judged: Vec<_> = pending
                    .iter_mut()
                    .map(|p| on_checkpoint(p, c, run))
                    .collect();
                settle(&dir, pending, judged, &mut verdicts);
            }
            _ => {}
        }
        verdicts
    }

    /// The `done` events of `dir` still waiting: (session, seq).
    pub fn pending(&self, dir: &std::path::Path) -> Vec<(String, u64)> {
        self.pending
            .get(dir)
            .map(|p| p.iter().map(|p| (p.session.clone(), p.seq)).collect())
            .unwrap_or_default()
    }

    /// The `done` events of every directory still waiting: (session, seq).
    pub fn pending_everywhere(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .pending
            .values()
            .flatten()
            .map(|p| (p.session.clone(), p.seq))
            .collect();
        all.sort();
        all
    }

    /// Verified checkpoints delivered for `dir` so far.
    pub fn checkpoints_seen(&self, dir: &std::path::Path) -> u64 {
        self.checkpoints.get(dir).copied().unwrap_or(0)
    }

    /// Give up on every `done` still pending in `dir` (it settled another
    /// way): each is unverified.
    pub fn abandon(&mut self, dir: &std::path::Path) -> Vec<Verdict> {
        self.pending
            .remove(dir)
            .unwrap_or_default()
            .into_iter()
            .map(|p| Verdict::Unverified {
                dir: dir.to_path_buf(),
                session: p.session,
                seq: p.seq,
                reason: "no checkpoint signed by the key covered it".into(),
            })
            .collect()
    }
}

enum Judged {
    Wait,
    Trusted,
    Unverified(String),
}

fn on_checkpoint(p: &mut Pending, c: &CheckpointNotice, run: Option<&str>) -> Judged {
    let cp = &c.checkpoint;
    if let Some(expected) = run
        && cp.session == p.session
        && cp.run.as_deref() != Some(expected)
    {
        return Judged::Unverified(format!(
            "its session is signed for run {}, not for this run ({expected}): it was copied from another run's queue",
            cp.run.as_deref().unwrap_or("(none)")
        ));
    }
    if cp.session != p.session || cp.last_seq() < p.seq {
        p.misses += 1;
        return if p.misses >= MISSES {
            Judged::Unverified(format!(
                "{} checkpoints signed by {} since it arrived do not count it: it was not written by the sidecar",
                p.misses, c.key
            ))
        } else {
            Judged::Wait
        };
    }
    let judged = judge(p, cp.last_seq(), &cp.last);
    if matches!(judged, Judged::Wait) {
        p.ahead = Some((cp.last_seq(), cp.last.clone()));
    }
    judged
}

/// A checkpoint of `p`'s session whose last event is `seq` with hash `last`.
fn judge(p: &Pending, seq: u64, last: &str) -> Judged {
    match p.chain.iter().find(|(s, _)| *s == seq) {
        Some((_, hash)) if hash == last => Judged::Trusted,
        Some(_) => Judged::Unverified(format!(
            "the checkpoint signed other bytes for seq {seq} than were delivered: the done or an event after it was replaced"
        )),
        None => Judged::Wait,
    }
}

fn settle(
    dir: &std::path::Path,
    pending: &mut Vec<Pending>,
    judged: Vec<Judged>,
    out: &mut Vec<Verdict>,
) {
    let mut i = 0;
    pending.retain(|p| {
        let verdict = match &judged[i] {
            Judged::Wait => None,
            Judged::Trusted => Some(Verdict::Trusted {
                dir: dir.to_path_buf(),
                session: p.session.clone(),
                seq: p.seq,
                status: p.status,
            }),
            Judged::Unverified(reason) => Some(Verdict::Unverified {
                dir: dir.to_path_buf(),
                session: p.session.clone(),
                seq: p.seq,
                reason: reason.clone(),
            }),
        };
        i += 1;
        match verdict {
            Some(v) => {
                out.push(v);
                false
            }
            None => true,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::watch::EventDelivery;
    use forge_protocol::event::{Done, Event, Intent};

    const S: &str = "20261125T120000.000Z-0a1b2c";

    fn event(seq: u64, prev: Option<&str>, body: EventBody, hash: &str) -> Delivery {
        Delivery::Event(EventDelivery {
            dir: "/q".into(),
            file_name: crate::names::EventName::format(S, seq),
            event: Event {
                v: 1,
                session: S.into(),
                seq,
                ts: "2026-11-25T12:00:00.000Z".into(),
                prev: prev.map(str::to_string),
                body,
            },
            backlog: 0,
            sha256: hash.into(),
        })
    }

    fn done(seq: u64, prev: &str, hash: &str) -> Delivery {
        let body = EventBody::Done(Done {
            status: DoneStatus::Success,
            summary: "s".into(),
            warnings: vec![],
        });
        event(seq, Some(prev), body, hash)
    }

    fn other(seq: u64, prev: &str, hash: &str) -> Delivery {
        let body = EventBody::Intent(Intent {
            op_id: 1,
            op: "post_comment".into(),
            target: Some(17),
            write: None,
        });
        event(seq, Some(prev), body, hash)
    }

    fn checkpoint(session: &str, events: u64, last: &str) -> Delivery {
        Delivery::Checkpoint(CheckpointNotice {
            dir: "/q".into(),
            checkpoint: Checkpoint {
                repository: "acme/widgets".into(),
                issue: 17,
                run: None,
                session: session.into(),
                events,
                last: last.into(),
                time: "2026-11-25T12:00:01.000Z".into(),
            },
            note: vec![],
            key: "k+00000000".into(),
        })
    }

    #[test]
    fn a_done_covered_by_a_checkpoint_is_trusted() {
        let mut t = DoneTrust::new();
        assert!(t.observe(&done(3, "h2", "h3")).is_empty());
        assert!(t.observe(&other(4, "h3", "h4")).is_empty());
        // A heartbeat checkpoint signed just before the done: a miss.
        assert!(t.observe(&checkpoint(S, 3, "h2")).is_empty());
        let v = t.observe(&checkpoint(S, 5, "h4"));
        assert!(matches!(&v[..], [Verdict::Trusted { seq: 3, .. }]), "{v:?}");
    }

    #[test]
    fn a_checkpoint_ahead_of_delivery_settles_when_the_events_arrive() {
        let mut t = DoneTrust::new();
        t.observe(&done(3, "h2", "h3"));
        assert!(t.observe(&checkpoint(S, 5, "h4")).is_empty());
        let v = t.observe(&other(4, "h3", "h4"));
        assert!(matches!(&v[..], [Verdict::Trusted { .. }]), "{v:?}");
    }

    #[test]
    fn a_hand_written_done_is_unverified() {
        // Appended by hand after the sidecar's last event: the sidecar's
        // checkpoints keep counting 3 events.
        let mut t = DoneTrust::new();
        t.observe(&done(3, "h2", "forged"));
        assert!(t.observe(&checkpoint(S, 3, "h2")).is_empty());
        let v = t.observe(&checkpoint(S, 3, "h2"));
        assert!(
            matches!(&v[..], [Verdict::Unverified { seq: 3, .. }]),
            "{v:?}"
        );
        // A done put in place of a signed event: other bytes than signed.
        let mut t = DoneTrust::new();
        t.observe(&done(3, "h2", "forged"));
        let v = t.observe(&checkpoint(S, 4, "h3"));
        assert!(
            matches!(&v[..], [Verdict::Unverified { reason, .. }] if reason.contains("other bytes")),
            "{v:?}"
        );
        // A done in a session of its own that no checkpoint covers.
        let mut t = DoneTrust::new();
        t.observe(&done(0, "x", "forged"));
        t.observe(&checkpoint("20261125T110000.000Z-000000", 9, "h8"));
        let v = t.observe(&checkpoint("20261125T110000.000Z-000000", 10, "h9"));
        assert!(matches!(&v[..], [Verdict::Unverified { .. }]), "{v:?}");
        assert!(t.abandon(std::path::Path::new("/q")).is_empty());
    }

    #[test]
    fn an_unlinked_event_does_not_extend_the_chain() {
        let mut t = DoneTrust::new();
        t.observe(&done(3, "h2", "h3"));
        t.observe(&other(4, "not-h3", "h4"));
        let v = t.observe(&checkpoint(S, 5, "h4"));
        assert!(v.is_empty(), "waits: seq 4 as delivered is not chained");
        assert_eq!(t.abandon(std::path::Path::new("/q")).len(), 1);
    }
}
