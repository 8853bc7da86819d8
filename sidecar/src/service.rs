//! [`Sidecar`]: every call's behaviour and its audit trail.
//!
//! Each method here is one call: it asks [`ScopedForge`] to decide, writes an
//! `intent` before any forge write, runs the forge call on the blocking pool
//! and writes the `op` event before returning. If an event cannot be durably
//! queued the call fails with `audit_unavailable` and, when that happens
//! before the forge write, nothing reaches the forge.
//!
//! Every forge write carries its identity ([`crate::marker`]) and is sent
//! once. When its answer is lost, the target is read back
//! ([`crate::resolve`]): found, the write is applied and answered as a
//! success; not found, its budget unit is given back and the agent may send
//! it again; the read-back failing too, the outcome stays unknown and the
//! unit spent. Writes of an earlier session of the run with no `op` are
//! resolved the same way at start ([`Sidecar::resolve_at_start`]). A call
//! identical to an earlier write of the run (method, target, mode, texts)
//! whose write is on the forge returns it instead of writing again.
//!
//! A call runs to completion once accepted, whether or not its caller is
//! still connected: the entry points run it on its own task
//! ([`Sidecar::detached`]), so a caller that hangs up cannot cancel the
//! `op` event of a forge call that was made. Calls that reach nothing are
//! audited at a bounded rate ([`crate::flood`]); every message and summary
//! is bounded ([`forge_protocol::echo`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forge_protocol::echo::{MAX_MESSAGE_CHARS, cut, quote};
use forge_protocol::event::{
    CallRef, Done, EventBody, Intent, Op, OpError, Outcome, OutcomeCounts, Peer, PreviousBody,
    Resolution, SessionEnd, SessionStart, WriteKey, WriteStatus,
};
use forge_protocol::{
    BranchName, Comment, CommentPage, DescriptionMode, DoneReceipt, DoneStatus, ErrorCode, Issue,
    IssueNumber, Method, PageParams, PullRequest, ReadReport, ReviewPage, RpcError, ScopeInfo,
    Text, Updated,
};
use forge_queue::run::{RunState, RunWrite};
use forge_queue::{QueueError, QueueWriter, Written};
use tokio::sync::Notify;

use crate::audit::AuditWriter;
use crate::budget::{Budget, Held};
use crate::config::Config;
use crate::flood::{AUDIT_RATE_PER_SEC, AuditRate};
use crate::forge::{Forge, ForgeError};
use crate::forge_health::{ForgeHealth, ForgeState};
use crate::marker;
use crate::read_guard::cursor::List;
use crate::read_guard::{ReadConfig, ReadGuard};
use crate::resolve::{self, Found, Unreadable};
use crate::scope::{Growth, ScopedForge, WriteKind, Written as ForgeWrite};

/// The sidecar's state for one session.
pub struct Sidecar {
    forge: Arc<ScopedForge>,
    audit: AuditWriter,
    max_summary_bytes: usize,
    next_op: AtomicU64,
    done: AtomicBool,
    /// The run's done event, when an earlier session of the run signalled it.
    done_earlier: Mutex<Option<String>>,
    run: Option<String>,
    counts: Mutex<OutcomeCounts>,
    in_flight: Arc<InFlight>,
    rate: AuditRate,
    forge_health: ForgeHealth,
    read: Arc<ReadGuard>,
    /// The forge writes of the run so far, oldest first, with what is known
    /// of each: repeated calls and late pull requests are checked against them.
    writes: Mutex<Vec<RunWrite>>,
    /// The bytes forge answers hold: bounds the forge calls running at once.
    budget: Arc<Budget>,
}

/// What an audited call was about, for its `op` event.
struct CallInfo {
    op_id: u64,
    op: String,
    target: Option<u64>,
    peer: Option<Peer>,
    started: Instant,
    /// For an allowed write: the foreign references and mentions of its text.
    reach: Option<(Vec<String>, Vec<String>)>,
    /// For a read: what was found in and done to the texts it returned.
    read: Option<ReadReport>,
    /// For a write whose answer was lost or that repeated an earlier one.
    resolution: Option<Resolution>,
    /// For a description write: the description it replaced.
    previous_body: Option<PreviousBody>,
}

/// Whether a call's `op` event may be coalesced with others.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Audit {
    /// The call reached the forge or changed the session: always its own event.
    Always,
    /// The call reached nothing: its own event within the audit rate, else counted.
    WithinRate,
}

/// Calls running on their own tasks, so a stop can wait for them.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One running call; dropping it ends the call.
struct CallGuard(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> CallGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        CallGuard(Arc::clone(self))
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Sidecar {
    /// A sidecar over `forge`, auditing into `queue`, for the run `run`.
    pub fn new(
        forge: ScopedForge,
        audit: AuditWriter,
        max_summary_bytes: usize,
        run: Option<String>,
    ) -> Self {
        Sidecar {
            forge: Arc::new(forge),
            audit,
            max_summary_bytes,
            next_op: AtomicU64::new(1),
            done: AtomicBool::new(false),
            done_earlier: Mutex::new(None),
            run,
            counts: Mutex::new(OutcomeCounts::default()),
            in_flight: Arc::default(),
            rate: AuditRate::default(),
            forge_health: ForgeHealth::default(),
            read: Arc::new(ReadGuard::new(ReadConfig::default(), "")),
            writes: Mutex::default(),
            budget: Arc::default(),
        }
    }

    /// Guard what the agent reads with `guard` (the default strips hidden
    /// characters, trusts every author and uses the default sizes).
    pub fn with_read_guard(mut self, guard: ReadGuard) -> Self {
        self.read = Arc::new(guard);
        self
    }

    /// Continue the run from what its earlier sessions spent: their forge
    /// writes and opened pull requests count against this session's budget
    /// and `max_prs`, and their done signal stands.
    pub fn continue_run(&self, earlier: &RunState) {
        self.forge.spent_earlier(earlier.writes, earlier.prs_opened);
        self.writes_of_run()
            .extend(earlier.forge_writes.iter().cloned());
        if let Some(done) = &earlier.done {
            self.done.store(true, Ordering::SeqCst);
            *self.done_earlier.lock().unwrap_or_else(|p| p.into_inner()) = Some(done.clone());
        }
    }

    /// The session id.
    pub fn session(&self) -> &str {
        self.audit.queue().session()
    }

    /// What the sidecar last learned of the forge (for `/health`).
    pub fn forge_health(&self) -> &ForgeHealth {
        &self.forge_health
    }

    /// The bytes forge answers hold (answers waiting for their callers are
    /// counted by the HTTP layer).
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The queue writer (for the heartbeat).
    pub fn queue(&self) -> &Arc<QueueWriter> {
        self.audit.queue()
    }

    /// Whether the queue takes events: what `/health`, the heartbeat and
    /// the run loop watch.
    pub fn audit_health(&self) -> &Arc<crate::audit::AuditHealth> {
        self.audit.health()
    }

    /// Write `session_start`.
    pub async fn start(&self, config: &Config) -> Result<(), QueueError> {
        let forge = self.forge.inner();
        let body = EventBody::SessionStart(SessionStart {
            version: env!("CARGO_PKG_VERSION").into(),
            forge: forge.kind().into(),
            api_base: forge.api_base().map(str::to_string),
            owner: config.owner.clone(),
            repo: config.repo.clone(),
            issue: config.issue.get(),
            writable: self.forge.writable(),
            limits: config.limits(),
            text: config.text.clone(),
            pid: std::process::id(),
            run: self.run.clone(),
        });
        self.emit(body).await.map(drop)
    }

    /// Look up the pull requests of the configured branch that already
    /// exist and add them to the writable set, each with its `scope_grown`
    /// event. A forge failure is logged and left: the lookup is made again
    /// when a write targets such a PR.
    pub async fn discover_own_prs(&self) -> Result<(), QueueError> {
        if let ForgeState::Unreachable(_) = self.forge_health.state() {
            // The start-up probe has said so once; the lookup is made again on write.
            return Ok(());
        }
        if !self.forge.has_branch() {
            // Nothing to look up, and nothing learned of the forge.
            return Ok(());
        }
        let found = match self.on_scoped(ScopedForge::discover_at_start).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(cause = %e.message, "could not look up the branch's pull requests at start; they are looked up again on write");
                return Ok(());
            }
        };
        for growth in found {
            self.record_growth(growth).await?;
        }
        Ok(())
    }

    /// Record a growth of the scope (`scope_grown`), then apply it: the
    /// only way the writable set grows.
    async fn record_growth(&self, growth: Growth) -> Result<(), QueueError> {
        let event = growth.event();
        tracing::info!(number = event.number, reason = %event.reason, "PR joins the writable set");
        self.emit(EventBody::ScopeGrown(event)).await?;
        self.forge.grow(growth);
        Ok(())
    }

    /// Write what is left of the coalesced counts, then `session_end` with
    /// the call counts.
    pub async fn end(&self, reason: &str) -> Result<(), QueueError> {
        self.flush_coalesced().await;
        let counts = *self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let body = EventBody::SessionEnd(SessionEnd {
            reason: reason.into(),
            counts,
            done: self.done.load(Ordering::SeqCst),
        });
        self.emit(body).await.map(drop)
    }

    /// Run `call` on its own task and wait for it: if the waiting future is
    /// dropped (the caller hung up), the call still runs to completion and
    /// writes its events. [`Sidecar::wait_idle`] waits for such calls.
    pub async fn detached<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, RpcError>> + Send + 'static,
    ) -> Result<T, RpcError> {
        let guard = self.in_flight.enter();
        let task = tokio::spawn(async move {
            let _running = guard;
            call.await
        });
        task.await.unwrap_or_else(|e| {
            tracing::error!(cause = %e, "a call's task failed");
            Err(RpcError::new(
                ErrorCode::Internal,
                "the call failed inside the sidecar; read back what it was about before retrying",
            ))
        })
    }

    /// Wait until no call is running, for at most `limit`; false if some
    /// still are.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let idle = self.in_flight.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.in_flight.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok()
    }

    /// Write the calls counted over the audit rate: one `op` per outcome.
    pub async fn flush_coalesced(&self) {
        for (outcome, by_op) in self.rate.take() {
            let total: u64 = by_op.values().sum();
            let list: Vec<String> = by_op.iter().map(|(m, n)| format!("{m} x{n}")).collect();
            let summary = format!(
                "{total} {} call(s) over the audit rate ({AUDIT_RATE_PER_SEC}/s), counted: {}",
                outcome.as_str(),
                list.join(", ")
            );
            let summary = cut(&summary, MAX_MESSAGE_CHARS).into_owned();
            tracing::warn!(outcome = outcome.as_str(), calls = total, "{summary}");
            let op = EventBody::Op(Op {
                op_id: self.next_op.fetch_add(1, Ordering::SeqCst),
                op: "(coalesced)".into(),
                target: None,
                outcome,
                summary,
                error: None,
                duration_ms: 0,
                peer: None,
                foreign_refs: None,
                mentions: None,
                coalesced: Some(by_op),
                read: None,
                resolution: None,
                previous_body: None,
            });
            if let Err(cause) = self.emit(op).await {
                tracing::error!(cause = %cause, calls = total, "coalesced calls could not be audited");
            }
        }
    }

    /// `read_issue`.
    pub async fn read_issue(&self, n: IssueNumber, peer: Option<Peer>) -> Result<Issue, RpcError> {
        let mut call = self.begin(Method::ReadIssue.name(), Some(n), peer);
        let guard = Arc::clone(&self.read);
        let (result, _held) = self
            .on_forge(move |f| {
                let mut issue = f.read_issue(n)?;
                let report = guard.issue(f, &mut issue);
                Ok((issue, report))
            })
            .await;
        let (result, report) = split(result);
        let summary = match &result {
            Ok(i) if i.is_pull_request => format!("read PR #{n_} (issue view)", n_ = n.get()),
            Ok(_) => format!("read issue #{}", n.get()),
            Err(e) => format!("failed to read issue #{}: {}", n.get(), reason(e)),
        };
        call.read = report;
        let summary = with_report(summary, call.read.as_ref());
        self.finish(call, result, summary, Audit::Always).await
    }

    /// `read_pr`.
    pub async fn read_pr(
        &self,
        n: IssueNumber,
        peer: Option<Peer>,
    ) -> Result<PullRequest, RpcError> {
        let mut call = self.begin(Method::ReadPr.name(), Some(n), peer);
        let guard = Arc::clone(&self.read);
        let (result, _held) = self
            .on_forge(move |f| {
                let mut pr = f.read_pr(n)?;
                let report = guard.pr(f, &mut pr);
                Ok((pr, report))
            })
            .await;
        let (result, report) = split(result);
        let summary = match &result {
            Ok(_) => format!("read PR #{}", n.get()),
            Err(e) => format!("failed to read PR #{}: {}", n.get(), reason(e)),
        };
        call.read = report;
        let summary = with_report(summary, call.read.as_ref());
        self.finish(call, result, summary, Audit::Always).await
    }

    /// `read_comments`: one page, at most `FORGE_MAX_READ_BYTES`.
    pub async fn read_comments(
        &self,
        params: PageParams,
        peer: Option<Peer>,
    ) -> Result<CommentPage, RpcError> {
        let n = params.number;
        let mut call = self.begin(Method::ReadComments.name(), Some(n), peer);
        let start = match self.read.position(List::Comments, &params) {
            Ok(start) => start,
            Err(e) => {
                let summary = format!("refused read_comments of #{}: {}", n.get(), reason(&e));
                return self.finish(call, Err(e), summary, Audit::WithinRate).await;
            }
        };
        let guard = Arc::clone(&self.read);
        let (result, _held) = self
            .on_forge(move |f| {
                let all = f.read_comments(n)?;
                Ok(guard.comment_page(f, n, all, &params, start))
            })
            .await;
        let (result, report) = split(result);
        let summary = match &result {
            Ok(page) => format!(
                "read {} of {} comment(s) of #{} ({}, {} left)",
                page.comments.len(),
                page.total,
                n.get(),
                page.order.as_str().replace('_', " "),
                page.remaining
            ),
            Err(e) => format!("failed to read comments of #{}: {}", n.get(), reason(e)),
        };
        call.read = report;
        let summary = with_report(summary, call.read.as_ref());
        self.finish(call, result, summary, Audit::Always).await
    }

    /// `read_reviews`: one page, at most `FORGE_MAX_READ_BYTES`.
    pub async fn read_reviews(
        &self,
        params: PageParams,
        peer: Option<Peer>,
    ) -> Result<ReviewPage, RpcError> {
        let n = params.number;
        let mut call = self.begin(Method::ReadReviews.name(), Some(n), peer);
        let start = match self.read.position(List::Reviews, &params) {
            Ok(start) => start,
            Err(e) => {
                let summary = format!("refused read_reviews of PR #{}: {}", n.get(), reason(&e));
                return self.finish(call, Err(e), summary, Audit::WithinRate).await;
            }
        };
        let guard = Arc::clone(&self.read);
        let (result, _held) = self
            .on_forge(move |f| {
                let all = f.read_reviews(n)?;
                Ok(guard.review_page(f, n, all, &params, start))
            })
            .await;
        let (result, report) = split(result);
        let summary = match &result {
            Ok(page) => format!(
                "read {} of {} review(s) of PR #{} with {} inline comment(s) ({}, {} left)",
                page.reviews.len(),
                page.total,
                n.get(),
                page.reviews.iter().map(|r| r.comments.len()).sum::<usize>(),
                page.order.as_str().replace('_', " "),
                page.remaining
            ),
            Err(e) => format!("failed to read reviews of PR #{}: {}", n.get(), reason(e)),
        };
        call.read = report;
        let summary = with_report(summary, call.read.as_ref());
        self.finish(call, result, summary, Audit::Always).await
    }

    /// `open_pr`: decided by the scope (branch, base, texts, commits,
    /// limits), announced by an `intent`, sent once; the new PR joins the
    /// writable set on record. A lost answer is resolved by looking the PR
    /// up (`GET /pulls/{base}/{head}`) and finding its marker; a PR given
    /// back earlier that has shown up since is counted first.
    pub async fn open_pr(
        &self,
        title: Text,
        body: Text,
        base: Option<BranchName>,
        peer: Option<Peer>,
    ) -> Result<PullRequest, RpcError> {
        let mut call = self.begin(Method::OpenPr.name(), None, peer);
        self.find_late_prs().await?;
        let permit = match self
            .on_scoped(move |f| Ok(f.authorize_pr(title, body, base)))
            .await
            .and_then(|r| r)
        {
            Ok(permit) => permit,
            Err(e) => {
                let summary = format!("denied open_pr: {}", reason(&e));
                return self.finish(call, Err(e), summary, Audit::WithinRate).await;
            }
        };
        let (head, base) = (permit.head().to_string(), permit.base().to_string());
        let fingerprint =
            marker::fingerprint(&[Method::OpenPr.name(), permit.title(), permit.body(), &base]);
        match self.repeat_of(&mut call, &fingerprint).await {
            Repeat::No => {}
            Repeat::Found(Found::PullRequest(pr), summary) => {
                self.forge.release_pr(permit);
                call.target = Some(pr.number);
                return self.finish(call, Ok(pr), summary, Audit::Always).await;
            }
            Repeat::Found(_, _) => {
                self.forge.release_pr(permit);
                let err = RpcError::new(
                    ErrorCode::Internal,
                    "a repeated open_pr found no pull request",
                );
                return self
                    .finish(
                        call,
                        Err(err),
                        "open_pr: internal error".into(),
                        Audit::Always,
                    )
                    .await;
            }
            Repeat::Unreadable(err, summary) => {
                self.forge.release_pr(permit);
                return self.finish(call, Err(err), summary, Audit::Always).await;
            }
        }
        let intent = Intent {
            op_id: call.op_id,
            op: call.op.clone(),
            target: None,
            write: Some(WriteKey {
                id: marker::write_id(self.session(), call.op_id),
                call: fingerprint,
                mode: None,
                base: Some(base.clone()),
                head: Some(head.clone()),
            }),
        };
        if let Err(cause) = self.emit(EventBody::Intent(intent.clone())).await {
            self.forge.release_pr(permit);
            return Err(audit_unavailable(
                &cause,
                "nothing was sent to the forge; try again later",
            ));
        }
        let permit = Arc::new(permit);
        let sent = Arc::clone(&permit);
        let marker_text = intent
            .write
            .as_ref()
            .map(WriteKey::marker)
            .unwrap_or_default();
        let opened = match self
            .on_scoped(move |f| f.open_pr(&sent, &marker_text))
            .await
        {
            Err(e) if e.code == ErrorCode::ForgeUnavailable => {
                match self.resolve_lost(&mut call, &intent, e, true).await {
                    Ok(Found::PullRequest(pr)) => Ok(self.forge.opened(pr)),
                    Ok(_) => Err(RpcError::new(
                        ErrorCode::Internal,
                        "reading back an open_pr found no pull request",
                    )),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        let result = match opened {
            Ok((pr, growth)) => {
                if let Some(growth) = growth
                    && let Err(cause) = self.record_growth(growth).await
                {
                    self.remember(&intent, Some(WriteStatus::Applied));
                    return Err(audit_unavailable(
                        &cause,
                        &format!(
                            "PR #{} was opened but could not join the writable set; read it with read_pr, and ask a human",
                            pr.number
                        ),
                    ));
                }
                Ok(pr)
            }
            Err(e) if e.code == ErrorCode::ForgeRejected && forge_status(&e) == Some(409) => {
                let sent = Arc::clone(&permit);
                match self.on_scoped(move |f| f.existing_pr(&sent)).await {
                    Ok(Some((number, growth))) => {
                        if let Some(growth) = growth
                            && let Err(cause) = self.record_growth(growth).await
                        {
                            return Err(audit_unavailable(&cause, "try again later"));
                        }
                        Err(RpcError::new(
                            ErrorCode::ForgeRejected,
                            format!(
                                "PR #{number} is already open for this branch ({head} into {base}); update it \
                                 with update_description instead of opening another"
                            ),
                        )
                        .with_data(serde_json::json!({ "status": 409, "existing": number })))
                    }
                    _ => Err(e),
                }
            }
            Err(e) if e.code == ErrorCode::NotFound
                || (e.code == ErrorCode::ForgeRejected && forge_status(&e) == Some(422)) =>
            {
                Err(RpcError::new(
                    ErrorCode::ForgeRejected,
                    format!(
                        "the forge could not open a pull request from '{head}' into '{base}' ({}); \
                         push the branch first (git push -u origin {head}), then call open_pr again",
                        e.message
                    ),
                )
                .with_data(serde_json::json!({ "branch": head, "base": base })))
            }
            Err(e) => Err(e),
        };
        self.remember(&intent, written_status(&result, &call));
        let summary = match &result {
            Ok(pr) => format!("opened PR #{} from {head} into {base}", pr.number),
            Err(e) => format!("failed to open a PR from {head} into {base}: {}", reason(e)),
        };
        let summary = format!("{summary}{}", resolution_note(&call));
        call.target = result.as_ref().ok().map(|pr| pr.number);
        self.finish(call, result, summary, Audit::Always).await
    }

    /// Pull requests of this run's `open_pr` that were found missing after a
    /// lost answer (or refused) and have shown up on the forge since: each
    /// counts against the run's pull requests again, joins the writable
    /// set, and gets an `op` that says so. A forge that cannot be read is
    /// left for the next call.
    async fn find_late_prs(&self) -> Result<(), RpcError> {
        let given_back: Vec<RunWrite> = self
            .writes_of_run()
            .iter()
            .filter(|w| w.intent.op == Method::OpenPr.name() && w.status == WriteStatus::NotApplied)
            .cloned()
            .collect();
        for earlier in given_back {
            let Ok(Some(Found::PullRequest(pr))) = self.read_back(earlier.intent.clone()).await
            else {
                continue;
            };
            self.forge.spent_earlier(1, 1);
            self.remember_at(&earlier.at, WriteStatus::Applied);
            let mut call = self.begin(Method::OpenPr.name(), IssueNumber::new(pr.number), None);
            call.resolution = Some(Resolution {
                status: WriteStatus::Applied,
                how: Resolution::FOUND_LATER.into(),
                forge_id: Some(pr.number),
                intent: Some(earlier.at.clone()),
            });
            let number = pr.number;
            let (_, growth) = self.forge.opened(pr);
            if let Some(growth) = growth
                && let Err(cause) = self.record_growth(growth).await
            {
                return Err(audit_unavailable(
                    &cause,
                    "nothing was sent to the forge; try again later",
                ));
            }
            let summary = format!(
                "PR #{number} of op {} (session {}) is on the forge after all: it counts against the run's \
                 pull requests and is writable",
                earlier.at.op_id, earlier.at.session
            );
            self.finish(call, Ok(()), summary, Audit::Always).await?;
        }
        Ok(())
    }

    /// `post_comment`.
    pub async fn post_comment(
        &self,
        n: IssueNumber,
        body: Text,
        peer: Option<Peer>,
    ) -> Result<Comment, RpcError> {
        match self.write(WriteKind::Comment, n, body, None, peer).await? {
            ForgeWrite::Comment(c) => Ok(c),
            ForgeWrite::Description(_) => Err(RpcError::new(
                ErrorCode::Internal,
                "unexpected write result",
            )),
        }
    }

    /// `update_description`: replace, append to, or set the sidecar's
    /// section of the description; the `op` keeps the previous body.
    pub async fn update_description(
        &self,
        n: IssueNumber,
        body: Text,
        mode: Option<DescriptionMode>,
        peer: Option<Peer>,
    ) -> Result<Updated, RpcError> {
        match self
            .write(WriteKind::Description, n, body, mode, peer)
            .await?
        {
            ForgeWrite::Description(u) => Ok(u),
            ForgeWrite::Comment(_) => Err(RpcError::new(
                ErrorCode::Internal,
                "unexpected write result",
            )),
        }
    }

    /// `signal_done`: the first call of the run writes the `done` event;
    /// later ones (in this session or a later one of the run) are refused.
    pub async fn signal_done(
        &self,
        status: DoneStatus,
        summary: Text,
        peer: Option<Peer>,
    ) -> Result<DoneReceipt, RpcError> {
        let mut call = self.begin(Method::SignalDone.name(), None, peer);
        if summary.len() > self.max_summary_bytes {
            let err = RpcError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "summary is {} bytes, over the {}-byte limit; shorten it",
                    summary.len(),
                    self.max_summary_bytes
                ),
            );
            return self
                .finish(
                    call,
                    Err(err),
                    "denied signal_done: summary too long".into(),
                    Audit::WithinRate,
                )
                .await;
        }
        if self.done.swap(true, Ordering::SeqCst) {
            let earlier = self
                .done_earlier
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let message = match earlier {
                Some(event) => format!(
                    "signal_done was already called in this run, by an earlier session of the sidecar (event {event}); \
                     the first signal stands and the host has it"
                ),
                None => "signal_done was already called in this session; the first signal stands and the host has it".into(),
            };
            let err = RpcError::new(ErrorCode::AlreadyDone, message);
            return self
                .finish(
                    call,
                    Err(err),
                    "denied signal_done: already done".into(),
                    Audit::WithinRate,
                )
                .await;
        }
        // Commits are pushed outside the sidecar: read them now and leave
        // the host what would act outside the scope. Never a refusal.
        let mut warnings = self
            .on_scoped(|f| Ok(f.done_warnings()))
            .await
            .unwrap_or_else(|e| {
                vec![format!(
                    "the session's commits could not be checked ({})",
                    e.message
                )]
            });
        // They quote commit messages: cleaned as every text the agent reads.
        call.read = self.read.warnings(&mut warnings);
        let event = EventBody::Done(Done {
            status,
            summary: summary.as_str().to_string(),
            warnings: warnings.clone(),
        });
        match self.emit(event).await {
            Ok(written) => {
                let text = match warnings.len() {
                    0 => format!("signalled done: {}", status.as_str()),
                    n => format!("signalled done: {} with {n} warning(s)", status.as_str()),
                };
                self.finish(
                    call,
                    Ok(DoneReceipt {
                        event: written.name,
                        warnings,
                    }),
                    text,
                    Audit::Always,
                )
                .await
            }
            Err(cause) => {
                self.done.store(false, Ordering::SeqCst);
                Err(audit_unavailable(
                    &cause,
                    "the done signal was not recorded; call signal_done again",
                ))
            }
        }
    }

    /// `scope`.
    pub async fn scope(&self, peer: Option<Peer>) -> Result<ScopeInfo, RpcError> {
        let call = self.begin(Method::Scope.name(), None, peer);
        let info = self.forge.info(self.done.load(Ordering::SeqCst));
        self.finish(call, Ok(info), "read scope".into(), Audit::WithinRate)
            .await
    }

    /// Audit a call refused before dispatch (unknown method, bad params,
    /// over a limit) and return the error to send. The audit runs on its own
    /// task, so it is written even if the caller has gone.
    pub async fn refuse(self: &Arc<Self>, op: &str, err: RpcError, peer: Option<Peer>) -> RpcError {
        // The name comes from the caller: keep the audit line short.
        let op = quote(op).into_owned();
        let me = Arc::clone(self);
        let audited = self
            .detached(async move {
                let call = me.begin(&op, None, peer);
                let summary = format!("refused {op}: {}", reason(&err));
                me.finish::<()>(call, Err(err), summary, Audit::WithinRate)
                    .await
            })
            .await;
        match audited {
            Err(err) => err,
            Ok(()) => RpcError::new(ErrorCode::Internal, "a refusal was not an error"),
        }
    }

    async fn write(
        &self,
        kind: WriteKind,
        n: IssueNumber,
        body: Text,
        mode: Option<DescriptionMode>,
        peer: Option<Peer>,
    ) -> Result<ForgeWrite, RpcError> {
        let mut call = self.begin(kind.method().name(), Some(n), peer);
        let noun = match kind {
            WriteKind::Comment => "comment to",
            WriteKind::Description => "description update of",
        };
        if !self.forge.is_writable(n)
            && let Ok(Some(growth)) = self.on_scoped(move |f| Ok(f.discover(n))).await
            && let Err(cause) = self.record_growth(growth).await
        {
            return Err(audit_unavailable(
                &cause,
                "nothing was sent to the forge; try again later",
            ));
        }
        let permit = match self.forge.authorize_mode(kind, n, body, mode) {
            Ok(permit) => permit,
            Err(e) => {
                let summary = format!("denied {noun} #{}: {}", n.get(), reason(&e));
                return self.finish(call, Err(e), summary, Audit::WithinRate).await;
            }
        };
        let mode = (kind == WriteKind::Description).then(|| permit.mode());
        let fingerprint = marker::fingerprint(&[
            kind.method().name(),
            &n.get().to_string(),
            mode.map_or("", DescriptionMode::as_str),
            permit.body(),
        ]);
        match self.repeat_of(&mut call, &fingerprint).await {
            Repeat::No => {}
            Repeat::Found(found, summary) => {
                self.forge.release(permit);
                let result = match found {
                    Found::Comment(c) => Ok(ForgeWrite::Comment(c)),
                    Found::Description(u) => Ok(ForgeWrite::Description(u)),
                    Found::PullRequest(_) => Err(RpcError::new(
                        ErrorCode::Internal,
                        "a repeated write found a pull request",
                    )),
                };
                return self.finish(call, result, summary, Audit::Always).await;
            }
            Repeat::Unreadable(err, summary) => {
                self.forge.release(permit);
                return self.finish(call, Err(err), summary, Audit::Always).await;
            }
        }
        // A description is composed with the one there now, which the op keeps.
        let current = if kind == WriteKind::Description {
            match self.on_forge(move |f| f.read_issue(n)).await.0 {
                Ok(issue) => issue.body,
                Err(e) => {
                    self.forge.release(permit);
                    let summary = format!(
                        "failed to update description of #{}: the description could not be read first: {}",
                        n.get(),
                        reason(&e)
                    );
                    return self.finish(call, Err(e), summary, Audit::Always).await;
                }
            }
        } else {
            String::new()
        };
        if kind == WriteKind::Description {
            call.previous_body = Some(marker::previous_body(&current));
        }
        let held = self.budget.admit().await;
        let intent = Intent {
            op_id: call.op_id,
            op: call.op.clone(),
            target: Some(n.get()),
            write: Some(WriteKey {
                id: marker::write_id(self.session(), call.op_id),
                call: fingerprint,
                mode: mode.map(|m| m.as_str().to_string()),
                base: None,
                head: None,
            }),
        };
        if let Err(cause) = self.emit(EventBody::Intent(intent.clone())).await {
            self.forge.release(permit);
            return Err(audit_unavailable(
                &cause,
                "nothing was sent to the forge; try again later",
            ));
        }
        let findings = permit.findings();
        let closing: Vec<String> = findings.closing.iter().map(ToString::to_string).collect();
        // Each at most MAX_ECHO_CHARS, so the op event stays bounded.
        let listed = |items: Vec<String>| items.iter().map(|s| quote(s).into_owned()).collect();
        call.reach = Some((
            listed(
                findings
                    .foreign_refs
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            listed(findings.mentions.clone()),
        ));
        let forge = Arc::clone(&self.forge);
        let marker_text = intent
            .write
            .as_ref()
            .map(WriteKey::marker)
            .unwrap_or_default();
        let result = tokio::task::spawn_blocking(move || {
            held.during(|| forge.write(permit, &marker_text, &current))
                .0
        })
        .await
        .unwrap_or_else(|e| {
            Err(ForgeError::Unavailable(format!(
                "the forge call failed internally ({e})"
            )))
        });
        let result = self
            .forge_health
            .observe(result)
            .map_err(ForgeError::into_rpc);
        let result = match result {
            Err(e) if e.code == ErrorCode::ForgeUnavailable => {
                match self.resolve_lost(&mut call, &intent, e, false).await {
                    Ok(Found::Comment(c)) => Ok(ForgeWrite::Comment(c)),
                    Ok(Found::Description(u)) => Ok(ForgeWrite::Description(u)),
                    Ok(Found::PullRequest(_)) => Err(RpcError::new(
                        ErrorCode::Internal,
                        "reading back a write found a pull request",
                    )),
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        self.remember(&intent, written_status(&result, &call));
        let mode_note = match mode {
            Some(m) if m != DescriptionMode::Replace => format!(" ({m})"),
            _ => String::new(),
        };
        let summary = match (&result, kind) {
            (Ok(_), WriteKind::Comment) if !closing.is_empty() => {
                format!("posted comment to #{} ({})", n.get(), closing.join(", "))
            }
            (Ok(_), WriteKind::Comment) => format!("posted comment to #{}", n.get()),
            (Ok(_), WriteKind::Description) if !closing.is_empty() => {
                format!(
                    "updated description of #{}{mode_note} ({})",
                    n.get(),
                    closing.join(", ")
                )
            }
            (Ok(_), WriteKind::Description) => {
                format!("updated description of #{}{mode_note}", n.get())
            }
            (Err(e), WriteKind::Comment) => {
                format!("failed to post comment to #{}: {}", n.get(), reason(e))
            }
            (Err(e), WriteKind::Description) => format!(
                "failed to update description of #{}: {}",
                n.get(),
                reason(e)
            ),
        };
        let summary = format!("{summary}{}", resolution_note(&call));
        self.finish(call, result, summary, Audit::Always).await
    }

    /// The writes of the run (earlier sessions' and this one's).
    fn writes_of_run(&self) -> std::sync::MutexGuard<'_, Vec<RunWrite>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record what became of the write `intent` announced in this session
    /// (`None`: the forge refused it; it is not kept).
    fn remember(&self, intent: &Intent, status: Option<WriteStatus>) {
        let at = CallRef {
            session: self.session().to_string(),
            op_id: intent.op_id,
        };
        let mut writes = self.writes_of_run();
        writes.retain(|w| w.at != at);
        if let Some(status) = status {
            writes.push(RunWrite {
                at,
                intent: intent.clone(),
                status,
            });
        }
    }

    /// Record what became of an earlier write of the run.
    fn remember_at(&self, at: &CallRef, status: WriteStatus) {
        if let Some(w) = self.writes_of_run().iter_mut().find(|w| &w.at == at) {
            w.status = status;
        }
    }

    /// Whether the call with `fingerprint` repeats an earlier write of the
    /// run that is on the forge. The newest such write is read back.
    async fn repeat_of(&self, call: &mut CallInfo, fingerprint: &str) -> Repeat {
        let earlier = self
            .writes_of_run()
            .iter()
            .rev()
            .find(|w| {
                w.intent
                    .write
                    .as_ref()
                    .is_some_and(|k| k.call == fingerprint)
            })
            .cloned();
        let Some(earlier) = earlier else {
            return Repeat::No;
        };
        let what = format!("op {} of session {}", earlier.at.op_id, earlier.at.session);
        match self.read_back(earlier.intent.clone()).await {
            Ok(None) => Repeat::No,
            Ok(Some(found)) => {
                call.resolution = Some(Resolution {
                    status: WriteStatus::Repeated,
                    how: Resolution::SAME_CALL.into(),
                    forge_id: Some(found.forge_id()),
                    intent: Some(earlier.at.clone()),
                });
                self.remember_at(&earlier.at, WriteStatus::Applied);
                let summary = format!(
                    "{} repeated {what}, whose write is on the forge ({}): returned it, sent nothing",
                    call.op,
                    found.describe()
                );
                Repeat::Found(found, summary)
            }
            Err(why) => {
                let err = RpcError::new(
                    ErrorCode::ForgeUnavailable,
                    format!(
                        "nothing was sent: the same call was made earlier in this run ({what}) and whether its \
                         write is on the forge could not be checked ({why}); read the target (read_comments, \
                         read_issue or read_pr) before sending it again"
                    ),
                )
                .with_data(serde_json::json!({ "write": "unchecked" }));
                let summary = format!(
                    "{} not sent: it repeats {what}, which could not be read back",
                    call.op
                );
                Repeat::Unreadable(err, summary)
            }
        }
    }

    /// A write's answer was lost (`lost`): read the target back and decide.
    /// Found: the write is applied and answered as a success. Not found:
    /// the budget unit (and the pull request of an `open_pr`, `pr`) is
    /// given back and the agent may send it again. Unreadable: the outcome
    /// stays unknown and everything stays spent.
    async fn resolve_lost(
        &self,
        call: &mut CallInfo,
        intent: &Intent,
        lost: RpcError,
        pr: bool,
    ) -> Result<Found, RpcError> {
        let resolution = |status, forge_id| Resolution {
            status,
            how: Resolution::ANSWER_LOST.into(),
            forge_id,
            intent: None,
        };
        match self.read_back(intent.clone()).await {
            Ok(Some(found)) => {
                tracing::warn!(op = %call.op, cause = %lost.message, "answer lost; the write is on the forge");
                call.resolution = Some(resolution(WriteStatus::Applied, Some(found.forge_id())));
                Ok(found)
            }
            Ok(None) => {
                self.forge.refund(pr);
                call.resolution = Some(resolution(WriteStatus::NotApplied, None));
                Err(RpcError::new(
                    ErrorCode::ForgeUnavailable,
                    format!(
                        "the forge did not answer this write, and reading the target back shows it is not \
                         there: nothing was written and it was not counted against the budget; send it \
                         again when the forge answers ({})",
                        lost.message
                    ),
                )
                .with_data(serde_json::json!({ "write": WriteStatus::NotApplied.as_str() })))
            }
            Err(why) => {
                call.resolution = Some(resolution(WriteStatus::Unknown, None));
                Err(RpcError::new(
                    ErrorCode::ForgeUnavailable,
                    format!(
                        "the forge did not answer this write ({}) and {why}: the write may or may not be \
                         on the forge. Check the target (read_comments, read_issue or read_pr) before \
                         retrying; sending the same call again is safe, it is checked first",
                        lost.message
                    ),
                )
                .with_data(serde_json::json!({ "write": WriteStatus::Unknown.as_str() })))
            }
        }
    }

    /// Read back the write `intent` announced, on the blocking pool.
    async fn read_back(&self, intent: Intent) -> Result<Option<Found>, Unreadable> {
        let forge = Arc::clone(&self.forge);
        if !forge.inner().blocks() {
            return resolve::read_back(forge.inner(), &intent);
        }
        tokio::task::spawn_blocking(move || resolve::read_back(forge.inner(), &intent))
            .await
            .unwrap_or_else(|e| {
                Err(Unreadable::Forge(ForgeError::Unavailable(format!(
                    "the read-back failed internally ({e})"
                ))))
            })
    }

    /// Resolve the writes of earlier sessions of the run that have an
    /// `intent` and no `op` (the sidecar stopped mid-write): each is read
    /// back and gets an `op` in this session naming it. Call before serving.
    pub async fn resolve_at_start(&self, pending: &[RunWrite]) -> Result<(), QueueError> {
        for p in pending {
            let target = p.intent.target.and_then(IssueNumber::new);
            let mut call = self.begin(&p.intent.op, target, None);
            let is_pr = p.intent.op == Method::OpenPr.name();
            let what = format!(
                "{} {} of session {} (op {})",
                p.intent.op,
                target.map_or("(new)".to_string(), |n| format!("#{}", n.get())),
                p.at.session,
                p.at.op_id
            );
            let (status, forge_id, error, summary) = match self.read_back(p.intent.clone()).await {
                Ok(Some(found)) => {
                    if let Found::PullRequest(pr) = &found {
                        call.target = Some(pr.number);
                        if let (_, Some(growth)) = self.forge.opened(pr.clone()) {
                            self.record_growth(growth).await?;
                        }
                    }
                    let summary = format!("{what} is on the forge ({}): applied", found.describe());
                    (WriteStatus::Applied, Some(found.forge_id()), None, summary)
                }
                Ok(None) => {
                    self.forge.refund(is_pr);
                    let summary = format!("{what} is not on the forge: not applied, not counted");
                    let error = OpError {
                        code: ErrorCode::ForgeUnavailable.code(),
                        name: ErrorCode::ForgeUnavailable.name().into(),
                        message: "the sidecar stopped before the write was answered; it is not on the forge"
                            .into(),
                    };
                    (WriteStatus::NotApplied, None, Some(error), summary)
                }
                Err(why) => {
                    let summary = format!("{what}: outcome still unknown ({why}); check the forge");
                    let error = OpError {
                        code: ErrorCode::ForgeUnavailable.code(),
                        name: ErrorCode::ForgeUnavailable.name().into(),
                        message: cut(&why.to_string(), MAX_MESSAGE_CHARS).into_owned(),
                    };
                    (WriteStatus::Unknown, None, Some(error), summary)
                }
            };
            tracing::info!(op = %p.intent.op, status = status.as_str(), "{summary}");
            self.writes_of_run()
                .iter_mut()
                .filter(|w| w.at == p.at)
                .for_each(|w| w.status = status);
            let outcome = if error.is_none() {
                Outcome::Ok
            } else {
                Outcome::Error
            };
            let op = EventBody::Op(Op {
                op_id: call.op_id,
                op: call.op,
                target: call.target,
                outcome,
                summary: cut(&summary, MAX_MESSAGE_CHARS).into_owned(),
                error,
                duration_ms: call.started.elapsed().as_millis() as u64,
                peer: None,
                foreign_refs: None,
                mentions: None,
                coalesced: None,
                resolution: Some(Resolution {
                    status,
                    how: Resolution::AT_START.into(),
                    forge_id,
                    intent: Some(p.at.clone()),
                }),
                previous_body: None,
                read: None,
            });
            self.emit(op).await?;
            self.count(outcome);
        }
        Ok(())
    }

    fn begin(&self, op: &str, target: Option<IssueNumber>, peer: Option<Peer>) -> CallInfo {
        CallInfo {
            op_id: self.next_op.fetch_add(1, Ordering::SeqCst),
            op: op.to_string(),
            target: target.map(IssueNumber::get),
            peer,
            started: Instant::now(),
            reach: None,
            read: None,
            resolution: None,
            previous_body: None,
        }
    }

    /// Run a forge read once the [`Budget`] admits it; its answer's bytes
    /// stay charged while the returned [`Held`] lives (the caller keeps it
    /// until the answer is handed on).
    async fn on_forge<T, F>(&self, f: F) -> (Result<T, RpcError>, Option<Held>)
    where
        T: Send + 'static,
        F: FnOnce(&dyn Forge) -> Result<T, ForgeError> + Send + 'static,
    {
        if !self.forge.inner().blocks() {
            let result = self.forge_health.observe(f(self.forge.inner()));
            return (result.map_err(ForgeError::into_rpc), None);
        }
        let held = self.budget.admit().await;
        let forge = Arc::clone(&self.forge);
        match tokio::task::spawn_blocking(move || held.during(|| f(forge.inner()))).await {
            Ok((result, held)) => (
                self.forge_health
                    .observe(result)
                    .map_err(ForgeError::into_rpc),
                Some(held),
            ),
            Err(e) => (
                Err(
                    ForgeError::Unavailable(format!("the forge call failed internally ({e})"))
                        .into_rpc(),
                ),
                None,
            ),
        }
    }

    /// Run `f` on the scoped forge: in place for a forge that answers from
    /// memory, on the blocking pool otherwise.
    async fn on_scoped<T, F>(&self, f: F) -> Result<T, RpcError>
    where
        T: Send + 'static,
        F: FnOnce(&ScopedForge) -> Result<T, ForgeError> + Send + 'static,
    {
        if !self.forge.inner().blocks() {
            return self
                .forge_health
                .observe(f(&self.forge))
                .map_err(ForgeError::into_rpc);
        }
        let forge = Arc::clone(&self.forge);
        let outcome = tokio::task::spawn_blocking(move || f(&forge))
            .await
            .unwrap_or_else(|e| {
                Err(ForgeError::Unavailable(format!(
                    "the forge call failed internally ({e})"
                )))
            });
        self.forge_health
            .observe(outcome)
            .map_err(ForgeError::into_rpc)
    }

    /// Write the call's `op` event (or count it, see [`Audit`]), then hand
    /// back its result. The error message and the summary are cut to
    /// [`MAX_MESSAGE_CHARS`], in the event and in the answer alike.
    async fn finish<T>(
        &self,
        call: CallInfo,
        mut result: Result<T, RpcError>,
        summary: String,
        audit: Audit,
    ) -> Result<T, RpcError> {
        if let Err(e) = &mut result
            && let std::borrow::Cow::Owned(short) = cut(&e.message, MAX_MESSAGE_CHARS)
        {
            e.message = short;
        }
        let summary = cut(&summary, MAX_MESSAGE_CHARS).into_owned();
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::of_error(e.code),
        };
        if audit == Audit::WithinRate && !self.rate.admit(&call.op, outcome) {
            self.count(outcome);
            return result;
        }
        let error = result.as_ref().err().map(|e| OpError {
            code: e.code.code(),
            name: e.code.name().into(),
            message: e.message.clone(),
        });
        tracing::info!(op = %call.op, target = call.target, outcome = outcome.as_str(), "{summary}");
        let was_write = Method::from_name(&call.op).is_some_and(Method::writes_forge);
        let repeated = call
            .resolution
            .as_ref()
            .is_some_and(|r| r.status == WriteStatus::Repeated);
        // What the text reached is recorded for writes that were allowed.
        let (foreign_refs, mentions) = match call.reach {
            Some((refs, mentions)) if outcome != Outcome::Denied => (Some(refs), Some(mentions)),
            _ => (None, None),
        };
        let op = EventBody::Op(Op {
            op_id: call.op_id,
            op: call.op,
            target: call.target,
            outcome,
            summary,
            error,
            duration_ms: call.started.elapsed().as_millis() as u64,
            peer: call.peer,
            foreign_refs,
            mentions,
            coalesced: None,
            read: call.read,
            resolution: call.resolution,
            previous_body: call.previous_body,
        });
        if let Err(cause) = self.emit(op).await {
            let next = if repeated {
                "nothing new was sent: the same write is already on the forge; read it back instead of retrying"
            } else if was_write && outcome == Outcome::Ok {
                "the write did reach the forge (its intent is recorded); read it back instead of retrying"
            } else {
                "try again later"
            };
            return Err(audit_unavailable(&cause, next));
        }
        self.count(outcome);
        result
    }

    fn count(&self, outcome: Outcome) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(outcome);
    }

    /// Append `body` to the queue; durable when this returns Ok. A call
    /// running alone may append in place ([`AuditWriter::append`]).
    async fn emit(&self, body: EventBody) -> Result<Written, QueueError> {
        let alone = self.in_flight.count.load(Ordering::SeqCst) <= 1;
        self.audit.append(body, alone).await
    }
}

/// A guarded read's result and its report, apart.
fn split<T>(
    result: Result<(T, Option<ReadReport>), RpcError>,
) -> (Result<T, RpcError>, Option<ReadReport>) {
    match result {
        Ok((value, report)) => (Ok(value), report),
        Err(e) => (Err(e), None),
    }
}

/// `summary` with what the read guard did, when it did something.
fn with_report(summary: String, report: Option<&ReadReport>) -> String {
    let Some(r) = report else {
        return summary;
    };
    let mut parts = Vec::new();
    if r.hidden_chars > 0 {
        parts.push(format!(
            "{} hidden character(s) {}",
            r.hidden_chars, r.hidden_action
        ));
    }
    if r.cut > 0 {
        parts.push(format!("{} text(s) cut", r.cut));
    }
    if r.withheld > 0 {
        parts.push(format!(
            "{} text(s) withheld from {}",
            r.withheld,
            r.withheld_from.join(", ")
        ));
    }
    format!("{summary}; {}", parts.join(", "))
}

/// Whether a call repeats an earlier write of the run.
enum Repeat {
    /// No: send it.
    No,
    /// Yes, and the earlier write is on the forge: return it (with the summary).
    Found(Found, String),
    /// An earlier identical write could not be read back: send nothing.
    Unreadable(RpcError, String),
}

/// What became of a sent write, from its result and resolution; `None`
/// for a write the forge refused, which no later call needs to look for.
fn written_status<T>(result: &Result<T, RpcError>, call: &CallInfo) -> Option<WriteStatus> {
    match (&call.resolution, result) {
        (Some(r), _) => Some(r.status),
        (None, Ok(_)) => Some(WriteStatus::Applied),
        (None, Err(_)) => None,
    }
}

/// The part of a summary that says how a lost answer was resolved.
fn resolution_note(call: &CallInfo) -> &'static str {
    match call.resolution.as_ref().map(|r| r.status) {
        Some(WriteStatus::Applied) => " (answer lost; found on the forge by reading back)",
        Some(WriteStatus::NotApplied) => {
            " (answer lost; not on the forge by reading back: not counted)"
        }
        Some(WriteStatus::Unknown) => " (answer lost; reading back failed: outcome unknown)",
        _ => "",
    }
}

/// The HTTP status a `forge_rejected` error carries.
fn forge_status(e: &RpcError) -> Option<u64> {
    e.data.get("status")?.as_u64()
}

/// A short reason for a summary line: "out of scope", "not found", ...
fn reason(e: &RpcError) -> String {
    match e.code {
        // A text refused for what it would make the forge do: the same
        // reason the caller got ("'Fixes #500' would close #500").
        ErrorCode::ScopeDenied => match (
            e.data["excerpt"].as_str(),
            e.data["action"].as_str(),
            e.data["referenced"].as_str(),
        ) {
            (Some(excerpt), Some(action), Some(referenced)) => {
                format!("'{}' would {action} {}", quote(excerpt), quote(referenced))
            }
            _ => "out of scope".into(),
        },
        ErrorCode::LimitExceeded => format!("limit exceeded ({})", e.message),
        ErrorCode::InvalidParams | ErrorCode::MethodNotFound => e.message.clone(),
        code => format!("{} ({})", code.name().replace('_', " "), e.message),
    }
}

fn audit_unavailable(cause: &QueueError, next: &str) -> RpcError {
    tracing::error!(cause = %cause, "audit event could not be queued");
    RpcError::new(
        ErrorCode::AuditUnavailable,
        format!(
            "the call was refused because its audit event could not be written to the queue; {next}"
        ),
    )
}

/// A sidecar over the seeded in-memory forge (acme/widgets, #17 with PR #18,
/// 3 writes, 1 KiB bodies), for tests; also returns the forge to inspect.
#[cfg(test)]
pub(crate) fn test_sidecar_with_forge(
    queue_dir: &std::path::Path,
) -> (Arc<Sidecar>, Arc<crate::forge::memory::MemoryForge>) {
    use crate::forge::memory::MemoryForge;
    use crate::scope::Scope;
    let scope = Scope::for_tests(1024, 3);
    let memory = Arc::new(MemoryForge::seeded("acme", "widgets"));
    let forge = ScopedForge::new(Arc::clone(&memory) as Arc<dyn Forge>, scope);
    let queue = Arc::new(QueueWriter::open(queue_dir).expect("queue"));
    let audit = AuditWriter::start(queue).expect("audit writer");
    (Arc::new(Sidecar::new(forge, audit, 1024, None)), memory)
}

/// [`test_sidecar_with_forge`] without the forge handle.
#[cfg(test)]
pub(crate) fn test_sidecar(queue_dir: &std::path::Path) -> Arc<Sidecar> {
    test_sidecar_with_forge(queue_dir).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_protocol::event::Event;

    fn n(v: u64) -> IssueNumber {
        IssueNumber::new(v).unwrap()
    }

    fn text(s: &str) -> Text {
        Text::new(s).unwrap()
    }

    fn events(dir: &std::path::Path) -> Vec<Event> {
        let mut names: Vec<_> = std::fs::read_dir(dir.join("new"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    fn op(ev: &Event) -> &Op {
        match &ev.body {
            EventBody::Op(op) => op,
            other => panic!("expected an op event, got {}", other.kind()),
        }
    }

    #[tokio::test]
    async fn denied_write_is_audited_and_never_reaches_the_forge() {
        let dir = tempfile::tempdir().unwrap();
        let (sidecar, forge) = test_sidecar_with_forge(dir.path());
        let before = forge.read_comments(n(500)).unwrap().len();
        let err = sidecar
            .post_comment(n(500), text("hi"), None)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ScopeDenied);
        assert_eq!(forge.read_comments(n(500)).unwrap().len(), before);
        let evs = events(dir.path());
        assert_eq!(evs.len(), 1, "a denied write has an op and no intent");
        assert_eq!(op(&evs[0]).outcome, Outcome::Denied);
        assert_eq!(op(&evs[0]).summary, "denied comment to #500: out of scope");
    }

    #[tokio::test]
    async fn a_refused_text_is_audited_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (sidecar, _forge) = test_sidecar_with_forge(dir.path());
        let err = sidecar
            .post_comment(n(17), text("Fixes #00500, thanks"), None)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ScopeDenied);
        assert!(err.message.contains("'Fixes #00500'"), "{}", err.message);
        let evs = events(dir.path());
        assert_eq!(
            op(&evs[0]).summary,
            "denied comment to #17: 'Fixes #00500' would close #500"
        );
    }

    #[tokio::test]
    async fn allowed_write_has_intent_then_op() {
        let dir = tempfile::tempdir().unwrap();
        let (sidecar, forge) = test_sidecar_with_forge(dir.path());
        let c = sidecar
            .post_comment(n(17), text("on it"), None)
            .await
            .unwrap();
        assert_eq!(forge.read_comments(n(17)).unwrap().last(), Some(&c));
        let evs = events(dir.path());
        let EventBody::Intent(intent) = &evs[0].body else {
            panic!("intent first")
        };
        assert_eq!(
            (intent.op.as_str(), intent.target),
            ("post_comment", Some(17))
        );
        assert_eq!(op(&evs[1]).op_id, intent.op_id);
        assert_eq!(op(&evs[1]).summary, "posted comment to #17");
    }

    #[tokio::test]
    async fn no_audit_means_no_forge_write() {
        let dir = tempfile::tempdir().unwrap();
        let (sidecar, forge) = test_sidecar_with_forge(dir.path());
        let before = forge.read_comments(n(17)).unwrap().len();
        // Make publishing impossible: the queue's new/ is gone.
        std::fs::rename(dir.path().join("new"), dir.path().join("gone")).unwrap();
        let err = sidecar
            .post_comment(n(17), text("hi"), None)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::AuditUnavailable);
        assert!(
            err.message.contains("nothing was sent to the forge"),
            "{}",
            err.message
        );
        assert_eq!(forge.read_comments(n(17)).unwrap().len(), before);
        assert_eq!(
            sidecar.scope(None).await.unwrap_err().code,
            ErrorCode::AuditUnavailable
        );
        // Space comes back: calls work again and the budget was not spent.
        std::fs::rename(dir.path().join("gone"), dir.path().join("new")).unwrap();
        assert_eq!(sidecar.scope(None).await.unwrap().writes_left, 3);
    }

    #[tokio::test]
    async fn op_events_stay_under_the_documented_size_whatever_the_caller_sends() {
        use forge_protocol::event::MAX_OP_EVENT_BYTES;
        let dir = tempfile::tempdir().unwrap();
        let sidecar = test_sidecar(dir.path());
        // Control characters are the worst case: six bytes each in JSON.
        let hostile = "\u{1}".repeat(100_000);
        let err = RpcError::new(ErrorCode::InvalidParams, hostile.clone());
        let answered = sidecar.refuse(&hostile, err, None).await;
        assert!(answered.message.chars().count() <= MAX_MESSAGE_CHARS + 7);
        // Over the audit rate: the calls are counted, and the counts are
        // written as coalesced events, which are bounded too.
        for i in 0..200 {
            let name = format!("{i}{hostile}");
            let err = RpcError::new(ErrorCode::MethodNotFound, hostile.clone());
            sidecar.refuse(&name, err, None).await;
        }
        sidecar.flush_coalesced().await;
        let mut sizes = Vec::new();
        for entry in std::fs::read_dir(dir.path().join("new")).unwrap() {
            sizes.push(std::fs::metadata(entry.unwrap().path()).unwrap().len() as usize);
        }
        assert!(sizes.len() < 100, "{} events for 201 calls", sizes.len());
        let largest = sizes.iter().max().copied().unwrap_or(0);
        assert!(
            largest <= MAX_OP_EVENT_BYTES,
            "an op event of {largest} bytes"
        );
        let evs = events(dir.path());
        let counted: u64 = evs
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Op(op) => Some(op.calls()),
                _ => None,
            })
            .sum();
        assert_eq!(counted, 201, "every call is counted once");
    }

    #[tokio::test]
    async fn a_call_runs_to_completion_when_its_caller_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let (sidecar, forge) = test_sidecar_with_forge(dir.path());
        let s = Arc::clone(&sidecar);
        let waiting = sidecar.detached(async move {
            // The caller's future is dropped while this call is mid-way.
            tokio::task::yield_now().await;
            s.post_comment(n(17), text("still posted"), None).await
        });
        drop(tokio::time::timeout(Duration::from_millis(0), waiting).await);
        assert!(sidecar.wait_idle(Duration::from_secs(10)).await);
        assert_eq!(
            forge.read_comments(n(17)).unwrap().last().map(|c| c
                .body
                .split("\n\n<!--")
                .next()
                .unwrap()),
            Some("still posted")
        );
        let evs = events(dir.path());
        assert_eq!(op(evs.last().unwrap()).summary, "posted comment to #17");
    }

    #[tokio::test]
    async fn an_identical_call_returns_the_write_already_made() {
        let dir = tempfile::tempdir().unwrap();
        let (sidecar, forge) = test_sidecar_with_forge(dir.path());
        let before = forge.read_comments(n(17)).unwrap().len();
        let first = sidecar
            .post_comment(n(17), text("once"), None)
            .await
            .unwrap();
        let again = sidecar
            .post_comment(n(17), text("once"), None)
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(forge.read_comments(n(17)).unwrap().len(), before + 1);
        assert_eq!(
            sidecar.scope(None).await.unwrap().writes_left,
            2,
            "the repeat is free"
        );
        let last = events(dir.path());
        let repeat = last
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Op(op) if op.resolution.is_some() => Some(op.clone()),
                _ => None,
            })
            .next_back()
            .expect("the repeat is recorded");
        let r = repeat.resolution.unwrap();
        assert_eq!(r.status, WriteStatus::Repeated);
        assert_eq!(r.forge_id, Some(first.id));
        assert_eq!(r.intent.unwrap().op_id, 1);
        // Another text, or the same text elsewhere, is a new write.
        sidecar
            .post_comment(n(18), text("once"), None)
            .await
            .unwrap();
        assert_eq!(sidecar.scope(None).await.unwrap().writes_left, 1);
    }

    #[tokio::test]
    async fn description_modes_keep_the_text_around_them_and_the_previous_body() {
        let dir = tempfile::tempdir().unwrap();
        let (sidecar, forge) = test_sidecar_with_forge(dir.path());
        let human = forge.read_issue(n(17)).unwrap().body;
        assert!(!human.is_empty());
        sidecar
            .update_description(
                n(17),
                text("status: working"),
                Some(DescriptionMode::Section),
                None,
            )
            .await
            .unwrap();
        sidecar
            .update_description(
                n(17),
                text("status: done"),
                Some(DescriptionMode::Section),
                None,
            )
            .await
            .unwrap();
        let body = forge.read_issue(n(17)).unwrap().body;
        assert!(body.starts_with(human.trim_end()), "{body}");
        assert!(
            body.contains("status: done") && !body.contains("status: working"),
            "{body}"
        );
        let ops: Vec<Op> = events(dir.path())
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Op(op) => Some(op.clone()),
                _ => None,
            })
            .collect();
        let first = ops[0].previous_body.as_ref().expect("previous body kept");
        assert_eq!(first.body.as_deref(), Some(human.as_str()));
        assert_eq!(ops[0].summary, "updated description of #17 (section)");
        let second = ops[1].previous_body.as_ref().unwrap();
        assert!(second.body.as_deref().unwrap().contains("status: working"));
    }

    #[tokio::test]
    async fn done_is_signalled_once() {
        let dir = tempfile::tempdir().unwrap();
        let sidecar = test_sidecar(dir.path());
        let receipt = sidecar
            .signal_done(DoneStatus::Blocked, text("need a decision"), None)
            .await
            .unwrap();
        assert!(dir.path().join("new").join(&receipt.event).exists());
        let err = sidecar
            .signal_done(DoneStatus::Success, text("again"), None)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::AlreadyDone);
        assert!(sidecar.scope(None).await.unwrap().done);
        sidecar.end("test").await.unwrap();
        let evs = events(dir.path());
        let EventBody::SessionEnd(end) = &evs.last().unwrap().body else {
            panic!("session_end last")
        };
        assert!(end.done);
        assert_eq!((end.counts.ok, end.counts.denied), (2, 1));
    }
}
