//! The host side of the forge sidecar's queue: what reads the directory the
//! sidecar writes (`forge-queue` is the queue itself, shared with the sidecar).
//!
//! - [`watch::Watcher`] delivers every event in order to a handler and acks it
//!   (moves it to `cur/`) when the handler succeeds; it also reports a stale
//!   sidecar (heartbeat too old, no `session_end`). Delivery is
//!   at-least-once; the idempotency key is `session` + `seq`.
//! - [`trust::DoneTrust`] tells which `done` a signed checkpoint covers.
//! - [`export::export_dir`] makes one record per run.
//! - [`audit::audit_dir`] summarizes each session: calls, refused writes,
//!   writes with unknown outcome, the done signal, how it ended.
//! - [`render`] prints events and deliveries for people, escaped.
//! - [`nats`] ships directories into a NATS JetStream stream and reads the
//!   stream back with the same deliveries, audit and verification.
//!
//! The `forge-queue` binary (`src/main.rs`) is the command line over these.
//! Nothing here is linked into the sidecar.

pub mod audit;
pub mod export;
pub mod nats;
pub mod render;
pub mod trust;
pub mod watch;

// The shared queue's modules, reachable as `crate::…` in this crate's own.
use forge_queue::{checkpoint, durable, error, names, note, reader, state, verify, writer};

pub use watch::{Delivery, WatchOptions, Watcher};
