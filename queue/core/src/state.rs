//! The host's own record of what it saw in a queue (`--state DIR`): the
//! newest verified checkpoint of each session and the watchdog's verdicts.
//!
//! The queue directory is writable by others; this directory is the host's
//! alone. A checkpoint kept here still counts after someone replaces the
//! queue's copy with an older one, cuts the events it covers, or removes the
//! whole session; a watchdog verdict kept here marks the run incomplete in
//! `audit` and `export`.
//!
//! ```text
//! <state>/<id>/queue                       the queue directory's canonical path
//! <state>/<id>/<session>.checkpoint        the newest verified checkpoint note
//! <state>/<id>/<session>.watchdog.json     the watchdog's verdict, if it fired
//! ```
//!
//! `<id>` is the first 16 hex digits of the SHA-256 of the queue
//! directory's canonical path, so one state directory serves many queues.
//! Every file is replaced atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::QueueError;
use crate::names::{is_session_id, sha256_hex};

const CHECKPOINT_SUFFIX: &str = ".checkpoint";
const WATCHDOG_SUFFIX: &str = ".watchdog.json";

/// The watchdog fired for a session: it was alive but wrote no event for
/// the configured time, and never reported done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WatchdogVerdict {
    /// The session.
    #[schemars(pattern(crate::names::SESSION_PATTERN))]
    pub session: String,
    /// When the watchdog fired (the host's clock), RFC 3339 UTC ms.
    #[schemars(extend("format" = "date-time"))]
    pub fired_at: String,
    /// The `ts` of the session's last event the host had seen, if any.
    pub last_event_ts: Option<String>,
    /// How long the session had been silent, ms.
    pub idle_ms: u64,
    /// The watchdog's limit, ms.
    pub limit_ms: u64,
}

/// The host's state for one queue directory.
#[derive(Debug, Clone)]
pub struct HostState {
    dir: PathBuf,
    queue: PathBuf,
}

impl HostState {
    /// The state kept under `state_root` for the queue at `queue` (which must
    /// exist). Nothing is created until something is kept.
    pub fn open(state_root: &Path, queue: &Path) -> Result<HostState, QueueError> {
        let queue =
            fs::canonicalize(queue).map_err(QueueError::io("open queue directory", queue))?;
        let id = sha256_hex(queue.as_os_str().as_encoded_bytes());
        Ok(HostState {
            dir: state_root.join(&id[..16]),
            queue,
        })
    }

    /// Where this queue's state lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every kept checkpoint note, by session.
    pub fn checkpoints(&self) -> Result<BTreeMap<String, Vec<u8>>, QueueError> {
        self.read_all(CHECKPOINT_SUFFIX, |_, bytes| Ok(bytes))
    }

    /// Keep `note` as the newest verified checkpoint of `session` (the caller
    /// has verified it and checked that it is newer).
    pub fn keep_checkpoint(&self, session: &str, note: &[u8]) -> Result<(), QueueError> {
        self.write(session, CHECKPOINT_SUFFIX, note)
    }

    /// Every watchdog verdict, by session.
    pub fn watchdogs(&self) -> Result<BTreeMap<String, WatchdogVerdict>, QueueError> {
        self.read_all(WATCHDOG_SUFFIX, |path, bytes| {
            serde_json::from_slice(&bytes).map_err(QueueError::parse(path))
        })
    }

    /// Record that the watchdog fired.
    pub fn record_watchdog(&self, verdict: &WatchdogVerdict) -> Result<(), QueueError> {
        let mut bytes = serde_json::to_vec_pretty(verdict)?;
        bytes.push(b'\n');
        self.write(&verdict.session, WATCHDOG_SUFFIX, &bytes)
    }

    fn write(&self, session: &str, suffix: &str, bytes: &[u8]) -> Result<(), QueueError> {
        if !is_session_id(session) {
            return Err(QueueError::io("keep state for", &self.dir)(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{session:?} is not a session id"),
            )));
        }
        fs::create_dir_all(&self.dir).map_err(QueueError::io("create directory", &self.dir))?;
        let queue_file = self.dir.join("queue");
        if !queue_file.exists() {
            let mut path = self.queue.as_os_str().as_encoded_bytes().to_vec();
            path.push(b'\n');
            durable::replace(&self.dir.join(".tmp-queue"), &queue_file, &path)?;
        }
        let name = format!("{session}{suffix}");
        durable::replace(
            &self.dir.join(format!(".tmp-{name}")),
            &self.dir.join(&name),
            bytes,
        )?;
        durable::sync_dir(&self.dir)
    }

    fn read_all<T>(
        &self,
        suffix: &str,
        parse: impl Fn(&Path, Vec<u8>) -> Result<T, QueueError>,
    ) -> Result<BTreeMap<String, T>, QueueError> {
        let mut out = BTreeMap::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(QueueError::io("list", &self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(QueueError::io("list", &self.dir))?;
            let name = entry.file_name();
            let Some(session) = name
                .to_str()
                .and_then(|n| n.strip_suffix(suffix))
                .filter(|s| is_session_id(s))
            else {
                continue;
            };
            let path = entry.path();
            let bytes = fs::read(&path).map_err(QueueError::io("read", &path))?;
            out.insert(session.to_string(), parse(&path, bytes)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "20261125T120000.000Z-0a1b2c";

    #[test]
    fn keeps_per_queue_and_replaces() {
        let (state, qa, qb) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let a = HostState::open(state.path(), qa.path()).unwrap();
        let b = HostState::open(state.path(), qb.path()).unwrap();
        assert!(a.checkpoints().unwrap().is_empty());
        a.keep_checkpoint(S, b"one").unwrap();
        a.keep_checkpoint(S, b"two").unwrap();
        assert_eq!(a.checkpoints().unwrap()[S], b"two");
        assert!(b.checkpoints().unwrap().is_empty(), "another queue's state");
        let verdict = WatchdogVerdict {
            session: S.into(),
            fired_at: "2026-11-25T12:30:00.000Z".into(),
            last_event_ts: None,
            idle_ms: 1,
            limit_ms: 1,
        };
        a.record_watchdog(&verdict).unwrap();
        assert_eq!(a.watchdogs().unwrap()[S], verdict);
        assert!(a.keep_checkpoint("../x", b"x").is_err());
        let again = HostState::open(state.path(), &qa.path().join(".")).unwrap();
        assert_eq!(again.dir(), a.dir(), "the same queue by another path");
    }
}
