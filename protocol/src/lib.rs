//! The one definition of the forge sidecar's API.
//!
//! Everything that crosses a process boundary is defined here and nowhere
//! else: the domain types the agent reads ([`Issue`], [`PullRequest`],
//! [`Comment`]), the parameters and results of every method ([`params`],
//! [`Method`]), the error codes ([`error`]), the jsonrpsee API trait
//! ([`ForgeApiServer`]), the JSON Schemas of params and
//! results ([`schema`]) and the queue event schema ([`event`]). The crate does no I/O.

pub mod echo;
pub mod error;
pub mod event;
pub mod params;
pub mod schema;
pub mod types;

mod api;

pub use api::ForgeApiServer;
pub use error::{ErrorCode, RpcError};
pub use params::{BranchName, IssueNumber, Method, Text};
pub use types::{
    Comment, DoneReceipt, DoneStatus, Issue, PullRequest, Review, ReviewComment, ReviewState,
    ScopeInfo, State, TextRules, Updated,
};
