//! The forge seam: the [`Forge`] trait and its implementations.
//!
//! [`gitea::GiteaForge`] talks to a real Gitea over HTTP; [`memory::MemoryForge`]
//! is a seeded in-memory forge for demos and tests. Neither decides scope:
//! that is [`crate::scope::ScopedForge`]'s job.

pub mod gitea;
pub mod memory;

use forge_protocol::{
    Comment, ErrorCode, Issue, IssueNumber, PullRequest, RpcError, Text, Updated,
};

/// A forge holding one repository. Every method blocks; call from a blocking pool.
pub trait Forge: Send + Sync {
    /// `gitea` or `memory`.
    fn kind(&self) -> &'static str;
    /// Whether calls block on I/O (then they run on the blocking pool); a
    /// forge that answers from memory is called in place.
    fn blocks(&self) -> bool {
        true
    }
    /// The API base URL, for the audit (`None` for in-memory).
    fn api_base(&self) -> Option<&str>;
    /// Check the credentials, the repository and the assigned issue; returns
    /// who the token acts as. An error's [`ForgeError::message`] is one line
    /// for the operator naming what to fix.
    fn preflight(&self, issue: IssueNumber) -> Result<String, ForgeError>;
    /// Read an issue or the issue view of a PR.
    fn read_issue(&self, number: IssueNumber) -> Result<Issue, ForgeError>;
    /// Read a pull request.
    fn read_pr(&self, number: IssueNumber) -> Result<PullRequest, ForgeError>;
    /// Read all comments, oldest first.
    fn read_comments(&self, number: IssueNumber) -> Result<Vec<Comment>, ForgeError>;
    /// Create a comment.
    fn post_comment(&self, number: IssueNumber, body: &Text) -> Result<Comment, ForgeError>;
    /// Replace the description.
    fn update_description(&self, number: IssueNumber, body: &Text) -> Result<Updated, ForgeError>;
}

/// What can go wrong talking to a forge. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForgeError {
    /// No such issue or PR (or it is the other kind: the message says so).
    #[error("{0}")]
    NotFound(String),
    /// The forge refused the request.
    #[error("the forge refused the request (HTTP {status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The forge's message, or a description of the problem.
        message: String,
    },
    /// The forge could not be reached or kept failing.
    #[error("{0}")]
    Unavailable(String),
}

impl ForgeError {
    /// The message alone, without the HTTP status prefix of `Display`: for
    /// verdicts that already say everything (`forge-sidecar check`).
    pub fn message(&self) -> &str {
        match self {
            ForgeError::NotFound(m) | ForgeError::Unavailable(m) => m,
            ForgeError::Rejected { message, .. } => message,
        }
    }

    /// The agent-facing error.
    pub fn into_rpc(self) -> RpcError {
        match self {
            ForgeError::NotFound(msg) => RpcError::new(ErrorCode::NotFound, msg),
            ForgeError::Rejected { status, message } => RpcError::new(
                ErrorCode::ForgeRejected,
                format!("the forge refused the request (HTTP {status}): {message}"),
            )
            .with_data(serde_json::json!({ "status": status, "message": message })),
            ForgeError::Unavailable(msg) => RpcError::new(ErrorCode::ForgeUnavailable, msg),
        }
    }
}
