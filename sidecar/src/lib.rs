//! forge-sidecar: the per-bottle daemon between a coding agent and the forge.
//!
//! The agent talks JSON-RPC on a Unix socket ([`server`]); every call goes
//! through [`service::Sidecar`], which audits it into the queue directory and
//! asks [`scope::ScopedForge`] — the only place that decides writes — before
//! anything reaches the [`forge::Forge`] (Gitea over HTTP, or in memory).
//! The token lives in [`config::Secret`] and is never printed.

pub mod audit;
pub mod budget;
pub mod client;
pub mod config;
pub mod fds;
pub mod flood;
pub mod forge;
pub mod forge_health;
pub mod http;
pub mod listener;
pub mod logging;
pub mod marker;
pub mod mcp;
pub mod read_guard;
pub mod resolve;
pub mod rpc;
pub mod scope;
pub mod server;
pub mod service;
pub mod socket;
pub mod text_check;
