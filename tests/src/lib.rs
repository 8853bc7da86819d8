//! End-to-end test support for forge-sidecar: the fake Gitea server the
//! end-to-end tests run the real Gitea client against.

pub mod fake_gitea;
pub mod sidecar;
