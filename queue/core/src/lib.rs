//! The forge sidecar's event queue: a Maildir-style directory of JSON events.
//!
//! ```text
//! <queue>/tmp/        staging; a file here is incomplete by definition
//! <queue>/new/        complete events the host has not consumed yet
//! <queue>/cur/        events the host has consumed (moved here = ack)
//! <queue>/heartbeat   {"pid", "session", "ts"}, replaced every interval
//! <queue>/checkpoint/<session>   the session's signed checkpoint
//! <queue>/run/<key>.json         a run's tally: its budget and done state
//! ```
//!
//! The writer half ([`QueueWriter`]) is what the sidecar uses: every event is
//! durable (fsynced and renamed into `new/`, directory fsynced) before
//! [`QueueWriter::append`] returns, and each event carries the SHA-256 of the
//! previous one so edits, deletions and reordering are detectable. With a
//! [`checkpoint::CheckpointSigner`] it also signs checkpoints of the chain
//! ([`note`], [`checkpoint`]), which protect a session's last events.
//!
//! The host reads the same directory (the `forge-queue-host` crate: the
//! `forge-queue` tool, its watcher, audit, export and NATS fleet); what both
//! sides need is here:
//! - [`verify::verify_dir`] checks every session's hash chain;
//!   [`verify::verify_dir_signed`] its signed checkpoints too.
//! - [`state::HostState`] is what the host keeps of what it saw.
//! - [`run::scan`] finds what the earlier sessions of a run spent (writes,
//!   done) by reading every event; [`tally::open`] opens the writer of a new
//!   session of a run from the run's tally instead, and keeps the tally.
//! - [`reader`] lists and parses queue files, for anything else.

pub mod checkpoint;
pub mod durable;
pub mod error;
pub mod names;
pub mod note;
pub mod reader;
pub mod run;
pub mod state;
pub mod tally;
#[cfg(test)]
mod test_events;
pub mod verify;
pub mod writer;

pub use error::QueueError;
pub use names::{EventName, sha256_hex};
pub use reader::{Place, QueueDir};
pub use writer::{Heartbeat, QueueWriter, Written};
