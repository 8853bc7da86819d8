//! The JSON-RPC API as a jsonrpsee trait: the server implements
//! [`ForgeApiServer`]; clients speak plain JSON-RPC (the sidecar's own
//! `client` module, or any language's).
//!
//! Method names here must match [`crate::Method::name`]; a test pins that.

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;

use crate::params::{BranchName, IssueNumber, Text};
use crate::types::{
    Comment, DoneReceipt, DoneStatus, Issue, PullRequest, Review, ScopeInfo, Updated,
};

/// The forge sidecar's API (README, "RPC reference").
#[rpc(server)]
pub trait ForgeApi {
    /// Read an issue (or the issue view of a PR) anywhere in the repository.
    #[method(name = "read_issue", with_extensions)]
    async fn read_issue(&self, number: IssueNumber) -> RpcResult<Issue>;

    /// Read a pull request anywhere in the repository.
    #[method(name = "read_pr", with_extensions)]
    async fn read_pr(&self, number: IssueNumber) -> RpcResult<PullRequest>;

    /// Read all comments of an issue or PR, oldest first.
    #[method(name = "read_comments", with_extensions)]
    async fn read_comments(&self, number: IssueNumber) -> RpcResult<Vec<Comment>>;

    /// Read the reviews of a pull request with their inline comments, oldest first.
    #[method(name = "read_reviews", with_extensions)]
    async fn read_reviews(&self, number: IssueNumber) -> RpcResult<Vec<Review>>;

    /// Open the pull request of the configured branch into `base` (default:
    /// the repository's default branch); it joins the writable set.
    #[method(name = "open_pr", with_extensions)]
    async fn open_pr(
        &self,
        title: Text,
        body: Text,
        base: Option<BranchName>,
    ) -> RpcResult<PullRequest>;

    /// Comment on the assigned issue or one of its PRs.
    #[method(name = "post_comment", with_extensions)]
    async fn post_comment(&self, number: IssueNumber, body: Text) -> RpcResult<Comment>;

    /// Replace the description of the assigned issue or one of its PRs.
    #[method(name = "update_description", with_extensions)]
    async fn update_description(&self, number: IssueNumber, body: Text) -> RpcResult<Updated>;

    /// Signal that the work is finished; once per session.
    #[method(name = "signal_done", with_extensions)]
    async fn signal_done(&self, status: DoneStatus, summary: Text) -> RpcResult<DoneReceipt>;

    /// What this session may write.
    #[method(name = "scope", with_extensions)]
    async fn scope(&self) -> RpcResult<ScopeInfo>;
}
