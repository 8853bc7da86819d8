//! Domain types returned to the agent, independent of any forge's wire format.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether an issue or pull request is open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Open.
    Open,
    /// Closed (for a pull request: closed or merged).
    Closed,
}

/// An issue (or the issue view of a pull request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Issue {
    /// Per-repository number, shared by issues and pull requests.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Description; `""` when the forge has none.
    pub body: String,
    /// Open or closed.
    pub state: State,
    /// Login of the author.
    pub user: String,
    /// Label names.
    pub labels: Vec<String>,
    /// Logins of the assignees.
    pub assignees: Vec<String>,
    /// True when this number is a pull request (read it with `read_pr`).
    pub is_pull_request: bool,
    /// Web address of the issue.
    pub url: String,
    /// Creation time, RFC 3339 as the forge reports it.
    pub created_at: String,
    /// Last update time, RFC 3339 as the forge reports it.
    pub updated_at: String,
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PullRequest {
    /// Per-repository number, shared by issues and pull requests.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Description; `""` when the forge has none.
    pub body: String,
    /// Open or closed.
    pub state: State,
    /// True once merged.
    pub merged: bool,
    /// True for a draft (work in progress).
    pub draft: bool,
    /// Source branch.
    pub head: String,
    /// `owner/repo` the source branch lives in (a fork's, for a PR from a
    /// fork); null when the forge does not say (the fork was deleted).
    pub head_repo: Option<String>,
    /// Target branch.
    pub base: String,
    /// Login of the author.
    pub user: String,
    /// Web address of the pull request.
    pub url: String,
    /// Creation time, RFC 3339 as the forge reports it.
    pub created_at: String,
    /// Last update time, RFC 3339 as the forge reports it.
    pub updated_at: String,
}

/// A comment on an issue or pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Comment {
    /// Forge-wide comment id.
    pub id: u64,
    /// Login of the author.
    pub user: String,
    /// Text (Markdown).
    pub body: String,
    /// Creation time, RFC 3339 as the forge reports it.
    pub created_at: String,
    /// Last update time, RFC 3339 as the forge reports it.
    pub updated_at: String,
}

/// Result of `update_description`: the updated issue or pull request.
///
/// Either way an object: the schema says so at its root, as MCP requires of a
/// tool's output schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(extend("type" = "object"))]
pub enum Updated {
    /// The number was a pull request.
    PullRequest(PullRequest),
    /// The number was a plain issue.
    Issue(Issue),
}

/// How the agent's work ended, as told by `signal_done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DoneStatus {
    /// The work is finished.
    Success,
    /// The work could not be done.
    Failure,
    /// The work needs a human decision before it can go on.
    Blocked,
}

impl DoneStatus {
    /// The wire name: `success`, `failure` or `blocked`.
    pub fn as_str(self) -> &'static str {
        match self {
            DoneStatus::Success => "success",
            DoneStatus::Failure => "failure",
            DoneStatus::Blocked => "blocked",
        }
    }
}

/// Result of `signal_done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DoneReceipt {
    /// File name of the `done` event in the queue directory.
    pub event: String,
    /// What the host should look at before merging, also recorded in the
    /// `done` event: e.g. a commit of the session's pull request whose
    /// message would close an issue outside the scope. Empty when nothing
    /// was found. They never refuse the done signal.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The verdict of a pull request review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// The reviewer approved the changes.
    Approved,
    /// The reviewer asks for changes before merging.
    RequestChanges,
    /// Comments only, no verdict.
    Comment,
    /// Not submitted yet (only its author sees it).
    Pending,
    /// A review was requested and not given yet.
    ReviewRequested,
    /// A state this sidecar does not know.
    Unknown,
}

/// An inline comment of a review, on one line of the diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewComment {
    /// Forge-wide comment id.
    pub id: u64,
    /// Login of the author.
    pub user: String,
    /// File the comment is on, relative to the repository root.
    pub path: String,
    /// Line in the new version of the file; null when the comment is on a
    /// removed line (see `old_line`).
    pub line: Option<u64>,
    /// Line in the old version of the file, for a comment on a removed line.
    pub old_line: Option<u64>,
    /// The part of the diff the comment is on, as unified diff text.
    pub diff_hunk: String,
    /// Text (Markdown).
    pub body: String,
    /// Commit the comment was made on.
    pub commit: String,
    /// Creation time, RFC 3339 as the forge reports it.
    pub created_at: String,
}

/// A review of a pull request, with its inline comments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    /// Forge-wide review id.
    pub id: u64,
    /// Login of the reviewer.
    pub user: String,
    /// The verdict.
    pub state: ReviewState,
    /// The review's summary text (Markdown); `""` when none.
    pub body: String,
    /// Commit the review was made on.
    pub commit: String,
    /// True when new commits came after the review.
    pub stale: bool,
    /// True when the review was dismissed.
    pub dismissed: bool,
    /// Submission time, RFC 3339 as the forge reports it.
    pub submitted_at: String,
    /// The inline comments, in the forge's order.
    pub comments: Vec<ReviewComment>,
}

/// Result of `scope`: what this session may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScopeInfo {
    /// Repository owner.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// The assigned issue.
    pub issue: u64,
    /// Numbers that `post_comment` and `update_description` accept:
    /// the assigned issue and its pull requests.
    pub writable: Vec<u64>,
    /// Forge writes left in the run's budget (shared by the sessions of the run).
    pub writes_left: u32,
    /// The branch `open_pr` opens a pull request from; null when the
    /// operator configured none (then `open_pr` is refused).
    pub branch: Option<String>,
    /// Pull requests `open_pr` may still open in the run (shared by its sessions).
    pub prs_left: u32,
    /// Whether `signal_done` has been called.
    pub done: bool,
    /// What the texts written may say: keywords refused before references
    /// outside the scope, and the per-text limits.
    pub text: TextRules,
}

/// The rules every text the sidecar writes is checked against, as
/// reported by `scope` and in `session_start`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TextRules {
    /// Closing keywords in force (lower case): Gitea's defaults plus the
    /// configured ones. `<keyword> #N` is refused unless #N is writable.
    pub close_keywords: Vec<String>,
    /// Reopening keywords in force (lower case), likewise.
    pub reopen_keywords: Vec<String>,
    /// Most distinct references to issues or pull requests outside the
    /// writable set in one text.
    pub max_foreign_refs: u32,
    /// Most distinct `@user` / `@org/team` mentions in one text.
    pub max_mentions: u32,
}
