//! Chain verification: is every session's event stream complete, unedited
//! and in order?
//!
//! Each session is a hash chain: event `seq` n+1 carries in `prev` the
//! SHA-256 of event n's exact bytes. Checked per session, over `new/` and
//! `cur/` together: seq continuity from 0, each `prev`, and that the `session`
//! and `seq` fields match the file name; every file must parse.
//!
//! What a backward chain cannot show: an edit to, or the removal of, the
//! *last* event(s) of a session (nothing after them records their hash), and
//! the removal of a whole session. [`verify_dir_signed`] closes that gap with
//! the sidecar's signed checkpoints ([`crate::checkpoint`]): every event up
//! to the newest checkpoint is fixed by the signature and the chain; events
//! after it (at most one heartbeat interval) are covered by the chain only.
//! With the host's state ([`HostState`]) a checkpoint the host once saw
//! still counts after the queue's copy is rolled back or the session removed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use forge_protocol::event::{EVENT_VERSION, Event, EventBody};
use serde::Serialize;

use crate::checkpoint::{self, Checkpoint};
use crate::error::QueueError;
use crate::names::{EventName, is_session_id, sha256_hex};
use crate::note::VerifierKey;
use crate::reader::{self, LoadedFile, QueueDir, Stray};
use crate::state::HostState;

/// One thing wrong with a queue, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// The file concerned, relative to the queue: `new/<name>` or `cur/<name>`.
    pub file: String,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: ProblemKind,
}

/// The kinds of [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ProblemKind {
    /// A file in `new/` or `cur/` whose name is not an event name.
    NotAnEvent,
    /// The file is not a valid event (JSON error or missing fields).
    Unparseable {
        /// The parser's message.
        reason: String,
    },
    /// The `v` field is not a version this tool knows.
    UnsupportedVersion {
        /// The version found.
        v: u32,
    },
    /// The `session` field differs from the session in the file name.
    SessionMismatch {
        /// The session in the file.
        found: String,
    },
    /// The `seq` field differs from the seq in the file name.
    SeqMismatch {
        /// The seq in the file.
        found: u64,
        /// The seq in the file name.
        named: u64,
    },
    /// Two files hold each other's events (each one's `seq` field is the
    /// other's name).
    Swapped {
        /// The other file of the pair.
        other: String,
    },
    /// Events are missing before this file.
    Missing {
        /// First missing seq.
        first: u64,
        /// Last missing seq.
        last: u64,
    },
    /// `prev` is not the SHA-256 of the previous file's bytes.
    PrevMismatch {
        /// The previous file.
        previous: String,
    },
    /// A seq-0 event has a non-null `prev`.
    UnexpectedPrev,
    /// The same name is in `new/` and `cur/` with different contents.
    Conflict {
        /// The other copy.
        other: String,
    },
    /// A checkpoint file that is not a checkpoint signed by the key.
    BadCheckpoint {
        /// Why it was refused.
        reason: String,
    },
    /// A session with events but no checkpoint signed by the key.
    Unsigned,
    /// The queue's checkpoint is older than one the host kept: it was
    /// replaced by an older one, or removed.
    RolledBack {
        /// Events the host's checkpoint covers.
        kept: u64,
        /// Events the queue's checkpoint covers (none: no checkpoint).
        found: Option<u64>,
    },
    /// Events a signed checkpoint counts are gone: the tail was cut.
    SignedMissing {
        /// First missing seq.
        first: u64,
        /// Events the checkpoint counts.
        events: u64,
    },
    /// The last event a checkpoint signed has other bytes now.
    SignedChanged {
        /// Events the checkpoint counts.
        events: u64,
    },
    /// The checkpoint names another repository or issue than `session_start`.
    Foreign {
        /// What the checkpoint names: `owner/repo#issue`.
        checkpoint: String,
        /// What `session_start` names.
        start: String,
    },
    /// A `session_end` no checkpoint covers, though the sidecar signs one
    /// right after it: the final checkpoint was removed or rolled back.
    EndUnsigned,
    /// A signed checkpoint (the queue's or the host's) of a session that
    /// has no events in the queue.
    SessionMissing {
        /// Events the checkpoint covers.
        events: u64,
    },
    /// An event after `session_end`: the sidecar writes nothing after it,
    /// so this was added to the queue afterwards.
    AfterEnd {
        /// The seq of `session_end`.
        end: u64,
    },
    /// A session of another run than the one the host expects here (a
    /// session copied from another run's queue, say): its `done` settles
    /// nothing for this run.
    ForeignRun {
        /// The run the host expects.
        expected: String,
        /// The run the session's signed start names (none: no run).
        found: Option<String>,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::NotAnEvent => write!(f, "not an event file name"),
            ProblemKind::Unparseable { reason } => write!(f, "not a valid event: {reason}"),
            ProblemKind::UnsupportedVersion { v } => {
                write!(
                    f,
                    "unsupported event version {v} (expected {EVENT_VERSION})"
                )
            }
            ProblemKind::SessionMismatch { found } => {
                write!(f, "session field is {found}, not the session in its name")
            }
            ProblemKind::SeqMismatch { found, named } => write!(
                f,
                "seq field is {found} but the name says {named}: reordered or renamed"
            ),
            ProblemKind::Swapped { other } => {
                write!(f, "swapped with {other}: each holds the other's event")
            }
            ProblemKind::Missing { first, last } if first == last => {
                write!(f, "seq {first} is missing before it: deleted or moved away")
            }
            ProblemKind::Missing { first, last } => write!(
                f,
                "seq {first}..={last} are missing before it: deleted or moved away"
            ),
            ProblemKind::PrevMismatch { previous } => write!(
                f,
                "prev is not the SHA-256 of {previous}: that file was edited, replaced or reordered"
            ),
            ProblemKind::UnexpectedPrev => write!(f, "seq 0 has a non-null prev"),
            ProblemKind::Conflict { other } => {
                write!(f, "differs from {other}, which has the same name")
            }
            ProblemKind::BadCheckpoint { reason } => {
                write!(f, "checkpoint refused: {reason}")
            }
            ProblemKind::Unsigned => write!(
                f,
                "no checkpoint signed by the key: its checkpoint was removed, or its sidecar had no signing key"
            ),
            ProblemKind::RolledBack {
                kept,
                found: Some(found),
            } => write!(
                f,
                "the checkpoint covers {found} events but the host kept one covering {kept}: it was replaced by an older one"
            ),
            ProblemKind::RolledBack { kept, found: None } => write!(
                f,
                "the checkpoint is gone but the host kept one covering {kept} events: it was removed"
            ),
            ProblemKind::SignedMissing { first, events } => write!(
                f,
                "a signed checkpoint counts {events} events but seq {first}..={} are missing: the tail was cut after signing",
                events - 1
            ),
            ProblemKind::SignedChanged { events } => write!(
                f,
                "differs from the event the checkpoint of {events} events signed: it, or an event before it, was rewritten after signing"
            ),
            ProblemKind::Foreign { checkpoint, start } => write!(
                f,
                "the checkpoint is for {checkpoint} but the session is {start}"
            ),
            ProblemKind::EndUnsigned => write!(
                f,
                "session_end is covered by no checkpoint, though one is signed right after it: the final checkpoint was removed or rolled back"
            ),
            ProblemKind::SessionMissing { events } => write!(
                f,
                "a signed checkpoint counts {events} events of this session, which is gone from the queue"
            ),
            ProblemKind::AfterEnd { end } => write!(
                f,
                "follows session_end (seq {end}), after which the sidecar writes nothing: it was added to the queue afterwards, and nothing in it is the sidecar's"
            ),
            ProblemKind::ForeignRun { expected, found } => write!(
                f,
                "a session of run {}, not of the expected run {expected}: it was copied from another run's queue, and its done settles nothing here",
                found.as_deref().unwrap_or("(none)")
            ),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.kind)
    }
}

/// The chain of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionChain {
    /// The session id.
    pub session: String,
    /// Event files found.
    pub events: u64,
    /// Highest seq found.
    pub last_seq: u64,
    /// What is wrong with it; empty when intact.
    pub problems: Vec<Problem>,
    /// With a key: what signed checkpoints cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<Coverage>,
}

/// How much of a session signed checkpoints cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The newest valid checkpoint (the queue's or the host's), if any.
    pub checkpoint: Option<Checkpoint>,
    /// Whether that checkpoint came from the host's state.
    pub from_state: bool,
    /// Events the checkpoint covers (seq 0 to `covered - 1`).
    pub covered: u64,
    /// Events after it: covered by the chain only, not yet by a signature.
    pub uncovered: u64,
}

impl SessionChain {
    /// No problems found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The verification of one queue directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirVerification {
    /// The queue directory.
    pub dir: PathBuf,
    /// Every session, oldest first.
    pub sessions: Vec<SessionChain>,
    /// Problems that belong to no session (stray files).
    pub problems: Vec<Problem>,
    /// With a key: the verifier key's `name+hash`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl DirVerification {
    /// Every chain intact and no stray files.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty() && self.sessions.iter().all(SessionChain::is_intact)
    }

    /// All problems, session ones first.
    pub fn all_problems(&self) -> impl Iterator<Item = &Problem> {
        self.sessions
            .iter()
            .flat_map(|s| s.problems.iter())
            .chain(self.problems.iter())
    }

    /// Total number of event files.
    pub fn event_count(&self) -> u64 {
        self.sessions.iter().map(|s| s.events).sum()
    }
}

impl fmt::Display for DirVerification {
    /// `DIR: intact (...)`, or `DIR: BROKEN (...)` then one indented line
    /// per problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        let (sessions, events) = (self.sessions.len(), self.event_count());
        let signed = match &self.key {
            Some(key) => format!("; checkpoints signed by {key}"),
            None => String::new(),
        };
        if self.is_intact() {
            write!(
                f,
                "{dir}: intact ({sessions} sessions, {events} events{signed})"
            )?;
            return self.fmt_coverage(f);
        }
        let n = self.all_problems().count();
        write!(
            f,
            "{dir}: BROKEN ({n} problems; {sessions} sessions, {events} events{signed})"
        )?;
        for p in self.all_problems() {
            write!(f, "\n  {p}")?;
        }
        self.fmt_coverage(f)
    }
}

impl DirVerification {
    /// One line per session on what signatures cover (with a key).
    fn fmt_coverage(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sessions {
            let Some(c) = &s.signature else { continue };
            write!(f, "\n  session {}: ", s.session)?;
            match &c.checkpoint {
                Some(cp) => write!(
                    f,
                    "{} events signed (checkpoint of {}{})",
                    c.covered,
                    cp.time,
                    if c.from_state {
                        ", kept by the host"
                    } else {
                        ""
                    }
                )?,
                None => write!(f, "no signed checkpoint")?,
            }
            if c.uncovered > 0 {
                write!(f, "; {} events not yet covered by a signature", c.uncovered)?;
            }
        }
        Ok(())
    }
}

/// Verify every chain of the queue at `dir`.
pub fn verify_dir(dir: &Path) -> Result<DirVerification, QueueError> {
    let queue = QueueDir::new(dir);
    let mut verifier = Verifier::default();
    let strays = reader::for_each_file(&queue, |file| verifier.feed(file))?;
    Ok(verifier.finish(dir, &strays))
}

/// An event held in memory rather than in a queue directory (read back from
/// a stream, say): what reports call it, its name, its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedEvent {
    /// How reports refer to it.
    pub label: String,
    /// The session and seq it claims (in a directory: its file name).
    pub name: EventName,
    /// The exact bytes.
    pub bytes: Vec<u8>,
}

impl NamedEvent {
    /// Sort `events` into event order (session, then seq; stable, so
    /// copies keep their order) and parse each one, ready to feed.
    pub fn in_order(mut events: Vec<NamedEvent>) -> Vec<(NamedEvent, Result<Event, String>)> {
        events.sort_by(|a, b| a.name.cmp(&b.name));
        events
            .into_iter()
            .map(|e| {
                let parsed = serde_json::from_slice(&e.bytes).map_err(|err| err.to_string());
                (e, parsed)
            })
            .collect()
    }
}

/// Verify the chains of events held in memory, as [`verify_dir`] does for a
/// directory; `label` stands for the directory in the report.
pub fn verify_events(label: &str, events: Vec<NamedEvent>) -> DirVerification {
    let mut verifier = Verifier::default();
    for (e, parsed) in NamedEvent::in_order(events) {
        verifier.feed_named(e.label, &e.name, &e.bytes, &parsed);
    }
    verifier.finish(Path::new(label), &[])
}

/// Verify every chain of the queue at `dir` and its signed checkpoints:
/// each checkpoint must be signed by `key`, and the events it counts must
/// all be there, unchanged; a session with events must have one; with the
/// host's `state`, a checkpoint the host kept must not be newer than the
/// queue's, nor its session gone. Events after a session's newest
/// checkpoint are counted in [`Coverage::uncovered`], not problems.
pub fn verify_dir_signed(
    dir: &Path,
    key: &VerifierKey,
    state: Option<&HostState>,
) -> Result<DirVerification, QueueError> {
    verify_dir_signed_for_run(dir, key, state, None)
}

/// [`verify_dir_signed`], and with `run`, every session must belong to
/// that run (its signed `session_start` names it): one of another run is a
/// [`ProblemKind::ForeignRun`]. Whatever the run, an event after a
/// session's `session_end` is a [`ProblemKind::AfterEnd`].
pub fn verify_dir_signed_for_run(
    dir: &Path,
    key: &VerifierKey,
    state: Option<&HostState>,
    run: Option<&str>,
) -> Result<DirVerification, QueueError> {
    let queue = QueueDir::new(dir);
    let mut found = Checkpoints::default();
    for (name, bytes) in checkpoint_files(&queue)? {
        found.offer(
            &format!("{}/{name}", checkpoint::DIR),
            Some(&name),
            &bytes,
            key,
        );
    }
    if let Some(state) = state {
        found.apply_state(state, key)?;
    }
    let mut verifier = found.verifier();
    let strays = reader::for_each_file(&queue, |file| verifier.feed(file))?;
    let session_label = |session: &str| format!("{}/{session}", checkpoint::DIR);
    Ok(found.judge(verifier, key, run, session_label, |v| {
        v.finish(dir, &strays)
    }))
}

/// A signed checkpoint note held in memory rather than in a queue's
/// `checkpoint/` (read back from a stream, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCheckpoint {
    /// How reports refer to it.
    pub label: String,
    /// The session it was published for, if known (in a directory: its
    /// file name); it must be the session the note names.
    pub session: Option<String>,
    /// The note's exact bytes.
    pub note: Vec<u8>,
}

/// [`verify_dir_signed_for_run`] for events and checkpoints held in memory
/// (a stream's messages): the same verdicts on the signed tail, `done`
/// after `session_end` and the run, without the host's state (a stream
/// keeps every checkpoint ever published: the one covering most events of
/// each session counts). `label` stands for the directory in the report.
pub fn verify_events_signed(
    label: &str,
    events: Vec<NamedEvent>,
    checkpoints: Vec<NamedCheckpoint>,
    key: &VerifierKey,
    run: Option<&str>,
) -> DirVerification {
    let mut found = Checkpoints::default();
    for c in &checkpoints {
        found.offer(&c.label, c.session.as_deref(), &c.note, key);
    }
    let mut verifier = found.verifier();
    for (e, parsed) in NamedEvent::in_order(events) {
        verifier.feed_named(e.label, &e.name, &e.bytes, &parsed);
    }
    let session_label = |session: &str| format!("checkpoint {session}");
    found.judge(verifier, key, run, session_label, |v| {
        v.finish(Path::new(label), &[])
    })
}

/// The newest valid checkpoint of each session, and the refusals met on
/// the way.
#[derive(Default)]
struct Checkpoints {
    newest: BTreeMap<String, Newest>,
    /// Sessions with a refused checkpoint (no `Unsigned` for them: the
    /// refusal says more).
    refused: std::collections::BTreeSet<String>,
    problems: Vec<Problem>,
}

impl Checkpoints {
    /// Consider one checkpoint note, published for `session` if known.
    fn offer(&mut self, label: &str, session: Option<&str>, bytes: &[u8], key: &VerifierKey) {
        let mut refuse = |reason: String, session: Option<&str>| {
            if let Some(s) = session {
                self.refused.insert(s.to_string());
            }
            self.problems.push(Problem {
                file: label.to_string(),
                kind: ProblemKind::BadCheckpoint { reason },
            })
        };
        if let Some(name) = session
            && !is_session_id(name)
        {
            return refuse("not named after a session".into(), None);
        }
        match Checkpoint::open(bytes, key) {
            Err(e) => refuse(e.to_string(), session),
            Ok(c) if session.is_some_and(|s| s != c.session) => refuse(
                format!("it is the checkpoint of session {}", c.session),
                session,
            ),
            Ok(c) => {
                let newer = self
                    .newest
                    .get(&c.session)
                    .is_none_or(|n| c.events >= n.checkpoint.events);
                if newer {
                    self.newest.insert(
                        c.session.clone(),
                        Newest {
                            queue_events: Some(c.events),
                            checkpoint: c,
                            from_state: false,
                            rolled_back_from: None,
                        },
                    );
                }
            }
        }
    }

    /// Weigh the host's kept checkpoints against what was found.
    fn apply_state(&mut self, state: &HostState, key: &VerifierKey) -> Result<(), QueueError> {
        for (session, bytes) in state.checkpoints()? {
            let label = format!("state {}/{session}", state.dir().display());
            let kept = match Checkpoint::open(&bytes, key) {
                Ok(c) if c.session == session => c,
                Ok(_) | Err(_) => {
                    self.problems.push(Problem {
                        file: label,
                        kind: ProblemKind::BadCheckpoint {
                            reason: "the host's kept checkpoint does not verify with this key"
                                .into(),
                        },
                    });
                    continue;
                }
            };
            match self.newest.get_mut(&session) {
                Some(n) if n.checkpoint.events >= kept.events => {}
                Some(n) => {
                    n.rolled_back_from = Some(kept.events);
                    n.checkpoint = kept;
                    n.from_state = true;
                }
                None => {
                    self.newest.insert(
                        session,
                        Newest {
                            rolled_back_from: Some(kept.events),
                            checkpoint: kept,
                            from_state: true,
                            queue_events: None,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// A verifier that records what the signature check needs.
    fn verifier(&self) -> Verifier {
        Verifier {
            signed_seq: self
                .newest
                .iter()
                .map(|(s, n)| (s.clone(), n.checkpoint.last_seq()))
                .collect(),
            ..Verifier::default()
        }
    }

    /// The verdict: the chains `finish` makes of what was fed, then the
    /// signature checks; `session_label` names a session's checkpoint in
    /// problems.
    fn judge(
        self,
        mut verifier: Verifier,
        key: &VerifierKey,
        run: Option<&str>,
        session_label: impl Fn(&str) -> String,
        finish: impl FnOnce(Verifier) -> DirVerification,
    ) -> DirVerification {
        let Checkpoints {
            mut newest,
            refused,
            problems: mut dir_problems,
        } = self;
        let mut signed = std::mem::take(&mut verifier.signed);
        let mut v = finish(verifier);
        v.key = Some(key.label());
        for chain in &mut v.sessions {
            let found = signed.remove(&chain.session).unwrap_or_default();
            let label = session_label(&chain.session);
            let refused = refused.contains(&chain.session);
            let newest = newest.remove(&chain.session);
            let mut problem = |file: String, kind| chain.problems.push(Problem { file, kind });
            if let Some(n) = &newest {
                problem_for_tail(n, &found, &label, &mut problem);
            } else if chain.events > 0 && !refused {
                // A refused checkpoint is reported as such already.
                problem(label.clone(), ProblemKind::Unsigned);
            }
            let covered = newest.as_ref().map_or(0, |n| n.checkpoint.events);
            if let Some((end_seq, end_label)) = &found.end
                && covered <= *end_seq
                && newest.is_some()
            {
                problem(end_label.clone(), ProblemKind::EndUnsigned);
            }
            if let (Some((end, _)), Some((_, after))) = (&found.end, &found.after_end) {
                problem(after.clone(), ProblemKind::AfterEnd { end: *end });
            }
            if let Some(expected) = run {
                let found_run = found.start.as_ref().and_then(|(_, _, r)| r.clone());
                if found_run.as_deref() != Some(expected) {
                    problem(
                        label.clone(),
                        ProblemKind::ForeignRun {
                            expected: expected.to_string(),
                            found: found_run,
                        },
                    );
                }
            }
            chain.signature = Some(Coverage {
                uncovered: chain.events.saturating_sub(covered),
                covered,
                from_state: newest.as_ref().is_some_and(|n| n.from_state),
                checkpoint: newest.map(|n| n.checkpoint),
            });
        }
        v.problems.append(&mut dir_problems);
        // Checkpoints of sessions that have no events left.
        for (session, n) in newest {
            v.problems.push(Problem {
                file: session_label(&session),
                kind: ProblemKind::SessionMissing {
                    events: n.checkpoint.events,
                },
            });
        }
        v
    }
}

/// The files of a queue's `checkpoint/`: (name, bytes); none if it is
/// missing.
fn checkpoint_files(queue: &QueueDir) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
    let dir = queue.root().join(checkpoint::DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .collect::<Result<Vec<_>, _>>()
            .map_err(QueueError::io("list", &dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(QueueError::io("list", &dir)(e)),
    };
    let mut files = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_session_id(&name) {
            // Refused by its name alone.
            files.push((name, Vec::new()));
            continue;
        }
        let path = entry.path();
        let bytes = std::fs::read(&path).map_err(QueueError::io("read", &path))?;
        files.push((name, bytes));
    }
    Ok(files)
}

/// Check what a session's newest checkpoint says against the files found.
fn problem_for_tail(
    n: &Newest,
    found: &Signed,
    label: &str,
    problem: &mut impl FnMut(String, ProblemKind),
) {
    let cp = &n.checkpoint;
    if let Some(kept) = n.rolled_back_from {
        problem(
            label.to_string(),
            ProblemKind::RolledBack {
                kept,
                found: n.queue_events,
            },
        );
    }
    match &found.last {
        None => problem(
            label.to_string(),
            ProblemKind::SignedMissing {
                first: found.max_seq.map_or(0, |s| s + 1),
                events: cp.events,
            },
        ),
        Some((hash, file)) if *hash != cp.last => problem(
            file.clone(),
            ProblemKind::SignedChanged { events: cp.events },
        ),
        Some(_) => {}
    }
    if let Some((repository, issue, run)) = &found.start
        && (*repository != cp.repository || *issue != cp.issue || *run != cp.run)
    {
        let named = |repository: &str, issue: u64, run: &Option<String>| match run {
            Some(run) => format!("{repository}#{issue} (run {run})"),
            None => format!("{repository}#{issue}"),
        };
        problem(
            label.to_string(),
            ProblemKind::Foreign {
                checkpoint: named(&cp.repository, cp.issue, &cp.run),
                start: named(repository, *issue, run),
            },
        );
    }
}

/// The newest valid checkpoint of a session.
struct Newest {
    checkpoint: Checkpoint,
    from_state: bool,
    /// Set when the host kept a newer one than the queue holds: its events.
    rolled_back_from: Option<u64>,
    /// Events of the queue's own checkpoint, if it has a valid one.
    queue_events: Option<u64>,
}

/// What the verifier remembers of the last file of a session.
struct Last {
    seq: u64,
    hash: String,
    label: String,
}

#[derive(Default)]
struct SessionState {
    events: u64,
    last: Option<Last>,
    problems: Vec<Problem>,
}

/// Incremental verifier: feed it the files of a queue in event order
/// ([`reader::for_each_file`]), then [`Verifier::finish`]. Audit shares it so
/// a queue is read once.
#[derive(Default)]
pub struct Verifier {
    sessions: BTreeMap<String, SessionState>,
    /// Per session, the seq whose hash a checkpoint signed.
    signed_seq: BTreeMap<String, u64>,
    /// What the signature check needs from each session's files.
    signed: BTreeMap<String, Signed>,
}

/// What a session's files say, for the signature check.
#[derive(Default)]
struct Signed {
    /// Hash and label of the file at the signed seq, if found.
    last: Option<(String, String)>,
    /// Highest seq found.
    max_seq: Option<u64>,
    /// `owner/repo`, issue and run of `session_start`.
    start: Option<(String, u64, Option<String>)>,
    /// Seq and label of `session_end`.
    end: Option<(u64, String)>,
    /// Seq and label of the first event after `session_end`.
    after_end: Option<(u64, String)>,
}

impl Verifier {
    /// Feed one file of a queue directory.
    pub fn feed(&mut self, file: &LoadedFile) {
        let label = QueueDir::label(file.place, &file.file_name);
        self.feed_named(label, &file.name, &file.bytes, &file.event);
    }

    /// Feed one event known by `label` and `name` (events of one session in
    /// seq order; sessions may interleave).
    pub fn feed_named(
        &mut self,
        label: String,
        name: &EventName,
        bytes: &[u8],
        event: &Result<Event, String>,
    ) {
        let hash = sha256_hex(bytes);
        let named = name.seq;
        self.note_signed(name, event, &hash, &label);
        let state = self.sessions.entry(name.session.clone()).or_default();
        let mut problem = |kind| {
            state.problems.push(Problem {
                file: label.clone(),
                kind,
            })
        };

        if let Some(last) = state.last.as_ref().filter(|l| l.seq == named) {
            // The same name in new/ and cur/: a copy-then-delete consumer
            // that crashed in between leaves two identical files, which is
            // harmless; different contents are not.
            if last.hash != hash {
                problem(ProblemKind::Conflict {
                    other: last.label.clone(),
                });
            }
            return;
        }
        let expected = state.last.as_ref().map_or(0, |l| l.seq + 1);
        if named > expected {
            problem(ProblemKind::Missing {
                first: expected,
                last: named - 1,
            });
        }
        match event {
            Err(reason) => problem(ProblemKind::Unparseable {
                reason: reason.clone(),
            }),
            Ok(event) => {
                if event.v != EVENT_VERSION {
                    problem(ProblemKind::UnsupportedVersion { v: event.v });
                }
                if event.session != name.session {
                    problem(ProblemKind::SessionMismatch {
                        found: event.session.clone(),
                    });
                }
                if event.seq != named {
                    problem(ProblemKind::SeqMismatch {
                        found: event.seq,
                        named,
                    });
                }
                match (&state.last, &event.prev) {
                    (_, Some(_)) if named == 0 => problem(ProblemKind::UnexpectedPrev),
                    // After a gap the previous event is unknown; the gap is
                    // already reported.
                    (Some(last), prev)
                        if last.seq + 1 == named && prev.as_deref() != Some(last.hash.as_str()) =>
                    {
                        problem(ProblemKind::PrevMismatch {
                            previous: last.label.clone(),
                        })
                    }
                    _ => {}
                }
            }
        }
        state.events += 1;
        state.last = Some(Last {
            seq: named,
            hash,
            label,
        });
    }

    fn note_signed(
        &mut self,
        name: &EventName,
        event: &Result<Event, String>,
        hash: &str,
        label: &str,
    ) {
        let seq = name.seq;
        let signed = self.signed.entry(name.session.clone()).or_default();
        signed.max_seq = signed.max_seq.max(Some(seq));
        if self.signed_seq.get(&name.session) == Some(&seq) && signed.last.is_none() {
            signed.last = Some((hash.to_string(), label.to_string()));
        }
        if signed.after_end.is_none() && signed.end.as_ref().is_some_and(|(end, _)| seq > *end) {
            signed.after_end = Some((seq, label.to_string()));
        }
        match event.as_ref().map(|e| &e.body) {
            Ok(EventBody::SessionStart(s)) => {
                signed.start = Some((format!("{}/{}", s.owner, s.repo), s.issue, s.run.clone()))
            }
            Ok(EventBody::SessionEnd(_)) => signed.end = Some((seq, label.to_string())),
            _ => {}
        }
    }

    /// The verdict on everything fed, for `dir` with its `strays`.
    pub fn finish(self, dir: &Path, strays: &[Stray]) -> DirVerification {
        let sessions = self
            .sessions
            .into_iter()
            .map(|(session, state)| SessionChain {
                session,
                events: state.events,
                last_seq: state.last.map_or(0, |l| l.seq),
                problems: explain_swaps(state.problems),
                signature: None,
            })
            .collect();
        let problems = strays
            .iter()
            .map(|s| Problem {
                file: QueueDir::label(s.place, &s.file_name),
                kind: ProblemKind::NotAnEvent,
            })
            .collect();
        DirVerification {
            dir: dir.to_path_buf(),
            sessions,
            problems,
            key: None,
        }
    }
}

/// Replace two reciprocal seq mismatches (file named a holds seq b, file
/// named b holds seq a) by one `Swapped` problem each, and drop the chain
/// breaks that the swap alone explains (the `prev` checks of the pair and of
/// the file after it), so the report says what happened rather than its
/// three symptoms.
fn explain_swaps(problems: Vec<Problem>) -> Vec<Problem> {
    let mismatches: Vec<(usize, u64, u64)> = problems
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p.kind {
            ProblemKind::SeqMismatch { found, named } => Some((i, named, found)),
            _ => None,
        })
        .collect();
    let mut swapped: BTreeMap<usize, String> = BTreeMap::new();
    for &(i, named, found) in &mismatches {
        let partner = mismatches
            .iter()
            .find(|&&(j, n, f)| j != i && n == found && f == named);
        if let Some(&(j, _, _)) = partner {
            swapped.insert(i, problems[j].file.clone());
        }
    }
    if swapped.is_empty() {
        return problems;
    }
    let in_swap: Vec<&str> = swapped.keys().map(|&i| problems[i].file.as_str()).collect();
    let explained_by_swap = |p: &Problem| match &p.kind {
        ProblemKind::PrevMismatch { previous } => {
            in_swap.contains(&p.file.as_str()) || in_swap.contains(&previous.as_str())
        }
        _ => false,
    };
    let keep: Vec<bool> = problems.iter().map(|p| !explained_by_swap(p)).collect();
    problems
        .iter()
        .enumerate()
        .filter(|&(i, _)| keep[i])
        .map(|(i, p)| match swapped.get(&i) {
            Some(other) => Problem {
                file: p.file.clone(),
                kind: ProblemKind::Swapped {
                    other: other.clone(),
                },
            },
            None => p.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::QueueWriter;
    use forge_protocol::DoneStatus;
    use forge_protocol::event::{Done, EventBody};

    fn queue_with(n: usize) -> (tempfile::TempDir, String) {
        let root = tempfile::tempdir().unwrap();
        let w = QueueWriter::open(root.path()).unwrap();
        for i in 0..n {
            w.append(EventBody::Done(Done {
                status: DoneStatus::Success,
                summary: format!("event {i}"),
                warnings: vec![],
            }))
            .unwrap();
        }
        let session = w.session().to_string();
        (root, session)
    }

    fn path(root: &Path, session: &str, seq: u64) -> PathBuf {
        root.join("new").join(EventName::format(session, seq))
    }

    fn kinds(v: &DirVerification) -> Vec<String> {
        v.all_problems().map(|p| p.to_string()).collect()
    }

    #[test]
    fn an_untouched_queue_is_intact_across_new_and_cur() {
        let (root, session) = queue_with(4);
        fs::create_dir_all(root.path().join("cur")).unwrap();
        for seq in [0, 2] {
            let from = path(root.path(), &session, seq);
            fs::rename(
                &from,
                root.path().join("cur").join(from.file_name().unwrap()),
            )
            .unwrap();
        }
        let v = verify_dir(root.path()).unwrap();
        assert!(v.is_intact(), "{v}");
        assert_eq!(v.event_count(), 4);
        assert_eq!(v.sessions[0].last_seq, 3);
    }

    #[test]
    fn an_edited_byte_breaks_the_next_prev() {
        let (root, session) = queue_with(3);
        let p = path(root.path(), &session, 1);
        let mut bytes = fs::read(&p).unwrap();
        let at = bytes.windows(7).position(|w| w == b"event 1").unwrap();
        bytes[at + 6] = b'X';
        fs::write(&p, bytes).unwrap();
        let v = verify_dir(root.path()).unwrap();
        let problems = kinds(&v);
        assert_eq!(problems.len(), 1, "{v}");
        assert!(problems[0].starts_with(&format!("new/{session}-00000002.json: prev")));
        assert!(problems[0].contains(&format!("{session}-00000001.json")));
    }

    #[test]
    fn a_deleted_event_is_a_gap() {
        let (root, session) = queue_with(4);
        fs::remove_file(path(root.path(), &session, 1)).unwrap();
        let v = verify_dir(root.path()).unwrap();
        assert_eq!(
            v.sessions[0].problems,
            vec![Problem {
                file: format!("new/{session}-00000002.json"),
                kind: ProblemKind::Missing { first: 1, last: 1 }
            }]
        );
    }

    #[test]
    fn a_swapped_pair_is_named_as_such() {
        let (root, session) = queue_with(5);
        let (a, b) = (
            path(root.path(), &session, 1),
            path(root.path(), &session, 2),
        );
        let tmp = root.path().join("swap");
        fs::rename(&a, &tmp).unwrap();
        fs::rename(&b, &a).unwrap();
        fs::rename(&tmp, &b).unwrap();
        let v = verify_dir(root.path()).unwrap();
        let a_label = format!("new/{session}-00000001.json");
        let b_label = format!("new/{session}-00000002.json");
        assert_eq!(
            v.sessions[0].problems,
            vec![
                Problem {
                    file: a_label.clone(),
                    kind: ProblemKind::Swapped {
                        other: b_label.clone()
                    }
                },
                Problem {
                    file: b_label,
                    kind: ProblemKind::Swapped { other: a_label }
                },
            ],
            "{v}"
        );
    }

    #[test]
    fn garbage_and_strays_are_reported() {
        let (root, session) = queue_with(2);
        fs::write(path(root.path(), &session, 1), b"not json").unwrap();
        fs::write(root.path().join("new").join("README"), b"hi").unwrap();
        let v = verify_dir(root.path()).unwrap();
        let problems = kinds(&v);
        assert!(problems[0].contains("not a valid event"), "{v}");
        assert_eq!(problems[1], "new/README: not an event file name");
        assert!(!v.is_intact());
    }

    #[test]
    fn identical_copies_in_new_and_cur_are_harmless() {
        let (root, session) = queue_with(2);
        let p = path(root.path(), &session, 0);
        fs::create_dir_all(root.path().join("cur")).unwrap();
        fs::copy(&p, root.path().join("cur").join(p.file_name().unwrap())).unwrap();
        assert!(verify_dir(root.path()).unwrap().is_intact());
        fs::write(&p, b"{}").unwrap();
        let v = verify_dir(root.path()).unwrap();
        assert!(kinds(&v).iter().any(|p| p.contains("differs from")), "{v}");
    }

    #[test]
    fn a_renamed_file_with_a_wrong_session_is_caught() {
        let (root, session) = queue_with(1);
        let other = "20261125T120000.000Z-ffffff";
        fs::rename(
            path(root.path(), &session, 0),
            root.path().join("new").join(EventName::format(other, 0)),
        )
        .unwrap();
        let v = verify_dir(root.path()).unwrap();
        assert!(
            kinds(&v)[0].contains(&format!("session field is {session}")),
            "{v}"
        );
    }

    mod signed {
        use super::*;
        use crate::checkpoint::CheckpointSigner;
        use crate::note::SigningKey;
        use forge_protocol::event::{Event, OutcomeCounts, SessionEnd};

        /// A finished session: three dones and a session_end, signed.
        fn finished() -> (tempfile::TempDir, String, SigningKey) {
            let root = tempfile::tempdir().unwrap();
            let key = SigningKey::generate("test").unwrap();
            let w = QueueWriter::open(root.path())
                .unwrap()
                .with_checkpoints(CheckpointSigner {
                    key: key.clone(),
                    repository: "acme/widgets".into(),
                    issue: 17,
                    run: None,
                });
            for i in 0..3 {
                w.append(EventBody::Done(Done {
                    status: DoneStatus::Success,
                    summary: format!("event {i}"),
                    warnings: vec![],
                }))
                .unwrap();
            }
            w.append(EventBody::SessionEnd(SessionEnd {
                reason: "SIGTERM".into(),
                counts: OutcomeCounts::default(),
                done: true,
            }))
            .unwrap();
            (root, w.session().to_string(), key)
        }

        fn check(root: &Path, key: &SigningKey, state: Option<&HostState>) -> DirVerification {
            verify_dir_signed(root, &key.verifier(), state).unwrap()
        }

        /// Rewrite event `seq` with `edit` and fix up every `prev` after it,
        /// as someone without the key would.
        fn rewrite(root: &Path, session: &str, seq: u64, edit: impl Fn(&mut Event)) {
            let mut prev: Option<String> = None;
            for n in 0.. {
                let p = path(root, session, n);
                let Ok(bytes) = fs::read(&p) else { break };
                let mut event: Event = serde_json::from_slice(&bytes).unwrap();
                if n > seq {
                    event.prev = prev.clone();
                } else if n == seq {
                    edit(&mut event);
                }
                let mut out = serde_json::to_vec(&event).unwrap();
                out.push(b'\n');
                fs::write(&p, &out).unwrap();
                prev = Some(sha256_hex(&out));
            }
        }

        #[test]
        fn a_chained_event_after_a_signed_end_fails() {
            let (root, session, key) = finished();
            let end = path(root.path(), &session, 3);
            let bytes = fs::read(&end).unwrap();
            let mut after: Event = serde_json::from_slice(&bytes).unwrap();
            after.seq = 4;
            after.prev = Some(sha256_hex(&bytes));
            after.body = EventBody::Done(Done {
                status: DoneStatus::Success,
                summary: "merge it".into(),
                warnings: vec![],
            });
            let mut out = serde_json::to_vec(&after).unwrap();
            out.push(b'\n');
            fs::write(path(root.path(), &session, 4), &out).unwrap();
            assert!(
                verify_dir(root.path()).unwrap().is_intact(),
                "the chain alone cannot tell"
            );
            let v = check(root.path(), &key, None);
            assert!(!v.is_intact(), "{v}");
            assert!(
                v.sessions[0]
                    .problems
                    .iter()
                    .any(|p| p.kind == ProblemKind::AfterEnd { end: 3 }
                        && p.file.ends_with("-00000004.json")),
                "{v}"
            );
            assert!(v.to_string().contains("follows session_end (seq 3)"), "{v}");
        }

        #[test]
        fn a_signed_session_is_intact_and_covered() {
            let (root, session, key) = finished();
            let v = check(root.path(), &key, None);
            assert!(v.is_intact(), "{v}");
            let c = v.sessions[0].signature.as_ref().unwrap();
            assert_eq!((c.covered, c.uncovered), (4, 0));
            assert!(
                v.to_string()
                    .contains(&format!("session {session}: 4 events signed"))
            );
        }

        #[test]
        fn a_cut_tail_is_caught() {
            let (root, session, key) = finished();
            for seq in [2, 3] {
                fs::remove_file(path(root.path(), &session, seq)).unwrap();
            }
            assert!(
                verify_dir(root.path()).unwrap().is_intact(),
                "the chain alone cannot tell"
            );
            let v = check(root.path(), &key, None);
            assert_eq!(
                v.sessions[0].problems[0].kind,
                ProblemKind::SignedMissing {
                    first: 2,
                    events: 4
                },
                "{v}"
            );
        }

        #[test]
        fn held_in_memory_the_newest_of_several_checkpoints_counts() {
            let (root, session, key) = finished();
            let cp_path = root.path().join(checkpoint::DIR).join(&session);
            let newest = fs::read(&cp_path).unwrap();
            let older = Checkpoint {
                events: 2,
                last: crate::sha256_hex(&fs::read(path(root.path(), &session, 1)).unwrap()),
                ..Checkpoint::open(&newest, &key.verifier()).unwrap()
            }
            .sign(&key)
            .unwrap();
            let event = |seq: u64| NamedEvent {
                label: format!("#{seq}"),
                name: EventName {
                    session: session.clone(),
                    seq,
                },
                bytes: fs::read(path(root.path(), &session, seq)).unwrap(),
            };
            let cp = |label: &str, note: Vec<u8>| NamedCheckpoint {
                label: label.into(),
                session: Some(session.clone()),
                note,
            };
            let checkpoints = vec![cp("new", newest.clone()), cp("old", older.into_bytes())];
            let all = verify_events_signed(
                "s",
                (0..4).map(event).collect(),
                checkpoints.clone(),
                &key.verifier(),
                None,
            );
            assert!(all.is_intact(), "{all}");
            assert_eq!(all.sessions[0].signature.as_ref().unwrap().covered, 4);
            // The tail cut: the older checkpoint does not excuse it.
            let cut = verify_events_signed(
                "s",
                (0..2).map(event).collect(),
                checkpoints,
                &key.verifier(),
                None,
            );
            assert_eq!(
                cut.sessions[0].problems[0].kind,
                ProblemKind::SignedMissing {
                    first: 2,
                    events: 4
                },
                "{cut}"
            );
        }

        #[test]
        fn a_rewritten_done_with_fixed_hashes_is_caught() {
            let (root, session, key) = finished();
            rewrite(root.path(), &session, 2, |e| {
                e.body = EventBody::Done(Done {
                    status: DoneStatus::Success,
                    summary: "all good, nothing to see".into(),
                    warnings: vec![],
                })
            });
            assert!(
                verify_dir(root.path()).unwrap().is_intact(),
                "the chain alone cannot tell"
            );
            let v = check(root.path(), &key, None);
            assert_eq!(
                v.sessions[0].problems,
                vec![Problem {
                    file: format!("new/{session}-00000003.json"),
                    kind: ProblemKind::SignedChanged { events: 4 }
                }],
                "{v}"
            );
        }

        #[test]
        fn a_checkpoint_by_another_key_or_none_at_all_fails() {
            let (root, session, key) = finished();
            let cp = root.path().join("checkpoint").join(&session);
            let text = key
                .verifier()
                .open(&fs::read(&cp).unwrap())
                .unwrap()
                .to_string();
            let forger = SigningKey::generate("test").unwrap();
            fs::write(&cp, forger.sign(&text).unwrap()).unwrap();
            let v = check(root.path(), &key, None);
            assert!(
                matches!(v.problems[0].kind, ProblemKind::BadCheckpoint { .. }),
                "{v}"
            );
            fs::remove_file(&cp).unwrap();
            let v = check(root.path(), &key, None);
            assert_eq!(v.sessions[0].problems[0].kind, ProblemKind::Unsigned, "{v}");
        }

        #[test]
        fn events_after_the_checkpoint_are_counted_not_failed() {
            let (root, session, key) = finished();
            let cp = root.path().join("checkpoint").join(&session);
            // An older checkpoint: the two last events are uncovered, and
            // one of them is the session_end, which is signed right after.
            let w_text = key
                .verifier()
                .open(&fs::read(&cp).unwrap())
                .unwrap()
                .to_string();
            let mut older = Checkpoint::parse(&w_text).unwrap();
            older.events = 2;
            older.last = sha256_hex(&fs::read(path(root.path(), &session, 1)).unwrap());
            fs::write(&cp, older.sign(&key).unwrap()).unwrap();
            let v = check(root.path(), &key, None);
            let c = v.sessions[0].signature.as_ref().unwrap();
            assert_eq!((c.covered, c.uncovered), (2, 2));
            assert_eq!(v.sessions[0].problems.len(), 1, "{v}");
            assert_eq!(v.sessions[0].problems[0].kind, ProblemKind::EndUnsigned);
            assert!(
                v.to_string()
                    .contains("2 events not yet covered by a signature"),
                "{v}"
            );
        }

        #[test]
        fn the_hosts_state_defeats_rollback_and_removal() {
            let (root, session, key) = finished();
            let state_root = tempfile::tempdir().unwrap();
            let state = HostState::open(state_root.path(), root.path()).unwrap();
            let cp = root.path().join("checkpoint").join(&session);
            let final_note = fs::read(&cp).unwrap();
            state.keep_checkpoint(&session, &final_note).unwrap();
            assert!(check(root.path(), &key, Some(&state)).is_intact());
            // Cut the last two events and put back an older checkpoint
            // signed by the same sidecar (as saved earlier by the attacker).
            let text = key.verifier().open(&final_note).unwrap().to_string();
            let mut older = Checkpoint::parse(&text).unwrap();
            older.events = 2;
            older.last = sha256_hex(&fs::read(path(root.path(), &session, 1)).unwrap());
            fs::write(&cp, older.sign(&key).unwrap()).unwrap();
            for seq in [2, 3] {
                fs::remove_file(path(root.path(), &session, seq)).unwrap();
            }
            assert!(
                check(root.path(), &key, None).is_intact(),
                "looks like a killed sidecar"
            );
            let v = check(root.path(), &key, Some(&state));
            let kinds: Vec<_> = v.sessions[0].problems.iter().map(|p| &p.kind).collect();
            assert_eq!(
                kinds,
                [
                    &ProblemKind::RolledBack {
                        kept: 4,
                        found: Some(2)
                    },
                    &ProblemKind::SignedMissing {
                        first: 2,
                        events: 4
                    }
                ],
                "{v}"
            );
            // Remove the whole session.
            fs::remove_dir_all(root.path().join("new")).unwrap();
            fs::remove_file(&cp).unwrap();
            let v = check(root.path(), &key, Some(&state));
            assert_eq!(
                v.problems[0].kind,
                ProblemKind::SessionMissing { events: 4 },
                "{v}"
            );
        }
    }
}
