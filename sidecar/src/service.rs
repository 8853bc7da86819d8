//! [`Sidecar`]: every call's behaviour and its audit trail.
//!
//! Each method here is one call: it asks [`ScopedForge`] to decide, writes an
//! `intent` before any forge write, runs the forge call on the blocking pool
//! and writes the `op` event before returning. If an event cannot be durably
//! queued the call fails with `audit_unavailable` and, when that happens
//! before the forge write, nothing reaches the forge.
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
    Done, EventBody, Intent, Op, OpError, Outcome, OutcomeCounts, Peer, SessionEnd, SessionStart,
};
use forge_protocol::{
    BranchName, Comment, DoneReceipt, DoneStatus, ErrorCode, Issue, IssueNumber, Method,
    PullRequest, Review, RpcError, ScopeInfo, Text, Updated,
};
use forge_queue::run::RunState;
use forge_queue::{QueueError, QueueWriter, Written};
use tokio::sync::Notify;

use crate::audit::AuditWriter;
use crate::budget::{Budget, Held};
use crate::config::Config;
use crate::flood::{AUDIT_RATE_PER_SEC, AuditRate};
use crate::forge::{Forge, ForgeError};
use crate::scope::{Growth, ScopedForge, Written as ForgeWrite};

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
            budget: Arc::default(),
        }
    }

    /// Continue the run from what its earlier sessions spent: their forge
    /// writes and opened pull requests count against this session's budget
    /// and `max_prs`, and their done signal stands.
    pub fn continue_run(&self, earlier: &RunState) {
        self.forge.spent_earlier(earlier.writes, earlier.prs_opened);
        if let Some(done) = &earlier.done {
            self.done.store(true, Ordering::SeqCst);
            *self.done_earlier.lock().unwrap_or_else(|p| p.into_inner()) = Some(done.clone());
        }
    }

    /// The session id.
    pub fn session(&self) -> &str {
        self.audit.queue().session()
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
        let found = match self.on_scoped(|f| Ok(f.discover_at_start())).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(cause = %e, "could not look up the branch's pull requests at start; they are looked up again on write");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(cause = %e.message, "could not look up the branch's pull requests at start");
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
            });
            if let Err(cause) = self.emit(op).await {
                tracing::error!(cause = %cause, calls = total, "coalesced calls could not be audited");
            }
        }
    }

    /// `read_issue`.
    pub async fn read_issue(&self, n: IssueNumber, peer: Option<Peer>) -> Result<Issue, RpcError> {
        let call = self.begin(Method::ReadIssue.name(), Some(n), peer);
        let (result, _held) = self.on_forge(move |f| f.read_issue(n)).await;
        let summary = match &result {
            Ok(i) if i.is_pull_request => format!("read PR #{n_} (issue view)", n_ = n.get()),
            Ok(_) => format!("read issue #{}", n.get()),
            Err(e) => format!("failed to read issue #{}: {}", n.get(), reason(e)),
        };
        self.finish(call, result, summary, Audit::Always).await
    }

    /// `read_pr`.
    pub async fn read_pr(
        &self,
        n: IssueNumber,
        peer: Option<Peer>,
    ) -> Result<PullRequest, RpcError> {
        let call = self.begin(Method::ReadPr.name(), Some(n), peer);
        let (result, _held) = self.on_forge(move |f| f.read_pr(n)).await;
        let summary = match &result {
            Ok(_) => format!("read PR #{}", n.get()),
            Err(e) => format!("failed to read PR #{}: {}", n.get(), reason(e)),
        };
        self.finish(call, result, summary, Audit::Always).await
    }

    /// `read_comments`.
    pub async fn read_comments(
        &self,
        n: IssueNumber,
        peer: Option<Peer>,
    ) -> Result<Vec<Comment>, RpcError> {
        let call = self.begin(Method::ReadComments.name(), Some(n), peer);
        let (result, _held) = self.on_forge(move |f| f.read_comments(n)).await;
        let summary = match &result {
            Ok(list) => format!("read {} comment(s) of #{}", list.len(), n.get()),
            Err(e) => format!("failed to read comments of #{}: {}", n.get(), reason(e)),
        };
        self.finish(call, result, summary, Audit::Always).await
    }

    /// `read_reviews`.
    pub async fn read_reviews(
        &self,
        n: IssueNumber,
        peer: Option<Peer>,
    ) -> Result<Vec<Review>, RpcError> {
        let call = self.begin(Method::ReadReviews.name(), Some(n), peer);
        let (result, _held) = self.on_forge(move |f| f.read_reviews(n)).await;
        let summary = match &result {
            Ok(list) => format!(
                "read {} review(s) of PR #{} with {} inline comment(s)",
                list.len(),
                n.get(),
                list.iter().map(|r| r.comments.len()).sum::<usize>()
            ),
            Err(e) => format!("failed to read reviews of PR #{}: {}", n.get(), reason(e)),
        };
        self.finish(call, result, summary, Audit::Always).await
    }

    /// `open_pr`: decided by the scope (branch, base, texts, commits,
    /// limits), announced by an `intent`, sent once; the new PR joins the
    /// writable set on record.
    pub async fn open_pr(
        &self,
        title: Text,
        body: Text,
        base: Option<BranchName>,
        peer: Option<Peer>,
    ) -> Result<PullRequest, RpcError> {
        let call = self.begin(Method::OpenPr.name(), None, peer);
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
        let intent = EventBody::Intent(Intent {
            op_id: call.op_id,
            op: call.op.clone(),
            target: None,
        });
        if let Err(cause) = self.emit(intent).await {
            self.forge.release_pr(permit);
            return Err(audit_unavailable(
                &cause,
                "nothing was sent to the forge; try again later",
            ));
        }
        let (head, base) = (permit.head().to_string(), permit.base().to_string());
        let permit = Arc::new(permit);
        let sent = Arc::clone(&permit);
        let opened = self.on_scoped(move |f| f.open_pr(&sent)).await;
        let result = match opened {
            Ok((pr, growth)) => {
                if let Some(growth) = growth
                    && let Err(cause) = self.record_growth(growth).await
                {
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
        let summary = match &result {
            Ok(pr) => format!("opened PR #{} from {head} into {base}", pr.number),
            Err(e) => format!("failed to open a PR from {head} into {base}: {}", reason(e)),
        };
        let mut call = call;
        call.target = result.as_ref().ok().map(|pr| pr.number);
        self.finish(call, result, summary, Audit::Always).await
    }

    /// `post_comment`.
    pub async fn post_comment(
        &self,
        n: IssueNumber,
        body: Text,
        peer: Option<Peer>,
    ) -> Result<Comment, RpcError> {
        match self.write(Method::PostComment, n, body, peer).await? {
            ForgeWrite::Comment(c) => Ok(c),
            ForgeWrite::Description(_) => Err(RpcError::new(
                ErrorCode::Internal,
                "unexpected write result",
            )),
        }
    }

    /// `update_description`.
    pub async fn update_description(
        &self,
        n: IssueNumber,
        body: Text,
        peer: Option<Peer>,
    ) -> Result<Updated, RpcError> {
        match self.write(Method::UpdateDescription, n, body, peer).await? {
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
        let call = self.begin(Method::SignalDone.name(), None, peer);
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
        let warnings = self
            .on_scoped(|f| Ok(f.done_warnings()))
            .await
            .unwrap_or_else(|e| {
                vec![format!(
                    "the session's commits could not be checked ({})",
                    e.message
                )]
            });
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
        method: Method,
        n: IssueNumber,
        body: Text,
        peer: Option<Peer>,
    ) -> Result<ForgeWrite, RpcError> {
        let mut call = self.begin(method.name(), Some(n), peer);
        let noun = if method == Method::PostComment {
            "comment to"
        } else {
            "description update of"
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
        let permit = match self.forge.authorize(method, n, body) {
            Ok(permit) => permit,
            Err(e) => {
                let summary = format!("denied {noun} #{}: {}", n.get(), reason(&e));
                return self.finish(call, Err(e), summary, Audit::WithinRate).await;
            }
        };
        let held = self.budget.admit().await;
        let intent = EventBody::Intent(Intent {
            op_id: call.op_id,
            op: call.op.clone(),
            target: Some(n.get()),
        });
        if let Err(cause) = self.emit(intent).await {
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
        let result = tokio::task::spawn_blocking(move || held.during(|| forge.write(&permit)).0)
            .await
            .unwrap_or_else(|e| {
                Err(ForgeError::Unavailable(format!(
                    "the forge call failed internally ({e})"
                )))
            })
            .map_err(ForgeError::into_rpc);
        let summary = match (&result, method) {
            (Ok(_), Method::PostComment) if !closing.is_empty() => {
                format!("posted comment to #{} ({})", n.get(), closing.join(", "))
            }
            (Ok(_), Method::PostComment) => format!("posted comment to #{}", n.get()),
            (Ok(_), _) if !closing.is_empty() => {
                format!(
                    "updated description of #{} ({})",
                    n.get(),
                    closing.join(", ")
                )
            }
            (Ok(_), _) => format!("updated description of #{}", n.get()),
            (Err(e), Method::PostComment) => {
                format!("failed to post comment to #{}: {}", n.get(), reason(e))
            }
            (Err(e), _) => format!(
                "failed to update description of #{}: {}",
                n.get(),
                reason(e)
            ),
        };
        self.finish(call, result, summary, Audit::Always).await
    }

    fn begin(&self, op: &str, target: Option<IssueNumber>, peer: Option<Peer>) -> CallInfo {
        CallInfo {
            op_id: self.next_op.fetch_add(1, Ordering::SeqCst),
            op: op.to_string(),
            target: target.map(IssueNumber::get),
            peer,
            started: Instant::now(),
            reach: None,
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
            return (f(self.forge.inner()).map_err(ForgeError::into_rpc), None);
        }
        let held = self.budget.admit().await;
        let forge = Arc::clone(&self.forge);
        match tokio::task::spawn_blocking(move || held.during(|| f(forge.inner()))).await {
            Ok((result, held)) => (result.map_err(ForgeError::into_rpc), Some(held)),
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
            return f(&self.forge).map_err(ForgeError::into_rpc);
        }
        let forge = Arc::clone(&self.forge);
        tokio::task::spawn_blocking(move || f(&forge))
            .await
            .unwrap_or_else(|e| {
                Err(ForgeError::Unavailable(format!(
                    "the forge call failed internally ({e})"
                )))
            })
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
        });
        if let Err(cause) = self.emit(op).await {
            let next = if was_write && outcome == Outcome::Ok {
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

    async fn emit(&self, body: EventBody) -> Result<Written, QueueError> {
        self.audit.append(body).await
    }
}

/// The HTTP status a `forge_rejected` error carries.
fn forge_status(e: &RpcError) -> Option<u64> {
    e.data.get("status")?.as_u64()
}

/// A short reason for a summary line: "out of scope", "not found", ...
fn reason(e: &RpcError) -> String {
    match e.code {
        ErrorCode::ScopeDenied => "out of scope".into(),
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
            forge
                .read_comments(n(17))
                .unwrap()
                .last()
                .map(|c| c.body.as_str()),
            Some("still posted")
        );
        let evs = events(dir.path());
        assert_eq!(op(evs.last().unwrap()).summary, "posted comment to #17");
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
