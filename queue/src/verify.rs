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
//! the removal of a whole session. Everything before the last event is
//! covered.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use forge_protocol::event::EVENT_VERSION;
use serde::Serialize;

use crate::error::QueueError;
use crate::names::sha256_hex;
use crate::reader::{self, LoadedFile, QueueDir, Stray};

/// One thing wrong with a queue, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file concerned, relative to the queue: `new/<name>` or `cur/<name>`.
    pub file: String,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: ProblemKind,
}

/// The kinds of [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        if self.is_intact() {
            return write!(f, "{dir}: intact ({sessions} sessions, {events} events)");
        }
        let n = self.all_problems().count();
        write!(
            f,
            "{dir}: BROKEN ({n} problems; {sessions} sessions, {events} events)"
        )?;
        for p in self.all_problems() {
            write!(f, "\n  {p}")?;
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
pub(crate) struct Verifier {
    sessions: BTreeMap<String, SessionState>,
}

impl Verifier {
    pub(crate) fn feed(&mut self, file: &LoadedFile) {
        let label = QueueDir::label(file.place, &file.file_name);
        let hash = sha256_hex(&file.bytes);
        let named = file.name.seq;
        let state = self.sessions.entry(file.name.session.clone()).or_default();
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
        match &file.event {
            Err(reason) => problem(ProblemKind::Unparseable {
                reason: reason.clone(),
            }),
            Ok(event) => {
                if event.v != EVENT_VERSION {
                    problem(ProblemKind::UnsupportedVersion { v: event.v });
                }
                if event.session != file.name.session {
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

    pub(crate) fn finish(self, dir: &Path, strays: &[Stray]) -> DirVerification {
        let sessions = self
            .sessions
            .into_iter()
            .map(|(session, state)| SessionChain {
                session,
                events: state.events,
                last_seq: state.last.map_or(0, |l| l.seq),
                problems: explain_swaps(state.problems),
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
    use crate::names::EventName;
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
}
