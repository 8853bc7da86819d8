//! The queue event schema: what the sidecar writes and hosts read (the
//! README's "The format, for consumers in any language").
//!
//! One event is one JSON object in one file. The common envelope is
//! [`Event`]; the `kind` field selects the [`EventBody`] variant, whose
//! fields are flattened into the same object.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::types::{DoneStatus, TextRules};

/// Largest `op` event file, bytes: its caller-controlled parts are cut
/// (method names to 64 characters, summaries and messages to 512, see
/// [`crate::echo`]; a coalesced map holds at most 17 names), and JSON
/// escaping at most sextuples a character.
pub const MAX_OP_EVENT_BYTES: usize = 16 * 1024;

/// Schema version written in every event's `v` field.
pub const EVENT_VERSION: u32 = 1;

/// An event: the envelope every kind shares, plus the kind's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version ([`EVENT_VERSION`]).
    pub v: u32,
    /// Session id: UTC start time `YYYYMMDDTHHMMSS.sssZ` + `-` + 6 hex digits.
    pub session: String,
    /// Position in the session, from 0 with no gaps.
    pub seq: u64,
    /// Time written, RFC 3339 UTC with milliseconds.
    pub ts: String,
    /// Hex SHA-256 of the previous event file's bytes in this session; null for seq 0.
    pub prev: Option<String>,
    /// The kind and its fields.
    #[serde(flatten)]
    pub body: EventBody,
}

/// The kinds of event and their fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// The sidecar started serving.
    SessionStart(SessionStart),
    /// A forge write is about to be sent.
    Intent(Intent),
    /// A call finished (or was refused).
    Op(Op),
    /// The agent signalled that its work is finished.
    Done(Done),
    /// The sidecar stopped gracefully.
    SessionEnd(SessionEnd),
    /// A pull request joined the writable set.
    ScopeGrown(ScopeGrown),
    /// A kind this version does not know (written by a newer sidecar).
    /// Consumers skip it; it is never written.
    #[serde(other)]
    Unknown,
}

impl EventBody {
    /// The `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::SessionStart(_) => "session_start",
            EventBody::Intent(_) => "intent",
            EventBody::Op(_) => "op",
            EventBody::Done(_) => "done",
            EventBody::SessionEnd(_) => "session_end",
            EventBody::ScopeGrown(_) => "scope_grown",
            EventBody::Unknown => "unknown",
        }
    }
}

/// Fields of `session_start`. Never contains the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    /// Sidecar version.
    pub version: String,
    /// Forge kind: `gitea` or `memory`.
    pub forge: String,
    /// API base URL (Gitea), or null for the in-memory forge.
    pub api_base: Option<String>,
    /// Repository owner.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// The assigned issue.
    pub issue: u64,
    /// The writable numbers at start.
    pub writable: Vec<u64>,
    /// The limits in force.
    pub limits: Limits,
    /// The rules texts are checked against (keywords, per-text limits);
    /// empty in events written before they were recorded.
    #[serde(default)]
    pub text: TextRules,
    /// Process id of the sidecar.
    pub pid: u32,
    /// The host's run this session belongs to (`FORGE_RUN_ID`); absent
    /// when none was given. Sessions of the same run in one queue directory
    /// share the write budget and the done signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// Configured limits, as recorded in `session_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest JSON-RPC request accepted, bytes.
    pub max_request_bytes: u64,
    /// Largest comment/description/summary, bytes.
    pub max_body_bytes: u64,
    /// Forge writes allowed in the session.
    pub max_writes: u32,
    /// Whole-request timeout for forge calls, seconds.
    pub http_timeout_secs: u64,
    /// Heartbeat interval, seconds.
    pub heartbeat_secs: u64,
}

/// Fields of `intent`: written before a forge write is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Id shared with the matching `op` event.
    pub op_id: u64,
    /// Method name.
    pub op: String,
    /// The issue or PR number written to; null when the write creates it
    /// (`open_pr`).
    pub target: Option<u64>,
    /// The write's identity and what is needed to find it on the forge
    /// again; absent in events written before writes carried a marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<WriteKey>,
}

/// The identity of one forge write, recorded in its `intent`.
///
/// Every forge write carries the marker `<!-- forge-sidecar:write ID -->`
/// (an HTML comment, invisible on the forge's pages) at the end of the text
/// it sends, so the write can be found again when its answer is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteKey {
    /// `<session>/<op_id>`: unique within the queue directory, and so
    /// within the run.
    pub id: String,
    /// Hex SHA-256 of the call (method, target, mode, texts): a repeated
    /// identical call is recognised by it.
    pub call: String,
    /// For `update_description`: the mode (`replace`, `append`, `section`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// For `open_pr`: the base branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// For `open_pr`: the head branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

impl WriteKey {
    /// The marker a write with this identity carries.
    pub fn marker(&self) -> String {
        write_marker(&self.id)
    }
}

/// The marker a write with identity `id` carries: `<!-- forge-sidecar:write ID -->`.
pub fn write_marker(id: &str) -> String {
    format!("<!-- forge-sidecar:write {id} -->")
}

/// What became of a write whose answer did not say (lost answer, sidecar
/// stopped mid-write), or of a call that repeated an earlier write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteStatus {
    /// The write is on the forge (its marker was found).
    Applied,
    /// The write is not on the forge: its budget unit was given back.
    NotApplied,
    /// The forge could not be read back either: the outcome is still
    /// unknown and the budget unit stays spent.
    Unknown,
    /// The call repeated an earlier write that is on the forge: nothing was
    /// sent, the earlier result was returned.
    Repeated,
}

impl WriteStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteStatus::Applied => "applied",
            WriteStatus::NotApplied => "not_applied",
            WriteStatus::Unknown => "unknown",
            WriteStatus::Repeated => "repeated",
        }
    }
}

/// A call of some session: where an `intent` is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRef {
    /// Its session.
    pub session: String,
    /// Its `op_id` in that session.
    pub op_id: u64,
}

/// How an uncertain write was resolved, recorded in its `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// What the sidecar found.
    pub status: WriteStatus,
    /// How: [`Resolution::ANSWER_LOST`], [`Resolution::AT_START`],
    /// [`Resolution::FOUND_LATER`] or [`Resolution::SAME_CALL`].
    pub how: String,
    /// The forge's id of the write found: comment id, issue or PR number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge_id: Option<u64>,
    /// The `intent` this resolves, when it is not this op's own: a write
    /// of an earlier session (resolved at start, or found later), or the
    /// earlier write a repeated call returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<CallRef>,
}

impl Resolution {
    /// The forge's answer was lost (timeout, dropped connection, 5xx): the
    /// target was read back.
    pub const ANSWER_LOST: &str = "read back after a lost answer";
    /// The sidecar stopped between `intent` and `op`: read back at the next
    /// start of the run.
    pub const AT_START: &str = "read back at start";
    /// A write found not applied earlier showed up on the forge later.
    pub const FOUND_LATER: &str = "found on the forge later";
    /// The same call as an earlier write (method, target, mode, texts).
    pub const SAME_CALL: &str = "same call as an earlier write";
}

/// The description a write replaced, kept so a host can restore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousBody {
    /// The whole text, when it fits in the event ([`MAX_PREVIOUS_BODY_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Hex SHA-256 of the text's UTF-8 bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Largest previous description an `op` event keeps whole, in bytes of
/// JSON string (escapes included); a larger one is kept as its SHA-256 and
/// size. With the other bounded parts the event stays under
/// [`MAX_OP_EVENT_BYTES`].
pub const MAX_PREVIOUS_BODY_BYTES: usize = 6 * 1024;

/// Fields of `scope_grown`: a pull request joined the writable set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeGrown {
    /// The pull request's number.
    pub number: u64,
    /// Its head branch: the configured `FORGE_BRANCH`.
    pub branch: String,
    /// How it was found: [`ScopeGrown::OPENED`] (by this session's
    /// `open_pr`), [`ScopeGrown::AT_START`], [`ScopeGrown::ON_WRITE`] (an
    /// existing PR of the branch, looked up when a write targeted it) or
    /// [`ScopeGrown::ON_OPEN`].
    pub reason: String,
}

impl ScopeGrown {
    /// The session's `open_pr` opened it (it counts against `FORGE_MAX_PRS`
    /// for the whole run).
    pub const OPENED: &str = "opened";
    /// It existed when the session started.
    pub const AT_START: &str = "found at start";
    /// It was looked up when a write targeted its number.
    pub const ON_WRITE: &str = "found on write";
    /// `open_pr` found it already open for the branch.
    pub const ON_OPEN: &str = "found by open_pr";
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by policy (scope, limits, already done).
    Denied,
    /// Failed (bad params, forge error, ...).
    Error,
}

impl Outcome {
    /// The outcome for an error of this code.
    pub fn of_error(code: ErrorCode) -> Outcome {
        match code {
            ErrorCode::ScopeDenied | ErrorCode::LimitExceeded | ErrorCode::AlreadyDone => {
                Outcome::Denied
            }
            _ => Outcome::Error,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// The error of a call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpError {
    /// Numeric JSON-RPC code.
    pub code: i32,
    /// Name of the code, e.g. `scope_denied`.
    pub name: String,
    /// The message the caller received.
    pub message: String,
}

/// The caller, from the socket's peer credentials (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Process id, when the kernel reports it.
    pub pid: Option<i32>,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Fields of `op`: one per call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Id of the call within the session (matches its `intent`, if any).
    pub op_id: u64,
    /// Method name as called.
    pub op: String,
    /// The issue or PR number the call was about, if any.
    pub target: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// A human sentence: "read PR #18", "denied comment to #500: out of scope".
    pub summary: String,
    /// The error, when the outcome is not `ok`.
    pub error: Option<OpError>,
    /// Wall time of the call in milliseconds.
    pub duration_ms: u64,
    /// Who called.
    pub peer: Option<Peer>,
    /// For an allowed write: the distinct issues and pull requests outside
    /// the writable set that its text refers to (`#500`, `other/repo#3`),
    /// each of which gets a cross-reference notice. Absent for other calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_refs: Option<Vec<String>>,
    /// For an allowed write: the distinct users and teams its text
    /// mentions (`alice`, `org/team`), each of whom is notified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    /// Present on an `op` that stands for several calls over the audit rate
    /// (method as called -> number of calls, all with this `outcome`); such
    /// an event has `op` `(coalesced)`. Absent on the `op` of one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coalesced: Option<BTreeMap<String, u64>>,
    /// For a read that returned texts: the hidden characters found, the
    /// texts cut and the texts withheld from untrusted authors (and whose).
    /// Absent for other calls, and for reads where nothing was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<crate::read::ReadReport>,
    /// For a write whose answer was lost, a write of an earlier session
    /// found at start, or a call that repeated an earlier write: what the
    /// sidecar found on the forge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// For `update_description`: the description before the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_body: Option<PreviousBody>,
}

impl Op {
    /// How many calls this event stands for.
    pub fn calls(&self) -> u64 {
        self.coalesced
            .as_ref()
            .map_or(1, |by_op| by_op.values().sum())
    }
}

/// Fields of `done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// How the work ended.
    pub status: DoneStatus,
    /// The agent's summary.
    pub summary: String,
    /// What the host should check before merging (e.g. a commit message of
    /// a session PR that would close an issue outside the scope); absent
    /// when there is nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Per-outcome call counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OutcomeCounts {
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls refused by policy.
    pub denied: u64,
    /// Calls that failed.
    pub error: u64,
}

impl OutcomeCounts {
    /// Count one call.
    pub fn add(&mut self, outcome: Outcome) {
        self.add_many(outcome, 1);
    }

    /// Count `n` calls with the same outcome.
    pub fn add_many(&mut self, outcome: Outcome, n: u64) {
        match outcome {
            Outcome::Ok => self.ok += n,
            Outcome::Denied => self.denied += n,
            Outcome::Error => self.error += n,
        }
    }
}

/// Fields of `session_end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// Why the session ended, e.g. `SIGTERM`.
    pub reason: String,
    /// Calls by outcome.
    pub counts: OutcomeCounts,
    /// Whether `done` was signalled; false means the session was abandoned.
    pub done: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_flattened_into_the_envelope() {
        let ev = Event {
            v: EVENT_VERSION,
            session: "20261125T120000.000Z-abcdef".into(),
            seq: 3,
            ts: "2026-11-25T12:00:00.123Z".into(),
            prev: Some("00".repeat(32)),
            body: EventBody::Done(Done {
                status: DoneStatus::Blocked,
                summary: "need a decision".into(),
                warnings: vec![],
            }),
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"], "done");
        assert_eq!(v["status"], "blocked");
        assert_eq!(v["seq"], 3);
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn unknown_kinds_parse_and_are_skippable() {
        let raw =
            r#"{"v":1,"session":"s","seq":4,"ts":"t","prev":null,"kind":"checkpoint","root":"ab"}"#;
        let ev: Event = serde_json::from_str(raw).unwrap();
        assert_eq!(ev.body, EventBody::Unknown);
        assert_eq!(ev.seq, 4);
        let grown = r#"{"v":1,"session":"s","seq":5,"ts":"t","prev":null,"kind":"scope_grown","number":21,"branch":"agent/issue-17","reason":"opened"}"#;
        let ev: Event = serde_json::from_str(grown).unwrap();
        assert!(matches!(ev.body, EventBody::ScopeGrown(ref g) if g.number == 21));
    }

    #[test]
    fn policy_refusals_are_denied() {
        assert_eq!(Outcome::of_error(ErrorCode::ScopeDenied), Outcome::Denied);
        assert_eq!(
            Outcome::of_error(ErrorCode::ForgeUnavailable),
            Outcome::Error
        );
    }
}
