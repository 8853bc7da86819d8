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
//!
//! So that start-up does not grow with history and a host may prune `cur/`,
//! the writer also keeps the run's *tally* ([`Tally`]) in
//! `<queue>/run/<key>`: the same counts, durably replaced *before* each
//! event that changes them is written (`session_start`, `intent`, an
//! `opened` `scope_grown`, the first `done`), with the name and SHA-256 of
//! that event. [`load`] reads the tally instead of the events and checks it
//! against the chain: the event it names must, if it is still in the queue,
//! have that hash. A crash between the tally and its event leaves the run
//! counted one write too many, never one too few. Without a tally (a queue
//! written before tallies) [`load`] falls back to [`scan`].

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use forge_protocol::event::{EventBody, ScopeGrown};
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::QueueError;
use crate::names::sha256_hex;
use crate::reader::{QueueDir, for_each_file};

/// `<queue>/run/`: the tallies of the runs of a queue.
pub const DIR: &str = "run";

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

/// What `<queue>/run/<key>` holds: a run's counts, including the session
/// that wrote it, and the event they were last changed for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// The run id (`None`: sessions started without one).
    pub run: Option<String>,
    /// Sessions of the run (their `session_start` events).
    pub sessions: u32,
    /// Forge writes spent (`intent` events).
    pub writes: u32,
    /// Pull requests opened.
    pub prs_opened: u32,
    /// The file name of the run's first `done` event.
    pub done: Option<String>,
    /// The file name of the event the counts were last changed for.
    pub last: Option<String>,
    /// Its SHA-256 (hex).
    pub last_sha256: Option<String>,
}

impl Tally {
    /// The tally of `run` continuing from what its earlier sessions spent.
    pub fn continuing(run: Option<&str>, earlier: &RunState) -> Tally {
        Tally {
            run: run.map(str::to_string),
            sessions: earlier.sessions,
            writes: earlier.writes,
            prs_opened: earlier.prs_opened,
            done: earlier.done.clone(),
            last: None,
            last_sha256: None,
        }
    }

    /// Count `body`, about to be written as `name` with `bytes`; whether
    /// the counts changed (then the tally must be stored before the event).
    pub fn count(&mut self, body: &EventBody, seq: u64, name: &str, bytes: &[u8]) -> bool {
        match body {
            EventBody::SessionStart(_) if seq == 0 => {
                self.sessions = self.sessions.saturating_add(1)
            }
            EventBody::Intent(_) => self.writes = self.writes.saturating_add(1),
            EventBody::ScopeGrown(g) if g.reason == ScopeGrown::OPENED => {
                self.prs_opened = self.prs_opened.saturating_add(1);
            }
            EventBody::Done(_) if self.done.is_none() => self.done = Some(name.to_string()),
            _ => return false,
        }
        self.last = Some(name.to_string());
        self.last_sha256 = Some(sha256_hex(bytes));
        true
    }

    /// Durably replace the tally file of the run under `root`.
    pub fn store(&self, root: &Path) -> Result<(), QueueError> {
        let dir = root.join(DIR);
        fs::create_dir_all(&dir).map_err(QueueError::io("create directory", &dir))?;
        let path = tally_path(root, self.run.as_deref());
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let bytes = serde_json::to_vec(self)?;
        durable::replace(Path::new(&tmp), &path, &bytes)?;
        durable::sync_dir(&dir)
    }
}

/// `<queue>/run/<key>`: where the tally of `run` is kept (the key is a
/// hash of the run id, so any id makes a safe file name).
pub fn tally_path(root: &Path, run: Option<&str>) -> PathBuf {
    let key = match run {
        Some(id) => sha256_hex(format!("run:{id}").as_bytes()),
        None => sha256_hex(b"no run"),
    };
    root.join(DIR).join(&key[..32])
}

/// What the earlier sessions of `run` spent, from its tally (checked
/// against the chain) or, without one, from the events ([`scan`]).
///
/// Reads one small file and at most one event, however long the history.
/// A tally whose last event is in the queue with another hash is an error:
/// the tally or the queue was changed.
pub fn load(root: &Path, run: Option<&str>) -> Result<RunState, QueueError> {
    let path = tally_path(root, run);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return scan(root, run),
        Err(e) => return Err(QueueError::io("read", &path)(e)),
    };
    let damaged = |why: String| {
        QueueError::io("check the run tally", &path)(io::Error::other(format!(
            "{why}; the tally or the queue was changed: compare with `forge-queue verify`, \
             and remove the tally to recount the run from its events (pruned events are then not counted)"
        )))
    };
    let tally: Tally =
        serde_json::from_slice(&bytes).map_err(|e| damaged(format!("it does not parse ({e})")))?;
    if tally.run.as_deref() != run {
        return Err(damaged(format!("it belongs to run {:?}", tally.run)));
    }
    if let (Some(last), Some(sha)) = (&tally.last, &tally.last_sha256) {
        for place in ["new", "cur"] {
            match fs::read(root.join(place).join(last)) {
                Ok(event) if sha256_hex(&event) == *sha => break,
                Ok(_) => return Err(damaged(format!("event {last} has another hash"))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(QueueError::io("read", root.join(place).join(last))(e)),
            }
        }
    }
    Ok(RunState {
        sessions: tally.sessions,
        writes: tally.writes,
        prs_opened: tally.prs_opened,
        done: tally.done,
    })
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

    #[test]
    fn the_tally_survives_pruning_and_is_checked_against_the_chain() {
        let root = tempfile::tempdir().unwrap();
        let a = QueueWriter::open(root.path())
            .unwrap()
            .with_tally(Tally::continuing(Some("r1"), &RunState::default()));
        a.append(start(Some("r1"))).unwrap();
        a.append(intent()).unwrap();
        let d = a.append(done()).unwrap();
        drop(a);
        let earlier = load(root.path(), Some("r1")).unwrap();
        assert_eq!(earlier, scan(root.path(), Some("r1")).unwrap());
        let b = QueueWriter::open(root.path())
            .unwrap()
            .with_tally(Tally::continuing(Some("r1"), &earlier));
        b.append(start(Some("r1"))).unwrap();
        let last = b.append(intent()).unwrap();
        drop(b);
        let expected = RunState {
            sessions: 2,
            writes: 2,
            prs_opened: 0,
            done: Some(d.name),
        };
        assert_eq!(load(root.path(), Some("r1")).unwrap(), expected);

        // Changing the event the tally names is caught.
        let path = root.path().join("new").join(&last.name);
        let original = std::fs::read(&path).unwrap();
        let mut changed = original.clone();
        changed.insert(changed.len() - 2, b' ');
        std::fs::write(&path, &changed).unwrap();
        let err = load(root.path(), Some("r1")).unwrap_err().to_string();
        assert!(err.contains("another hash"), "{err}");
        std::fs::write(&path, &original).unwrap();

        // A host that prunes every event keeps the run's counts.
        for dir in ["new", "cur"] {
            for entry in std::fs::read_dir(root.path().join(dir)).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
        }
        assert_eq!(scan(root.path(), Some("r1")).unwrap(), RunState::default());
        assert_eq!(load(root.path(), Some("r1")).unwrap(), expected);
        // Other runs have their own tallies.
        assert_eq!(load(root.path(), Some("r2")).unwrap(), RunState::default());
    }

    #[test]
    fn a_tally_stored_for_an_event_that_failed_counts_it() {
        let root = tempfile::tempdir().unwrap();
        let w = QueueWriter::open(root.path())
            .unwrap()
            .with_tally(Tally::continuing(None, &RunState::default()));
        w.append(start(None)).unwrap();
        let new = root.path().join("new");
        std::fs::rename(&new, root.path().join("moved")).unwrap();
        w.append(intent()).unwrap_err();
        std::fs::rename(root.path().join("moved"), &new).unwrap();
        let state = load(root.path(), None).unwrap();
        assert_eq!((state.sessions, state.writes), (1, 1), "never undercounted");
    }
}
