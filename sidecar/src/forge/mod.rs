//! The forge seam: the [`Forge`] trait and its implementations.
//!
//! [`gitea::GiteaForge`] talks to a real Gitea over HTTP; [`memory::MemoryForge`]
//! is a seeded in-memory forge for demos and tests. Neither decides scope:
//! that is [`crate::scope::ScopedForge`]'s job.

pub mod gitea;
pub mod memory;
pub mod resolver;

use forge_protocol::{
    Comment, ErrorCode, Issue, IssueNumber, PullRequest, Review, RpcError, Text, Updated,
};

/// A commit of a branch or pull request: what the text checker reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full commit id.
    pub sha: String,
    /// The whole commit message.
    pub message: String,
}

impl CommitInfo {
    /// The abbreviated id git shows (7 characters).
    pub fn short(&self) -> &str {
        self.sha.get(..7).unwrap_or(&self.sha)
    }
}

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
    /// The reviews of a pull request with their inline comments, oldest first, all pages.
    fn read_reviews(&self, number: IssueNumber) -> Result<Vec<Review>, ForgeError>;
    /// The repository's default branch.
    fn default_branch(&self) -> Result<String, ForgeError>;
    /// The pull request from `head` (a branch of this repository, never a
    /// fork's) into `base`, if there is one.
    fn find_pr(&self, base: &str, head: &str) -> Result<Option<PullRequest>, ForgeError>;
    /// Open a pull request from `head` (a branch of this repository) into
    /// `base`. An open PR for the same head and base is
    /// [`ForgeError::Rejected`] with status 409; a missing branch is
    /// [`ForgeError::NotFound`] or a 422 whose message says to push it.
    fn open_pr(
        &self,
        head: &str,
        base: &str,
        title: &Text,
        body: &Text,
    ) -> Result<PullRequest, ForgeError>;
    /// The commits of `head` that `base` lacks (what a PR would bring), oldest first.
    /// A branch that does not exist is [`ForgeError::NotFound`].
    fn branch_commits(&self, base: &str, head: &str) -> Result<Vec<CommitInfo>, ForgeError>;
    /// The commits of a pull request, all pages.
    fn pr_commits(&self, number: IssueNumber) -> Result<Vec<CommitInfo>, ForgeError>;
    /// Whether `login` is a collaborator of the repository (Gitea: `GET
    /// /repos/{owner}/{repo}/collaborators/{user}`, 204 yes, 404 no). A
    /// forge that cannot tell says so with an error, and the caller
    /// withholds (fails closed).
    fn is_collaborator(&self, login: &str) -> Result<bool, ForgeError> {
        let _ = login;
        Err(ForgeError::Unavailable(format!(
            "the {} forge cannot tell who collaborates on the repository",
            self.kind()
        )))
    }
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
