//! The sidecar's half of the queue: appends chained, durable events.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, DurationRound, Utc};
use forge_protocol::event::{EVENT_VERSION, Event, EventBody};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, CheckpointSigner};
use crate::durable;
use crate::error::QueueError;
use crate::names::{EventName, sha256_hex};
use crate::tally::Tally;

const STAMP_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// RFC 3339 UTC with milliseconds, the `ts` of every event.
pub fn rfc3339_ms(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// An event that is durably in `new/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Its file name.
    pub name: String,
    /// Its seq.
    pub seq: u64,
}

/// The content of `<queue>/heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sidecar pid.
    pub pid: u32,
    /// Session id.
    pub session: String,
    /// When it was written, RFC 3339 UTC ms.
    pub ts: String,
}

struct Chain {
    next_seq: u64,
    prev: Option<String>,
}

/// Appends the events of one session to a queue directory.
///
/// Appends are serialized: each event's `seq` and `prev` depend on the one
/// before. Every method blocks on disk I/O; call it off the async runtime.
pub struct QueueWriter {
    root: PathBuf,
    tmp: PathBuf,
    new: PathBuf,
    session: String,
    /// The queue directory's (device, inode) at open: a directory removed
    /// or replaced under the session is not this queue any more.
    identity: (u64, u64),
    chain: Mutex<Chain>,
    /// Signs checkpoints when set; the lock orders checkpoint writes, so a
    /// newer checkpoint is never replaced by an older one.
    signer: Option<Mutex<CheckpointSigner>>,
    /// See [`QueueWriter::take_checkpoint_failure`].
    checkpoint_failure: Mutex<Option<QueueError>>,
    /// The run's tally, kept up to date with every event appended (see
    /// [`crate::tally`]); none for a writer opened without one.
    tally: Option<Mutex<Tally>>,
    /// See [`QueueWriter::take_tally_failure`].
    tally_failure: Mutex<Option<QueueError>>,
}

impl QueueWriter {
    /// Open (creating if needed) the queue at `root` and start a new session.
    ///
    /// Leftover files in `tmp/` (incomplete by definition) are removed. The
    /// session id sorts after every session already in `new/` or `cur/`, even
    /// if the clock went backwards.
    pub fn open(root: &Path) -> Result<QueueWriter, QueueError> {
        prepare(root)?;
        let latest = latest_stamp(&[&root.join("new"), &root.join("cur")])?;
        QueueWriter::start_session(root, latest.as_deref())
    }

    /// A new session in the queue at `root` (already [`prepare`]d) whose id
    /// sorts after `latest` (the newest session stamp known in the queue).
    pub(crate) fn start_session(
        root: &Path,
        latest: Option<&str>,
    ) -> Result<QueueWriter, QueueError> {
        let session = new_session_id(Utc::now(), latest);
        let identity = identity(root)?;
        Ok(QueueWriter {
            root: root.to_path_buf(),
            tmp: root.join("tmp"),
            new: root.join("new"),
            session,
            identity,
            chain: Mutex::new(Chain {
                next_seq: 0,
                prev: None,
            }),
            signer: None,
            checkpoint_failure: Mutex::new(None),
            tally: None,
            tally_failure: Mutex::new(None),
        })
    }

    /// Keep `tally` up to date with every event this writer appends.
    pub(crate) fn with_tally(mut self, tally: Tally) -> QueueWriter {
        self.tally = Some(Mutex::new(tally));
        self
    }

    /// Sign checkpoints with `signer`: at every [`QueueWriter::heartbeat`],
    /// and right after a batch that holds a `done` or `session_end`.
    pub fn with_checkpoints(mut self, signer: CheckpointSigner) -> QueueWriter {
        self.signer = Some(Mutex::new(signer));
        self
    }

    /// `<queue>/checkpoint/<session>`: this session's checkpoint file.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.root.join(checkpoint::DIR).join(&self.session)
    }

    /// The session id.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The queue directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Ok while the queue directory is the one opened; an error saying so
    /// once it was removed or replaced (no retry can bring it back).
    pub fn still_in_place(&self) -> Result<(), QueueError> {
        let now = identity(&self.root).ok();
        if now == Some(self.identity) {
            return Ok(());
        }
        Err(QueueError::io("check", &self.root)(std::io::Error::other(
            "the queue directory was removed or replaced since the session started; \
             restart the sidecar on the queue directory the host watches",
        )))
    }

    /// Durably append one event; returns once it is fsynced in `new/`.
    ///
    /// On error nothing new is visible in `new/` and the chain is unchanged,
    /// unless the file was published but its directory could not be synced;
    /// then the event stands (the next one chains after it) and the error is
    /// still returned, because durability was not confirmed.
    pub fn append(&self, body: EventBody) -> Result<Written, QueueError> {
        self.append_batch(vec![body])
            .pop()
            .expect("one result per event")
    }

    /// Durably append several events in order, with one fsync of `new/` for
    /// all of them (group commit); one result per event, in order.
    ///
    /// Every `Ok` is durable when this returns. An event that fails is not
    /// in `new/` and takes no seq (the next one chains after the last that
    /// succeeded). If the final directory fsync fails, the events stand but
    /// each is reported as an error, because durability was not confirmed.
    pub fn append_batch(&self, bodies: Vec<EventBody>) -> Vec<Result<Written, QueueError>> {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let mut results: Vec<Result<Written, QueueError>> = Vec::with_capacity(bodies.len());
        let milestone = bodies
            .iter()
            .any(|b| matches!(b, EventBody::Done(_) | EventBody::SessionEnd(_)));
        // The events that stand in new/, for the run's tally.
        let mut standing = Vec::new();
        for body in bodies {
            let seq = chain.next_seq;
            let event = Event {
                v: EVENT_VERSION,
                session: self.session.clone(),
                seq,
                ts: rfc3339_ms(Utc::now()),
                prev: chain.prev.clone(),
                body,
            };
            let staged = serde_json::to_vec(&event)
                .map_err(QueueError::from)
                .and_then(|mut bytes| {
                    bytes.push(b'\n');
                    let name = EventName::format(&self.session, seq);
                    durable::stage(&self.tmp, &self.new, &name, &bytes)?;
                    Ok((name, bytes))
                });
            results.push(staged.map(|(name, bytes)| {
                let hash = sha256_hex(&bytes);
                if self.tally.is_some() {
                    standing.push((name.clone(), hash.clone(), event));
                }
                chain.next_seq = seq + 1;
                chain.prev = Some(hash);
                Written { name, seq }
            }));
        }
        let mut synced = true;
        if results.iter().any(Result::is_ok)
            && let Err(e) = durable::sync_dir(&self.new)
        {
            synced = false;
            let message = e.to_string();
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Err(QueueError::io("fsync", &self.new)(std::io::Error::other(
                    message.clone(),
                )));
            }
        }
        // Folded in chain order (the chain lock is still held), once new/
        // was synced: so the tally never names an event that a crash could
        // take back. Events whose sync failed stand too (the chain goes on
        // after them), so they are folded, and saved with the next batch.
        let tally = self.tally.as_ref().map(|t| {
            let mut tally = lock(t);
            for (name, hash, event) in &standing {
                tally.fold(name, hash, event);
            }
            tally
        });
        drop(chain);
        // The tally is saved only once the events it names are durable, and
        // before any caller is answered. A tally left behind (a crash now, a
        // failed save) is caught up at the next start from the events after
        // its tail, so a failure here is kept for the caller to log and
        // costs nothing but a longer start.
        if let Some(mut tally) = tally
            && synced
            && tally.due(milestone)
        {
            let outcome = tally.save().err();
            drop(tally);
            if outcome.is_some() {
                *lock(&self.tally_failure) = outcome;
            }
        }
        if milestone && self.signer.is_some() {
            // The done (or end) stands whether or not this works: failing it
            // would invite a second one. The host acts on it once a
            // checkpoint covers it, which every heartbeat tries again; the
            // failure is kept for the caller to log.
            let outcome = self.publish_checkpoint().err();
            *self
                .checkpoint_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = outcome;
        }
        results
    }

    /// Why the run's tally could not be saved after the last batch that
    /// was due to save it, if it could not (taken: said once). The events
    /// stand; the next start reads the events after the tally's tail.
    pub fn take_tally_failure(&self) -> Option<QueueError> {
        lock(&self.tally_failure).take()
    }

    /// Why the checkpoint after the last batch holding a `done` or
    /// `session_end` could not be published, if it could not (taken: the
    /// next call says nothing of it again).
    pub fn take_checkpoint_failure(&self) -> Option<QueueError> {
        self.checkpoint_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Sign the chain as it stands and atomically replace this session's
    /// checkpoint file; nothing without a signer or before the first event.
    pub fn publish_checkpoint(&self) -> Result<(), QueueError> {
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        let signer = signer.lock().unwrap_or_else(|p| p.into_inner());
        let (events, last) = {
            let chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
            match &chain.prev {
                Some(last) => (chain.next_seq, last.clone()),
                None => return Ok(()),
            }
        };
        let note = Checkpoint {
            repository: signer.repository.clone(),
            issue: signer.issue,
            run: signer.run.clone(),
            session: self.session.clone(),
            events,
            last,
            time: rfc3339_ms(Utc::now()),
        }
        .sign(&signer.key)
        .map_err(|e| {
            QueueError::io("sign checkpoint", self.checkpoint_path())(std::io::Error::other(e))
        })?;
        let dir = self.root.join(checkpoint::DIR);
        fs::create_dir_all(&dir).map_err(QueueError::io("create directory", &dir))?;
        durable::replace(
            &self.tmp.join(format!("checkpoint-{}", self.session)),
            &self.checkpoint_path(),
            note.as_bytes(),
        )
    }

    /// Atomically replace `<queue>/heartbeat`; with a signer, first publish
    /// a fresh checkpoint, so the host holds a signed view of the chain at
    /// most one heartbeat old.
    pub fn heartbeat(&self) -> Result<(), QueueError> {
        self.publish_checkpoint()?;
        // Events since the tally's last save (reads, mostly) move its tail,
        // so a start reads at most one interval's worth after it.
        if let Some(tally) = &self.tally {
            let mut tally = lock(tally);
            if tally.due(true)
                && let Err(e) = tally.save()
            {
                // Not the heartbeat's failure: the events stand, and the
                // next start reads those after the tally's tail.
                drop(tally);
                *lock(&self.tally_failure) = Some(e);
            }
        }
        let beat = Heartbeat {
            pid: std::process::id(),
            session: self.session.clone(),
            ts: rfc3339_ms(Utc::now()),
        };
        let mut bytes = serde_json::to_vec(&beat)?;
        bytes.push(b'\n');
        durable::replace(
            &self.tmp.join("heartbeat"),
            &self.root.join("heartbeat"),
            &bytes,
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Create the queue's directories at `root` if needed and remove leftover
/// files in `tmp/` (incomplete by definition).
pub(crate) fn prepare(root: &Path) -> Result<(), QueueError> {
    let (tmp, new, cur) = (root.join("tmp"), root.join("new"), root.join("cur"));
    for dir in [root, &tmp, &new, &cur] {
        fs::create_dir_all(dir).map_err(QueueError::io("create directory", dir))?;
    }
    for entry in fs::read_dir(&tmp).map_err(QueueError::io("list", &tmp))? {
        let path = entry.map_err(QueueError::io("list", &tmp))?.path();
        fs::remove_file(&path).map_err(QueueError::io("remove stale staging file", &path))?;
    }
    Ok(())
}

/// The (device, inode) of `dir`.
fn identity(dir: &Path) -> Result<(u64, u64), QueueError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir).map_err(QueueError::io("stat", dir))?;
    Ok((meta.dev(), meta.ino()))
}

/// The largest session timestamp among the event files in `dirs`.
pub(crate) fn latest_stamp(dirs: &[&Path]) -> Result<Option<String>, QueueError> {
    let mut latest: Option<String> = None;
    for dir in dirs {
        for entry in fs::read_dir(dir).map_err(QueueError::io("list", *dir))? {
            let entry = entry.map_err(QueueError::io("list", *dir))?;
            if let Some(name) = entry.file_name().to_str().and_then(EventName::parse) {
                let stamp = name.stamp();
                if latest.as_deref().is_none_or(|l| stamp > l) {
                    latest = Some(stamp.to_string());
                }
            }
        }
    }
    Ok(latest)
}

/// Parse `YYYYMMDDTHHMMSS.sssZ` (chrono's `%Y` is greedy, so split by hand).
pub fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    let p = |r: std::ops::Range<usize>| s.get(r);
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}.{}Z",
        p(0..4)?,
        p(4..6)?,
        p(6..8)?,
        p(9..11)?,
        p(11..13)?,
        p(13..15)?,
        p(16..19)?
    );
    DateTime::parse_from_rfc3339(&rfc)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A session id for a session starting at `now` that sorts after `latest`.
fn new_session_id(now: DateTime<Utc>, latest: Option<&str>) -> String {
    // Compare at the resolution of the id: milliseconds.
    let mut start = now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now);
    if let Some(prev) = latest.and_then(parse_stamp).filter(|p| start <= *p) {
        start = prev + Duration::milliseconds(1);
    }
    let mut rnd = [0u8; 3];
    // A failure of the OS random source leaves zeros: the time part already
    // orders sessions, the random part only separates two started in one ms.
    let _ = getrandom::fill(&mut rnd);
    format!(
        "{}-{:02x}{:02x}{:02x}",
        start.format(STAMP_FORMAT),
        rnd[0],
        rnd[1],
        rnd[2]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_protocol::DoneStatus;
    use forge_protocol::event::Done;

    fn done(summary: &str) -> EventBody {
        EventBody::Done(Done {
            status: DoneStatus::Success,
            summary: summary.into(),
            warnings: vec![],
        })
    }

    #[test]
    fn appends_a_chain() {
        let root = tempfile::tempdir().unwrap();
        let w = QueueWriter::open(root.path()).unwrap();
        let a = w.append(done("a")).unwrap();
        let b = w.append(done("b")).unwrap();
        assert_eq!((a.seq, b.seq), (0, 1));
        let first = fs::read(root.path().join("new").join(&a.name)).unwrap();
        let second: Event =
            serde_json::from_slice(&fs::read(root.path().join("new").join(&b.name)).unwrap())
                .unwrap();
        let first_ev: Event = serde_json::from_slice(&first).unwrap();
        assert_eq!(first_ev.prev, None);
        assert_eq!(second.prev.as_deref(), Some(sha256_hex(&first).as_str()));
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn new_session_sorts_after_existing_even_if_clock_is_behind() {
        let future = "20991231T235959.999Z";
        let id = new_session_id(Utc::now(), Some(future));
        assert!(id.as_str() > future, "{id}");
        assert!(id.starts_with("21000101T000000.000Z-"), "{id}");
    }

    #[test]
    fn new_session_in_the_same_millisecond_is_bumped() {
        let now = Utc::now();
        let stamp = now.format(STAMP_FORMAT).to_string();
        assert_eq!(
            parse_stamp(&stamp).map(|t| t.format(STAMP_FORMAT).to_string()),
            Some(stamp.clone())
        );
        let id = new_session_id(now, Some(&stamp));
        assert!(id[..20] > stamp[..], "{id} vs {stamp}");
    }

    #[test]
    fn reopen_starts_a_later_session_and_cleans_tmp() {
        let root = tempfile::tempdir().unwrap();
        let first = QueueWriter::open(root.path()).unwrap();
        let written = first.append(done("a")).unwrap();
        fs::write(root.path().join("tmp").join("partial.json"), b"{\"v\":").unwrap();
        let second = QueueWriter::open(root.path()).unwrap();
        assert!(second.session() > first.session());
        let again = second.append(done("b")).unwrap();
        assert!(again.name > written.name);
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn failed_append_keeps_the_chain() {
        let root = tempfile::tempdir().unwrap();
        let w = QueueWriter::open(root.path()).unwrap();
        w.append(done("a")).unwrap();
        let new = root.path().join("new");
        fs::rename(&new, root.path().join("moved")).unwrap();
        assert!(w.append(done("lost")).is_err());
        fs::rename(root.path().join("moved"), &new).unwrap();
        let c = w.append(done("c")).unwrap();
        assert_eq!(c.seq, 1, "a failed append must not consume a seq");
    }

    #[test]
    fn checkpoints_follow_done_and_heartbeats() {
        let root = tempfile::tempdir().unwrap();
        let key = crate::note::SigningKey::generate("test").unwrap();
        let w = QueueWriter::open(root.path())
            .unwrap()
            .with_checkpoints(CheckpointSigner {
                key: key.clone(),
                repository: "acme/widgets".into(),
                issue: 17,
                run: None,
            });
        w.heartbeat().unwrap();
        assert!(!w.checkpoint_path().exists(), "nothing to sign yet");
        let open = |w: &QueueWriter| {
            Checkpoint::open(&fs::read(w.checkpoint_path()).unwrap(), &key.verifier()).unwrap()
        };
        let first = w.append(done("a")).unwrap();
        let c = open(&w);
        let bytes = fs::read(root.path().join("new").join(&first.name)).unwrap();
        assert_eq!(
            (c.events, c.last.as_str()),
            (1, sha256_hex(&bytes).as_str())
        );
        assert_eq!((c.repository.as_str(), c.issue), ("acme/widgets", 17));
        let op = EventBody::Intent(forge_protocol::event::Intent {
            op_id: 1,
            op: "post_comment".into(),
            target: Some(17),
            write: None,
        });
        w.append(op).unwrap();
        assert_eq!(open(&w).events, 1, "other kinds wait for the heartbeat");
        w.heartbeat().unwrap();
        assert_eq!(open(&w).events, 2);
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn heartbeat_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let w = QueueWriter::open(root.path()).unwrap();
        w.heartbeat().unwrap();
        w.heartbeat().unwrap();
        let beat: Heartbeat =
            serde_json::from_slice(&fs::read(root.path().join("heartbeat")).unwrap()).unwrap();
        assert_eq!(beat.session, w.session());
        assert_eq!(beat.pid, std::process::id());
    }
}
