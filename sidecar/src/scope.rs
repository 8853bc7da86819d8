//! [`ScopedForge`]: the one place that decides what may be written.
//!
//! Reads pass through to any number in the repository. A write must first
//! be authorized ([`ScopedForge::authorize`], [`ScopedForge::authorize_pr`]):
//! the target must be the assigned issue or one of its PRs, the body within
//! the size limit, the session's write budget not used up, and every text
//! Gitea acts on (a comment, a description, a PR's title and body, the
//! commit messages of the branch a PR brings) must pass the one text checker
//! ([`crate::text_check`]): nothing in it may make the forge act outside
//! the scope (`closes #500` would close #500 when the PR merges: a write
//! outside the scope by other means), and its references and mentions stay
//! within the per-text limits. Only a permit (which only `authorize*` makes)
//! can be spent on a forge write, so no caller can skip the decision.
//!
//! The writable set grows here and nowhere else: only by a pull request
//! whose head is the configured branch of this repository (one the session
//! opened, or one found by looking it up), and only through a [`Growth`],
//! which the caller records (`scope_grown`) before [`ScopedForge::grow`]
//! applies it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use forge_protocol::echo::quote;
use forge_protocol::event::ScopeGrown;
use forge_protocol::{
    BranchName, Comment, DescriptionMode, ErrorCode, IssueNumber, Method, PullRequest, RpcError,
    ScopeInfo, Text, TextRules, Updated,
};

use crate::forge::{CommitInfo, Forge, ForgeError};
use crate::marker;
use crate::text_check::{self, ActionRef, Findings, Policy, Refusal};

/// The write scope and limits of a session.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Repository owner.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// The assigned issue.
    pub issue: IssueNumber,
    /// All writable numbers (the issue first, then its PRs).
    pub writable: Vec<IssueNumber>,
    /// Largest body, bytes.
    pub max_body_bytes: usize,
    /// Forge writes allowed in the session.
    pub max_writes: u32,
    /// The branch this sandbox pushes to: `open_pr`'s head, and the head
    /// that makes a pull request join the writable set.
    pub branch: Option<BranchName>,
    /// Bases `open_pr` may target besides the default branch.
    pub base_branches: Vec<BranchName>,
    /// Pull requests `open_pr` may open in the run (its sessions share them).
    pub max_prs: u32,
    /// Keywords and per-text limits for every text written.
    pub text: TextRules,
    /// The modes `update_description` may use.
    pub description_modes: Vec<DescriptionMode>,
}

#[cfg(test)]
impl Scope {
    /// acme/widgets, assigned #17 with PR #18, for tests.
    pub(crate) fn for_tests(max_body_bytes: usize, max_writes: u32) -> Scope {
        let n = |v| IssueNumber::new(v).expect("positive");
        Scope {
            owner: "acme".into(),
            repo: "widgets".into(),
            issue: n(17),
            writable: vec![n(17), n(18)],
            max_body_bytes,
            max_writes,
            branch: BranchName::new("agent/issue-17"),
            base_branches: vec![],
            max_prs: 1,
            text: text_check::default_rules(),
            description_modes: DescriptionMode::ALL.to_vec(),
        }
    }
}

/// A forge wrapped in the session's write scope.
pub struct ScopedForge {
    inner: Arc<dyn Forge>,
    scope: Scope,
    /// The writable numbers now: the initial set, then each [`Growth`].
    writable: RwLock<Vec<IssueNumber>>,
    /// The text checker's policy for the writable set now (rebuilt on growth).
    policy: RwLock<Arc<Policy>>,
    writes_used: AtomicU32,
    prs_opened: AtomicU32,
    default_branch: OnceLock<String>,
}

/// A pull request of the configured branch that may join the writable set:
/// made only by [`ScopedForge`] after checking its head, applied only by
/// [`ScopedForge::grow`]. Record [`Growth::event`] before applying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    number: IssueNumber,
    branch: String,
    reason: &'static str,
}

impl Growth {
    /// The pull request.
    pub fn number(&self) -> IssueNumber {
        self.number
    }

    /// The `scope_grown` event that records it.
    pub fn event(&self) -> ScopeGrown {
        ScopeGrown {
            number: self.number.get(),
            branch: self.branch.clone(),
            reason: self.reason.into(),
        }
    }
}

/// Why a pull request joins the scope (the `reason` of `scope_grown`).
mod reason {
    use forge_protocol::event::ScopeGrown;
    pub const OPENED: &str = ScopeGrown::OPENED;
    pub const AT_START: &str = ScopeGrown::AT_START;
    pub const ON_WRITE: &str = ScopeGrown::ON_WRITE;
    pub const ON_OPEN: &str = ScopeGrown::ON_OPEN;
}

/// Permission to open one pull request, from [`ScopedForge::authorize_pr`].
#[derive(Debug)]
pub struct PrPermit {
    head: BranchName,
    base: String,
    title: Text,
    body: Text,
}

impl PrPermit {
    /// The head branch.
    pub fn head(&self) -> &str {
        self.head.as_str()
    }

    /// The base branch.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The title, as checked.
    pub fn title(&self) -> &str {
        self.title.as_str()
    }

    /// The body, as checked (without the marker the write adds).
    pub fn body(&self) -> &str {
        self.body.as_str()
    }
}

fn not_pushed(head: &str, base: &str) -> RpcError {
    RpcError::new(
        ErrorCode::NotFound,
        format!(
            "the branch '{head}' is not on the forge (or '{base}' is missing); push it first \
             (git push -u origin {head}), then call open_pr again"
        ),
    )
    .with_data(serde_json::json!({ "branch": head, "base": base }))
}

/// The forge writes a [`WritePermit`] can pay for: a read or any other
/// method cannot be named here, so none can reach the write path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// `post_comment`.
    Comment,
    /// `update_description`.
    Description,
}

impl WriteKind {
    /// The RPC method of this write.
    pub fn method(self) -> Method {
        match self {
            WriteKind::Comment => Method::PostComment,
            WriteKind::Description => Method::UpdateDescription,
        }
    }
}

/// Permission for one forge write, from [`ScopedForge::authorize`]. It is
/// neither `Clone` nor `Copy`, and [`ScopedForge::write`] and
/// [`ScopedForge::release`] take it by value, so one budget unit pays for
/// one write at most. Spending it twice does not compile:
///
/// ```compile_fail,E0382
/// use forge_sidecar::scope::{ScopedForge, WritePermit};
/// fn twice(forge: &ScopedForge, permit: WritePermit) {
///     let _ = forge.write(permit, "", "");
///     let _ = forge.write(permit, "", "");
/// }
/// ```
///
/// while spending it once does:
///
/// ```
/// use forge_sidecar::scope::{ScopedForge, WritePermit};
/// fn once(forge: &ScopedForge, permit: WritePermit) {
///     let _ = forge.write(permit, "", "");
/// }
/// ```
#[derive(Debug)]
pub struct WritePermit {
    kind: WriteKind,
    number: IssueNumber,
    body: Text,
    mode: DescriptionMode,
    findings: Findings,
}

impl WritePermit {
    /// The method.
    pub fn method(&self) -> Method {
        self.kind.method()
    }

    /// The target.
    pub fn number(&self) -> IssueNumber {
        self.number
    }

    /// The agent's text, as checked (without what the write adds).
    pub fn body(&self) -> &str {
        self.body.as_str()
    }

    /// For a description: how it treats the description already there.
    pub fn mode(&self) -> DescriptionMode {
        self.mode
    }

    /// What the body refers to, mentions and closes (all allowed), for the audit.
    pub fn findings(&self) -> &Findings {
        &self.findings
    }
}

/// The checker's policy for `scope`'s texts when `writable` may be written.
fn policy_for(scope: &Scope, writable: &[IssueNumber]) -> Policy {
    let writable: Vec<u64> = writable.iter().map(|n| n.get()).collect();
    Policy::new(&scope.owner, &scope.repo, &writable, &scope.text)
}

/// `'Fixes #500' would close #500`, for a finding or a refusal.
fn describe(a: &ActionRef) -> String {
    // The repository part of a reference is the agent's text: cut it.
    format!(
        "'{}' would {} {}",
        quote(&a.to_string()),
        a.action.as_str(),
        quote(&a.target.to_string())
    )
}

impl ScopedForge {
    /// Wrap `inner` in `scope`.
    pub fn new(inner: Arc<dyn Forge>, scope: Scope) -> Self {
        let policy = RwLock::new(Arc::new(policy_for(&scope, &scope.writable)));
        ScopedForge {
            inner,
            policy,
            writable: RwLock::new(scope.writable.clone()),
            scope,
            writes_used: AtomicU32::new(0),
            prs_opened: AtomicU32::new(0),
            default_branch: OnceLock::new(),
        }
    }

    /// The forge underneath (kind, API base).
    pub fn inner(&self) -> &dyn Forge {
        &*self.inner
    }

    /// The writable numbers as integers.
    pub fn writable(&self) -> Vec<u64> {
        self.writable_numbers().iter().map(|n| n.get()).collect()
    }

    fn writable_numbers(&self) -> Vec<IssueNumber> {
        self.writable
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether `n` may be written now.
    pub fn is_writable(&self, n: IssueNumber) -> bool {
        self.writable_numbers().contains(&n)
    }

    /// The session's pull requests: the writable numbers but the issue.
    pub fn prs(&self) -> Vec<IssueNumber> {
        self.writable_numbers()
            .into_iter()
            .filter(|n| *n != self.scope.issue)
            .collect()
    }

    /// Pull requests `open_pr` may still open.
    pub fn prs_left(&self) -> u32 {
        self.scope
            .max_prs
            .saturating_sub(self.prs_opened.load(Ordering::SeqCst))
    }

    /// Forge writes left in the budget.
    pub fn writes_left(&self) -> u32 {
        self.scope
            .max_writes
            .saturating_sub(self.writes_used.load(Ordering::SeqCst))
    }

    /// What `scope` answers.
    pub fn info(&self, done: bool) -> ScopeInfo {
        ScopeInfo {
            owner: self.scope.owner.clone(),
            repo: self.scope.repo.clone(),
            issue: self.scope.issue.get(),
            writable: self.writable(),
            writes_left: self.writes_left(),
            branch: self.scope.branch.as_ref().map(ToString::to_string),
            prs_left: self.prs_left(),
            done,
            text: self.scope.text.clone(),
        }
    }

    /// The text checker's policy for the writable set now.
    fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Check a text Gitea acts on: what it refers to, mentions and closes
    /// must stay within the scope and the limits. `subject` names it in the
    /// error (`comment to #17`, `open_pr's title`).
    fn check_text(&self, subject: &str, text: &str) -> Result<Findings, RpcError> {
        let policy = self.policy();
        text_check::check(text, &policy).map_err(|refusal| refusal.to_rpc_error(subject, &policy))
    }

    /// The growth for `pr` if its head is the configured branch of this
    /// repository and it is not writable yet. A fork's branch of the same
    /// name, or a PR whose head repository is unknown, never qualifies.
    fn own_pr(&self, pr: &PullRequest, reason: &'static str) -> Option<Growth> {
        let branch = self.scope.branch.as_ref()?;
        let ours = format!("{}/{}", self.scope.owner, self.scope.repo);
        let same_repo = pr
            .head_repo
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case(&ours));
        let number = IssueNumber::new(pr.number)?;
        (pr.head == branch.as_str() && same_repo && !self.is_writable(number)).then(|| Growth {
            number,
            branch: branch.to_string(),
            reason,
        })
    }

    /// Whether `n`, outside the writable set, is a pull request of the
    /// configured branch (looked up on the forge). Blocks.
    pub fn discover(&self, n: IssueNumber) -> Option<Growth> {
        self.scope.branch.as_ref()?;
        if self.is_writable(n) {
            return None;
        }
        let pr = self.inner.read_pr(n).ok()?;
        self.own_pr(&pr, reason::ON_WRITE)
    }

    /// Whether a branch is configured (`open_pr` and the discovery of its
    /// pull requests need one).
    pub fn has_branch(&self) -> bool {
        self.scope.branch.is_some()
    }

    /// The pull requests of the configured branch into each allowed base
    /// that already exist (at the start of a session). Blocks.
    pub fn discover_at_start(&self) -> Result<Vec<Growth>, ForgeError> {
        let Some(branch) = self.scope.branch.clone() else {
            return Ok(vec![]);
        };
        let mut found: Vec<Growth> = Vec::new();
        for base in self.bases()? {
            if let Some(pr) = self.inner.find_pr(&base, branch.as_str())?
                && let Some(g) = self.own_pr(&pr, reason::AT_START)
                && !found.contains(&g)
            {
                found.push(g);
            }
        }
        Ok(found)
    }

    /// Add a pull request to the writable set. Record its event first.
    pub fn grow(&self, growth: Growth) {
        let mut writable = self.writable.write().unwrap_or_else(|p| p.into_inner());
        if !writable.contains(&growth.number) {
            writable.push(growth.number);
            let policy = policy_for(&self.scope, &writable);
            *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        }
    }

    /// The repository's default branch, asked once. Blocks.
    fn default_branch(&self) -> Result<String, ForgeError> {
        if let Some(b) = self.default_branch.get() {
            return Ok(b.clone());
        }
        let b = self.inner.default_branch()?;
        Ok(self.default_branch.get_or_init(|| b).clone())
    }

    /// The bases `open_pr` may target: the default branch, then the configured others.
    fn bases(&self) -> Result<Vec<String>, ForgeError> {
        let mut bases = vec![self.default_branch()?];
        for b in &self.scope.base_branches {
            if !bases.iter().any(|x| x == b.as_str()) {
                bases.push(b.to_string());
            }
        }
        Ok(bases)
    }

    /// The findings for `commits`: one line per commit whose message would
    /// make the forge close or reopen an issue outside the scope when the PR
    /// merges, naming the commit and the reference. (Gitea acts on no other
    /// part of a commit message then.)
    pub fn commit_findings(&self, commits: &[CommitInfo]) -> Vec<String> {
        let policy = self.policy();
        commits
            .iter()
            .filter_map(|c| match text_check::check(&c.message, &policy) {
                Err(Refusal::ActsOutside(a)) => {
                    Some(format!("commit {}: {}", c.short(), describe(&a)))
                }
                _ => None,
            })
            .collect()
    }

    /// Decide `open_pr`: a configured branch, an allowed base, sizes, the
    /// title, body and the branch's commit messages free of closing
    /// keywords aimed outside the scope, a PR left and a write left. On
    /// success one PR and one write are reserved; give them back with
    /// [`ScopedForge::release_pr`] if nothing is sent. Blocks (it reads
    /// the default branch and the branch's commits).
    pub fn authorize_pr(
        &self,
        title: Text,
        body: Text,
        base: Option<BranchName>,
    ) -> Result<PrPermit, RpcError> {
        let Some(head) = self.scope.branch.clone() else {
            return Err(RpcError::new(
                ErrorCode::ScopeDenied,
                "open_pr is not available: no branch is configured for this session; the operator must \
                 set FORGE_BRANCH (--branch) to the branch you push to. Ask a human to open the pull request",
            )
            .with_data(serde_json::json!({ "setting": "FORGE_BRANCH" })));
        };
        let bases = self.bases().map_err(ForgeError::into_rpc)?;
        let base = match base {
            None => bases[0].clone(),
            Some(b) if bases.iter().any(|x| x == b.as_str()) => b.to_string(),
            Some(b) => {
                return Err(RpcError::new(
                    ErrorCode::ScopeDenied,
                    format!(
                        "open_pr into '{b}' denied: pull requests may target only {}; leave base out for '{}'",
                        bases.iter().map(|x| format!("'{x}'")).collect::<Vec<_>>().join(", "),
                        bases[0]
                    ),
                )
                .with_data(serde_json::json!({ "base": b.as_str(), "allowed": bases })));
            }
        };
        if base == head.as_str() {
            return Err(RpcError::new(
                ErrorCode::ScopeDenied,
                format!(
                    "open_pr denied: the base '{base}' is the branch itself; choose another base"
                ),
            ));
        }
        let size = title.len().max(body.len());
        if size > self.scope.max_body_bytes {
            return Err(self.too_long(size, "title or body"));
        }
        marker::refuse_claims("open_pr's title", title.as_str())?;
        marker::refuse_claims("open_pr's body", body.as_str())?;
        // Gitea reads the title and the body together: a keyword ending the
        // title acts on a reference starting the body.
        let joined = format!("{} {}", title.as_str(), body.as_str());
        for (what, text) in [
            ("open_pr's title", title.as_str()),
            ("open_pr's body", body.as_str()),
            ("open_pr's title and body read together", joined.as_str()),
        ] {
            self.check_text(what, text)?;
        }
        if self.prs_left() == 0 {
            return Err(RpcError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "this run may open {} pull request(s) and its sessions (this one or an earlier \
                     one of the run) have opened them (0 left); update the open one with \
                     update_description, or ask a human",
                    self.scope.max_prs
                ),
            )
            .with_data(
                serde_json::json!({ "limit": "max_prs", "max": self.scope.max_prs, "left": 0 }),
            ));
        }
        let commits = self
            .inner
            .branch_commits(&base, head.as_str())
            .map_err(|e| match e {
                ForgeError::NotFound(_) => not_pushed(head.as_str(), &base),
                e => e.into_rpc(),
            })?;
        let policy = self.policy();
        for commit in &commits {
            if let Err(Refusal::ActsOutside(a)) = text_check::check(&commit.message, &policy) {
                let err = Refusal::ActsOutside(a.clone()).to_rpc_error(
                    &format!("open_pr (commit {} of '{head}')", commit.short()),
                    &policy,
                );
                return Err(RpcError::new(
                    ErrorCode::ScopeDenied,
                    format!(
                        "open_pr denied: reword commit {}: {} when the pull request merges, which is outside \
                         the assigned scope; rewrite the message (git rebase -i, or git commit --amend for the \
                         last one), push the branch again with --force-with-lease, then call open_pr again",
                        commit.short(),
                        describe(&a)
                    ),
                )
                .with_data(err.data));
            }
        }
        self.prs_opened
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.scope.max_prs).then_some(n + 1)
            })
            .map_err(|_| {
                RpcError::new(
                    ErrorCode::LimitExceeded,
                    "another open_pr took the last pull request of this run",
                )
            })?;
        if let Err(e) = self.reserve_write() {
            self.prs_opened.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
        Ok(PrPermit {
            head,
            base,
            title,
            body,
        })
    }

    /// Return what an unsent `open_pr` reserved.
    pub fn release_pr(&self, permit: PrPermit) {
        drop(permit);
        self.prs_opened.fetch_sub(1, Ordering::SeqCst);
        self.writes_used.fetch_sub(1, Ordering::SeqCst);
    }

    /// Send the `open_pr` of `permit`, its body carrying `marker`. Blocks.
    /// On success the PR is the session's: the returned [`Growth`] must be
    /// recorded and applied. A refusal gives the pull request back to the
    /// session's allowance (the write stays spent: it was sent); a lost
    /// answer ([`ForgeError::Unavailable`]) keeps both spent until the
    /// caller has read back whether the PR exists ([`ScopedForge::refund`]).
    pub fn open_pr(
        &self,
        permit: &PrPermit,
        marker: &str,
    ) -> Result<(PullRequest, Option<Growth>), ForgeError> {
        let body = Text::new(marker::with_marker(permit.body.as_str(), marker))
            .unwrap_or_else(|| permit.body.clone());
        match self
            .inner
            .open_pr(permit.head(), &permit.base, &permit.title, &body)
        {
            Ok(pr) => Ok(self.opened(pr)),
            Err(e @ ForgeError::Unavailable(_)) => Err(e),
            Err(e) => {
                self.prs_opened.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// A pull request this run's `open_pr` opened (its answer, or found by
    /// its marker), with its growth if it is not writable yet.
    pub fn opened(&self, pr: PullRequest) -> (PullRequest, Option<Growth>) {
        let growth = self.scope.branch.as_ref().and_then(|branch| {
            IssueNumber::new(pr.number)
                .filter(|n| !self.is_writable(*n) && pr.head == branch.as_str())
                .map(|number| Growth {
                    number,
                    branch: branch.to_string(),
                    reason: reason::OPENED,
                })
        });
        (pr, growth)
    }

    /// Give back what a sent write reserved once reading back showed it
    /// did not reach the forge: one write, and the pull request of an
    /// `open_pr`.
    pub fn refund(&self, pr: bool) {
        self.writes_used.fetch_sub(1, Ordering::SeqCst);
        if pr {
            self.prs_opened.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// After a 409 from `open_pr`: the open pull request of the branch into
    /// the permit's base, with its growth if it is not writable yet. Blocks.
    pub fn existing_pr(
        &self,
        permit: &PrPermit,
    ) -> Result<Option<(u64, Option<Growth>)>, ForgeError> {
        let Some(pr) = self.inner.find_pr(&permit.base, permit.head())? else {
            return Ok(None);
        };
        let growth = self.own_pr(&pr, reason::ON_OPEN);
        Ok(Some((pr.number, growth)))
    }

    /// The warnings for `signal_done`: commit messages of the session's
    /// pull requests that would act outside the scope, and PRs whose
    /// commits could not be read. Blocks.
    pub fn done_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for n in self.prs() {
            match self.inner.pr_commits(n) {
                Ok(commits) => warnings.extend(
                    self.commit_findings(&commits)
                        .into_iter()
                        .map(|f| format!("PR {n} {f} when it merges; reword it before merging")),
                ),
                Err(e) => warnings.push(format!(
                    "the commits of PR {n} could not be read ({}); check their messages before merging",
                    e.message()
                )),
            }
        }
        warnings
    }

    fn too_long(&self, size: usize, what: &str) -> RpcError {
        RpcError::new(
            ErrorCode::LimitExceeded,
            format!(
                "{what} is {size} bytes, over the {}-byte limit; shorten it (or split a comment in parts)",
                self.scope.max_body_bytes
            ),
        )
        .with_data(serde_json::json!({ "limit": "max_body_bytes", "max": self.scope.max_body_bytes, "size": size }))
    }

    fn reserve_write(&self) -> Result<(), RpcError> {
        self.writes_used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < self.scope.max_writes).then_some(used + 1)
            })
            .map(drop)
            .map_err(|_| {
                RpcError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "the run's budget of {} forge writes, shared by its sessions, is used up (0 left); finish with signal_done or ask a human",
                        self.scope.max_writes
                    ),
                )
                .with_data(serde_json::json!({ "limit": "max_writes", "max": self.scope.max_writes, "left": 0 }))
            })
    }

    /// Decide a write: scope, body size, budget. On success one unit of the
    /// budget is reserved; give it back with [`ScopedForge::release`] if the
    /// write is not sent.
    pub fn authorize(
        &self,
        kind: WriteKind,
        number: IssueNumber,
        body: Text,
    ) -> Result<WritePermit, RpcError> {
        self.authorize_mode(kind, number, body, None)
    }

    /// [`ScopedForge::authorize`] with the mode of an `update_description`
    /// (`None`: replace), which must be one of `FORGE_DESCRIPTION_MODES`.
    pub fn authorize_mode(
        &self,
        kind: WriteKind,
        number: IssueNumber,
        body: Text,
        mode: Option<DescriptionMode>,
    ) -> Result<WritePermit, RpcError> {
        if !self.is_writable(number) {
            return Err(RpcError::scope_denied(number.get(), &self.writable()));
        }
        let mode = mode.unwrap_or_default();
        if kind == WriteKind::Description && !self.scope.description_modes.contains(&mode) {
            let allowed: Vec<&str> = self
                .scope
                .description_modes
                .iter()
                .map(|m| m.as_str())
                .collect();
            return Err(RpcError::new(
                ErrorCode::ScopeDenied,
                format!(
                    "update_description in mode '{mode}' is not allowed in this session; allowed: {} \
                     (pass one as mode)",
                    allowed.join(", ")
                ),
            )
            .with_data(serde_json::json!({ "mode": mode.as_str(), "allowed": allowed })));
        }
        if body.len() > self.scope.max_body_bytes {
            return Err(self.too_long(body.len(), "body"));
        }
        let subject = match kind {
            WriteKind::Comment => format!("comment to #{}", number.get()),
            WriteKind::Description => format!("description of #{}", number.get()),
        };
        marker::refuse_claims(&subject, body.as_str()).map_err(|mut err| {
            err.data["number"] = number.get().into();
            err
        })?;
        let findings = self
            .check_text(&subject, body.as_str())
            .map_err(|mut err| {
                err.data["number"] = number.get().into();
                err
            })?;
        self.reserve_write()?;
        Ok(WritePermit {
            kind,
            number,
            body,
            mode,
            findings,
        })
    }

    /// Count `writes` made and pull requests opened by earlier sessions of
    /// the run against the budget and `max_prs`.
    pub fn spent_earlier(&self, writes: u32, prs_opened: u32) {
        self.writes_used.fetch_add(writes, Ordering::SeqCst);
        self.prs_opened.fetch_add(prs_opened, Ordering::SeqCst);
    }

    /// Return the budget unit of a permit that was not spent.
    pub fn release(&self, permit: WritePermit) {
        drop(permit);
        self.writes_used.fetch_sub(1, Ordering::SeqCst);
    }

    /// Spend a permit: send the write, its text carrying `marker`; a
    /// description is composed with `current` (the description now) as the
    /// permit's mode says. Blocks. The permit is consumed whatever the
    /// outcome: a failed write was still sent.
    pub fn write(
        &self,
        permit: WritePermit,
        marker: &str,
        current: &str,
    ) -> Result<Written, ForgeError> {
        let text = match permit.kind {
            WriteKind::Comment => marker::with_marker(permit.body.as_str(), marker),
            WriteKind::Description => {
                marker::compose(permit.mode, current, permit.body.as_str(), marker)
            }
        };
        let text = Text::new(text).unwrap_or_else(|| permit.body.clone());
        match permit.kind {
            WriteKind::Comment => self
                .inner
                .post_comment(permit.number, &text)
                .map(Written::Comment),
            WriteKind::Description => self
                .inner
                .update_description(permit.number, &text)
                .map(Written::Description),
        }
    }
}

/// The result of a forge write.
#[derive(Debug, Clone)]
pub enum Written {
    /// `post_comment` created this comment.
    Comment(Comment),
    /// `update_description` updated this issue or PR.
    Description(Updated),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::memory::MemoryForge;
    use forge_protocol::PullRequest;

    fn n(v: u64) -> IssueNumber {
        IssueNumber::new(v).unwrap()
    }

    fn scoped(max_writes: u32) -> ScopedForge {
        ScopedForge::new(
            Arc::new(MemoryForge::seeded("acme", "widgets")),
            Scope::for_tests(64, max_writes),
        )
    }

    fn text(s: &str) -> Text {
        Text::new(s).unwrap()
    }

    #[test]
    fn writes_outside_scope_are_denied_naming_the_set() {
        let f = scoped(5);
        let err = f
            .authorize(WriteKind::Comment, n(500), text("hi"))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ScopeDenied);
        assert!(
            err.message.contains("#500") && err.message.contains("#17, #18"),
            "{}",
            err.message
        );
        assert_eq!(f.writes_left(), 5, "a denied write must not use the budget");
    }

    #[test]
    fn budget_and_body_limits() {
        let f = scoped(1);
        let err = f
            .authorize(
                WriteKind::Comment,
                n(17),
                text(&"far too long a body ".repeat(4)),
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        let permit = f.authorize(WriteKind::Comment, n(17), text("ok")).unwrap();
        assert_eq!(f.writes_left(), 0);
        let err = f
            .authorize(WriteKind::Description, n(18), text("ok"))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        f.release(permit);
        assert_eq!(f.writes_left(), 1);
    }

    #[test]
    fn every_text_is_checked_for_what_it_makes_the_forge_do() {
        let f = scoped(5);
        for method in [WriteKind::Comment, WriteKind::Description] {
            for body in [
                "Closes #500",
                "fixes acme/widgets#500",
                "RESOLVES other/repo#17",
                ">reopens #3",
            ] {
                let err = f.authorize(method, n(18), text(body)).unwrap_err();
                assert_eq!(err.code, ErrorCode::ScopeDenied, "{body}");
                assert!(err.message.contains("the forge would"), "{}", err.message);
                assert_eq!(err.data["number"], 18);
            }
            let err = f
                .authorize(method, n(17), text("@a @b @c @d @e @f"))
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::LimitExceeded);
            assert_eq!(err.data["limit"], "max_mentions");
        }
        assert_eq!(f.writes_left(), 5, "a refused text must not use the budget");
        let permit = f
            .authorize(WriteKind::Comment, n(17), text("Closes #17; see #500"))
            .unwrap();
        assert_eq!(permit.findings().closing.len(), 1);
        assert_eq!(permit.findings().foreign_refs[0].to_string(), "#500");
    }

    fn scoped_on(branch: Option<&str>, max_writes: u32) -> ScopedForge {
        let mut scope = Scope::for_tests(256, max_writes);
        scope.branch = branch.and_then(BranchName::new);
        ScopedForge::new(Arc::new(MemoryForge::seeded("acme", "widgets")), scope)
    }

    fn pr(number: u64, head: &str, head_repo: Option<&str>) -> PullRequest {
        PullRequest {
            number,
            title: String::new(),
            body: String::new(),
            state: forge_protocol::State::Open,
            merged: false,
            draft: false,
            head: head.into(),
            head_repo: head_repo.map(str::to_string),
            base: "main".into(),
            user: String::new(),
            url: String::new(),
            created_at: String::new(),
            updated_at: String::new(),
            notices: vec![],
        }
    }

    #[test]
    fn only_the_branch_of_this_repository_grows_the_scope() {
        let f = scoped_on(Some("agent/issue-17"), 5);
        let g = f
            .own_pr(
                &pr(30, "agent/issue-17", Some("ACME/Widgets")),
                reason::ON_WRITE,
            )
            .unwrap();
        assert_eq!(g.event().reason, "found on write");
        for other in [
            pr(31, "agent/issue-17", Some("mallory/widgets")),
            pr(32, "agent/issue-17", None),
            pr(33, "agent/issue-18", Some("acme/widgets")),
            pr(18, "agent/issue-17", Some("acme/widgets")),
        ] {
            assert_eq!(f.own_pr(&other, reason::ON_WRITE), None, "{other:?}");
        }
        assert!(!f.is_writable(n(30)));
        f.grow(g);
        assert!(f.is_writable(n(30)));
        assert_eq!(f.prs(), [n(18), n(30)]);
        let none = scoped_on(None, 5);
        assert_eq!(
            none.own_pr(
                &pr(30, "agent/issue-17", Some("acme/widgets")),
                reason::ON_WRITE
            ),
            None
        );
    }

    #[test]
    fn open_pr_needs_a_branch_and_an_allowed_base() {
        let err = scoped_on(None, 5)
            .authorize_pr(text("t"), text("b"), None)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ScopeDenied);
        assert!(err.message.contains("FORGE_BRANCH"), "{}", err.message);
        let f = scoped_on(Some("agent/issue-17"), 5);
        let err = f
            .authorize_pr(text("t"), text("b"), BranchName::new("develop"))
            .unwrap_err();
        assert!(
            err.message.contains("may target only 'main'"),
            "{}",
            err.message
        );
        let err = scoped_on(Some("agent/nope"), 5)
            .authorize_pr(text("t"), text("b"), None)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::NotFound);
        assert!(err.message.contains("push it first"), "{}", err.message);
    }

    #[test]
    fn open_pr_text_and_commits_are_checked() {
        let f = scoped_on(Some("agent/issue-17"), 5);
        for (title, body) in [("Closes #500", "fine"), ("fine", "Fixes acme/widgets#500")] {
            let err = f.authorize_pr(text(title), text(body), None).unwrap_err();
            assert_eq!(err.code, ErrorCode::ScopeDenied);
            assert!(
                err.message.contains("would close #500")
                    || err.message.contains("would close acme/widgets#500"),
                "{}",
                err.message
            );
        }
        let err = f
            .authorize_pr(text("Export fix, closes"), text("#500 too"), None)
            .unwrap_err();
        assert!(
            err.message.contains("title and body read together"),
            "{}",
            err.message
        );
        let sneaky = scoped_on(Some("wip/cleanup"), 5);
        let err = sneaky
            .authorize_pr(text("Tidy"), text("Closes #17"), None)
            .unwrap_err();
        assert!(
            err.message
                .contains("reword commit 7f8e9d0: 'Closes #500' would close #500"),
            "{}",
            err.message
        );
        assert_eq!((sneaky.prs_left(), sneaky.writes_left()), (1, 5));
    }

    #[test]
    fn open_pr_grows_the_scope_and_is_limited() {
        let f = scoped_on(Some("agent/issue-17"), 5);
        let permit = f
            .authorize_pr(text("Export the last row"), text("Closes #17"), None)
            .unwrap();
        let (opened, growth) = f
            .open_pr(&permit, "<!-- forge-sidecar:write s/1 -->")
            .unwrap();
        let growth = growth.unwrap();
        assert_eq!(growth.number().get(), opened.number);
        assert_eq!(growth.event().reason, "opened");
        f.grow(growth);
        assert!(f.is_writable(n(opened.number)));
        assert_eq!((f.prs_left(), f.writes_left()), (0, 4));
        let err = f.authorize_pr(text("again"), text("b"), None).unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        assert!(f.done_warnings().is_empty());
    }

    #[test]
    fn done_warnings_name_the_commit() {
        let f = scoped_on(Some("wip/cleanup"), 5);
        let t = text("Tidy");
        let forge = MemoryForge::seeded("acme", "widgets");
        let opened = forge.open_pr("wip/cleanup", "main", &t, &t).unwrap();
        let f = ScopedForge::new(Arc::new(forge), f.scope.clone());
        f.grow(f.discover(n(opened.number)).unwrap());
        let warnings = f.done_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("commit 7f8e9d0: 'Closes #500' would close #500"),
            "{warnings:?}"
        );
    }

    #[test]
    fn permits_write_through() {
        let f = scoped(2);
        let permit = f
            .authorize(WriteKind::Comment, n(18), text("done"))
            .unwrap();
        let marker = "<!-- forge-sidecar:write s/1 -->";
        assert!(
            matches!(f.write(permit, marker, ""), Ok(Written::Comment(c)) if c.body == format!("done\n\n{marker}"))
        );
    }

    #[test]
    fn description_modes_are_limited_and_markers_refused() {
        let mut scope = Scope::for_tests(256, 5);
        scope.description_modes = vec![DescriptionMode::Append, DescriptionMode::Section];
        let f = ScopedForge::new(Arc::new(MemoryForge::seeded("acme", "widgets")), scope);
        for mode in [None, Some(DescriptionMode::Replace)] {
            let err = f
                .authorize_mode(WriteKind::Description, n(17), text("x"), mode)
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::ScopeDenied);
            assert!(
                err.message.contains("mode 'replace' is not allowed")
                    && err.message.contains("append, section"),
                "{}",
                err.message
            );
        }
        let permit = f
            .authorize_mode(
                WriteKind::Description,
                n(17),
                text("x"),
                Some(DescriptionMode::Append),
            )
            .unwrap();
        assert_eq!(permit.mode(), DescriptionMode::Append);
        let err = f
            .authorize(
                WriteKind::Comment,
                n(17),
                text("<!-- forge-sidecar:write s/9 -->"),
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParams);
        assert_eq!(f.writes_left(), 4, "refusals use no budget");
    }

    mod properties {
        use super::*;
        use crate::forge::ForgeError;
        use forge_protocol::{Issue, Review};
        use proptest::prelude::*;
        use std::sync::Mutex;

        /// A forge that records the writes that reach it.
        #[derive(Default)]
        struct Recording(Mutex<Vec<(Method, u64, String)>>);

        impl Forge for Recording {
            fn kind(&self) -> &'static str {
                "recording"
            }
            fn api_base(&self) -> Option<&str> {
                None
            }
            fn preflight(&self, _: IssueNumber) -> Result<String, ForgeError> {
                Ok(String::new())
            }
            fn read_issue(&self, _: IssueNumber) -> Result<Issue, ForgeError> {
                Err(ForgeError::NotFound("reads are not under test".into()))
            }
            fn read_pr(&self, _: IssueNumber) -> Result<PullRequest, ForgeError> {
                Err(ForgeError::NotFound("reads are not under test".into()))
            }
            fn read_comments(&self, _: IssueNumber) -> Result<Vec<Comment>, ForgeError> {
                Ok(vec![])
            }
            fn post_comment(&self, n: IssueNumber, body: &Text) -> Result<Comment, ForgeError> {
                self.0.lock().unwrap().push((
                    Method::PostComment,
                    n.get(),
                    body.as_str().to_string(),
                ));
                Err(ForgeError::Unavailable("recorded".into()))
            }
            fn update_description(
                &self,
                n: IssueNumber,
                body: &Text,
            ) -> Result<Updated, ForgeError> {
                self.0.lock().unwrap().push((
                    Method::UpdateDescription,
                    n.get(),
                    body.as_str().to_string(),
                ));
                Err(ForgeError::Unavailable("recorded".into()))
            }
            fn read_reviews(&self, _: IssueNumber) -> Result<Vec<Review>, ForgeError> {
                Ok(vec![])
            }
            fn default_branch(&self) -> Result<String, ForgeError> {
                Ok("main".into())
            }
            fn find_pr(&self, _: &str, _: &str) -> Result<Option<PullRequest>, ForgeError> {
                Ok(None)
            }
            fn open_pr(
                &self,
                _: &str,
                _: &str,
                title: &Text,
                _: &Text,
            ) -> Result<PullRequest, ForgeError> {
                self.0
                    .lock()
                    .unwrap()
                    .push((Method::OpenPr, 0, title.as_str().to_string()));
                Err(ForgeError::Unavailable("recorded".into()))
            }
            fn branch_commits(&self, _: &str, _: &str) -> Result<Vec<CommitInfo>, ForgeError> {
                Ok(vec![])
            }
            fn pr_commits(&self, _: IssueNumber) -> Result<Vec<CommitInfo>, ForgeError> {
                Ok(vec![])
            }
        }

        fn body() -> impl Strategy<Value = (String, bool)> {
            let keyword = prop_oneof![
                Just(""),
                Just("closes "),
                Just("Fixes: "),
                Just("RESOLVED "),
                Just("reopens "),
                Just("see "),
            ];
            // (reference, whether it is outside the writable set)
            let reference = prop_oneof![
                (1u64..600).prop_map(|n| (format!("#{n}"), n != 17 && n != 18)),
                (1u64..600).prop_map(|n| (format!("acme/widgets#{n}"), n != 17 && n != 18)),
                (1u64..600).prop_map(|n| (format!("other/repo#{n}"), true)),
                (1u64..600).prop_map(|n| (
                    format!("https://g.example/acme/widgets/pulls/{n}"),
                    n != 17 && n != 18
                )),
            ];
            (
                proptest::collection::vec((keyword, reference), 1..4),
                "[a-z .]{0,20}",
            )
                .prop_map(|(parts, tail)| {
                    let mut s: String =
                        parts.iter().map(|(k, (r, _))| format!("{k}{r} ")).collect();
                    s.push_str(&tail);
                    let escapes = parts
                        .iter()
                        .any(|(k, (_, outside))| *outside && !k.is_empty() && *k != "see ");
                    (s, escapes)
                })
        }

        proptest! {
            /// Whatever the sequence of write attempts, nothing outside the
            /// writable set (directly or through a closing keyword) reaches
            /// the forge, and never more writes than the budget.
            #[test]
            fn no_write_escapes_the_scope(
                calls in proptest::collection::vec((any::<bool>(), 1u64..600, body()), 1..40),
                max_writes in 0u32..10,
            ) {
                let recording = Arc::new(Recording::default());
                let scope = Scope::for_tests(1024, max_writes);
                let forge = ScopedForge::new(recording.clone(), scope);
                let mut escaping = std::collections::HashSet::new();
                for (comment, number, (body, escapes)) in calls {
                    let method = if comment { WriteKind::Comment } else { WriteKind::Description };
                    if escapes {
                        escaping.insert(body.clone());
                    }
                    if let Ok(permit) = forge.authorize(method, n(number), text(&body)) {
                        let _ = forge.write(permit, "<!-- forge-sidecar:write s/1 -->", "");
                    }
                }
                let writes = recording.0.lock().unwrap().clone();
                prop_assert!(writes.len() <= max_writes as usize);
                for (method, number, body) in writes {
                    prop_assert!(number == 17 || number == 18, "write reached #{}", number);
                    // What the agent wrote: the sent text less the marker.
                    let (agent, _) = body
                        .rsplit_once("\n\n<!-- forge-sidecar:write ")
                        .expect("every write carries its marker");
                    prop_assert!(
                        !escaping.contains(agent),
                        "{} to #{} carries a keyword aimed outside: {:?}", method.name(), number, body
                    );
                }
            }
        }
    }
}
