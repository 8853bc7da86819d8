//! End-to-end test support for forge-sidecar: the fake Gitea server the
//! end-to-end tests run the real Gitea client against, the sidecar process,
//! a real NATS server for the fleet tests, and a long run written straight
//! into a queue.

pub mod fake_gitea;
pub mod history;
pub mod nats_server;
pub mod sidecar;
