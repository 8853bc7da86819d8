//! The JSON-RPC API as a jsonrpsee trait: the server implements
//! [`ForgeApiServer`]; clients speak plain JSON-RPC (the sidecar's own
//! `client` module, or any language's).
//!
//! Method names here must match [`crate::Method::name`]; a test pins that.

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;

use crate::params::{BranchName, DescriptionMode, IssueNumber, Text};
use crate::read::{CommentPage, Cursor, Order, PageLimit, ReviewPage};
use crate::types::{Comment, DoneReceipt, DoneStatus, Issue, PullRequest, ScopeInfo, Updated};

/// The forge sidecar's API (README, "RPC reference").
#[rpc(server)]
pub trait ForgeApi {
    /// Read an issue (or the issue view of a PR) anywhere in the repository.
    #[method(name = "read_issue", with_extensions)]
    async fn read_issue(&self, number: IssueNumber) -> RpcResult<Issue>;

    /// Read a pull request anywhere in the repository.
    #[method(name = "read_pr", with_extensions)]
    async fn read_pr(&self, number: IssueNumber) -> RpcResult<PullRequest>;

    /// Read one page of the comments of an issue or PR (oldest first
    /// unless `order` says otherwise), with the total and a cursor for the rest.
    #[method(name = "read_comments", with_extensions)]
    async fn read_comments(
        &self,
        number: IssueNumber,
        limit: Option<PageLimit>,
        cursor: Option<Cursor>,
        order: Option<Order>,
    ) -> RpcResult<CommentPage>;

    /// Read one page of the reviews of a pull request with their inline
    /// comments, with the total and a cursor for the rest.
    #[method(name = "read_reviews", with_extensions)]
    async fn read_reviews(
        &self,
        number: IssueNumber,
        limit: Option<PageLimit>,
        cursor: Option<Cursor>,
        order: Option<Order>,
    ) -> RpcResult<ReviewPage>;

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

    /// Update the description of the assigned issue or one of its PRs:
    /// replace it (the default), append to it, or set the sidecar's section.
    #[method(name = "update_description", with_extensions)]
    async fn update_description(
        &self,
        number: IssueNumber,
        body: Text,
        mode: Option<DescriptionMode>,
    ) -> RpcResult<Updated>;

    /// Signal that the work is finished; once per session.
    #[method(name = "signal_done", with_extensions)]
    async fn signal_done(&self, status: DoneStatus, summary: Text) -> RpcResult<DoneReceipt>;

    /// What this session may write.
    #[method(name = "scope", with_extensions)]
    async fn scope(&self) -> RpcResult<ScopeInfo>;
}
