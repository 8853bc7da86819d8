//! One record per run (`forge-queue export`): everything the host knows of
//! a session as one JSON document, the raw material of a provenance API.
//!
//! A record holds the repository and issue, the initial writable set and
//! every growth, start and end time, the done signal (or none), calls by
//! method and outcome, refused and unknown-outcome writes, the watchdog's
//! verdict, every event as written, and the verification of the chain and
//! (with a key) of the signed checkpoints. Its JSON Schema is
//! `queue/host/schema/run-record.schema.json`; [`FORMAT`] names its version.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use forge_protocol::event::OutcomeCounts;
use serde::Serialize;
use serde_json::Value;

use crate::audit::{self, FailedWrite, Lifecycle, UnknownWrite};
use crate::checkpoint::Checkpoint;
use crate::error::QueueError;
use crate::note::VerifierKey;
use crate::reader::{self, QueueDir, parse_ts};
use crate::state::{HostState, WatchdogVerdict};
use crate::verify::{self, Problem};

/// The `format` of every record.
pub const FORMAT: &str = "forge-sidecar/run-record/v1";

/// Event kinds that grow the writable set (recorded by the sidecar when a
/// PR joins the scope).
const GROWTH_KINDS: &[&str] = &["scope_grown"];

/// The record of one session.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// [`FORMAT`].
    pub format: &'static str,
    /// The queue directory.
    pub dir: String,
    /// The session id.
    pub session: String,
    /// `owner/repo`, from `session_start` (none if it is missing).
    pub repository: Option<String>,
    /// The assigned issue.
    pub issue: Option<u64>,
    /// The writable set: at start, and every growth.
    pub writable: Writable,
    /// `ts` of the first event.
    pub started_at: Option<String>,
    /// `ts` of `session_end`, or of the last event when the session has
    /// not ended (see `end`).
    pub ended_at: Option<String>,
    /// From `started_at` to `ended_at`.
    pub duration_ms: Option<u64>,
    /// How the session ended, or why it has not (as in `audit`).
    pub end: Lifecycle,
    /// The done signal, if any.
    pub done: Option<DoneRecord>,
    /// Done was signalled and no watchdog fired.
    pub complete: bool,
    /// The watchdog's verdict (from the host's state), if it fired.
    pub watchdog: Option<WatchdogVerdict>,
    /// `op` events by method.
    pub calls: BTreeMap<String, OutcomeCounts>,
    /// `op` events by outcome, all methods.
    pub outcomes: OutcomeCounts,
    /// Forge writes refused or failed.
    pub failed_writes: Vec<FailedWrite>,
    /// Forge writes with an `intent` and no `op`: outcome unknown.
    pub unknown_writes: Vec<UnknownWrite>,
    /// What was verified.
    pub verification: Verification,
    /// Every event of the session, as written, in order.
    pub events: Vec<Value>,
}

/// The writable set over the session.
#[derive(Debug, Clone, Serialize)]
pub struct Writable {
    /// At start (`session_start.writable`).
    pub initial: Vec<u64>,
    /// Each event that grew it, as written.
    pub growth: Vec<Value>,
}

/// The done signal.
#[derive(Debug, Clone, Serialize)]
pub struct DoneRecord {
    /// `success`, `failure` or `blocked`.
    pub status: String,
    /// The agent's summary.
    pub summary: String,
    /// The sidecar's warnings for the host (hold the merge when any).
    pub warnings: Vec<String>,
    /// Its seq.
    pub seq: u64,
    /// Its `ts`.
    pub ts: Option<String>,
    /// With a key: whether a signed checkpoint covers it.
    pub signed: Option<bool>,
}

/// The verification of a session.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The hash chain.
    pub chain: ChainResult,
    /// The signed checkpoints (with a key).
    pub signature: Option<SignatureResult>,
}

/// The chain check.
#[derive(Debug, Clone, Serialize)]
pub struct ChainResult {
    /// No problem found.
    pub intact: bool,
    /// What is wrong.
    pub problems: Vec<Problem>,
}

/// The checkpoint check.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureResult {
    /// The verifier key, `name+hash`.
    pub key: String,
    /// The newest valid checkpoint, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Events the checkpoint covers.
    pub covered: u64,
    /// Events after it: covered by the chain only.
    pub uncovered: u64,
}

/// The records of the sessions of the queue at `dir` (only `session` if
/// given), oldest first. With `key`, the checkpoints are verified (and
/// checkpoint problems join the chain's); with `state`, the host's kept
/// checkpoints and watchdog verdicts count.
pub fn export_dir(
    dir: &Path,
    now: DateTime<Utc>,
    session: Option<&str>,
    key: Option<&VerifierKey>,
    state: Option<&HostState>,
) -> Result<Vec<RunRecord>, QueueError> {
    let mut audit = audit::audit_dir(dir, now)?;
    if let Some(state) = state {
        audit::apply_state(&mut audit, state)?;
    }
    let verification = match key {
        Some(key) => Some(verify::verify_dir_signed(dir, key, state)?),
        None => None,
    };
    let mut events: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    reader::for_each_file(&QueueDir::new(dir), |file| {
        if session.is_some_and(|s| s != file.name.session) {
            return;
        }
        // A file that is not an event is in the record as its text (and in
        // the chain's problems).
        let value = file
            .event
            .as_ref()
            .ok()
            .and_then(|_| serde_json::from_slice(&file.bytes).ok())
            .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&file.bytes).into()));
        events
            .entry(file.name.session.clone())
            .or_default()
            .push(value);
    })?;
    let mut records = Vec::new();
    for s in audit.sessions {
        if session.is_some_and(|wanted| wanted != s.session) {
            continue;
        }
        let events = events.remove(&s.session).unwrap_or_default();
        let ts_of = |seq: u64| {
            events
                .iter()
                .find(|e| e["seq"] == seq)
                .and_then(|e| e["ts"].as_str())
                .map(str::to_string)
        };
        let started_at = events
            .first()
            .and_then(|e| e["ts"].as_str())
            .map(str::to_string);
        let ended_at = events
            .last()
            .and_then(|e| e["ts"].as_str())
            .map(str::to_string);
        let duration_ms = started_at
            .as_deref()
            .and_then(parse_ts)
            .zip(ended_at.as_deref().and_then(parse_ts))
            .and_then(|(a, b)| (b - a).to_std().ok())
            .map(|d| d.as_millis() as u64);
        let chain_of = verification
            .as_ref()
            .and_then(|v| v.sessions.iter().find(|c| c.session == s.session));
        let coverage = chain_of.and_then(|c| c.signature.clone());
        let signature = match (key, &coverage) {
            (Some(key), Some(c)) => Some(SignatureResult {
                key: key.label(),
                checkpoint: c.checkpoint.clone(),
                covered: c.covered,
                uncovered: c.uncovered,
            }),
            _ => None,
        };
        // With a key, the problems include the checkpoints'.
        let problems = match chain_of {
            Some(c) => c.problems.clone(),
            None => s.chain.problems.clone(),
        };
        let done = s.done.as_ref().map(|d| DoneRecord {
            status: d.status.clone(),
            summary: d.summary.clone(),
            warnings: d.warnings.clone(),
            seq: d.seq,
            ts: ts_of(d.seq),
            signed: coverage.as_ref().map(|c| c.covered > d.seq),
        });
        let mut outcomes = OutcomeCounts::default();
        for c in s.calls.values() {
            outcomes.ok += c.ok;
            outcomes.denied += c.denied;
            outcomes.error += c.error;
        }
        let growth = events
            .iter()
            .filter(|e| {
                e["kind"]
                    .as_str()
                    .is_some_and(|k| GROWTH_KINDS.contains(&k))
            })
            .cloned()
            .collect();
        records.push(RunRecord {
            format: FORMAT,
            dir: dir.to_string_lossy().into_owned(),
            repository: s.start.as_ref().map(|st| st.repo.clone()),
            issue: s.start.as_ref().map(|st| st.issue),
            writable: Writable {
                initial: s
                    .start
                    .as_ref()
                    .map_or_else(Vec::new, |st| st.writable.clone()),
                growth,
            },
            started_at,
            ended_at,
            duration_ms,
            end: s.end,
            done,
            complete: s.complete,
            watchdog: s.watchdog,
            calls: s.calls,
            outcomes,
            failed_writes: s.failed_writes,
            unknown_writes: s.unknown_writes,
            verification: Verification {
                chain: ChainResult {
                    intact: problems.is_empty(),
                    problems,
                },
                signature,
            },
            session: s.session,
            events,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointSigner;
    use crate::note::SigningKey;
    use forge_protocol::DoneStatus;
    use forge_protocol::event::{Done, EventBody};
    use forge_queue::QueueWriter;

    #[test]
    fn a_signed_session_exports_with_its_done_signed() {
        let root = tempfile::tempdir().unwrap();
        let key = SigningKey::generate("t").unwrap();
        let w = QueueWriter::open(root.path())
            .unwrap()
            .with_checkpoints(CheckpointSigner {
                key: key.clone(),
                repository: "acme/widgets".into(),
                issue: 17,
            });
        w.append(EventBody::Done(Done {
            status: DoneStatus::Failure,
            summary: "tests fail".into(),
            warnings: vec![],
        }))
        .unwrap();
        let records =
            export_dir(root.path(), Utc::now(), None, Some(&key.verifier()), None).unwrap();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        let done = r.done.as_ref().unwrap();
        assert_eq!((done.status.as_str(), done.signed), ("failure", Some(true)));
        assert!(r.complete);
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0]["summary"], "tests fail");
        let sig = r.verification.signature.as_ref().unwrap();
        assert_eq!((sig.covered, sig.uncovered), (1, 0));
        // Another session id: nothing.
        let none = export_dir(root.path(), Utc::now(), Some("x"), None, None).unwrap();
        assert!(none.is_empty());
    }
}
