//! End-to-end test support for forge-sidecar: the fake Gitea server the
//! end-to-end tests run the real Gitea client against, the sidecar process,
//! and a real NATS server for the fleet tests.

pub mod fake_gitea;
pub mod nats_server;
pub mod sidecar;
