//! One watched queue directory: delivering its `new/` in order and acking.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::ack_sync::AckSyncer;
use super::delivery::{
    CheckpointFile, CheckpointNotice, Delivery, EventDelivery, InvalidFile, LivenessNotice,
    WatchdogNotice,
};
use super::liveness::{Change, Liveness};
use super::{WatchError, WatchOptions};
use crate::checkpoint::{self, Checkpoint};
use crate::error::QueueError;
use crate::names::{EventName, is_session_id, sha256_hex};
use crate::note::VerifierKey;
use crate::reader::{self, ListedEvent, Place, QueueDir};

/// How far in the past `new/`'s modification time must be for a listing
/// to vouch for it (far beyond any timestamp granularity).
const MTIME_MARGIN: Duration = Duration::from_secs(1);

/// How a drain of one directory ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Everything listed was handled.
    Done,
    /// Stopped early (batch limit, stop, a file appeared behind the listing,
    /// or worked from an old listing): call again.
    More,
}

pub(crate) struct DirWatch {
    /// As given by the caller; used in deliveries.
    pub(crate) display: PathBuf,
    pub(crate) queue: QueueDir,
    /// Invalid files already reported (left in `new/`).
    reported: HashSet<String>,
    /// Files delivered by this run when acking is off (they stay in `new/`).
    delivered: HashSet<String>,
    /// Last seq delivered by this run, per session: the order check.
    last_seq: HashMap<String, u64>,
    /// The rest of the last listing of `new/`, in order.
    pending: VecDeque<ListedEvent>,
    /// The name taken from `pending` last (delivered or skipped).
    previous_listed: Option<EventName>,
    /// `new/`'s modification time at the last listing, kept only when it
    /// was old enough then for the listing to vouch for it.
    listed_mtime: Option<SystemTime>,
    pub(crate) liveness: Liveness,
    /// When liveness must next be checked; `None`: on the next event only.
    pub(crate) liveness_due: Option<Instant>,
    /// Reads `checkpoint/` when a key is given.
    checkpoints: Option<CheckpointWatch>,
}

/// What the watcher knows of a directory's `checkpoint/`.
struct CheckpointWatch {
    /// None: files are delivered unverified.
    key: Option<VerifierKey>,
    /// Per file: the identity of the version last examined (inode, mtime,
    /// length): a replaced file is a new inode.
    examined: HashMap<String, (u64, SystemTime, u64)>,
    /// `checkpoint/`'s modification time at the last listing, kept only
    /// when it was old enough then for the listing to vouch for it.
    listed_mtime: Option<SystemTime>,
}

impl DirWatch {
    pub(crate) fn new(
        display: PathBuf,
        queue: QueueDir,
        options: &WatchOptions,
        now: DateTime<Utc>,
    ) -> Result<DirWatch, QueueError> {
        let mut liveness = Liveness::new(
            now,
            options.default_heartbeat_secs,
            options.stale_intervals,
            options.watchdog,
        );
        learn_latest_session(&queue, &mut liveness, now)?;
        Ok(DirWatch {
            display,
            queue,
            reported: HashSet::new(),
            delivered: HashSet::new(),
            last_seq: HashMap::new(),
            pending: VecDeque::new(),
            previous_listed: None,
            listed_mtime: None,
            liveness,
            liveness_due: Some(Instant::now()),
            checkpoints: (options.checkpoint_key.is_some() || options.checkpoint_files).then(
                || CheckpointWatch {
                    key: options.checkpoint_key.clone(),
                    examined: HashMap::new(),
                    listed_mtime: None,
                },
            ),
        })
    }

    /// Deliver what `new/` holds, in order, acking each file after the
    /// handler succeeds. At most `options.batch` events per call, so one
    /// busy directory does not starve the others.
    ///
    /// A listing is worked through across calls (`pending`) rather than
    /// redone per batch: listing a 100,000-file `new/` for every batch would
    /// make a backlog quadratic. New files sort after the listed ones, so
    /// finishing the old listing first keeps the order; once a call has
    /// worked from an old listing it returns `More`, so a fresh listing
    /// follows and nothing announced meanwhile is missed.
    pub(crate) fn drain<E>(
        &mut self,
        options: &WatchOptions,
        stop: &AtomicBool,
        syncer: &AckSyncer,
        handler: &mut impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<Drained, WatchError<E>> {
        if let Some(e) = syncer.take_failure() {
            return Err(e.into());
        }
        let fresh = self.pending.is_empty();
        if fresh {
            self.list(handler)?;
        }
        let mut acked = 0usize;
        let result = self.deliver_pending(options, stop, handler, &mut acked);
        if acked > 0 {
            // One fsync of cur/ per batch, on the syncer's thread.
            syncer.request(self.queue.place_dir(Place::Cur))?;
        }
        match result? {
            Drained::Done if fresh => {
                // Events first: the sidecar publishes a checkpoint after the
                // events it covers, so those are delivered by now.
                self.deliver_checkpoints(handler)?;
                Ok(Drained::Done)
            }
            _ => Ok(Drained::More),
        }
    }

    /// Read the checkpoint files that changed since last time; deliver each
    /// as verified or refused.
    fn deliver_checkpoints<E>(
        &mut self,
        handler: &mut impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<(), WatchError<E>> {
        let dir_path = self.queue.root().join(checkpoint::DIR);
        let display = self.display.clone();
        let Some(cw) = &mut self.checkpoints else {
            return Ok(());
        };
        cw.listed_mtime = fs::metadata(&dir_path)
            .and_then(|m| m.modified())
            .ok()
            .filter(|mtime| {
                SystemTime::now()
                    .duration_since(*mtime)
                    .is_ok_and(|age| age >= MTIME_MARGIN)
            });
        let entries = match fs::read_dir(&dir_path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(QueueError::io("list", &dir_path)(e).into()),
        };
        let mut changed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(QueueError::io("list", &dir_path))?;
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let identity = {
                use std::os::unix::fs::MetadataExt;
                (
                    meta.ino(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                )
            };
            if cw.examined.get(&name) != Some(&identity) {
                cw.examined.insert(name.clone(), identity);
                changed.push(name);
            }
        }
        // Oldest session first, like events.
        changed.sort();
        for name in changed {
            let path = dir_path.join(&name);
            let bad = |reason: String| {
                Delivery::BadCheckpoint(InvalidFile {
                    dir: display.clone(),
                    file_name: format!("{}/{name}", checkpoint::DIR),
                    reason,
                })
            };
            let delivery = if !is_session_id(&name) {
                bad("not named after a session".into())
            } else {
                let note = match fs::read(&path) {
                    Ok(note) => note,
                    // Replaced or removed since the listing: the next
                    // listing sees the new version.
                    Err(_) => {
                        cw.examined.remove(&name);
                        continue;
                    }
                };
                match &cw.key {
                    None => Delivery::CheckpointFile(CheckpointFile {
                        dir: display.clone(),
                        session: name.clone(),
                        note,
                    }),
                    Some(key) => match Checkpoint::open(&note, key) {
                        Ok(c) if c.session == name => Delivery::Checkpoint(CheckpointNotice {
                            dir: display.clone(),
                            checkpoint: c,
                            note,
                            key: key.label(),
                        }),
                        Ok(c) => bad(format!("it is the checkpoint of session {}", c.session)),
                        Err(e) => bad(e.to_string()),
                    },
                }
            };
            handler(&delivery).map_err(WatchError::Handler)?;
        }
        Ok(())
    }

    /// List `new/` into `pending`; report new strays.
    fn list<E>(
        &mut self,
        handler: &mut impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<(), WatchError<E>> {
        self.listed_mtime = self.new_mtime().filter(|mtime| {
            // A change in the same clock tick as `mtime`, after this
            // listing, would leave the time unchanged: trust only a time
            // comfortably in the past.
            SystemTime::now()
                .duration_since(*mtime)
                .is_ok_and(|age| age >= MTIME_MARGIN)
        });
        let listing = reader::list_place(&self.queue, Place::New)?;
        if !self.reported.is_empty() || !self.delivered.is_empty() {
            // Forget reported and delivered files that are gone (a host
            // that acks them itself moved them), so the sets stay small.
            let present: HashSet<&str> = (listing.events.iter().map(|e| e.file_name.as_str()))
                .chain(listing.strays.iter().map(|s| s.file_name.as_str()))
                .collect();
            self.reported.retain(|name| present.contains(name.as_str()));
            self.delivered
                .retain(|name| present.contains(name.as_str()));
        }
        for stray in &listing.strays {
            if self.reported.insert(stray.file_name.clone()) {
                handler(&self.invalid(&stray.file_name, "not an event file name".into()))
                    .map_err(WatchError::Handler)?;
            }
        }
        self.pending = listing.events.into();
        self.previous_listed = None;
        Ok(())
    }

    fn deliver_pending<E>(
        &mut self,
        options: &WatchOptions,
        stop: &AtomicBool,
        handler: &mut impl FnMut(&Delivery) -> Result<(), E>,
        acked: &mut usize,
    ) -> Result<Drained, WatchError<E>> {
        let mut handled = 0usize;
        while let Some(listed) = self.pending.front() {
            let file = &listed.file_name;
            let skip =
                self.reported.contains(file) || (!options.ack && self.delivered.contains(file));
            if !skip {
                if handled >= options.batch.max(1) || stop.load(Ordering::SeqCst) {
                    return Ok(Drained::More);
                }
                if self.appeared_behind_listing(&listed.name) {
                    // List again; the file behind will be in the listing.
                    self.pending.clear();
                    return Ok(Drained::More);
                }
            }
            let Some(listed) = self.pending.pop_front() else {
                break;
            };
            if !skip && self.deliver(listed.file_name.clone(), options, handler, acked)? {
                handled += 1;
            }
            self.previous_listed = Some(listed.name);
        }
        Ok(Drained::Done)
    }

    /// Read, hand over and ack one file; false if there was nothing to
    /// deliver (gone, or invalid and reported).
    fn deliver<E>(
        &mut self,
        file: String,
        options: &WatchOptions,
        handler: &mut impl FnMut(&Delivery) -> Result<(), E>,
        acked: &mut usize,
    ) -> Result<bool, WatchError<E>> {
        let path = self.queue.path_of(Place::New, &file);
        let (sha256, event) = match reader::read_event(&path) {
            Ok((bytes, event)) => (sha256_hex(&bytes), event),
            // Another consumer acked it since the listing.
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => {
                handler(&self.invalid(&file, e.to_string())).map_err(WatchError::Handler)?;
                self.reported.insert(file);
                return Ok(false);
            }
        };
        let delivery = EventDelivery {
            dir: self.display.clone(),
            file_name: file,
            event,
            backlog: self.pending.len(),
            sha256,
        };
        let delivery = Delivery::Event(delivery);
        handler(&delivery).map_err(WatchError::Handler)?;
        let Delivery::Event(delivered) = delivery else {
            unreachable!("built as an event just above")
        };
        if options.ack {
            self.ack(&delivered.file_name)?;
            *acked += 1;
        }
        self.learn(&delivered, (options.clock)());
        if !options.ack {
            self.delivered.insert(delivered.file_name);
        }
        Ok(true)
    }

    /// True when `new/` certainly has not changed since it was last listed
    /// (one `stat`, for the periodic rescan).
    pub(crate) fn unchanged_since_listing(&self) -> bool {
        let checkpoints_unchanged = self.checkpoints.as_ref().is_none_or(|cw| {
            let now = fs::metadata(self.queue.root().join(checkpoint::DIR))
                .and_then(|m| m.modified())
                .ok();
            cw.listed_mtime.is_some_and(|listed| now == Some(listed))
        });
        self.pending.is_empty()
            && checkpoints_unchanged
            && self
                .listed_mtime
                .is_some_and(|listed| self.new_mtime() == Some(listed))
    }

    fn new_mtime(&self) -> Option<SystemTime> {
        fs::metadata(self.queue.place_dir(Place::New))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Order guard. A directory listing is not a snapshot: a file linked into
    /// `new/` just before another can be missing from a listing that shows
    /// the later one. Before delivering seq n, make sure seq n-1 is not such
    /// a file: it was delivered by this run, or listed just before, or is
    /// already in `cur/`; if it is in `new/` after all, list again.
    fn appeared_behind_listing(&self, name: &EventName) -> bool {
        let Some(pred_seq) = name.seq.checked_sub(1) else {
            return false;
        };
        let is_pred = |n: &EventName| n.session == name.session && n.seq == pred_seq;
        if self.last_seq.get(&name.session) == Some(&pred_seq)
            || self.previous_listed.as_ref().is_some_and(is_pred)
        {
            return false;
        }
        let pred = EventName::format(&name.session, pred_seq);
        if self.queue.path_of(Place::Cur, &pred).exists() {
            return false;
        }
        // Missing everywhere is a real gap (verify reports it): deliver on.
        self.queue.path_of(Place::New, &pred).exists()
    }

    fn ack(&self, file: &str) -> Result<(), QueueError> {
        let from = self.queue.path_of(Place::New, file);
        let to = self.queue.path_of(Place::Cur, file);
        match fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            // Someone else acked it: it is where it belongs.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(QueueError::io("ack (rename to cur/)", &from)(e)),
        }
    }

    fn learn(&mut self, d: &EventDelivery, now: DateTime<Utc>) {
        if let Some(name) = EventName::parse(&d.file_name) {
            self.last_seq.insert(name.session, name.seq);
        }
        // A session starting or ending changes the liveness verdict (and
        // maybe the heartbeat interval): judge again now.
        let other_session = self.liveness.session() != Some(d.event.session.as_str());
        self.liveness.observe(&d.event, now);
        use forge_protocol::event::EventBody::{SessionEnd, SessionStart};
        if other_session || matches!(d.event.body, SessionStart(_) | SessionEnd(_)) {
            self.liveness_due = Some(Instant::now());
        }
    }

    fn invalid(&self, file_name: &str, reason: String) -> Delivery {
        Delivery::Invalid(InvalidFile {
            dir: self.display.clone(),
            file_name: file_name.to_string(),
            reason,
        })
    }

    /// Check liveness now; report a change through the handler.
    pub(crate) fn check_liveness<E>(
        &mut self,
        now: DateTime<Utc>,
        handler: &mut impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<(), WatchError<E>> {
        // An unreadable or garbled heartbeat vouches for nothing.
        let heartbeat = reader::read_heartbeat(&self.queue).unwrap_or(None);
        let check = self.liveness.check(now, heartbeat.as_ref());
        self.liveness_due = check.recheck_in.map(|d| Instant::now() + d);
        let Some(change) = check.change else {
            return Ok(());
        };
        let notice = LivenessNotice {
            dir: self.display.clone(),
            at: now,
            session: self.liveness.session().map(str::to_string),
            heartbeat,
            age: check
                .reference
                .and_then(|r| (now - r).to_std().ok())
                .unwrap_or_default(),
            threshold: check.threshold,
        };
        let delivery = match change {
            Change::BecameStale => Delivery::Stale(notice),
            Change::Recovered => Delivery::Recovered(notice),
            Change::Watchdog { idle, limit } => Delivery::Watchdog(WatchdogNotice {
                dir: notice.dir,
                at: now,
                session: notice.session,
                last_event_ts: self.liveness.last_event_ts().map(str::to_string),
                idle,
                limit,
            }),
        };
        handler(&delivery).map_err(WatchError::Handler)
    }
}

/// Start-up: learn the latest session's heartbeat interval and whether it
/// ended from its first and last files (wherever they are), so a restarted
/// watcher does not call an ended session stale, nor miss a dead one.
fn learn_latest_session(
    queue: &QueueDir,
    liveness: &mut Liveness,
    now: DateTime<Utc>,
) -> Result<(), QueueError> {
    let listing = reader::list(queue)?;
    let Some(latest) = listing.events.last() else {
        return Ok(());
    };
    let session = &latest.name.session;
    let first = listing
        .events
        .iter()
        .find(|e| &e.name.session == session)
        .unwrap_or(latest);
    for listed in [first, latest] {
        // A file that does not parse is reported when delivered; here it
        // just teaches nothing.
        if let Ok((_, event)) = reader::read_event(&queue.path_of(listed.place, &listed.file_name))
        {
            liveness.observe(&event, now);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use forge_protocol::DoneStatus;
    use forge_protocol::event::{Done, EventBody};
    use forge_queue::QueueWriter;

    fn dir_with(n: usize) -> (tempfile::TempDir, QueueWriter, DirWatch) {
        let root = tempfile::tempdir().unwrap();
        let w = QueueWriter::open(root.path()).unwrap();
        for i in 0..n {
            w.append(EventBody::Done(Done {
                status: DoneStatus::Success,
                summary: format!("{i}"),
                warnings: vec![],
            }))
            .unwrap();
        }
        let queue = QueueDir::new(root.path());
        let d = DirWatch::new(
            root.path().into(),
            queue,
            &WatchOptions::default(),
            Utc::now(),
        );
        (root, w, d.unwrap())
    }

    fn drain_all(d: &mut DirWatch) -> Vec<u64> {
        let (options, stop, syncer) = (
            WatchOptions::default(),
            AtomicBool::new(false),
            AckSyncer::start(),
        );
        let mut seqs = Vec::new();
        let mut handler = |del: &Delivery| -> Result<(), ()> {
            if let Delivery::Event(e) = del {
                seqs.push(e.event.seq);
            }
            Ok(())
        };
        while d.drain(&options, &stop, &syncer, &mut handler).unwrap() == Drained::More {}
        seqs
    }

    #[test]
    fn a_file_missing_from_a_listing_is_not_overtaken() {
        let (_root, w, mut d) = dir_with(2);
        // A listing that shows seq 1 but not seq 0, as a racing readdir can.
        let one = EventName::format(w.session(), 1);
        d.pending.push_back(ListedEvent {
            name: EventName::parse(&one).unwrap(),
            place: Place::New,
            file_name: one,
        });
        assert_eq!(drain_all(&mut d), [0, 1]);
    }

    #[test]
    fn without_acking_a_file_moved_away_by_its_host_is_forgotten() {
        let (root, _w, mut d) = dir_with(3);
        let options = WatchOptions {
            ack: false,
            ..WatchOptions::default()
        };
        let (stop, syncer) = (AtomicBool::new(false), AckSyncer::start());
        let mut seen = Vec::new();
        let mut handler = |del: &Delivery| -> Result<(), ()> {
            if let Delivery::Event(e) = del {
                seen.push(e.event.seq);
            }
            Ok(())
        };
        while d.drain(&options, &stop, &syncer, &mut handler).unwrap() == Drained::More {}
        assert_eq!(d.delivered.len(), 3);
        // The host (a shipper) moves two of them itself.
        let new = root.path().join("new");
        let mut names: Vec<_> = fs::read_dir(&new)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in &names[..2] {
            fs::rename(new.join(name), root.path().join("cur").join(name)).unwrap();
        }
        while d.drain(&options, &stop, &syncer, &mut handler).unwrap() == Drained::More {}
        assert_eq!(seen, [0, 1, 2], "nothing delivered twice");
        assert_eq!(
            d.delivered.len(),
            1,
            "only the one still in new/ is remembered"
        );
    }

    #[test]
    fn an_old_unchanged_new_dir_is_not_listed_again() {
        let (root, w, mut d) = dir_with(1);
        assert_eq!(drain_all(&mut d), [0]);
        assert!(!d.unchanged_since_listing(), "just modified: not trusted");
        let new = root.path().join("new");
        let past = SystemTime::now() - Duration::from_secs(60);
        fs::File::open(&new).unwrap().set_modified(past).unwrap();
        assert_eq!(drain_all(&mut d), Vec::<u64>::new());
        assert!(d.unchanged_since_listing());
        w.append(EventBody::Done(Done {
            status: DoneStatus::Failure,
            summary: "late".into(),
            warnings: vec![],
        }))
        .unwrap();
        assert!(
            !d.unchanged_since_listing(),
            "a new entry changes the mtime"
        );
        assert_eq!(drain_all(&mut d), [1]);
    }
}
