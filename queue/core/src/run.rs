//! A run: the sessions of one host work unit in one queue directory.
//!
//! The host names the run it starts a sidecar for (`FORGE_RUN_ID`, recorded
//! as `run` in `session_start`; absent when none was given). Every session
//! of a queue directory whose `session_start` has the same `run` (both
//! absent counts as the same) belongs to the same run, and the run, not the
//! session, owns the write budget and the done signal: a sidecar restarted
//! within a run continues from what its earlier sessions spent.
//! [`scan`] derives that from the queue's own events: each `intent` is one
//! write spent (it is written only once a write is authorized, before it is
//! sent), and the first `done` is the run's done signal.

use std::collections::BTreeSet;
use std::path::Path;

use forge_protocol::event::{EventBody, ScopeGrown};

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
}

/// Scan `dir` (`new/` and `cur/`) for the sessions of `run`.
///
/// A session whose `session_start` is missing or unreadable is not counted:
/// the sidecar writes it first, so only a damaged queue lacks one (and
/// `forge-queue verify` reports that).
pub fn scan(dir: &Path, run: Option<&str>) -> Result<RunState, QueueError> {
    let mut state = RunState::default();
    let mut members: BTreeSet<String> = BTreeSet::new();
    for_each_file(&QueueDir::new(dir), |file| {
        let Ok(event) = &file.event else { return };
        if let EventBody::SessionStart(start) = &event.body {
            if event.seq == 0 && start.run.as_deref() == run {
                members.insert(event.session.clone());
                state.sessions += 1;
            }
            return;
        }
        if !members.contains(&event.session) {
            return;
        }
        match &event.body {
            EventBody::Intent(_) => state.writes = state.writes.saturating_add(1),
            EventBody::ScopeGrown(g) if g.reason == ScopeGrown::OPENED => {
                state.prs_opened = state.prs_opened.saturating_add(1);
            }
            EventBody::Done(_) if state.done.is_none() => {
                state.done = Some(file.file_name.clone());
            }
            _ => {}
        }
    })?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::QueueWriter;
    use forge_protocol::DoneStatus;
    use forge_protocol::event::{Done, Intent, Limits, SessionStart};

    fn start(run: Option<&str>) -> EventBody {
        EventBody::SessionStart(SessionStart {
            version: "0".into(),
            forge: "memory".into(),
            api_base: None,
            owner: "acme".into(),
            repo: "widgets".into(),
            issue: 17,
            writable: vec![17],
            limits: Limits {
                max_request_bytes: 1,
                max_body_bytes: 1,
                max_writes: 1,
                http_timeout_secs: 1,
                heartbeat_secs: 1,
            },
            text: Default::default(),
            pid: 1,
            run: run.map(str::to_string),
        })
    }

    fn intent() -> EventBody {
        EventBody::Intent(Intent {
            op_id: 1,
            op: "post_comment".into(),
            target: Some(17),
        })
    }

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
        a.append(intent()).unwrap();
        a.append(intent()).unwrap();
        let other = QueueWriter::open(root.path()).unwrap();
        other.append(start(Some("r2"))).unwrap();
        other.append(intent()).unwrap();
        other.append(done()).unwrap();
        let b = QueueWriter::open(root.path()).unwrap();
        b.append(start(Some("r1"))).unwrap();
        b.append(intent()).unwrap();
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
                done: Some(d.name)
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
        for body in [start(None), intent()] {
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
