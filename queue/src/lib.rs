//! The forge sidecar's event queue: a Maildir-style directory of JSON events.
//!
//! ```text
//! <queue>/tmp/        staging; a file here is incomplete by definition
//! <queue>/new/        complete events the host has not consumed yet
//! <queue>/cur/        events the host has consumed (moved here = ack)
//! <queue>/heartbeat   {"pid", "session", "ts"}, replaced every interval
//! ```
//!
//! The writer half ([`QueueWriter`]) is what the sidecar uses: every event is
//! durable (fsynced and renamed into `new/`, directory fsynced) before
//! [`QueueWriter::append`] returns, and each event carries the SHA-256 of the
//! previous one so edits, deletions and reordering are detectable.

pub mod durable;
pub mod error;
pub mod names;
pub mod writer;

pub use error::QueueError;
pub use names::{EventName, sha256_hex};
pub use writer::{Heartbeat, QueueWriter, Written};
