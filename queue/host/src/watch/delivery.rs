//! What the watcher hands to its handler.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_protocol::event::Event;

use crate::checkpoint::Checkpoint;

/// One thing the watcher reports, in order per directory.
// Deliveries are handed over one at a time: the size of the largest variant
// costs nothing worth a Box in the public API.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// An event file from `new/`. If the handler returns `Ok` (and acking is
    /// on) the file is moved to `cur/`.
    Event(EventDelivery),
    /// The directory's sidecar stopped heartbeating without `session_end`.
    Stale(LivenessNotice),
    /// A stale directory's heartbeat is fresh again.
    Recovered(LivenessNotice),
    /// A file in `new/` that is not a valid event; reported once, left in
    /// place, never acked.
    Invalid(InvalidFile),
    /// A session's checkpoint file changed and verifies with the key given
    /// in [`super::WatchOptions::checkpoint_key`] (only then are checkpoints
    /// read). Delivered after the events listed before it, so usually after
    /// the events it covers; but a checkpoint may cover events still to come.
    Checkpoint(CheckpointNotice),
    /// A checkpoint file that does not verify with the key; reported once
    /// per content.
    BadCheckpoint(InvalidFile),
    /// A session's checkpoint file changed, read without a key
    /// ([`super::WatchOptions::checkpoint_files`]): unverified, to be
    /// forwarded to whoever holds the key.
    CheckpointFile(CheckpointFile),
    /// The directory's latest session is alive but has written no event
    /// for [`super::WatchOptions::watchdog`]: the agent stopped without
    /// reporting done. Reported once per silence.
    Watchdog(WatchdogNotice),
}

impl Delivery {
    /// The queue directory concerned, as given to the watcher.
    pub fn dir(&self) -> &Path {
        match self {
            Delivery::Event(e) => &e.dir,
            Delivery::Stale(n) | Delivery::Recovered(n) => &n.dir,
            Delivery::Invalid(i) | Delivery::BadCheckpoint(i) => &i.dir,
            Delivery::Checkpoint(c) => &c.dir,
            Delivery::CheckpointFile(c) => &c.dir,
            Delivery::Watchdog(w) => &w.dir,
        }
    }

    /// The `kind` of the line: the event's kind, or `stale`, `recovered`,
    /// `invalid`, `checkpoint`, `bad_checkpoint`, `watchdog`.
    pub fn kind(&self) -> &'static str {
        match self {
            Delivery::Event(e) => e.event.body.kind(),
            Delivery::Stale(_) => "stale",
            Delivery::Recovered(_) => "recovered",
            Delivery::Invalid(_) => "invalid",
            Delivery::Checkpoint(_) | Delivery::CheckpointFile(_) => "checkpoint",
            Delivery::BadCheckpoint(_) => "bad_checkpoint",
            Delivery::Watchdog(_) => "watchdog",
        }
    }
}

/// An event read from `new/`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDelivery {
    /// The queue directory, as given to the watcher.
    pub dir: PathBuf,
    /// The file name in `new/`.
    pub file_name: String,
    /// The event.
    pub event: Event,
    /// Event files listed after this one in the same scan of the directory:
    /// 0 means this was the newest event the directory had.
    pub backlog: usize,
    /// Lower-case hex SHA-256 of the file's bytes as delivered (the next
    /// event's `prev`; what a checkpoint's `last` signs).
    pub sha256: String,
}

impl EventDelivery {
    /// The idempotency key: delivery is at-least-once (a crash between the
    /// handler's success and the ack redelivers), and `(session, seq)`
    /// identifies an event across redeliveries.
    pub fn idempotency_key(&self) -> (&str, u64) {
        (&self.event.session, self.event.seq)
    }
}

/// A change in a directory's liveness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessNotice {
    /// The queue directory, as given to the watcher.
    pub dir: PathBuf,
    /// When the watcher noticed (its clock).
    pub at: DateTime<Utc>,
    /// The latest session known in the directory.
    pub session: Option<String>,
    /// The heartbeat file's content, if there is one.
    pub heartbeat: Option<crate::writer::Heartbeat>,
    /// How old the liveness reference (heartbeat, else session start, else
    /// watch start) was.
    pub age: Duration,
    /// The stale threshold: 3 heartbeat intervals by default.
    pub threshold: Duration,
}

/// A file that cannot be delivered: in `new/` ([`Delivery::Invalid`]) or
/// in `checkpoint/` ([`Delivery::BadCheckpoint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFile {
    /// The queue directory, as given to the watcher.
    pub dir: PathBuf,
    /// The file name in `new/` or `checkpoint/`.
    pub file_name: String,
    /// Why.
    pub reason: String,
}

/// A verified checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointNotice {
    /// The queue directory, as given to the watcher.
    pub dir: PathBuf,
    /// What it states.
    pub checkpoint: Checkpoint,
    /// The signed note as read (to keep, or to show to another verifier).
    pub note: Vec<u8>,
    /// The key that verified it, `name+hash`.
    pub key: String,
}

/// A checkpoint file as read, not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    /// The queue directory, as given to the watcher.
    pub dir: PathBuf,
    /// The session it is named after.
    pub session: String,
    /// The file's bytes (a signed note, if it is what it claims).
    pub note: Vec<u8>,
}

/// The watchdog fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogNotice {
    /// The queue directory, as given to the watcher.
    pub dir: PathBuf,
    /// When the watcher noticed (its clock).
    pub at: DateTime<Utc>,
    /// The silent session.
    pub session: Option<String>,
    /// The `ts` of its last event, if one was seen.
    pub last_event_ts: Option<String>,
    /// How long it has been silent.
    pub idle: Duration,
    /// The watchdog's limit.
    pub limit: Duration,
}
