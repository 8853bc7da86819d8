//! The audit of a queue directory: per session, what the agent did and how
//! the session ended, for a human (the [`fmt::Display`] table) or a program
//! (the serde form, `forge-queue audit --json`).
//!
//! Per session: calls by method and outcome; every denied or errored forge
//! write with its target and reason; every write whose `intent` has no `op`
//! (the sidecar stopped mid-write: outcome unknown, the forge may or may not
//! have the write) and is not resolved by a later session; every write whose
//! outcome the sidecar had to resolve by reading the forge back (a lost
//! answer, a write found at the next start, a repeated call), and how; every pull request that joined the writable set and why;
//! the done signal with its warnings; how the session ended; its chain status
//! (from [`crate::verify`], computed in the same pass).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use forge_protocol::Method;
use forge_protocol::event::{CallRef, Event, EventBody, Outcome, OutcomeCounts, WriteStatus};
use serde::Serialize;

use crate::error::QueueError;
use crate::reader::{self, QueueDir};
use crate::render::escape;
use crate::state::{HostState, WatchdogVerdict};
use crate::verify::{NamedEvent, Problem, Verifier};
use crate::watch::{DEFAULT_HEARTBEAT_SECS, STALE_INTERVALS};
use crate::writer::Heartbeat;

/// The audit of one queue directory.
#[derive(Debug, Clone, Serialize)]
pub struct DirAudit {
    /// The queue directory.
    pub dir: PathBuf,
    /// Every session, oldest first.
    pub sessions: Vec<SessionAudit>,
    /// Problems that belong to no session (stray files).
    pub problems: Vec<Problem>,
}

/// The audit of one session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionAudit {
    /// The session id.
    pub session: String,
    /// Event files of the session.
    pub events: u64,
    /// What `session_start` said, if it is there.
    pub start: Option<StartInfo>,
    /// `op` events by method name.
    pub calls: BTreeMap<String, OutcomeCounts>,
    /// Forge writes that were denied or failed.
    pub failed_writes: Vec<FailedWrite>,
    /// Forge writes with an `intent` and no `op` (here or in a later
    /// session that resolved it): outcome unknown.
    pub unknown_writes: Vec<UnknownWrite>,
    /// Writes whose outcome was resolved by reading the forge back, and
    /// calls that returned an earlier write, in order.
    pub resolved_writes: Vec<ResolvedWrite>,
    /// Pull requests that joined the writable set (`scope_grown`), in order.
    pub scope_grown: Vec<GrownInfo>,
    /// The done signal, if any.
    pub done: Option<DoneInfo>,
    /// How the session ended (or did not).
    pub end: Lifecycle,
    /// Chain verification of the session.
    pub chain: ChainStatus,
    /// The watchdog's verdict, from the host's state ([`apply_state`]).
    pub watchdog: Option<WatchdogVerdict>,
    /// Done was signalled and no watchdog fired: the run reported its own
    /// end.
    pub complete: bool,
}

/// The useful part of `session_start`.
#[derive(Debug, Clone, Serialize)]
pub struct StartInfo {
    /// `owner/repo`.
    pub repo: String,
    /// The assigned issue.
    pub issue: u64,
    /// Writable numbers at start.
    pub writable: Vec<u64>,
    /// Forge kind.
    pub forge: String,
    /// Sidecar pid.
    pub pid: u32,
    /// Heartbeat interval, seconds.
    pub heartbeat_secs: u64,
}

/// A denied or errored forge write.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FailedWrite {
    /// Seq of the `op` event.
    pub seq: u64,
    /// Id of the call.
    pub op_id: u64,
    /// Method.
    pub op: String,
    /// Issue or PR number written to.
    pub target: Option<u64>,
    /// `denied` or `error`.
    pub outcome: Outcome,
    /// Error code name, e.g. `scope_denied`.
    pub code: Option<String>,
    /// Why: the error message the agent got, or the op summary.
    pub reason: String,
}

/// A write whose outcome is unknown: announced by `intent`, never finished
/// by an `op`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct UnknownWrite {
    /// Seq of the `intent` event.
    pub seq: u64,
    /// Id of the call.
    pub op_id: u64,
    /// Method.
    pub op: String,
    /// Issue or PR number written to; none when the write creates it.
    pub target: Option<u64>,
}

/// A write whose outcome the sidecar resolved by reading the forge back
/// (or a call that returned an earlier write instead of writing again).
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedWrite {
    /// Seq of the `op` event that records it.
    pub seq: u64,
    /// Id of that call.
    pub op_id: u64,
    /// Method.
    pub op: String,
    /// Issue or PR number.
    pub target: Option<u64>,
    /// `applied`, `not_applied`, `unknown` (reading back failed too) or
    /// `repeated`.
    pub status: WriteStatus,
    /// How it was learned (`read back after a lost answer`, `read back at
    /// start`, ...).
    pub how: String,
    /// The forge's id of the write found.
    pub forge_id: Option<u64>,
    /// The `intent` resolved, when it is another call's.
    pub intent: Option<CallRef>,
}

/// A pull request that joined the writable set.
#[derive(Debug, Clone, Serialize)]
pub struct GrownInfo {
    /// Seq of the `scope_grown` event.
    pub seq: u64,
    /// The pull request.
    pub number: u64,
    /// Its head branch.
    pub branch: String,
    /// Why it joined (`opened`, `found at start`, `found on write`).
    pub reason: String,
}

/// The done signal.
#[derive(Debug, Clone, Serialize)]
pub struct DoneInfo {
    /// `success`, `failure` or `blocked`.
    pub status: String,
    /// The agent's summary.
    pub summary: String,
    /// The sidecar's warnings for the host (e.g. commit messages that
    /// would close issues outside the scope).
    pub warnings: Vec<String>,
    /// Seq of the `done` event.
    pub seq: u64,
}

/// How a session ended, or why it has not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
#[schemars(deny_unknown_fields)]
pub enum Lifecycle {
    /// `session_end` was written (graceful shutdown).
    Ended {
        /// The reason given, e.g. `SIGTERM`.
        reason: String,
        /// Whether done was signalled; false means abandoned.
        done_signalled: bool,
    },
    /// No `session_end`, and a later session started in this queue: the
    /// sidecar of this one died.
    Superseded,
    /// No `session_end`, and this session's heartbeat is fresh.
    Running {
        /// The heartbeat's `ts`.
        heartbeat_ts: String,
    },
    /// No `session_end`, read from a stream (no heartbeat file), and no
    /// stale notice for it since its last recovery: nothing says the
    /// sidecar is gone.
    Open,
    /// No `session_end` and no fresh heartbeat: the sidecar is gone (or
    /// hung).
    Stale {
        /// The last heartbeat's `ts`, if it is this session's.
        heartbeat_ts: Option<String>,
    },
}

/// The chain status of a session.
#[derive(Debug, Clone, Serialize)]
pub struct ChainStatus {
    /// No problems.
    pub intact: bool,
    /// The problems.
    pub problems: Vec<Problem>,
}

/// Audit the queue at `dir`; `now` decides whether a session without
/// `session_end` is still running (fresh heartbeat) or stale.
pub fn audit_dir(dir: &Path, now: DateTime<Utc>) -> Result<DirAudit, QueueError> {
    let queue = QueueDir::new(dir);
    let mut auditor = Auditor::default();
    let strays = reader::for_each_file(&queue, |file| {
        auditor.verifier.feed(file);
        auditor.tally(&file.name.session, &file.event);
    })?;
    // A heartbeat that does not parse says nothing about liveness: the
    // sessions it could vouch for are reported stale.
    let heartbeat = reader::read_heartbeat(&queue).unwrap_or(None);
    Ok(auditor.finish(dir, &strays, |session, tally, is_latest| {
        tally.lifecycle(session, is_latest, heartbeat.as_ref(), now)
    }))
}

/// Audit events held in memory (read back from a stream), as [`audit_dir`]
/// does for a directory; `label` stands for the directory. There is no
/// heartbeat file: a session without `session_end` is [`Lifecycle::Stale`]
/// when `stale` (the liveness notices read with it) says so, else
/// [`Lifecycle::Open`]; an earlier session is superseded by a later one only
/// among the sessions given.
pub fn audit_events(
    label: &str,
    events: Vec<NamedEvent>,
    stale: &BTreeMap<String, Option<String>>,
) -> DirAudit {
    let mut auditor = Auditor::default();
    for (e, parsed) in NamedEvent::in_order(events) {
        auditor
            .verifier
            .feed_named(e.label, &e.name, &e.bytes, &parsed);
        auditor.tally(&e.name.session, &parsed);
    }
    auditor.finish(Path::new(label), &[], |session, tally, is_latest| {
        if let Some((reason, done_signalled)) = &tally.ended {
            Lifecycle::Ended {
                reason: reason.clone(),
                done_signalled: *done_signalled,
            }
        } else if !is_latest {
            Lifecycle::Superseded
        } else if let Some(heartbeat_ts) = stale.get(session) {
            Lifecycle::Stale {
                heartbeat_ts: heartbeat_ts.clone(),
            }
        } else {
            Lifecycle::Open
        }
    })
}

/// One pass over a queue's events: chain and tally together.
#[derive(Default)]
struct Auditor {
    verifier: Verifier,
    sessions: BTreeMap<String, Tally>,
}

impl Auditor {
    fn tally(&mut self, session: &str, event: &Result<Event, String>) {
        let tally = self.sessions.entry(session.to_string()).or_default();
        tally.events += 1;
        if let Ok(event) = event {
            tally.add(event);
        }
    }

    fn finish(
        self,
        dir: &Path,
        strays: &[reader::Stray],
        lifecycle: impl Fn(&str, &Tally, bool) -> Lifecycle,
    ) -> DirAudit {
        let mut verification = self.verifier.finish(dir, strays);
        let latest = self.sessions.keys().next_back().cloned();
        let mut chains: BTreeMap<String, Vec<Problem>> = verification
            .sessions
            .drain(..)
            .map(|c| (c.session, c.problems))
            .collect();
        let mut sessions: Vec<SessionAudit> = self
            .sessions
            .into_iter()
            .map(|(session, tally)| {
                let is_latest = latest.as_deref() == Some(session.as_str());
                let end = lifecycle(&session, &tally, is_latest);
                let problems = chains.remove(&session).unwrap_or_default();
                tally.into_audit(session, end, problems)
            })
            .collect();
        // An intent a later session resolved (read back at its start) is
        // no longer of unknown outcome: that session's entry says how.
        let resolved_elsewhere: Vec<CallRef> = sessions
            .iter()
            .flat_map(|s| s.resolved_writes.iter())
            .filter(|r| r.status != WriteStatus::Repeated)
            .filter_map(|r| r.intent.clone())
            .collect();
        for s in &mut sessions {
            s.unknown_writes.retain(|w| {
                !resolved_elsewhere
                    .iter()
                    .any(|at| at.session == s.session && at.op_id == w.op_id)
            });
        }
        DirAudit {
            dir: dir.to_path_buf(),
            sessions,
            problems: verification.problems,
        }
    }
}

/// Add what the host's state says (`audit --state`): the watchdog's
/// verdicts, which make a session incomplete.
pub fn apply_state(audit: &mut DirAudit, state: &HostState) -> Result<(), QueueError> {
    let mut verdicts = state.watchdogs()?;
    for s in &mut audit.sessions {
        if let Some(v) = verdicts.remove(&s.session) {
            s.watchdog = Some(v);
            s.complete = false;
        }
    }
    Ok(())
}

/// What one session's events add up to so far.
#[derive(Default)]
struct Tally {
    events: u64,
    start: Option<StartInfo>,
    calls: BTreeMap<String, OutcomeCounts>,
    failed_writes: Vec<FailedWrite>,
    intents: BTreeMap<u64, UnknownWrite>,
    resolved: Vec<ResolvedWrite>,
    grown: Vec<GrownInfo>,
    done: Option<DoneInfo>,
    ended: Option<(String, bool)>,
}

impl Tally {
    fn add(&mut self, event: &Event) {
        match &event.body {
            EventBody::SessionStart(s) => {
                self.start = Some(StartInfo {
                    repo: format!("{}/{}", s.owner, s.repo),
                    issue: s.issue,
                    writable: s.writable.clone(),
                    forge: s.forge.clone(),
                    pid: s.pid,
                    heartbeat_secs: s.limits.heartbeat_secs,
                })
            }
            EventBody::Intent(i) => {
                self.intents.insert(
                    i.op_id,
                    UnknownWrite {
                        seq: event.seq,
                        op_id: i.op_id,
                        op: i.op.clone(),
                        target: i.target,
                    },
                );
            }
            EventBody::Op(op) => {
                self.intents.remove(&op.op_id);
                if let Some(r) = &op.resolution {
                    self.resolved.push(ResolvedWrite {
                        seq: event.seq,
                        op_id: op.op_id,
                        op: op.op.clone(),
                        target: op.target,
                        status: r.status,
                        how: r.how.clone(),
                        forge_id: r.forge_id,
                        intent: r.intent.clone(),
                    });
                }
                if let Some(by_op) = &op.coalesced {
                    // One event for many calls over the audit rate: count each.
                    for (name, n) in by_op {
                        let counts = self.calls.entry(name.clone()).or_default();
                        counts.add_many(op.outcome, *n);
                    }
                    return;
                }
                self.calls.entry(op.op.clone()).or_default().add(op.outcome);
                let writes = Method::from_name(&op.op).is_some_and(Method::writes_forge);
                if writes && op.outcome != Outcome::Ok {
                    self.failed_writes.push(FailedWrite {
                        seq: event.seq,
                        op_id: op.op_id,
                        op: op.op.clone(),
                        target: op.target,
                        outcome: op.outcome,
                        code: op.error.as_ref().map(|e| e.name.clone()),
                        reason: op
                            .error
                            .as_ref()
                            .map_or_else(|| op.summary.clone(), |e| e.message.clone()),
                    });
                }
            }
            EventBody::Done(d) => {
                // The first done is the done signal; a second one is refused
                // by the sidecar and shows up as an op.
                self.done.get_or_insert_with(|| DoneInfo {
                    status: d.status.as_str().to_string(),
                    summary: d.summary.clone(),
                    warnings: d.warnings.clone(),
                    seq: event.seq,
                });
            }
            EventBody::SessionEnd(e) => self.ended = Some((e.reason.clone(), e.done)),
            EventBody::ScopeGrown(g) => self.grown.push(GrownInfo {
                seq: event.seq,
                number: g.number,
                branch: g.branch.clone(),
                reason: g.reason.clone(),
            }),
            // Kinds this version does not know are skipped.
            EventBody::Unknown => {}
        }
    }

    fn lifecycle(
        &self,
        session: &str,
        is_latest: bool,
        heartbeat: Option<&Heartbeat>,
        now: DateTime<Utc>,
    ) -> Lifecycle {
        if let Some((reason, done_signalled)) = &self.ended {
            return Lifecycle::Ended {
                reason: reason.clone(),
                done_signalled: *done_signalled,
            };
        }
        let beat = heartbeat.filter(|h| h.session == session);
        // A later session, by events or by heartbeat, means this one's
        // sidecar is gone.
        if !is_latest || heartbeat.is_some_and(|h| h.session.as_str() > session) {
            return Lifecycle::Superseded;
        }
        let secs = self
            .start
            .as_ref()
            .map_or(DEFAULT_HEARTBEAT_SECS, |s| s.heartbeat_secs);
        let limit = chrono::Duration::seconds((secs * u64::from(STALE_INTERVALS)) as i64);
        match beat.and_then(|b| reader::parse_ts(&b.ts).map(|ts| (b, ts))) {
            Some((b, ts)) if now - ts <= limit => Lifecycle::Running {
                heartbeat_ts: b.ts.clone(),
            },
            _ => Lifecycle::Stale {
                heartbeat_ts: beat.map(|b| b.ts.clone()),
            },
        }
    }

    fn into_audit(self, session: String, end: Lifecycle, problems: Vec<Problem>) -> SessionAudit {
        SessionAudit {
            complete: self.done.is_some(),
            watchdog: None,
            session,
            events: self.events,
            start: self.start,
            calls: self.calls,
            failed_writes: self.failed_writes,
            unknown_writes: self.intents.into_values().collect(),
            resolved_writes: self.resolved,
            scope_grown: self.grown,
            done: self.done,
            end,
            chain: ChainStatus {
                intact: problems.is_empty(),
                problems,
            },
        }
    }
}

impl fmt::Display for DirAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "queue {}", self.dir.display())?;
        if self.sessions.is_empty() {
            writeln!(f, "  no sessions")?;
        }
        for s in &self.sessions {
            write!(f, "{s}")?;
        }
        for p in &self.problems {
            writeln!(f, "  stray: {p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for SessionAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {} ({} events)", self.session, self.events)?;
        match &self.start {
            Some(s) => writeln!(
                f,
                ": {} #{}, forge {}, pid {}",
                escape(&s.repo),
                s.issue,
                escape(&s.forge),
                s.pid
            )?,
            None => writeln!(f, ": no session_start")?,
        }
        if self.calls.is_empty() {
            writeln!(f, "  calls: none")?;
        } else {
            writeln!(
                f,
                "  {:<22} {:>6} {:>6} {:>6}",
                "calls", "ok", "denied", "error"
            )?;
            for (method, c) in &self.calls {
                writeln!(
                    f,
                    "  {:<22} {:>6} {:>6} {:>6}",
                    escape(method),
                    c.ok,
                    c.denied,
                    c.error
                )?;
            }
        }
        for w in &self.failed_writes {
            let target = w.target.map_or("-".to_string(), |t| format!("#{t}"));
            let code = w.code.as_deref().map_or(String::new(), |c| format!(" {c}"));
            writeln!(
                f,
                "  {} write: {} {} (seq {}){}: {}",
                w.outcome.as_str(),
                escape(&w.op),
                target,
                w.seq,
                escape(&code),
                escape(&w.reason)
            )?;
        }
        for w in &self.unknown_writes {
            let target = w.target.map_or("(new)".to_string(), |t| format!("#{t}"));
            writeln!(
                f,
                "  outcome unknown: {} {} (op {}, intent seq {}): no op recorded; check the forge",
                escape(&w.op),
                target,
                w.op_id,
                w.seq
            )?;
        }
        for r in &self.resolved_writes {
            let target = r.target.map_or("(new)".to_string(), |t| format!("#{t}"));
            let of = r.intent.as_ref().map_or(String::new(), |at| {
                format!(" of op {} in session {}", at.op_id, escape(&at.session))
            });
            let id = r
                .forge_id
                .map_or(String::new(), |id| format!(", forge id {id}"));
            let verdict = match r.status {
                WriteStatus::Applied => "applied",
                WriteStatus::NotApplied => "not applied (budget unit given back)",
                WriteStatus::Unknown => {
                    "outcome still unknown (reading back failed); check the forge"
                }
                WriteStatus::Repeated => "repeated call, earlier write returned",
            };
            writeln!(
                f,
                "  resolved: {} {}{} (op {}, seq {}): {}{}, {}",
                escape(&r.op),
                target,
                of,
                r.op_id,
                r.seq,
                verdict,
                id,
                escape(&r.how)
            )?;
        }
        for g in &self.scope_grown {
            writeln!(
                f,
                "  scope grown: #{} from branch {} ({}, seq {})",
                g.number,
                escape(&g.branch),
                escape(&g.reason),
                g.seq
            )?;
        }
        match &self.done {
            Some(d) => {
                writeln!(f, "  done: {}: {}", d.status, escape(&d.summary))?;
                for w in &d.warnings {
                    writeln!(f, "    warning: {}", escape(w))?;
                }
            }
            None => writeln!(f, "  done: no done signal")?,
        }
        let end = match &self.end {
            Lifecycle::Ended {
                reason,
                done_signalled: true,
            } => format!("ended ({})", escape(reason)),
            Lifecycle::Ended {
                reason,
                done_signalled: false,
            } => format!("ended ({}) without done: abandoned", escape(reason)),
            Lifecycle::Superseded => {
                "no session_end; a later session started: the sidecar died".to_string()
            }
            Lifecycle::Running { heartbeat_ts } => {
                format!("no session_end yet: running (heartbeat {heartbeat_ts})")
            }
            Lifecycle::Open => "no session_end yet; no stale notice from the shipper".to_string(),
            Lifecycle::Stale { heartbeat_ts } => format!(
                "no session_end and no fresh heartbeat (last {}): sidecar dead or hung",
                heartbeat_ts.as_deref().unwrap_or("none")
            ),
        };
        writeln!(f, "  end: {end}")?;
        if let Some(w) = &self.watchdog {
            writeln!(
                f,
                "  watchdog fired at {}: no event for {}s (limit {}s): done without self-report; run incomplete",
                w.fired_at,
                w.idle_ms / 1000,
                w.limit_ms / 1000
            )?;
        }
        if self.chain.intact {
            writeln!(f, "  chain: intact")
        } else {
            writeln!(f, "  chain: BROKEN")?;
            for p in &self.chain.problems {
                writeln!(f, "    {}", escape(&p.to_string()))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_protocol::DoneStatus;
    use forge_protocol::event::{Done, Intent, Op, OpError, SessionEnd};
    use forge_queue::QueueWriter;

    fn op(op_id: u64, method: &str, target: u64, outcome: Outcome) -> EventBody {
        EventBody::Op(Op {
            op_id,
            op: method.into(),
            target: Some(target),
            outcome,
            summary: format!("{method} #{target}"),
            error: (outcome != Outcome::Ok).then(|| OpError {
                code: -32001,
                name: "scope_denied".into(),
                message: format!("write to #{target} denied: outside the assigned scope"),
            }),
            duration_ms: 1,
            peer: None,
            foreign_refs: None,
            mentions: None,
            coalesced: None,
            read: None,
            resolution: None,
            previous_body: None,
        })
    }

    #[test]
    fn counts_calls_and_lists_refused_and_unknown_writes() {
        let root = tempfile::tempdir().unwrap();
        let w = QueueWriter::open(root.path()).unwrap();
        w.append(op(1, "read_issue", 17, Outcome::Ok)).unwrap();
        w.append(op(2, "post_comment", 500, Outcome::Denied))
            .unwrap();
        w.append(EventBody::Intent(Intent {
            op_id: 3,
            op: "post_comment".into(),
            target: Some(17),
            write: None,
        }))
        .unwrap();
        w.append(op(3, "post_comment", 17, Outcome::Ok)).unwrap();
        w.append(EventBody::Intent(Intent {
            op_id: 4,
            op: "update_description".into(),
            target: Some(17),
            write: None,
        }))
        .unwrap();
        let a = audit_dir(root.path(), Utc::now()).unwrap();
        let s = &a.sessions[0];
        assert_eq!(s.calls["post_comment"].ok, 1);
        assert_eq!(s.calls["post_comment"].denied, 1);
        assert_eq!(s.failed_writes.len(), 1);
        assert_eq!(s.failed_writes[0].target, Some(500));
        assert_eq!(s.unknown_writes.len(), 1);
        assert_eq!(s.unknown_writes[0].op_id, 4);
        assert!(s.done.is_none());
        // No heartbeat was written: not running.
        assert_eq!(s.end, Lifecycle::Stale { heartbeat_ts: None });
        assert!(s.chain.intact);
        let text = a.to_string();
        assert!(text.contains("denied write: post_comment #500"), "{text}");
        assert!(
            text.contains("outcome unknown: update_description #17"),
            "{text}"
        );
        assert!(text.contains("no done signal"), "{text}");
    }

    #[test]
    fn lifecycle_of_ended_superseded_and_running_sessions() {
        let root = tempfile::tempdir().unwrap();
        let first = QueueWriter::open(root.path()).unwrap();
        first
            .append(EventBody::Done(Done {
                status: DoneStatus::Failure,
                summary: "tests fail".into(),
                warnings: vec![],
            }))
            .unwrap();
        first
            .append(EventBody::SessionEnd(SessionEnd {
                reason: "SIGTERM".into(),
                counts: OutcomeCounts::default(),
                done: true,
            }))
            .unwrap();
        let second = QueueWriter::open(root.path()).unwrap();
        second.append(op(1, "read_pr", 18, Outcome::Ok)).unwrap();
        let third = QueueWriter::open(root.path()).unwrap();
        third.append(op(1, "read_pr", 18, Outcome::Ok)).unwrap();
        third.heartbeat().unwrap();
        let a = audit_dir(root.path(), Utc::now()).unwrap();
        let ends: Vec<_> = a.sessions.iter().map(|s| s.end.clone()).collect();
        assert_eq!(
            ends[0],
            Lifecycle::Ended {
                reason: "SIGTERM".into(),
                done_signalled: true
            }
        );
        assert_eq!(ends[1], Lifecycle::Superseded);
        assert!(matches!(ends[2], Lifecycle::Running { .. }), "{ends:?}");
        assert_eq!(a.sessions[0].done.as_ref().unwrap().status, "failure");
        let later = Utc::now() + chrono::Duration::seconds(16);
        let a = audit_dir(root.path(), later).unwrap();
        assert!(matches!(
            a.sessions[2].end,
            Lifecycle::Stale {
                heartbeat_ts: Some(_)
            }
        ));
    }

    #[test]
    fn agent_text_cannot_inject_terminal_escapes() {
        let root = tempfile::tempdir().unwrap();
        let w = QueueWriter::open(root.path()).unwrap();
        w.append(EventBody::Done(Done {
            status: DoneStatus::Success,
            summary: "ok\n\u{1b}[2Jsession x: fake".into(),
            warnings: vec![],
        }))
        .unwrap();
        let text = audit_dir(root.path(), Utc::now()).unwrap().to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("done: success: ok\\n\\u{1b}[2J"), "{text}");
    }
}
