//! What the watcher hands to its handler.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_protocol::event::Event;

/// One thing the watcher reports, in order per directory.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one delivery at a time is lent to the handler; boxing the event would allocate per event for nothing"
)]
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
}

impl Delivery {
    /// The queue directory concerned, as given to the watcher.
    pub fn dir(&self) -> &Path {
        match self {
            Delivery::Event(e) => &e.dir,
            Delivery::Stale(n) | Delivery::Recovered(n) => &n.dir,
            Delivery::Invalid(i) => &i.dir,
        }
    }

    /// The `kind` of the line: the event's kind, or `stale`, `recovered`,
    /// `invalid`.
    pub fn kind(&self) -> &'static str {
        match self {
            Delivery::Event(e) => e.event.body.kind(),
            Delivery::Stale(_) => "stale",
            Delivery::Recovered(_) => "recovered",
            Delivery::Invalid(_) => "invalid",
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

/// A file in `new/` that cannot be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFile {
    /// The queue directory, as given to the watcher.
    pub dir: PathBuf,
    /// The file name in `new/`.
    pub file_name: String,
    /// Why.
    pub reason: String,
}
