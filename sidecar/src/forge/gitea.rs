//! [`GiteaForge`]: the Gitea REST API v1 client.
//!
//! Blocking ureq calls with `Authorization: token <T>`, a whole-request
//! timeout and a response size cap. Reads are retried on connection errors,
//! 429 and 5xx with backoff (honouring `Retry-After`); writes are sent once
//! and never follow a redirect. Gitea's quirks are handled here: PATCH
//! answers 201, a PR is also an issue, comments of a missing issue answer
//! 500, error bodies may be empty.

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use forge_protocol::{
    Comment, Issue, IssueNumber, PullRequest, Review, ReviewComment, ReviewState, State, Text,
    Updated,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use ureq::Agent;
use ureq::http::Response;
use ureq::unversioned::transport::DefaultConnector;

use super::resolver::ForgeResolver;
use super::{CommitInfo, Forge, ForgeError};
use crate::budget::{CHARGE_STEP, Charged};
use crate::config::Secret;

/// Largest forge response read, bytes; larger ones are refused unread.
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Attempts for a read (first try included).
const READ_ATTEMPTS: u32 = 3;
/// First retry delay; doubled each time.
const BACKOFF: Duration = Duration::from_millis(200);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Items asked for per page of a list (Gitea's default `MAX_RESPONSE_ITEMS`;
/// a server configured lower clamps it silently, which paging copes with).
const PAGE_LIMIT: usize = 50;
/// Most pages read of one list: a bound against a server that never ends.
const MAX_PAGES: usize = 200;

/// A Gitea repository reached over HTTP.
pub struct GiteaForge {
    agent: Agent,
    api_base: String,
    repo_path: String,
    auth: String,
    timeout: Duration,
    read_attempts: u32,
}

impl GiteaForge {
    /// A client for `owner/repo` at `api_base` (which includes `/api/v1`).
    pub fn new(
        api_base: &str,
        owner: &str,
        repo: &str,
        token: &Secret,
        timeout: Duration,
    ) -> GiteaForge {
        let config = Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("forge-sidecar/", env!("CARGO_PKG_VERSION")))
            .build();
        // No thread per request to resolve the forge's host (see the resolver).
        let agent = Agent::with_parts(config, DefaultConnector::new(), ForgeResolver::default());
        let api_base = api_base.trim_end_matches('/').to_string();
        GiteaForge {
            agent,
            repo_path: format!("{api_base}/repos/{owner}/{repo}"),
            api_base,
            auth: format!("token {}", token.expose()),
            timeout,
            read_attempts: READ_ATTEMPTS,
        }
    }

    /// The same client, trying each read once: for a probe, whose verdict is
    /// said once (a retry would only add its own warning and delay).
    pub fn without_retries(mut self) -> GiteaForge {
        self.read_attempts = 1;
        self
    }

    /// GET with retries; the JSON body of a 2xx answer.
    ///
    /// All attempts together stay within the configured timeout: a retry is
    /// only made if its backoff leaves time, and each attempt gets what is left.
    fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, HttpFailure> {
        self.get_paged(url).map(|(value, _)| value)
    }

    /// [`GiteaForge::get`], also returning what the answer says about a next page.
    fn get_paged<T: DeserializeOwned>(&self, url: &str) -> Result<(T, NextPage), HttpFailure> {
        self.get_with(url, |resp| {
            let next = NextPage::of(&resp);
            self.parse(resp).map(|value| (value, next))
        })
    }

    /// A read with retries (see [`GiteaForge::get`]); `on_success` turns a
    /// 2xx answer into the result.
    fn get_with<T>(
        &self,
        url: &str,
        on_success: impl Fn(ureq::http::Response<ureq::Body>) -> Result<T, HttpFailure>,
    ) -> Result<T, HttpFailure> {
        let deadline = Instant::now() + self.timeout;
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = self
                .agent
                .get(url)
                .config()
                .timeout_global(Some(remaining))
                .build()
                .header("Authorization", &self.auth)
                .call();
            let failure = match result {
                Ok(resp) if resp.status().is_success() => return on_success(resp),
                Ok(resp) => HttpFailure::from_response(resp, MAX_RESPONSE_BYTES),
                Err(err) => HttpFailure::Transport(describe_transport(&err)),
            };
            let Some(delay) = failure.retry_delay(attempt) else {
                return Err(failure);
            };
            if attempt >= self.read_attempts || Instant::now() + delay >= deadline {
                return Err(failure);
            }
            tracing::warn!(url = %redact_base(url), attempt, cause = %failure, "forge read failed; retrying");
            thread::sleep(delay);
            attempt += 1;
        }
    }

    /// A write (POST/PATCH with a JSON body), sent once; the JSON body of a 2xx answer.
    fn write<T: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<T, HttpFailure> {
        let request = match method {
            "POST" => self.agent.post(url),
            _ => self.agent.patch(url),
        };
        match request.header("Authorization", &self.auth).send_json(body) {
            Ok(resp) if resp.status().is_success() => self.parse(resp),
            Ok(resp) => Err(HttpFailure::from_response(resp, MAX_RESPONSE_BYTES)),
            // No connection: the request cannot have been sent.
            Err(err @ (ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)) => {
                Err(HttpFailure::Transport(describe_transport(&err)))
            }
            Err(err) => Err(HttpFailure::WriteTransport(describe_transport(&err))),
        }
    }

    fn parse<T: DeserializeOwned>(&self, resp: Response<ureq::Body>) -> Result<T, HttpFailure> {
        let bytes = read_capped(resp, MAX_RESPONSE_BYTES)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            HttpFailure::BadResponse(format!(
                "the forge sent a response that is not the expected JSON ({e})"
            ))
        })
    }

    /// Every item of a paginated list at `url` (which has no query yet):
    /// pages of [`PAGE_LIMIT`] until the server says there is no next page
    /// (`X-HasMore: false`, or a `Link` header without `rel="next"`) or a
    /// page comes back empty.
    fn all_pages<T: DeserializeOwned>(
        &self,
        url: &str,
        extra_query: &str,
    ) -> Result<Vec<T>, HttpFailure> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let (items, next): (Vec<T>, NextPage) = self.get_paged(&format!(
                "{url}?page={page}&limit={PAGE_LIMIT}{extra_query}"
            ))?;
            let empty = items.is_empty();
            all.extend(items);
            if empty || next == NextPage::No {
                return Ok(all);
            }
        }
        Err(HttpFailure::BadResponse(format!(
            "the forge's list at {} did not end after {MAX_PAGES} pages",
            redact_base(url)
        )))
    }

    fn pull_url(&self, n: IssueNumber) -> String {
        format!("{}/pulls/{}", self.repo_path, n.get())
    }

    /// After a 404 on a pull request endpoint: the error `read_pr` gives.
    fn pr_missing(&self, n: IssueNumber) -> ForgeError {
        match self.read_pr(n) {
            Ok(_) => ForgeError::NotFound(format!(
                "pull request #{} answered 404 on this endpoint; try again later",
                n.get()
            )),
            Err(e) => e,
        }
    }

    fn issue_url(&self, n: IssueNumber) -> String {
        format!("{}/issues/{}", self.repo_path, n.get())
    }

    /// After a 404 or 500 on `n`: does the issue exist at all?
    fn exists(&self, n: IssueNumber) -> Result<Option<GIssue>, ForgeError> {
        match self.get::<GIssue>(&self.issue_url(n)) {
            Ok(issue) => Ok(Some(issue)),
            Err(HttpFailure::Status { status: 404, .. }) => Ok(None),
            Err(f) => Err(f.into_forge_error(n, "read")),
        }
    }

    fn not_found(&self, n: IssueNumber) -> ForgeError {
        ForgeError::NotFound(format!(
            "#{} does not exist in {}; check the number (read_issue works on any existing issue or PR)",
            n.get(),
            self.repo_path.rsplit("/repos/").next().unwrap_or_default()
        ))
    }

    /// Map a 500 on a comments endpoint: Gitea answers 500 for a missing issue.
    fn comments_failure(&self, n: IssueNumber, failure: HttpFailure, action: &str) -> ForgeError {
        if matches!(failure, HttpFailure::Status { status: 500, .. })
            && let Ok(None) = self.exists(n)
        {
            return self.not_found(n);
        }
        failure.into_forge_error(n, action)
    }

    /// The operator-facing verdict for a failed step of [`Forge::preflight`]:
    /// one line naming the URL and the setting to fix.
    fn preflight_failure(&self, failure: HttpFailure, step: &str) -> ForgeError {
        let api = &self.api_base;
        match failure {
            HttpFailure::Transport(cause) if cause.contains("timeout") => {
                ForgeError::Unavailable(format!(
                    "{api} did not answer {step} within {} s; check FORGE_GITEA_API (--gitea-api) \
                     and that the forge is up, or raise FORGE_HTTP_TIMEOUT_SECS",
                    self.timeout.as_secs()
                ))
            }
            HttpFailure::Transport(cause) | HttpFailure::WriteTransport(cause) => {
                ForgeError::Unavailable(format!(
                    "cannot reach {api} ({cause}); check the scheme, host and port in \
                     FORGE_GITEA_API (--gitea-api)"
                ))
            }
            HttpFailure::Status {
                status: status @ (401 | 403),
                message,
                ..
            } => ForgeError::Rejected {
                status,
                message: format!(
                    "the forge at {api} did not accept the token (HTTP {status}: {message}); \
                     put a valid token in the file named by FORGE_TOKEN_FILE (--token-file) or in FORGE_TOKEN"
                ),
            },
            HttpFailure::Status {
                status, message, ..
            } if status == 429 || status >= 500 => ForgeError::Unavailable(format!(
                "the forge at {api} failed {step} (HTTP {status}: {message}); it may be down or \
                 overloaded: try again later"
            )),
            HttpFailure::Status { status, .. } => {
                not_a_gitea_api(api, status, &format!("{step} answered HTTP {status}"))
            }
            HttpFailure::BadResponse(_) => not_a_gitea_api(
                api,
                200,
                &format!("{step} did not answer with Gitea's JSON"),
            ),
        }
    }
}

/// The verdict for a server that does not speak Gitea's API at `api`
/// (it answered `status`).
fn not_a_gitea_api(api: &str, status: u16, why: &str) -> ForgeError {
    ForgeError::Rejected {
        status,
        message: format!(
            "{api} is not a Gitea API base ({why}); set FORGE_GITEA_API (--gitea-api) to the \
             URL ending in /api/v1, e.g. https://gitea.example.com/api/v1"
        ),
    }
}

impl Forge for GiteaForge {
    fn kind(&self) -> &'static str {
        "gitea"
    }

    fn api_base(&self) -> Option<&str> {
        Some(&self.api_base)
    }

    fn preflight(&self, issue: IssueNumber) -> Result<String, ForgeError> {
        let api = &self.api_base;
        let user_url = format!("{api}/user");
        let user: GUser = self
            .get(&user_url)
            .map_err(|f| self.preflight_failure(f, "GET /user"))?;
        let Some(login) = user.login.filter(|l| !l.is_empty()) else {
            return Err(not_a_gitea_api(
                api,
                200,
                "GET /user answered without a user login",
            ));
        };
        let repo = self.repo_path.rsplit("/repos/").next().unwrap_or_default();
        let _: serde_json::Value = self.get(&self.repo_path).map_err(|f| match f {
            HttpFailure::Status { status: 404, .. } => ForgeError::NotFound(format!(
                "repository {repo} not found at {api} (or '{login}' may not read it); \
                 check FORGE_OWNER (--owner) and FORGE_REPO (--repo)"
            )),
            f => self.preflight_failure(f, "GET the repository"),
        })?;
        match self.get::<GIssue>(&self.issue_url(issue)) {
            Ok(_) => Ok(login),
            Err(HttpFailure::Status { status: 404, .. }) => Err(ForgeError::NotFound(format!(
                "issue #{} does not exist in {repo} at {api}; check FORGE_ISSUE_NUMBER (--issue)",
                issue.get()
            ))),
            Err(f) => Err(self.preflight_failure(f, "GET the issue")),
        }
    }

    fn read_issue(&self, n: IssueNumber) -> Result<Issue, ForgeError> {
        match self.get::<GIssue>(&self.issue_url(n)) {
            Ok(issue) => Ok(issue.into_issue()),
            Err(HttpFailure::Status { status: 404, .. }) => Err(self.not_found(n)),
            Err(f) => Err(f.into_forge_error(n, "read")),
        }
    }

    fn read_pr(&self, n: IssueNumber) -> Result<PullRequest, ForgeError> {
        match self.get::<GPull>(&format!("{}/pulls/{}", self.repo_path, n.get())) {
            Ok(pr) => Ok(pr.into_pr()),
            Err(HttpFailure::Status { status: 404, .. }) => match self.exists(n)? {
                Some(_) => Err(ForgeError::NotFound(format!(
                    "#{} is an issue, not a pull request; read it with read_issue",
                    n.get()
                ))),
                None => Err(self.not_found(n)),
            },
            Err(f) => Err(f.into_forge_error(n, "read")),
        }
    }

    fn read_comments(&self, n: IssueNumber) -> Result<Vec<Comment>, ForgeError> {
        match self.get::<Vec<GComment>>(&format!("{}/comments", self.issue_url(n))) {
            Ok(list) => Ok(list.into_iter().map(GComment::into_comment).collect()),
            Err(HttpFailure::Status { status: 404, .. }) => Err(self.not_found(n)),
            Err(f) => Err(self.comments_failure(n, f, "read")),
        }
    }

    fn post_comment(&self, n: IssueNumber, body: &Text) -> Result<Comment, ForgeError> {
        let url = format!("{}/comments", self.issue_url(n));
        match self.write::<GComment>("POST", &url, &serde_json::json!({ "body": body.as_str() })) {
            Ok(c) => Ok(c.into_comment()),
            Err(HttpFailure::Status { status: 404, .. }) => Err(self.not_found(n)),
            Err(f) => Err(self.comments_failure(n, f, "write")),
        }
    }

    fn update_description(&self, n: IssueNumber, body: &Text) -> Result<Updated, ForgeError> {
        // PATCH on the issue endpoint works for PRs too, so one write serves both.
        let issue = match self.write::<GIssue>(
            "PATCH",
            &self.issue_url(n),
            &serde_json::json!({ "body": body.as_str() }),
        ) {
            Ok(issue) => issue,
            Err(HttpFailure::Status { status: 404, .. }) => return Err(self.not_found(n)),
            Err(f) => return Err(f.into_forge_error(n, "write")),
        };
        if issue.pull_request.is_some() {
            return self.read_pr(n).map(Updated::PullRequest);
        }
        Ok(Updated::Issue(issue.into_issue()))
    }

    fn read_reviews(&self, n: IssueNumber) -> Result<Vec<Review>, ForgeError> {
        let url = format!("{}/reviews", self.pull_url(n));
        let reviews: Vec<GReview> = match self.all_pages(&url, "") {
            Ok(list) => list,
            Err(HttpFailure::Status { status: 404, .. }) => return Err(self.pr_missing(n)),
            Err(f) => return Err(f.into_forge_error(n, "read")),
        };
        // Oldest first, whatever order the server lists them in.
        let mut out = Vec::with_capacity(reviews.len());
        for review in reviews {
            // The comments of one review come in one answer (no pagination).
            let comments: Vec<GReviewComment> =
                match self.get(&format!("{url}/{}/comments", review.id)) {
                    Ok(list) => list,
                    Err(f) => return Err(f.into_forge_error(n, "read")),
                };
            out.push(review.into_review(comments));
        }
        out.sort_by(|a, b| (&a.submitted_at, a.id).cmp(&(&b.submitted_at, b.id)));
        Ok(out)
    }

    fn default_branch(&self) -> Result<String, ForgeError> {
        let repo: GRepo = self
            .get(&self.repo_path)
            .map_err(|f| f.into_repo_error("read the repository"))?;
        repo.default_branch
            .filter(|b| !b.is_empty())
            .ok_or_else(|| ForgeError::Rejected {
                status: 200,
                message: "the repository has no default branch (is it empty?); push a branch first"
                    .into(),
            })
    }

    fn find_pr(&self, base: &str, head: &str) -> Result<Option<PullRequest>, ForgeError> {
        // The head is a branch of this repository: no `owner:` prefix, so
        // Gitea looks it up in this repository only.
        let url = format!(
            "{}/pulls/{}/{}",
            self.repo_path,
            encode_segment(base),
            encode_segment(head)
        );
        match self.get::<GPull>(&url) {
            Ok(pr) => Ok(Some(pr.into_pr())),
            Err(HttpFailure::Status { status: 404, .. }) => Ok(None),
            Err(f) => Err(f.into_repo_error("look up the pull request of the branch")),
        }
    }

    fn open_pr(
        &self,
        head: &str,
        base: &str,
        title: &Text,
        body: &Text,
    ) -> Result<PullRequest, ForgeError> {
        let url = format!("{}/pulls", self.repo_path);
        let request = serde_json::json!({
            "head": head,
            "base": base,
            "title": title.as_str(),
            "body": body.as_str(),
        });
        match self.write::<GPull>("POST", &url, &request) {
            Ok(pr) => Ok(pr.into_pr()),
            Err(HttpFailure::Status { status: 404, .. }) => Err(ForgeError::NotFound(format!(
                "the forge has no branch '{head}' (or '{base}') in {}",
                self.full_name()
            ))),
            Err(f) => Err(f.into_repo_error("open the pull request")),
        }
    }

    fn branch_commits(&self, base: &str, head: &str) -> Result<Vec<CommitInfo>, ForgeError> {
        let url = format!(
            "{}/compare/{}",
            self.repo_path,
            encode_segment(&format!("{base}...{head}"))
        );
        match self.get::<GCompare>(&url) {
            Ok(compare) => Ok(compare
                .commits
                .unwrap_or_default()
                .into_iter()
                .map(GCommit::into_info)
                .collect()),
            Err(HttpFailure::Status { status: 404, .. }) => Err(ForgeError::NotFound(format!(
                "the forge has no branch '{head}' (or '{base}') in {}",
                self.full_name()
            ))),
            Err(f) => Err(f.into_repo_error("compare the branch with its base")),
        }
    }

    fn pr_commits(&self, n: IssueNumber) -> Result<Vec<CommitInfo>, ForgeError> {
        let url = format!("{}/commits", self.pull_url(n));
        match self.all_pages::<GCommit>(&url, "&verification=false&files=false") {
            Ok(list) => Ok(list.into_iter().map(GCommit::into_info).collect()),
            Err(HttpFailure::Status { status: 404, .. }) => Err(self.pr_missing(n)),
            Err(f) => Err(f.into_forge_error(n, "read")),
        }
    }

    fn is_collaborator(&self, login: &str) -> Result<bool, ForgeError> {
        let url = format!("{}/collaborators/{}", self.repo_path, encode_segment(login));
        match self.status_of(&url) {
            Ok(_) => Ok(true),
            // 404: not a collaborator; 422: no such user (a deleted account).
            Err(HttpFailure::Status {
                status: 404 | 422, ..
            }) => Ok(false),
            Err(f) => Err(f.into_repo_error("check whether the author is a collaborator")),
        }
    }
}

impl GiteaForge {
    /// GET with the retries of [`GiteaForge::get`] for an endpoint that
    /// answers by its status alone (204 and no body): the 2xx status.
    fn status_of(&self, url: &str) -> Result<u16, HttpFailure> {
        self.get_with(url, |resp| Ok(resp.status().as_u16()))
    }

    /// `owner/repo`.
    fn full_name(&self) -> &str {
        self.repo_path.rsplit("/repos/").next().unwrap_or_default()
    }
}

/// What a list answer says about the page after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextPage {
    /// There is one (`X-HasMore: true`, or `Link` has `rel="next"`).
    Yes,
    /// There is none (`X-HasMore: false`, or `Link` without `rel="next"`).
    No,
    /// The answer does not say: read on until a page is empty.
    Unknown,
}

impl NextPage {
    fn of(resp: &Response<ureq::Body>) -> NextPage {
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
        if let Some(more) = header("x-hasmore") {
            return if more.trim().eq_ignore_ascii_case("true") {
                NextPage::Yes
            } else {
                NextPage::No
            };
        }
        match header("link") {
            Some(link) if link.contains("rel=\"next\"") => NextPage::Yes,
            Some(_) => NextPage::No,
            None => NextPage::Unknown,
        }
    }
}

/// One path segment, percent-encoded: a branch `agent/issue-17` becomes
/// `agent%2Fissue-17` (Gitea unescapes path parameters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why an HTTP exchange failed, before mapping to a [`ForgeError`].
#[derive(Debug)]
enum HttpFailure {
    /// A non-2xx answer.
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
        location: Option<String>,
    },
    /// No answer on a read (connect failure, timeout, reset).
    Transport(String),
    /// No answer on a write: the request may or may not have been applied.
    WriteTransport(String),
    /// A 2xx answer that is not what the API documents.
    BadResponse(String),
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpFailure::Status {
                status, message, ..
            } => write!(f, "HTTP {status}: {message}"),
            HttpFailure::Transport(m)
            | HttpFailure::WriteTransport(m)
            | HttpFailure::BadResponse(m) => f.write_str(m),
        }
    }
}

impl HttpFailure {
    fn from_response(resp: Response<ureq::Body>, cap: u64) -> HttpFailure {
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let location = header("location");
        // Error bodies are `{"message", "url"}`, but may be empty, `null` or not JSON.
        let message = read_capped(resp, cap.min(64 * 1024))
            .ok()
            .and_then(|b| serde_json::from_slice::<GError>(&b).ok())
            .and_then(|e| e.message)
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| default_reason(status).to_string());
        HttpFailure::Status {
            status,
            message,
            retry_after,
            location,
        }
    }

    /// The delay before retrying a read, or `None` if this failure is final.
    fn retry_delay(&self, attempt: u32) -> Option<Duration> {
        let backoff = BACKOFF * 2u32.pow(attempt - 1);
        match self {
            HttpFailure::Transport(_) => Some(backoff),
            HttpFailure::Status {
                status,
                retry_after,
                ..
            } if *status == 429 || *status >= 500 => {
                Some(retry_after.map_or(backoff, |d| d.min(MAX_RETRY_AFTER)))
            }
            _ => None,
        }
    }

    fn into_forge_error(self, n: IssueNumber, action: &str) -> ForgeError {
        match self {
            HttpFailure::Status {
                status, location, ..
            } if (300..400).contains(&status) => redirected(status, location.as_deref()),
            HttpFailure::Status {
                status, message, ..
            } if status == 429 || status >= 500 => ForgeError::Unavailable(format!(
                "the forge is unavailable (HTTP {status}: {message}) for #{}; try again later",
                n.get()
            )),
            HttpFailure::Status {
                status, message, ..
            } => ForgeError::Rejected { status, message },
            HttpFailure::Transport(m) => ForgeError::Unavailable(format!(
                "could not {action} #{} on the forge: {m}; try again later",
                n.get()
            )),
            HttpFailure::WriteTransport(m) => ForgeError::Unavailable(format!(
                "the write to #{} may or may not have reached the forge ({m}); read #{} to check before trying again",
                n.get(),
                n.get()
            )),
            HttpFailure::BadResponse(m) => ForgeError::Rejected {
                status: 200,
                message: m,
            },
        }
    }
}

impl HttpFailure {
    /// The error of a repository-level call (no issue number to name).
    fn into_repo_error(self, action: &str) -> ForgeError {
        match self {
            HttpFailure::Status {
                status, message, ..
            } if status == 429 || status >= 500 => ForgeError::Unavailable(format!(
                "the forge is unavailable (HTTP {status}: {message}); could not {action}: try again later"
            )),
            HttpFailure::Status {
                status: status @ 300..400,
                location,
                ..
            } => redirected(status, location.as_deref()),
            HttpFailure::Status {
                status, message, ..
            } => ForgeError::Rejected { status, message },
            HttpFailure::Transport(m) => ForgeError::Unavailable(format!(
                "could not {action} on the forge: {m}; try again later"
            )),
            HttpFailure::WriteTransport(m) => ForgeError::Unavailable(format!(
                "the request to {action} may or may not have reached the forge ({m}); check before trying again"
            )),
            HttpFailure::BadResponse(m) => ForgeError::Rejected {
                status: 200,
                message: m,
            },
        }
    }
}

/// A 3xx answer: never followed, since following one can turn a write into
/// a read or send the token elsewhere.
fn redirected(status: u16, location: Option<&str>) -> ForgeError {
    ForgeError::Rejected {
        status,
        message: format!(
            "the forge redirected to {}; redirects are not followed (the repository may have moved: \
             ask the operator to update FORGE_OWNER/FORGE_REPO)",
            location
                .map(redact_base)
                .unwrap_or_else(|| "an unknown location".into())
        ),
    }
}

fn read_capped(resp: Response<ureq::Body>, cap: u64) -> Result<Vec<u8>, HttpFailure> {
    // Charged to the call's byte budget as it is read, into a buffer grown
    // a step at a time, so what it holds is what was charged (not up to
    // twice that, as doubling would).
    let mut reader = Charged(resp.into_body().into_reader()).take(cap + 1);
    let mut bytes = Vec::new();
    loop {
        bytes.reserve_exact(CHARGE_STEP);
        let len = bytes.len();
        bytes.resize(len + CHARGE_STEP, 0);
        let n = loop {
            match reader.read(&mut bytes[len..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let n = n.map_err(|e| {
            HttpFailure::Transport(format!("reading the forge's response failed: {e}"))
        })?;
        bytes.truncate(len + n);
        if n == 0 {
            break;
        }
    }
    if bytes.len() as u64 > cap {
        return Err(HttpFailure::BadResponse(format!(
            "the forge's response is larger than the {cap}-byte limit and was not read"
        )));
    }
    Ok(bytes)
}

/// What went wrong on the way to the forge, naming a DNS or TLS failure as
/// such (they are fixed in different places than a forge that is down).
fn describe_transport(err: &ureq::Error) -> String {
    const DNS: &str = "the forge's host name did not resolve (DNS)";
    match err {
        ureq::Error::Timeout(ureq::Timeout::Resolve) => {
            format!("{DNS}: the lookup did not finish within the timeout")
        }
        ureq::Error::Timeout(_) => "the forge did not answer within the timeout".into(),
        ureq::Error::HostNotFound => format!("{DNS}: no address for it"),
        ureq::Error::ConnectionFailed => "could not connect to the forge".into(),
        ureq::Error::Io(e) => match tls_failure(e) {
            Some(tls) => tls_words(&tls.to_string()),
            // The resolver's failure arrives as an uncategorized I/O error
            // whose text std has always started this way.
            None if e.to_string().starts_with("failed to lookup address") => {
                format!("{DNS}: {e}")
            }
            None => format!("connection to the forge failed: {e}"),
        },
        ureq::Error::Rustls(e) => tls_words(&e.to_string()),
        ureq::Error::Tls(e) => tls_words(e),
        other => format!("talking to the forge failed: {other}"),
    }
}

/// The TLS error inside an I/O error from the TLS layer, if it is one.
fn tls_failure(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

fn tls_words(cause: &str) -> String {
    format!(
        "the TLS handshake with the forge failed ({cause}); check that the forge speaks https \
         at this address and that its certificate is valid for the host name"
    )
}

fn default_reason(status: u16) -> &'static str {
    match status {
        401 => "the token was not accepted",
        403 => "permission denied (the token's user may not write here, or the issue is locked)",
        404 => "not found",
        409 => "conflict",
        412 => "precondition failed",
        422 => "the forge could not process the request",
        423 => "the repository is archived (read-only)",
        s if s >= 500 => "internal error in the forge",
        _ => "no reason given",
    }
}

/// Drop a URL's query (never logged: it could hold credentials).
fn redact_base(url: &str) -> String {
    url.split('?').next().unwrap_or_default().to_string()
}

// Gitea wire types: lenient (every field may be missing or null).

#[derive(Deserialize, Default)]
struct GError {
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct GUser {
    login: Option<String>,
}

#[derive(Deserialize)]
struct GLabel {
    name: Option<String>,
}

#[derive(Deserialize)]
struct GBranch {
    #[serde(rename = "ref")]
    ref_name: Option<String>,
    label: Option<String>,
    repo: Option<GRepo>,
}

#[derive(Deserialize, Default)]
struct GRepo {
    full_name: Option<String>,
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct GReview {
    id: u64,
    user: Option<GUser>,
    state: Option<String>,
    body: Option<String>,
    commit_id: Option<String>,
    stale: Option<bool>,
    dismissed: Option<bool>,
    submitted_at: Option<String>,
}

#[derive(Deserialize)]
struct GReviewComment {
    id: u64,
    user: Option<GUser>,
    path: Option<String>,
    position: Option<u64>,
    original_position: Option<u64>,
    diff_hunk: Option<String>,
    body: Option<String>,
    commit_id: Option<String>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct GCompare {
    commits: Option<Vec<GCommit>>,
}

#[derive(Deserialize)]
struct GCommit {
    sha: Option<String>,
    commit: Option<GRepoCommit>,
}

#[derive(Deserialize)]
struct GRepoCommit {
    message: Option<String>,
}

impl GCommit {
    fn into_info(self) -> CommitInfo {
        CommitInfo {
            sha: self.sha.unwrap_or_default(),
            message: self.commit.and_then(|c| c.message).unwrap_or_default(),
        }
    }
}

impl GReview {
    fn into_review(self, comments: Vec<GReviewComment>) -> Review {
        let state = match self.state.as_deref().unwrap_or_default() {
            "APPROVED" => ReviewState::Approved,
            "REQUEST_CHANGES" => ReviewState::RequestChanges,
            "COMMENT" => ReviewState::Comment,
            "PENDING" => ReviewState::Pending,
            "REQUEST_REVIEW" => ReviewState::ReviewRequested,
            _ => ReviewState::Unknown,
        };
        Review {
            id: self.id,
            user: login(self.user),
            state,
            body: self.body.unwrap_or_default(),
            commit: self.commit_id.unwrap_or_default(),
            stale: self.stale.unwrap_or(false),
            dismissed: self.dismissed.unwrap_or(false),
            submitted_at: self.submitted_at.unwrap_or_default(),
            comments: comments
                .into_iter()
                .map(GReviewComment::into_comment)
                .collect(),
        }
    }
}

impl GReviewComment {
    fn into_comment(self) -> ReviewComment {
        ReviewComment {
            id: self.id,
            user: login(self.user),
            path: self.path.unwrap_or_default(),
            // Gitea: `position` is the line in the new file, 0 when the
            // comment is on a removed line (then `original_position` has it).
            line: self.position.filter(|l| *l > 0),
            old_line: self.original_position.filter(|l| *l > 0),
            diff_hunk: self.diff_hunk.unwrap_or_default(),
            body: self.body.unwrap_or_default(),
            commit: self.commit_id.unwrap_or_default(),
            created_at: self.created_at.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct GIssue {
    number: u64,
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    user: Option<GUser>,
    labels: Option<Vec<GLabel>>,
    assignees: Option<Vec<GUser>>,
    html_url: Option<String>,
    pull_request: Option<serde_json::Value>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct GPull {
    number: u64,
    title: Option<String>,
    body: Option<String>,
    state: Option<String>,
    merged: Option<bool>,
    draft: Option<bool>,
    head: Option<GBranch>,
    base: Option<GBranch>,
    user: Option<GUser>,
    html_url: Option<String>,
    url: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct GComment {
    id: u64,
    user: Option<GUser>,
    body: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

fn state(s: Option<String>) -> State {
    if s.as_deref() == Some("closed") {
        State::Closed
    } else {
        State::Open
    }
}

fn login(u: Option<GUser>) -> String {
    u.and_then(|u| u.login).unwrap_or_default()
}

fn branch(b: Option<&GBranch>) -> String {
    b.and_then(|b| {
        b.ref_name
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| b.label.clone())
    })
    .unwrap_or_default()
}

impl GIssue {
    fn into_issue(self) -> Issue {
        Issue {
            number: self.number,
            title: self.title.unwrap_or_default(),
            body: self.body.unwrap_or_default(),
            state: state(self.state),
            user: login(self.user),
            labels: self
                .labels
                .unwrap_or_default()
                .into_iter()
                .filter_map(|l| l.name)
                .collect(),
            assignees: self
                .assignees
                .unwrap_or_default()
                .into_iter()
                .filter_map(|u| u.login)
                .collect(),
            is_pull_request: self.pull_request.as_ref().is_some_and(|p| !p.is_null()),
            url: self.html_url.unwrap_or_default(),
            created_at: self.created_at.unwrap_or_default(),
            updated_at: self.updated_at.unwrap_or_default(),
            notices: vec![],
        }
    }
}

impl GPull {
    fn into_pr(self) -> PullRequest {
        PullRequest {
            number: self.number,
            title: self.title.unwrap_or_default(),
            body: self.body.unwrap_or_default(),
            state: state(self.state),
            merged: self.merged.unwrap_or(false),
            draft: self.draft.unwrap_or(false),
            head: branch(self.head.as_ref()),
            head_repo: self
                .head
                .and_then(|h| h.repo)
                .and_then(|r| r.full_name)
                .filter(|n| !n.is_empty()),
            base: branch(self.base.as_ref()),
            user: login(self.user),
            url: self.html_url.or(self.url).unwrap_or_default(),
            created_at: self.created_at.unwrap_or_default(),
            updated_at: self.updated_at.unwrap_or_default(),
            notices: vec![],
        }
    }
}

impl GComment {
    fn into_comment(self) -> Comment {
        Comment {
            id: self.id,
            user: login(self.user),
            body: self.body.unwrap_or_default(),
            created_at: self.created_at.unwrap_or_default(),
            updated_at: self.updated_at.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A preflight against `api` with a short timeout: its message.
    fn preflight_message(api: &str) -> String {
        let forge = GiteaForge::new(api, "o", "r", &Secret::new("t"), Duration::from_secs(5));
        let e = forge.preflight(IssueNumber::new(1).unwrap()).unwrap_err();
        assert!(matches!(e, ForgeError::Unavailable(_)), "{e:?}");
        e.message().to_string()
    }

    #[test]
    fn an_unknown_host_is_named_a_dns_failure() {
        // `.invalid` never resolves (RFC 6761).
        let m = preflight_message("http://forge.invalid/api/v1");
        assert!(
            m.contains("the forge's host name did not resolve (DNS)"),
            "{m}"
        );
        assert!(!m.contains("uncategorized"), "{m}");
    }

    #[test]
    fn a_plain_http_server_behind_https_is_named_a_tls_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Answers every attempt (reads are retried) with plain HTTP; left
        // running when the test ends.
        thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let m = preflight_message(&format!("https://127.0.0.1:{port}/api/v1"));
        assert!(m.contains("the TLS handshake with the forge failed"), "{m}");
    }

    #[test]
    fn issue_with_nulls_maps_to_empty_values() {
        let raw = r#"{"number": 3, "title": "t", "body": null, "state": "closed", "user": null,
            "labels": [], "assignees": null, "html_url": "https://g/o/r/issues/3",
            "pull_request": null, "created_at": "2024-05-01T12:34:56+08:00", "updated_at": null}"#;
        let issue = serde_json::from_str::<GIssue>(raw).unwrap().into_issue();
        assert_eq!(issue.body, "");
        assert_eq!(issue.state, State::Closed);
        assert!(!issue.is_pull_request);
        assert!(issue.assignees.is_empty());
        assert_eq!(issue.created_at, "2024-05-01T12:34:56+08:00");
    }

    #[test]
    fn pr_as_issue_is_flagged() {
        let raw = r#"{"number": 18, "pull_request": {"merged": false, "merged_at": null, "draft": true, "html_url": "x"}}"#;
        assert!(
            serde_json::from_str::<GIssue>(raw)
                .unwrap()
                .into_issue()
                .is_pull_request
        );
    }

    #[test]
    fn branches_are_one_path_segment() {
        assert_eq!(encode_segment("agent/issue-17"), "agent%2Fissue-17");
        assert_eq!(encode_segment("main...a/b"), "main...a%2Fb");
        assert_eq!(encode_segment("ü #?"), "%C3%BC%20%23%3F");
    }

    #[test]
    fn review_lines_follow_gitea() {
        let raw = r#"{"id": 5, "user": {"login": "a"}, "path": "x.rs", "position": 0,
            "original_position": 7, "diff_hunk": "@@", "body": "b", "commit_id": "c",
            "created_at": "t"}"#;
        let c = serde_json::from_str::<GReviewComment>(raw)
            .unwrap()
            .into_comment();
        assert_eq!((c.line, c.old_line), (None, Some(7)));
        let pr = r#"{"number": 3, "head": {"ref": "agent/x", "repo": {"full_name": "mallory/widgets"}},
            "base": {"ref": "main", "repo": null}}"#;
        let pr = serde_json::from_str::<GPull>(pr).unwrap().into_pr();
        assert_eq!(pr.head_repo.as_deref(), Some("mallory/widgets"));
        let deleted_fork =
            r#"{"number": 3, "head": {"ref": "agent/x", "repo": null, "repo_id": -1}}"#;
        assert_eq!(
            serde_json::from_str::<GPull>(deleted_fork)
                .unwrap()
                .into_pr()
                .head_repo,
            None
        );
    }

    #[test]
    fn read_failures_retry_but_client_errors_do_not() {
        let status = |status| HttpFailure::Status {
            status,
            message: String::new(),
            retry_after: None,
            location: None,
        };
        assert!(status(503).retry_delay(1).is_some());
        assert!(status(429).retry_delay(1).is_some());
        assert!(status(404).retry_delay(1).is_none());
        assert!(
            HttpFailure::WriteTransport("x".into())
                .retry_delay(1)
                .is_none()
        );
        let honoured = HttpFailure::Status {
            status: 429,
            message: String::new(),
            retry_after: Some(Duration::from_secs(60)),
            location: None,
        };
        assert_eq!(honoured.retry_delay(1), Some(MAX_RETRY_AFTER));
    }
}
