//! The forge sidecar's event queue: a Maildir-style directory of JSON events.
//!
//! ```text
//! <queue>/tmp/        staging; a file here is incomplete by definition
//! <queue>/new/        complete events the host has not consumed yet
//! <queue>/cur/        events the host has consumed (moved here = ack)
//! <queue>/heartbeat   {"pid", "session", "ts"}, replaced every interval
//! <queue>/checkpoint/<session>   the session's signed checkpoint
//! <queue>/run/<key>   a run's tally: budget spent, done (see [`run`])
//! ```
//!
//! The writer half ([`QueueWriter`]) is what the sidecar uses: every event is
//! durable (fsynced and renamed into `new/`, directory fsynced) before
//! [`QueueWriter::append`] returns, and each event carries the SHA-256 of the
//! previous one so edits, deletions and reordering are detectable. With a
//! [`checkpoint::CheckpointSigner`] it also signs checkpoints of the chain
//! ([`note`], [`checkpoint`]), which protect a session's last events.
//!
//! The host half reads the same directory:
//! - [`watch::Watcher`] delivers every event in order to a handler and acks it
//!   (moves it to `cur/`) when the handler succeeds; it also reports a stale
//!   sidecar (heartbeat too old, no `session_end`). Delivery is
//!   at-least-once; the idempotency key is `session` + `seq`.
//! - [`verify::verify_dir`] checks every session's hash chain;
//!   [`verify::verify_dir_signed`] its signed checkpoints too.
//! - [`trust::DoneTrust`] tells which `done` a signed checkpoint covers.
//! - [`state::HostState`] is what the host keeps of what it saw.
//! - [`export::export_dir`] makes one record per run.
//! - [`audit::audit_dir`] summarizes each session: calls, refused writes,
//!   writes with unknown outcome, the done signal, how it ended.
//! - [`run::load`] finds what the earlier sessions of a run spent (writes,
//!   done) from the run's tally, which the writer keeps ([`run::Tally`]).
//! - [`reader`] lists and parses queue files, for anything else.
//! - `nats` (cargo feature, on by default; the sidecar leaves it off):
//!   ships directories into a NATS JetStream stream and reads the stream
//!   back with the same deliveries, audit and verification.

pub mod audit;
pub mod checkpoint;
pub mod durable;
pub mod error;
pub mod export;
pub mod names;
#[cfg(feature = "nats")]
pub mod nats;
pub mod note;
pub mod reader;
pub mod render;
pub mod run;
pub mod state;
pub mod trust;
pub mod verify;
pub mod watch;
pub mod writer;

pub use error::QueueError;
pub use names::{EventName, sha256_hex};
pub use reader::{Place, QueueDir};
pub use watch::{Delivery, WatchOptions, Watcher};
pub use writer::{Heartbeat, QueueWriter, Written};
