//! Property: a start from the run's tally gives exactly the run state that
//! reading every event gives ([`scan`]), whatever happened before it:
//! intents, their answers, writes resolved after a lost answer or at start
//! or found later, repeated calls, PRs opened, done, reads, sessions of
//! another run, restarts after a crash that left the tally behind, the host
//! acknowledging events and pruning `cur/` as the README allows.
//!
//! The scan is run over every event ever written (pruned ones included,
//! kept aside), so pruning must not change what the tally says.

use std::fs;
use std::path::{Path, PathBuf};

use forge_protocol::DoneStatus;
use forge_protocol::event::{
    CallRef, Done, EventBody, Intent, Limits, Op, Outcome, Resolution, ScopeGrown, SessionEnd,
    SessionStart, WriteKey, WriteStatus,
};
use forge_queue::run::scan;
use forge_queue::{QueueWriter, tally};
use proptest::prelude::*;
use proptest::sample::Index;

const RUN: &str = "job-1";
const OTHER: &str = "job-2";

#[derive(Debug, Clone)]
enum Step {
    /// An `intent` of a comment or a PR, with or without a write identity.
    Intent {
        pr: bool,
        keyed: bool,
    },
    /// The `op` of a pending intent of this session: ok, refused, or a
    /// lost answer resolved by reading back (with that status).
    Answer {
        pick: Index,
        ok: bool,
        lost: Option<u8>,
    },
    /// An `op` resolving an intent of the run (any session; sometimes one
    /// that does not exist) at start, found later, or as a repeated call.
    Resolve {
        pick: Index,
        status: u8,
        how: u8,
    },
    /// A read: an `op` that answers no intent.
    Read,
    /// A PR joined the writable set (opened by the run, or found).
    Grown {
        opened: bool,
    },
    Done,
    SessionEnd,
    Heartbeat,
    /// The sidecar stops; with `crash`, the tally is put back to one saved
    /// earlier in the session (a crash before its next save); with
    /// `other`, a session of another run runs in between.
    Restart {
        crash: Option<Index>,
        other: bool,
    },
    /// The host acknowledges the `n` oldest events of `new/`.
    Ack {
        n: usize,
    },
    /// The host prunes `cur/`: every file before the oldest tally tail.
    Prune,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<bool>(), any::<bool>()).prop_map(|(pr, keyed)| Step::Intent { pr, keyed }),
        4 => (any::<Index>(), any::<bool>(), prop::option::of(0u8..4))
            .prop_map(|(pick, ok, lost)| Step::Answer { pick, ok, lost }),
        2 => (any::<Index>(), 0u8..4, 0u8..4).prop_map(|(pick, status, how)| Step::Resolve { pick, status, how }),
        3 => Just(Step::Read),
        1 => any::<bool>().prop_map(|opened| Step::Grown { opened }),
        1 => Just(Step::Done),
        1 => Just(Step::SessionEnd),
        1 => Just(Step::Heartbeat),
        3 => (prop::option::of(any::<Index>()), any::<bool>())
            .prop_map(|(crash, other)| Step::Restart { crash, other }),
        2 => (0usize..8).prop_map(|n| Step::Ack { n }),
        1 => Just(Step::Prune),
    ]
}

fn start(run: &str) -> EventBody {
    EventBody::SessionStart(SessionStart {
        version: "0".into(),
        forge: "memory".into(),
        api_base: None,
        owner: "acme".into(),
        repo: "widgets".into(),
        issue: 17,
        writable: vec![17],
        limits: Limits {
            max_request_bytes: 1,
            max_body_bytes: 1,
            max_writes: 1,
            http_timeout_secs: 1,
            heartbeat_secs: 1,
        },
        text: Default::default(),
        pid: 1,
        run: Some(run.into()),
    })
}

fn op(op_id: u64, name: &str, outcome: Outcome, resolution: Option<Resolution>) -> EventBody {
    EventBody::Op(Op {
        op_id,
        op: name.into(),
        target: Some(17),
        outcome,
        summary: "x".into(),
        error: None,
        duration_ms: 1,
        peer: None,
        foreign_refs: None,
        mentions: None,
        coalesced: None,
        read: None,
        resolution,
        previous_body: None,
    })
}

fn status(n: u8) -> WriteStatus {
    [
        WriteStatus::Applied,
        WriteStatus::NotApplied,
        WriteStatus::Unknown,
        WriteStatus::Repeated,
    ][usize::from(n % 4)]
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The queue under test, the events pruned from it, and the session of
/// the run being written.
struct Harness {
    root: PathBuf,
    pruned: PathBuf,
    scratch: tempfile::TempDir,
    writer: QueueWriter,
    next_op: u64,
    /// Op ids of this session's intents with no op yet.
    pending: Vec<u64>,
    /// Every intent of the run.
    intents: Vec<CallRef>,
    /// The tally as saved after each append of this session (since the
    /// last prune: a crash cannot bring back a tally older than a prune
    /// that followed it).
    saved: Vec<Vec<u8>>,
}

impl Harness {
    fn new(scratch: tempfile::TempDir) -> Harness {
        let root = scratch.path().join("queue");
        let pruned = scratch.path().join("pruned");
        fs::create_dir_all(&pruned).unwrap();
        let opened = tally::open(&root, Some(RUN)).unwrap();
        assert_eq!(opened.earlier, Default::default());
        let mut h = Harness {
            root,
            pruned,
            scratch,
            writer: opened.writer,
            next_op: 0,
            pending: vec![],
            intents: vec![],
            saved: vec![],
        };
        h.append(start(RUN));
        h
    }

    fn tally_path(&self) -> PathBuf {
        tally::path(&self.root, Some(RUN))
    }

    fn append(&mut self, body: EventBody) {
        self.writer.append(body).unwrap();
        self.saved.push(fs::read(self.tally_path()).unwrap());
    }

    fn op_id(&mut self) -> u64 {
        self.next_op += 1;
        self.next_op
    }

    /// Every event ever written, pruned ones too, as one queue's `cur/`.
    fn everything(&self) -> PathBuf {
        let all = tempfile::tempdir_in(self.scratch.path()).unwrap().keep();
        fs::create_dir_all(all.join("cur")).unwrap();
        for dir in [
            self.root.join("new"),
            self.root.join("cur"),
            self.pruned.clone(),
        ] {
            for name in names(&dir) {
                fs::hard_link(dir.join(&name), all.join("cur").join(&name)).unwrap();
            }
        }
        all
    }

    fn tail_of(&self, run: &str) -> Option<String> {
        let bytes = fs::read(tally::path(&self.root, Some(run))).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["tail"]["name"].as_str().map(str::to_string)
    }

    fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Intent { pr, keyed } => {
                let op_id = self.op_id();
                let session = self.writer.session().to_string();
                self.append(EventBody::Intent(Intent {
                    op_id,
                    op: if pr { "open_pr" } else { "post_comment" }.into(),
                    target: (!pr).then_some(17),
                    write: keyed.then(|| WriteKey {
                        id: format!("{session}/{op_id}"),
                        call: "c".into(),
                        mode: None,
                        base: pr.then(|| "main".into()),
                        head: pr.then(|| "agent/issue-17".into()),
                    }),
                }));
                self.pending.push(op_id);
                self.intents.push(CallRef { session, op_id });
            }
            Step::Answer { pick, ok, lost } => {
                if self.pending.is_empty() {
                    return Ok(());
                }
                let op_id = self.pending.remove(pick.index(self.pending.len()));
                let resolution = lost.map(|s| Resolution {
                    status: status(s),
                    how: Resolution::ANSWER_LOST.into(),
                    forge_id: None,
                    intent: None,
                });
                let outcome = if ok { Outcome::Ok } else { Outcome::Error };
                self.append(op(op_id, "post_comment", outcome, resolution));
            }
            Step::Resolve {
                pick,
                status: s,
                how,
            } => {
                let at = if self.intents.is_empty() || how == 3 {
                    CallRef {
                        session: "20990101T000000.000Z-000000".into(),
                        op_id: 9,
                    }
                } else {
                    self.intents[pick.index(self.intents.len())].clone()
                };
                self.pending
                    .retain(|p| !(at.session == self.writer.session() && at.op_id == *p));
                let how = [
                    Resolution::AT_START,
                    Resolution::FOUND_LATER,
                    Resolution::SAME_CALL,
                    Resolution::AT_START,
                ][usize::from(how % 4)];
                let op_id = self.op_id();
                self.append(op(
                    op_id,
                    "post_comment",
                    Outcome::Ok,
                    Some(Resolution {
                        status: status(s),
                        how: how.into(),
                        forge_id: None,
                        intent: Some(at),
                    }),
                ));
            }
            Step::Read => {
                let op_id = self.op_id();
                self.append(op(op_id, "read_issue", Outcome::Ok, None));
            }
            Step::Grown { opened } => self.append(EventBody::ScopeGrown(ScopeGrown {
                number: 21,
                branch: "agent/issue-17".into(),
                reason: if opened {
                    ScopeGrown::OPENED
                } else {
                    ScopeGrown::AT_START
                }
                .into(),
            })),
            Step::Done => self.append(EventBody::Done(Done {
                status: DoneStatus::Success,
                summary: "x".into(),
                warnings: vec![],
            })),
            Step::SessionEnd => self.append(EventBody::SessionEnd(SessionEnd {
                reason: "SIGTERM".into(),
                counts: Default::default(),
                done: false,
            })),
            Step::Heartbeat => {
                self.writer.heartbeat().unwrap();
                self.saved.push(fs::read(self.tally_path()).unwrap());
            }
            Step::Restart { crash, other } => self.restart(crash, other)?,
            Step::Ack { n } => {
                for name in names(&self.root.join("new")).into_iter().take(n) {
                    fs::rename(
                        self.root.join("new").join(&name),
                        self.root.join("cur").join(&name),
                    )
                    .unwrap();
                }
            }
            Step::Prune => {
                let tails = [self.tail_of(RUN), self.tail_of(OTHER)];
                let Some(oldest) = tails.into_iter().flatten().min() else {
                    return Ok(());
                };
                for name in names(&self.root.join("cur")) {
                    if name < oldest {
                        fs::rename(self.root.join("cur").join(&name), self.pruned.join(&name))
                            .unwrap();
                    }
                }
                // A crash cannot bring back a tally older than this.
                self.saved.clear();
            }
        }
        Ok(())
    }

    fn restart(&mut self, crash: Option<Index>, other: bool) -> Result<(), TestCaseError> {
        if let Some(i) = crash.filter(|_| !self.saved.is_empty()) {
            let behind = &self.saved[i.index(self.saved.len())];
            fs::write(self.tally_path(), behind).unwrap();
        }
        if other {
            let o = tally::open(&self.root, Some(OTHER)).unwrap();
            o.writer.append(start(OTHER)).unwrap();
            o.writer
                .append(EventBody::Intent(Intent {
                    op_id: 1,
                    op: "post_comment".into(),
                    target: Some(17),
                    write: None,
                }))
                .unwrap();
        }
        let all = self.everything();
        let expected = scan(&all, Some(RUN)).unwrap();
        let opened = tally::open(&self.root, Some(RUN))
            .map_err(|e| TestCaseError::fail(format!("start from the tally: {e}")))?;
        prop_assert_eq!(&opened.earlier, &expected);
        prop_assert!(
            matches!(opened.source, tally::Source::Tally { .. }),
            "{:?}",
            opened.source
        );
        self.writer = opened.writer;
        self.next_op = 0;
        self.pending.clear();
        self.saved.clear();
        self.saved.push(fs::read(self.tally_path()).unwrap());
        self.append(start(RUN));
        Ok(())
    }
}

fn scratch() -> tempfile::TempDir {
    // tmpfs when there is one: these cases fsync a lot.
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn a_start_from_the_tally_equals_a_scan_of_every_event(
        steps in proptest::collection::vec(step(), 1..48),
        crash in prop::option::of(any::<Index>()),
    ) {
        let mut h = Harness::new(scratch());
        for s in steps {
            h.run(s)?;
        }
        h.restart(crash, false)?;
    }
}
