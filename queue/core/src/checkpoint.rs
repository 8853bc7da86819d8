//! Signed checkpoints: the sidecar's signed statement of how far a
//! session's chain went, so the tail of a session is protected too.
//!
//! A backward hash chain shows an edit to any event that has a successor,
//! but not the removal or rewrite of the last events. A checkpoint names the
//! number of events of a session and the SHA-256 of the last one, signed
//! with the sidecar's key as a signed note ([`crate::note`]); every event up
//! to that one is then fixed by the chain. The sidecar replaces
//! `<queue>/checkpoint/<session>` with a fresh checkpoint at every
//! heartbeat, right after a `done` and after `session_end`.
//!
//! The note's text, one `key value` line each, in this order:
//!
//! ```text
//! forge-sidecar checkpoint v1
//! repository acme/widgets
//! issue 17
//! run build-4711
//! session 20261125T120000.000Z-0a1b2c
//! events 12
//! last 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b
//! time 2026-11-25T12:00:05.123Z
//! ```
//!
//! `run` is the host's run id (`FORGE_RUN_ID`), the line absent when the
//! sidecar was given none: a checkpoint binds its session to one run, so a
//! session copied into another run's queue is told apart (its `done`
//! settles nothing there). `events` is the number of event files of the session (seq 0 to
//! `events - 1`), `last` the lower-case hex SHA-256 of the exact bytes of
//! event `events - 1`, `time` when it was signed (RFC 3339 UTC, ms).

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::names::is_session_id;
use crate::note::{NoteError, SigningKey, VerifierKey};
use crate::reader::parse_ts;

/// First line of every checkpoint: names the format and its version.
pub const HEADER: &str = "forge-sidecar checkpoint v1";

/// The directory of checkpoint files in a queue.
pub const DIR: &str = "checkpoint";

/// What a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Checkpoint {
    /// `owner/repo`.
    #[schemars(pattern(r"^[^/\s]+/[^/\s]+$"))]
    pub repository: String,
    /// The assigned issue.
    #[schemars(range(min = 1))]
    pub issue: u64,
    /// The host's run id, if the sidecar was given one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The session.
    #[schemars(pattern(crate::names::SESSION_PATTERN))]
    pub session: String,
    /// Event files of the session covered: seq 0 to `events - 1`.
    #[schemars(range(min = 1))]
    pub events: u64,
    /// Hex SHA-256 of event `events - 1`.
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    pub last: String,
    /// When it was signed.
    #[schemars(extend("format" = "date-time"))]
    pub time: String,
}

impl Checkpoint {
    /// The note text (ends in a newline).
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "{HEADER}\nrepository {}\nissue {}\n",
            self.repository, self.issue
        );
        if let Some(run) = &self.run {
            let _ = writeln!(s, "run {run}");
        }
        let _ = write!(
            s,
            "session {}\nevents {}\nlast {}\ntime {}\n",
            self.session, self.events, self.last, self.time
        );
        s
    }

    /// Sign as a note.
    pub fn sign(&self, key: &SigningKey) -> Result<String, NoteError> {
        key.sign(&self.text())
    }

    /// Open a signed checkpoint note with `key` and parse its text strictly.
    pub fn open(note: &[u8], key: &VerifierKey) -> Result<Checkpoint, CheckpointError> {
        let text = key.open(note).map_err(CheckpointError::Note)?;
        Checkpoint::parse(text).map_err(CheckpointError::Text)
    }

    /// Parse a checkpoint text: exactly the seven lines (eight with `run`),
    /// in order, each value in its one canonical form.
    pub fn parse(text: &str) -> Result<Checkpoint, String> {
        let mut lines = text
            .strip_suffix('\n')
            .ok_or("the text does not end in a newline")?
            .split('\n')
            .peekable();
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not {HEADER:?}"));
        }
        let field = |lines: &mut std::iter::Peekable<std::str::Split<'_, char>>,
                     key: &str|
         -> Result<String, String> {
            let line = lines.next().ok_or(format!("no {key} line"))?;
            line.strip_prefix(key)
                .and_then(|v| v.strip_prefix(' '))
                .filter(|v| !v.is_empty() && !v.contains(' '))
                .map(str::to_string)
                .ok_or(format!("expected '{key} <value>', found {line:?}"))
        };
        let number = |v: String, key: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && n.to_string() == v)
                .ok_or(format!("{key} {v:?} is not a positive number"))
        };
        let repository = field(&mut lines, "repository")?;
        let issue = number(field(&mut lines, "issue")?, "issue")?;
        let run = match lines.peek() {
            Some(line) if line.starts_with("run ") => Some(field(&mut lines, "run")?),
            _ => None,
        };
        let session = field(&mut lines, "session")?;
        let events = number(field(&mut lines, "events")?, "events")?;
        let last = field(&mut lines, "last")?;
        let time = field(&mut lines, "time")?;
        if lines.next().is_some() {
            return Err("more lines than a checkpoint has".into());
        }
        if !repository
            .split_once('/')
            .is_some_and(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        {
            return Err(format!("repository {repository:?} is not owner/repo"));
        }
        if let Some(run) = &run
            && !is_run_id(run)
        {
            return Err(format!("run {run:?} is not a run id"));
        }
        if !is_session_id(&session) {
            return Err(format!("session {session:?} is not a session id"));
        }
        if last.len() != 64
            || !last
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!("last {last:?} is not a lower-case hex SHA-256"));
        }
        if parse_ts(&time).is_none() {
            return Err(format!("time {time:?} is not an RFC 3339 time"));
        }
        Ok(Checkpoint {
            repository,
            issue,
            run,
            session,
            events,
            last,
            time,
        })
    }

    /// The seq of the last event covered.
    pub fn last_seq(&self) -> u64 {
        self.events - 1
    }
}

/// Whether `id` is a run id: 1 to 128 letters, digits, `-`, `_`, `.`, `:`
/// (what the sidecar accepts as `FORGE_RUN_ID`).
pub fn is_run_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Why a checkpoint file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    /// Not a note signed by the key.
    Note(NoteError),
    /// Signed, but the text is not a checkpoint.
    Text(String),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Note(e) => write!(f, "{e}"),
            CheckpointError::Text(e) => write!(f, "signed, but not a checkpoint: {e}"),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// What the sidecar needs to sign checkpoints: its key and what the
/// checkpoints name.
#[derive(Clone, Debug)]
pub struct CheckpointSigner {
    /// The signing key (`Debug` prints `***`).
    pub key: SigningKey,
    /// `owner/repo`.
    pub repository: String,
    /// The assigned issue.
    pub issue: u64,
    /// The host's run id, if the sidecar was given one.
    pub run: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            repository: "acme/widgets".into(),
            issue: 17,
            run: None,
            session: "20261125T120000.000Z-0a1b2c".into(),
            events: 12,
            last: "3a".repeat(32),
            time: "2026-11-25T12:00:05.123Z".into(),
        }
    }

    #[test]
    fn signs_and_opens() {
        let key = SigningKey::generate("test").unwrap();
        let note = sample().sign(&key).unwrap();
        assert!(note.starts_with(&format!("{HEADER}\nrepository acme/widgets\nissue 17\n")));
        let back = Checkpoint::open(note.as_bytes(), &key.verifier()).unwrap();
        assert_eq!(back, sample());
        let other = SigningKey::generate("test").unwrap().verifier();
        assert!(matches!(
            Checkpoint::open(note.as_bytes(), &other),
            Err(CheckpointError::Note(NoteError::NotSigned(_)))
        ));
    }

    #[test]
    fn the_run_line_is_signed_and_parsed_when_there_is_a_run() {
        let with_run = Checkpoint {
            run: Some("build-4711".into()),
            ..sample()
        };
        let text = with_run.text();
        assert!(
            text.contains("issue 17\nrun build-4711\nsession "),
            "{text}"
        );
        assert_eq!(Checkpoint::parse(&text).unwrap(), with_run);
        assert!(!sample().text().contains("\nrun "));
        for bad in [
            text.replace("run build-4711", "run "),
            text.replace("run build-4711", "run a b"),
            text.replace("run build-4711", "run a/b"),
            text.replace("issue 17\nrun build-4711", "run build-4711\nissue 17"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parsing_is_strict() {
        let text = sample().text();
        assert_eq!(Checkpoint::parse(&text).unwrap(), sample());
        for bad in [
            text.replace("events 12", "events 012"),
            text.replace("events 12", "events 0"),
            text.replace("issue 17", "issue  17"),
            text.replace("acme/widgets", "acme"),
            text.replace(&"3a".repeat(32), &"3A".repeat(32)),
            text.replace("time 2026-11-25T12:00:05.123Z", "time soon"),
            format!("{text}extra 1\n"),
            text.replace("v1", "v2"),
            text.trim_end().to_string(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad}");
        }
    }
}
