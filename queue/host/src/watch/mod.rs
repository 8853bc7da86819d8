//! The host's watcher: delivers every event of one or more queue directories
//! to a handler, in order, and acks each one after the handler succeeds.
//!
//! ```no_run
//! use forge_queue_host::watch::{Delivery, WatchOptions, Watcher};
//!
//! let mut watcher = Watcher::new(["/run/forge/queue"], WatchOptions::default())?;
//! watcher.run(|d: &Delivery| -> Result<(), std::io::Error> {
//!     if let Delivery::Event(e) = d {
//!         let (session, seq) = e.idempotency_key();
//!         println!("{session} {seq} {}", e.event.body.kind());
//!     }
//!     Ok(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Order.** Per directory, events are delivered in name order, which is
//! seq order within a session and session order across sessions. Nothing
//! is promised between directories.
//!
//! **Ack.** When the handler returns `Ok` for an event, the file is renamed
//! from `new/` to `cur/` (same queue directory, so atomic), and `cur/` is
//! fsynced once per batch on a helper thread (so a slow disk does not hold
//! up the next delivery; dropping the `Watcher` waits for those fsyncs).
//! With `ack: false` files stay in `new/` and this watcher remembers what it
//! delivered.
//!
//! **At-least-once.** A crash (or a handler error) after the handler saw an
//! event but before its rename leaves the file in `new/`, and the next
//! watcher delivers it again. Consumers must treat `(session, seq)` as the
//! idempotency key ([`EventDelivery::idempotency_key`]). A handler error
//! stops the watcher and is returned; that event is not acked.
//!
//! **Finding new files.** An initial scan of `new/`, then inotify (one
//! `notify` watcher for all directories) on each `new/`; any sign of a new
//! entry triggers a fresh listing of that `new/`, never trusting the event's
//! path. A periodic rescan (`rescan_interval`) catches what notifications
//! miss (overflow, filesystems without inotify). It is cheap: a `new/` whose
//! modification time has not changed since a listing that was made well
//! after that time (so no same-tick change can hide) is not listed again;
//! every [`FULL_RESCAN_EVERY`]th rescan lists everything regardless.
//!
//! **Liveness.** Each directory's heartbeat is judged against 3 intervals
//! (`limits.heartbeat_secs` of the session's `session_start`, default 5 s).
//! A directory whose latest session has no `session_end` and whose heartbeat
//! is older than that gets one [`Delivery::Stale`], and a
//! [`Delivery::Recovered`] if the heartbeat comes back (noticed within one
//! heartbeat interval). The heartbeat file is read only when the verdict
//! could change: when the current heartbeat would turn stale, and every
//! interval while stale; so an idle directory costs one small read per ten
//! seconds or so.
//!
//! **Invalid files** in `new/` (names that are not event names, contents
//! that are not events) are reported once as [`Delivery::Invalid`] and left
//! in place.

mod ack_sync;
mod delivery;
mod dir;
mod liveness;

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};

pub use delivery::{
    CheckpointFile, CheckpointNotice, Delivery, EventDelivery, InvalidFile, LivenessNotice,
    WatchdogNotice,
};

use crate::checkpoint;
use crate::error::QueueError;
use crate::note::VerifierKey;
use crate::reader::{Place, QueueDir};
use ack_sync::AckSyncer;
use dir::{DirWatch, Drained};

/// Heartbeat interval assumed until a `session_start` says otherwise: the
/// sidecar's default.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 5;

/// A heartbeat older than this many intervals means the sidecar is gone
/// (README, "Delivery semantics").
pub const STALE_INTERVALS: u32 = 3;

/// Every this many periodic rescans, list every `new/` even if its
/// modification time says nothing changed (filesystems with coarse or
/// foreign clocks).
pub const FULL_RESCAN_EVERY: u64 = 60;

/// Where the watcher gets the time for liveness judgements; injectable so
/// tests can age a heartbeat without sleeping.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How a [`Watcher`] behaves.
#[derive(Clone)]
pub struct WatchOptions {
    /// Move each event to `cur/` after the handler succeeds (default true).
    pub ack: bool,
    /// Rescan every `new/` this often, as a safety net (default 1 s).
    pub rescan_interval: Duration,
    /// Use inotify (default true). Off: find files by rescanning only, for
    /// filesystems where notifications do not work.
    pub notify: bool,
    /// Heartbeat interval assumed until a `session_start` says otherwise
    /// (default 5 s, the sidecar's default).
    pub default_heartbeat_secs: u64,
    /// A heartbeat older than this many intervals is stale (default 3).
    pub stale_intervals: u32,
    /// Events delivered from one directory before turning to the next and
    /// fsyncing `cur/` (default 1024).
    pub batch: usize,
    /// The time used to judge heartbeats (default: the system clock).
    pub clock: Clock,
    /// Read each directory's `checkpoint/` and deliver the checkpoints this
    /// key signed ([`Delivery::Checkpoint`]) and the ones it did not
    /// ([`Delivery::BadCheckpoint`]); default none (not read).
    pub checkpoint_key: Option<VerifierKey>,
    /// Without a key: read each directory's `checkpoint/` all the same and
    /// deliver every changed file as read, unverified
    /// ([`Delivery::CheckpointFile`]), for a host that forwards them to
    /// where they are verified (the shipper); default false.
    pub checkpoint_files: bool,
    /// Deliver [`Delivery::Watchdog`] when a directory's latest session is
    /// alive but has written no event for this long; default none.
    pub watchdog: Option<Duration>,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            ack: true,
            rescan_interval: Duration::from_secs(1),
            notify: true,
            default_heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
            stale_intervals: STALE_INTERVALS,
            batch: 1024,
            clock: Arc::new(Utc::now),
            checkpoint_key: None,
            checkpoint_files: false,
            watchdog: None,
        }
    }
}

impl WatchOptions {
    /// Whether `checkpoint/` is read.
    fn reads_checkpoints(&self) -> bool {
        self.checkpoint_key.is_some() || self.checkpoint_files
    }
}

impl std::fmt::Debug for WatchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchOptions")
            .field("ack", &self.ack)
            .field("rescan_interval", &self.rescan_interval)
            .field("notify", &self.notify)
            .field("default_heartbeat_secs", &self.default_heartbeat_secs)
            .field("stale_intervals", &self.stale_intervals)
            .field("batch", &self.batch)
            .field("checkpoint_key", &self.checkpoint_key)
            .field("checkpoint_files", &self.checkpoint_files)
            .field("watchdog", &self.watchdog)
            .finish_non_exhaustive()
    }
}

/// Why [`Watcher::run`] or [`Watcher::poll`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WatchError<E> {
    /// Reading or acking the queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The handler failed; the event it was given is not acked.
    #[error("handler failed: {0}")]
    Handler(E),
}

/// Stops a running [`Watcher`] from any thread (or from its handler).
#[derive(Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    wake: Sender<Wake>,
}

impl StopHandle {
    /// Ask the watcher to return from [`Watcher::run`]. Called from the
    /// handler, the current event is still acked and nothing more is
    /// delivered.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.wake.send(Wake::Stop);
    }
}

enum Wake {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// Watches queue directories and delivers their events; see the module
/// documentation for the guarantees.
pub struct Watcher {
    dirs: Vec<DirWatch>,
    options: WatchOptions,
    by_new_dir: HashMap<PathBuf, usize>,
    rescans: u64,
    dirty: VecDeque<usize>,
    is_dirty: Vec<bool>,
    next_rescan: Instant,
    stop: Arc<AtomicBool>,
    wake_tx: Sender<Wake>,
    wake_rx: Receiver<Wake>,
    unwatched: Vec<PathBuf>,
    syncer: AckSyncer,
    // Dropping it ends the notifications; kept for the watcher's lifetime.
    _notify: Option<notify::RecommendedWatcher>,
}

impl Watcher {
    /// Watch the queue directories `dirs` (each must exist; its `new/` and
    /// `cur/` are created if missing, so a watcher may start before the
    /// sidecar). A directory given twice is watched once.
    pub fn new<P: AsRef<Path>>(
        dirs: impl IntoIterator<Item = P>,
        options: WatchOptions,
    ) -> Result<Watcher, QueueError> {
        let now = (options.clock)();
        let mut watched: Vec<DirWatch> = Vec::new();
        let mut by_new_dir = HashMap::new();
        for given in dirs {
            let given = given.as_ref();
            let root =
                fs::canonicalize(given).map_err(QueueError::io("open queue directory", given))?;
            if !root.is_dir() {
                return Err(QueueError::io("open queue directory", given)(
                    std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
                ));
            }
            let queue = QueueDir::new(&root);
            if by_new_dir.contains_key(&queue.place_dir(Place::New)) {
                continue;
            }
            for place in [Place::New, Place::Cur] {
                let path = queue.place_dir(place);
                // Without acking a read-only queue is fine: missing
                // directories just list empty.
                match fs::create_dir_all(&path) {
                    Err(e) if options.ack => {
                        return Err(QueueError::io("create directory", &path)(e));
                    }
                    _ => {}
                }
            }
            if options.reads_checkpoints() {
                // Created so it can be watched before the sidecar's first
                // checkpoint; without it, the rescan still finds them.
                let _ = fs::create_dir_all(queue.root().join(checkpoint::DIR));
                by_new_dir.insert(queue.root().join(checkpoint::DIR), watched.len());
            }
            by_new_dir.insert(queue.place_dir(Place::New), watched.len());
            watched.push(DirWatch::new(given.to_path_buf(), queue, &options, now)?);
        }
        let (wake_tx, wake_rx) = mpsc::channel();
        let n = watched.len();
        let mut watcher = Watcher {
            dirs: watched,
            by_new_dir,
            rescans: 0,
            dirty: (0..n).collect(),
            is_dirty: vec![true; n],
            next_rescan: Instant::now() + options.rescan_interval,
            stop: Arc::new(AtomicBool::new(false)),
            wake_tx,
            wake_rx,
            unwatched: Vec::new(),
            syncer: AckSyncer::start(),
            _notify: None,
            options,
        };
        if watcher.options.notify {
            watcher.start_notify();
        } else {
            watcher.unwatched = watcher.dirs.iter().map(|d| d.display.clone()).collect();
        }
        Ok(watcher)
    }

    /// One inotify instance for all directories, one watch per `new/`.
    /// Directories that cannot be watched (inotify limits, odd filesystems)
    /// fall back to the periodic rescan and are listed by
    /// [`Watcher::unwatched`].
    fn start_notify(&mut self) {
        let tx = self.wake_tx.clone();
        let created = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Filter here, on notify's thread: our own reads and acks make
            // open/close/move-from events that must not wake the loop.
            if res.as_ref().map_or(true, may_add_entry) {
                let _ = tx.send(Wake::Fs(res));
            }
        });
        let mut fs_watcher = match created {
            Ok(w) => w,
            Err(_) => {
                self.unwatched = self.dirs.iter().map(|d| d.display.clone()).collect();
                return;
            }
        };
        for d in &self.dirs {
            let new_dir = d.queue.place_dir(Place::New);
            if fs_watcher
                .watch(&new_dir, RecursiveMode::NonRecursive)
                .is_err()
            {
                self.unwatched.push(d.display.clone());
            }
            if self.options.reads_checkpoints() {
                // A missing or unwatchable checkpoint/ is still rescanned.
                let _ = fs_watcher.watch(
                    &d.queue.root().join(checkpoint::DIR),
                    RecursiveMode::NonRecursive,
                );
            }
        }
        self._notify = Some(fs_watcher);
    }

    /// The directories watched, as given (duplicates removed); deliveries
    /// name them the same way.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.display.as_path())
    }

    /// Directories that are only rescanned periodically because inotify
    /// could not watch them.
    pub fn unwatched(&self) -> &[PathBuf] {
        &self.unwatched
    }

    /// A handle that stops [`Watcher::run`].
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            flag: self.stop.clone(),
            wake: self.wake_tx.clone(),
        }
    }

    /// Deliver events and liveness notices until stopped
    /// ([`StopHandle::stop`]) or an error. Blocks the calling thread. A
    /// stop is final: once stopped, `run` and `poll` return at once.
    pub fn run<E>(
        &mut self,
        mut handler: impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<(), WatchError<E>> {
        while !self.stopped() {
            self.drain_dirty(&mut handler)?;
            if self.stopped() {
                break;
            }
            self.check_due_liveness(&mut handler)?;
            if self.stopped() {
                break;
            }
            self.wait();
        }
        Ok(())
    }

    /// One pass without waiting: rescan every directory, deliver everything
    /// found, and judge every directory's liveness now. For tests and for
    /// hosts that run their own loop.
    pub fn poll<E>(
        &mut self,
        mut handler: impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<(), WatchError<E>> {
        while self.wake_rx.try_recv().is_ok() {}
        self.mark_all_dirty();
        while !self.dirty.is_empty() && !self.stopped() {
            self.drain_dirty(&mut handler)?;
        }
        let now = (self.options.clock)();
        for d in &mut self.dirs {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            d.check_liveness(now, &mut handler)?;
        }
        Ok(())
    }

    /// After a stop: list every directory's `new/` once more and deliver
    /// (and ack) every event complete there, in order, then return. Events
    /// written after that listing are left for the next watcher. This is
    /// how `forge-queue watch --until-done` leaves nothing behind that was
    /// already in `new/` when the last directory settled.
    pub fn finish<E>(
        &mut self,
        mut handler: impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<(), WatchError<E>> {
        let keep_going = AtomicBool::new(false);
        for d in &mut self.dirs {
            while d.drain(&self.options, &keep_going, &self.syncer, &mut handler)? == Drained::More
            {
            }
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn drain_dirty<E>(
        &mut self,
        handler: &mut impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<(), WatchError<E>> {
        // Each directory dirty now gets one batch; one still holding more
        // goes to the back of the queue.
        for _ in 0..self.dirty.len() {
            let Some(i) = self.dirty.pop_front() else {
                break;
            };
            self.is_dirty[i] = false;
            let drained = self.dirs[i].drain(&self.options, &self.stop, &self.syncer, handler)?;
            if drained == Drained::More {
                self.mark_dirty(i);
            }
            if self.stopped() {
                break;
            }
        }
        Ok(())
    }

    fn check_due_liveness<E>(
        &mut self,
        handler: &mut impl FnMut(&Delivery) -> Result<(), E>,
    ) -> Result<(), WatchError<E>> {
        let now = Instant::now();
        let mut clock_now = None;
        for d in &mut self.dirs {
            if d.liveness_due.is_some_and(|due| due <= now) {
                let at = *clock_now.get_or_insert_with(|| (self.options.clock)());
                d.check_liveness(at, handler)?;
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Sleep until a notification, a stop, the next rescan or the next
    /// liveness deadline; then record what needs doing.
    fn wait(&mut self) {
        let now = Instant::now();
        let mut deadline = self.next_rescan;
        for due in self.dirs.iter().filter_map(|d| d.liveness_due) {
            deadline = deadline.min(due);
        }
        let timeout = if self.dirty.is_empty() {
            deadline.saturating_duration_since(now)
        } else {
            Duration::ZERO
        };
        match self.wake_rx.recv_timeout(timeout) {
            Ok(wake) => {
                self.on_wake(wake);
                // Coalesce a burst of notifications into one listing.
                while let Ok(wake) = self.wake_rx.try_recv() {
                    self.on_wake(wake);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        if Instant::now() >= self.next_rescan {
            self.rescan();
            // A zero interval would spin.
            let interval = self.options.rescan_interval.max(Duration::from_millis(1));
            self.next_rescan = Instant::now() + interval;
        }
    }

    fn on_wake(&mut self, wake: Wake) {
        let event = match wake {
            Wake::Stop => return,
            Wake::Fs(Ok(event)) if !event.need_rescan() && !event.paths.is_empty() => event,
            // An error or an overflow: anything may have been missed.
            Wake::Fs(_) => {
                self.mark_all_dirty();
                self.all_liveness_due();
                return;
            }
        };
        for path in &event.paths {
            let parent = path.parent().unwrap_or(path);
            match self.by_new_dir.get(parent) {
                Some(&i) => self.mark_dirty(i),
                // Something happened to a new/ itself (removed, moved):
                // look everywhere.
                None => self.mark_all_dirty(),
            }
        }
    }

    /// The periodic safety net: list each `new/` that may have changed.
    fn rescan(&mut self) {
        self.rescans = (self.rescans + 1) % FULL_RESCAN_EVERY;
        let full = self.rescans == 0;
        for i in 0..self.dirs.len() {
            if full || !self.dirs[i].unchanged_since_listing() {
                self.mark_dirty(i);
            }
        }
    }

    fn mark_dirty(&mut self, i: usize) {
        if !self.is_dirty[i] {
            self.is_dirty[i] = true;
            self.dirty.push_back(i);
        }
    }

    fn mark_all_dirty(&mut self) {
        for i in 0..self.dirs.len() {
            self.mark_dirty(i);
        }
    }

    fn all_liveness_due(&mut self) {
        let now = Instant::now();
        for d in &mut self.dirs {
            d.liveness_due = Some(now);
        }
    }
}

/// Whether a notification can mean "a new entry in this directory" (or a
/// replaced heartbeat). inotify reports a file renamed in from a sibling
/// directory as `Name(To)` only, so creation alone is not enough.
fn may_add_entry(event: &notify::Event) -> bool {
    event.need_rescan()
        || matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Name(
                    RenameMode::To | RenameMode::Both | RenameMode::Any
                ))
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, RenameMode};

    #[test]
    fn only_entry_making_notifications_wake_the_loop() {
        let ev = |kind| notify::Event::new(kind);
        assert!(may_add_entry(&ev(EventKind::Create(CreateKind::File))));
        assert!(may_add_entry(&ev(EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        )))));
        assert!(may_add_entry(&ev(EventKind::Modify(ModifyKind::Name(
            RenameMode::Both
        )))));
        assert!(may_add_entry(&ev(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        )))));
        assert!(!may_add_entry(&ev(EventKind::Access(AccessKind::Open(
            AccessMode::Any
        )))));
        assert!(!may_add_entry(&ev(EventKind::Modify(ModifyKind::Name(
            RenameMode::From
        )))));
        assert!(!may_add_entry(&ev(EventKind::Remove(
            notify::event::RemoveKind::File
        ))));
    }
}
