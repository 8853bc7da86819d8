//! One record per run (`forge-queue export`): everything the host knows of
//! a session as one JSON document, the raw material of a provenance API.
//!
//! A record holds the repository and issue, the initial writable set and
//! every growth, start and end time, the done signal (or none), calls by
//! method and outcome, refused and unknown-outcome writes, the watchdog's
//! verdict, every event as written, and the verification of the chain and
//! (with a key) of the signed checkpoints. Its JSON Schema is derived from
//! these types ([`schema`], printed by `forge-queue export --schema`); the
//! copy in `queue/host/schema/run-record.schema.json` is checked against it
//! by a test. [`FORMAT`] names its version.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use forge_protocol::event::OutcomeCounts;
use schemars::JsonSchema;
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
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    title = "forge-sidecar run record",
    description = "One session of a forge-sidecar queue as printed by `forge-queue export` (one document per line)."
)]
pub struct RunRecord {
    /// [`FORMAT`].
    #[schemars(extend("const" = FORMAT))]
    pub format: &'static str,
    /// The queue directory as given.
    pub dir: String,
    /// The session id.
    #[schemars(pattern(forge_queue::names::SESSION_PATTERN))]
    pub session: String,
    /// `owner/repo`, from `session_start` (none if it is missing).
    #[schemars(pattern(r"^[^/\s]+/[^/\s]+$"))]
    pub repository: Option<String>,
    /// The assigned issue.
    #[schemars(range(min = 1))]
    pub issue: Option<u64>,
    /// The writable set: at start, and every growth.
    pub writable: Writable,
    /// `ts` of the first event.
    #[schemars(extend("format" = "date-time"))]
    pub started_at: Option<String>,
    /// `ts` of `session_end`, or of the last event when the session has
    /// not ended (see `end`).
    #[schemars(extend("format" = "date-time"))]
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
    /// Every event of the session, as written, in order (a file that is
    /// not an event as its text).
    #[schemars(with = "Vec<EventAsWritten>")]
    pub events: Vec<Value>,
}

/// The writable set over the session.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Writable {
    /// At start (`session_start.writable`).
    pub initial: Vec<u64>,
    /// Each event that grew it, as written.
    #[schemars(with = "Vec<EventHead>")]
    pub growth: Vec<Value>,
}

/// The schema of an event as the record holds it: the fields every event
/// has; the rest depends on its kind (the sidecar's README lists them).
#[derive(JsonSchema)]
#[allow(dead_code)] // only its schema is used
struct EventHead {
    /// The event format's version.
    v: u32,
    /// The session.
    #[schemars(pattern(forge_queue::names::SESSION_PATTERN))]
    session: String,
    /// Its position in the session, from 0.
    seq: u64,
    /// When it was written.
    #[schemars(extend("format" = "date-time"))]
    ts: String,
    /// What happened: `session_start`, `op`, `intent`, `done`, ...
    kind: String,
    /// Hex SHA-256 of the previous event's file; none for seq 0.
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    prev: Option<String>,
}

/// An event, or the text of a file that is not one.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
enum EventAsWritten {
    Event(EventHead),
    /// A file that is not a valid event, as its text.
    Text(String),
}

/// The done signal.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DoneRecord {
    /// `success`, `failure` or `blocked`.
    #[schemars(with = "forge_protocol::DoneStatus")]
    pub status: String,
    /// The agent's summary.
    pub summary: String,
    /// The sidecar's warnings for the host (hold the merge when any).
    pub warnings: Vec<String>,
    /// Its seq.
    pub seq: u64,
    /// Its `ts`.
    #[schemars(extend("format" = "date-time"))]
    pub ts: Option<String>,
    /// With a key: whether a signed checkpoint covers it.
    pub signed: Option<bool>,
}

/// The verification of a session.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Verification {
    /// The hash chain.
    pub chain: ChainResult,
    /// The signed checkpoints (with a key).
    pub signature: Option<SignatureResult>,
}

/// The chain check.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ChainResult {
    /// No problem found.
    pub intact: bool,
    /// What is wrong.
    pub problems: Vec<Problem>,
}

/// The checkpoint check.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SignatureResult {
    /// The verifier key, `name+hash`.
    #[schemars(pattern(r"^[^+\s]+\+[0-9a-f]{8}$"))]
    pub key: String,
    /// The newest valid checkpoint, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Events the checkpoint covers.
    pub covered: u64,
    /// Events after it: covered by the chain only.
    pub uncovered: u64,
}

/// The JSON Schema of a [`RunRecord`] (draft 2020-12), as
/// `forge-queue export --schema` prints it.
pub fn schema() -> Value {
    // Integer widths (`uint64`, ...) are not formats validators know; a
    // strict one refuses a schema that names them.
    let drop_widths = |s: &mut schemars::Schema| {
        if s.get("format").and_then(Value::as_str) != Some("date-time") {
            s.remove("format");
        }
    };
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .with_transform(schemars::transform::RecursiveTransform(drop_widths))
        .into_generator()
        .into_root_schema_for::<RunRecord>()
        .to_value();
    if let Value::Object(object) = &mut schema {
        object.insert("$id".into(), FORMAT.into());
    }
    schema
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

    /// The schema file in the repository, for programs that read the
    /// records, is the one derived from the types.
    #[test]
    fn the_schema_file_is_the_derived_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/run-record.schema.json");
        let derived = serde_json::to_string_pretty(&schema()).unwrap() + "\n";
        if std::env::var_os("FORGE_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &derived).unwrap();
        }
        let file = std::fs::read_to_string(path).unwrap();
        assert!(
            file == derived,
            "{path} differs from the schema derived from the types; \
             write it again with `forge-queue export --schema > {path}`"
        );
    }

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
                run: None,
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
