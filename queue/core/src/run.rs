//! A run: the sessions of one host work unit in one queue directory.
//!
//! The host names the run it starts a sidecar for (`FORGE_RUN_ID`, recorded
//! as `run` in `session_start`; absent when none was given). Every session
//! of a queue directory whose `session_start` has the same `run` (both
//! absent counts as the same) belongs to the same run, and the run, not the
//! session, owns the write budget and the done signal: a sidecar restarted
//! within a run continues from what its earlier sessions spent.
//! [`RunFold`] derives that from the queue's own events: each `intent` is one
//! write spent (it is written only once a write is authorized, before it is
//! sent) unless its `op` found it not applied, and the first `done` is the
//! run's done signal. It also lists the run's writes with what is known of
//! each, and the writes whose `intent` has no `op` (the sidecar stopped
//! mid-write), which the next session resolves before serving. [`scan`]
//! folds every event of the queue; a sidecar keeps the fold in the run's
//! tally ([`crate::tally`]) and starts from there.

use std::collections::BTreeSet;
use std::path::Path;

use forge_protocol::event::{
    CallRef, Event, EventBody, Intent, Outcome, Resolution, ScopeGrown, WriteStatus,
};
use serde::{Deserialize, Serialize};

use crate::error::QueueError;
use crate::reader::{QueueDir, for_each_file};

/// What the earlier sessions of a run spent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunState {
    /// Earlier sessions of the run.
    pub sessions: u32,
    /// Forge writes they spent (their `intent` events).
    pub writes: u32,
    /// Pull requests they opened (`scope_grown` events with reason `opened`).
    pub prs_opened: u32,
    /// The file name of the run's `done` event, if one was signalled.
    pub done: Option<String>,
    /// Every forge write of the run that carries an identity, oldest
    /// first, with what is known of it.
    pub forge_writes: Vec<RunWrite>,
    /// The writes with an `intent` and no `op` anywhere in the run: their
    /// outcome is unknown until read back.
    pub pending: Vec<RunWrite>,
}

/// A forge write of the run: its `intent` and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunWrite {
    /// Where its `intent` is.
    pub at: CallRef,
    /// The `intent`.
    pub intent: Intent,
    /// What is known: `unknown` until an `op` says otherwise.
    pub status: WriteStatus,
}

/// The run's state as a fold over its events in event order: what [`scan`]
/// computes from the whole queue, and what the run's tally
/// ([`crate::tally`]) keeps, so that a start continues from it instead of
/// reading the run's history again. Its size grows with the run's writes
/// and sessions, never with its other events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFold {
    /// The run (`FORGE_RUN_ID`), absent when none was given.
    run: Option<String>,
    /// The sessions of the run, by id.
    members: BTreeSet<String>,
    writes: u32,
    prs_opened: u32,
    done: Option<String>,
    /// Every intent of the run, with whether an op has answered it and
    /// whether that op resolved it by reading back.
    intents: Vec<FoldedIntent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FoldedIntent {
    write: RunWrite,
    answered: bool,
    resolved: bool,
}

impl RunFold {
    /// Nothing of `run` seen yet.
    pub fn new(run: Option<&str>) -> RunFold {
        RunFold {
            run: run.map(str::to_string),
            ..RunFold::default()
        }
    }

    /// The run folded.
    pub fn run(&self) -> Option<&str> {
        self.run.as_deref()
    }

    /// Whether `session` is a session of the run (its `session_start` was folded).
    pub fn has_session(&self, session: &str) -> bool {
        self.members.contains(session)
    }

    /// Fold the next event of the queue (`file_name` is its file's name);
    /// events of other runs are ignored. True when the run's state changed.
    pub fn apply(&mut self, file_name: &str, event: &Event) -> bool {
        if let EventBody::SessionStart(start) = &event.body {
            if event.seq == 0 && start.run == self.run {
                return self.members.insert(event.session.clone());
            }
            return false;
        }
        if !self.members.contains(&event.session) {
            return false;
        }
        match &event.body {
            EventBody::Intent(intent) => {
                self.writes = self.writes.saturating_add(1);
                self.intents.push(FoldedIntent {
                    write: RunWrite {
                        at: CallRef {
                            session: event.session.clone(),
                            op_id: intent.op_id,
                        },
                        intent: intent.clone(),
                        status: WriteStatus::Unknown,
                    },
                    answered: false,
                    resolved: false,
                });
                true
            }
            EventBody::Op(op) => {
                let resolution = op.resolution.as_ref();
                // The intent this op answers: its own, or the one it names.
                let at = match resolution.and_then(|r| r.intent.clone()) {
                    Some(at) => at,
                    None => CallRef {
                        session: event.session.clone(),
                        op_id: op.op_id,
                    },
                };
                let status = match resolution {
                    Some(r) if r.status == WriteStatus::Repeated => WriteStatus::Applied,
                    Some(r) => r.status,
                    None if op.outcome == Outcome::Ok => WriteStatus::Applied,
                    None => WriteStatus::NotApplied,
                };
                let found_later = resolution.is_some_and(|r| r.how == Resolution::FOUND_LATER);
                let Some(folded) = self.intents.iter_mut().rev().find(|f| f.write.at == at) else {
                    return false;
                };
                let was = folded.write.status;
                folded.answered = true;
                folded.resolved = resolution.is_some();
                folded.write.status = status;
                if status == WriteStatus::NotApplied && resolution.is_some() {
                    // Read back and not found: the unit was given back.
                    self.writes = self.writes.saturating_sub(1);
                }
                if found_later && was == WriteStatus::NotApplied {
                    self.writes = self.writes.saturating_add(1);
                }
                true
            }
            EventBody::ScopeGrown(g) if g.reason == ScopeGrown::OPENED => {
                self.prs_opened = self.prs_opened.saturating_add(1);
                true
            }
            EventBody::Done(_) if self.done.is_none() => {
                self.done = Some(file_name.to_string());
                true
            }
            _ => false,
        }
    }

    /// The run's state after the events folded so far.
    pub fn state(&self) -> RunState {
        let mut state = RunState {
            sessions: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
            writes: self.writes,
            prs_opened: self.prs_opened,
            done: self.done.clone(),
            forge_writes: Vec::new(),
            pending: Vec::new(),
        };
        for f in &self.intents {
            let (w, answered, resolved) = (&f.write, f.answered, f.resolved);
            let open_pr = w.intent.op == "open_pr";
            // A pull request whose outcome is unknown stays counted (fail closed).
            if open_pr && (!answered || w.status == WriteStatus::Unknown) {
                state.prs_opened = state.prs_opened.saturating_add(1);
            }
            if !answered {
                state.pending.push(w.clone());
            }
            // A write the forge refused (an error op without a resolution) is
            // not looked for again.
            let refused = answered && w.status == WriteStatus::NotApplied && !resolved;
            if w.intent.write.is_some() && !refused {
                state.forge_writes.push(w.clone());
            }
        }
        state
    }
}

/// Scan `dir` (`new/` and `cur/`) for the sessions of `run`: every event
/// of the queue is read. (A sidecar reads the run's tally instead, see
/// [`crate::tally`]; this is what the tally must always agree with.)
///
/// A session whose `session_start` is missing or unreadable is not counted:
/// the sidecar writes it first, so only a damaged queue lacks one (and
/// `forge-queue verify` reports that).
pub fn scan(dir: &Path, run: Option<&str>) -> Result<RunState, QueueError> {
    let mut fold = RunFold::new(run);
    for_each_file(&QueueDir::new(dir), |file| {
        if let Ok(event) = &file.event {
            fold.apply(&file.file_name, event);
        }
    })?;
    Ok(fold.state())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_events::{intent, start};
    use crate::writer::QueueWriter;
    use forge_protocol::DoneStatus;
    use forge_protocol::event::Done;

    fn done() -> EventBody {
        EventBody::Done(Done {
            status: DoneStatus::Success,
            summary: "x".into(),
            warnings: vec![],
        })
    }

    #[test]
    fn sessions_of_the_same_run_share_writes_and_done() {
        let root = tempfile::tempdir().unwrap();
        let a = QueueWriter::open(root.path()).unwrap();
        a.append(start(Some("r1"))).unwrap();
        a.append(intent(1)).unwrap();
        a.append(intent(1)).unwrap();
        let other = QueueWriter::open(root.path()).unwrap();
        other.append(start(Some("r2"))).unwrap();
        other.append(intent(1)).unwrap();
        other.append(done()).unwrap();
        let b = QueueWriter::open(root.path()).unwrap();
        b.append(start(Some("r1"))).unwrap();
        b.append(intent(1)).unwrap();
        for reason in [ScopeGrown::OPENED, ScopeGrown::AT_START] {
            b.append(EventBody::ScopeGrown(ScopeGrown {
                number: 21,
                branch: "agent/issue-17".into(),
                reason: reason.into(),
            }))
            .unwrap();
        }
        let d = b.append(done()).unwrap();

        let r1 = scan(root.path(), Some("r1")).unwrap();
        assert_eq!(
            r1,
            RunState {
                sessions: 2,
                writes: 3,
                prs_opened: 1,
                done: Some(d.name),
                forge_writes: vec![],
                pending: r1.pending.clone(),
            }
        );
        let r2 = scan(root.path(), Some("r2")).unwrap();
        assert_eq!((r2.sessions, r2.writes), (1, 1));
        assert_eq!(scan(root.path(), Some("r3")).unwrap(), RunState::default());
        assert_eq!(scan(root.path(), None).unwrap(), RunState::default());
    }

    #[test]
    fn acknowledged_events_count_too() {
        let root = tempfile::tempdir().unwrap();
        let a = QueueWriter::open(root.path()).unwrap();
        for body in [start(None), intent(1)] {
            let w = a.append(body).unwrap();
            std::fs::rename(
                root.path().join("new").join(&w.name),
                root.path().join("cur").join(&w.name),
            )
            .unwrap();
        }
        let state = scan(root.path(), None).unwrap();
        assert_eq!((state.sessions, state.writes), (1, 1));
    }
}
