//! A run's tally: `<queue>/run/<key>.json`, the run's state ([`RunFold`]:
//! budget spent, done signal, its writes and what became of them, the
//! writes still pending) as of one event of its chain, its *tail*.
//!
//! A sidecar restarted within a run starts from the tally instead of
//! reading every event of the run again ([`open`]), so its start does not
//! grow with the run's history, and a host may prune consumed events.
//!
//! ```text
//! {"v": 1, "run": "job-1", "session": "<newest session of the run>",
//!  "tail": {"name": "<event file name>", "sha256": "<hash of its bytes>"},
//!  "state": {...}}
//! ```
//!
//! Guarantees:
//! - The writer folds every event it appends and saves the tally (staged,
//!   fsynced, renamed, directory fsynced) after a batch that changed the
//!   run's state (a `session_start`, an `intent`, the `op` that answers or
//!   resolves one, a PR opened, the first `done`) or holds a `done` or
//!   `session_end`, after [`SAVE_EVERY`] other events, and at heartbeats:
//!   always after the batch's events are durable and before any caller is
//!   answered. A new session is named in the tally (`session`) before its
//!   first event is written.
//! - So the run's events the tally does not count are all after its tail,
//!   in the tail's session or in the session it names. A start reads only
//!   those: the tail's successors by name (checking that each one's `prev`
//!   follows the tally's hash), and the tail itself when it is still there
//!   (its hash must be the tally's). A crash leaves the tally at most one
//!   batch behind, which this catches up exactly.
//! - A tally that disagrees with the chain (the tail's bytes or the chain
//!   after it do not match, a later session of the run that it does not
//!   know, another run, a file that does not parse) stops the start with
//!   what is wrong and what to do: it is never trusted in part.
//! - Without a tally (a queue written before tallies were kept, or whose
//!   tally was removed) the start reads every event once ([`crate::run::scan`])
//!   and writes one.
//!
//! What a host may prune follows: any event file that sorts before the tail
//! named by the tally of its run; never the tally, the tail, or what sorts
//! after it (README: "Pruning").

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use forge_protocol::event::{Event, EventBody};
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::QueueError;
use crate::names::{EventName, is_session_id, sha256_hex};
use crate::reader::{self, QueueDir, for_each_file};
use crate::run::{RunFold, RunState};
use crate::writer::{self, QueueWriter};

/// The directory of the tallies, under the queue directory.
pub const DIR: &str = "run";
/// The version of the tally format.
const VERSION: u32 = 1;
/// Events after which the tally is saved even when none changed the run's
/// state: bounds what a start reads after a crash.
pub const SAVE_EVERY: u32 = 64;

/// The last event a tally counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tail {
    /// Its file name (`<session>-<seq>.json`).
    pub name: String,
    /// Lower-case hex SHA-256 of its bytes (the next event's `prev`).
    pub sha256: String,
}

/// The tally file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TallyFile {
    v: u32,
    /// The run, as in `session_start` (absent: none given).
    run: Option<String>,
    /// The newest session of the run, named before its first event.
    session: String,
    /// The last event counted; none before the run's first event.
    tail: Option<Tail>,
    /// The run's state as of `tail`.
    state: RunFold,
}

/// `<root>/run/<key>.json`: the tally of `run` in the queue at `root`.
/// `<key>` is `none` for a run without id, else `run-` and the first 32 hex
/// digits of the SHA-256 of the run id.
pub fn path(root: &Path, run: Option<&str>) -> PathBuf {
    let key = match run {
        None => "none".to_string(),
        Some(r) => format!("run-{}", &sha256_hex(r.as_bytes())[..32]),
    };
    root.join(DIR).join(format!("{key}.json"))
}

/// The tally a writer keeps (see the module header).
#[derive(Debug)]
pub(crate) struct Tally {
    path: PathBuf,
    staging: PathBuf,
    file: TallyFile,
    /// Events folded since the last save.
    unsaved: u32,
    /// Whether one of them changed the run's state.
    changed: bool,
}

impl Tally {
    fn new(path: PathBuf, file: TallyFile) -> Tally {
        let staging = path.with_file_name(format!(
            ".{}.staged",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        Tally {
            path,
            staging,
            file,
            unsaved: 0,
            changed: false,
        }
    }

    /// Fold an event just appended (`name`, the hash of its bytes).
    pub(crate) fn fold(&mut self, name: &str, sha256: &str, event: &Event) {
        self.changed |= self.file.state.apply(name, event);
        if self.file.state.has_session(&event.session) {
            self.file.tail = Some(Tail {
                name: name.to_string(),
                sha256: sha256.to_string(),
            });
            self.unsaved += 1;
        }
    }

    /// Whether to save now: the run's state changed, many events went by,
    /// or `force` (a milestone, a heartbeat) with anything unsaved.
    pub(crate) fn due(&self, force: bool) -> bool {
        self.changed || self.unsaved >= SAVE_EVERY || (force && self.unsaved > 0)
    }

    /// Durably replace the tally file with the state as it stands.
    pub(crate) fn save(&mut self) -> Result<(), QueueError> {
        let mut bytes = serde_json::to_vec(&self.file)?;
        bytes.push(b'\n');
        durable::replace(&self.staging, &self.path, &bytes)?;
        self.unsaved = 0;
        self.changed = false;
        Ok(())
    }
}

/// Where a start found the run's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The run's tally, and the events after its tail (`read` of them).
    Tally {
        /// The tally file.
        path: PathBuf,
        /// Events read after its tail (the tally was behind by as many).
        read: usize,
    },
    /// No tally: every event of `new/` and `cur/` was read (`events`), and
    /// a tally was written.
    Scan {
        /// Event files read.
        events: usize,
    },
}

/// A new session of a run, ready to write.
pub struct Opened {
    /// The writer of the new session; it keeps the run's tally.
    pub writer: QueueWriter,
    /// What the run's earlier sessions spent.
    pub earlier: RunState,
    /// Where that came from.
    pub source: Source,
}

/// Open the queue at `root` (created if needed) for a new session of
/// `run`: the run's state from its tally (checked against the chain and
/// caught up, see the module header), or from every event when it has none;
/// the tally then names the new session, durably, before this returns.
pub fn open(root: &Path, run: Option<&str>) -> Result<Opened, QueueError> {
    writer::prepare(root)?;
    let dir = root.join(DIR);
    fs::create_dir_all(&dir).map_err(QueueError::io("create directory", &dir))?;
    let path = path(root, run);
    let (mut file, latest, source) = match fs::read(&path) {
        Ok(bytes) => from_tally(root, run, &path, &bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => from_scan(root, run)?,
        Err(e) => return Err(QueueError::io("read", &path)(e)),
    };
    let writer = QueueWriter::start_session(root, latest.as_deref())?;
    file.session = writer.session().to_string();
    let earlier = file.state.state();
    let mut tally = Tally::new(path, file);
    tally.save()?;
    Ok(Opened {
        writer: writer.with_tally(tally),
        earlier,
        source,
    })
}

/// The whole queue read once: the run's fold, its last event, and the
/// newest session stamp of the queue.
fn from_scan(
    root: &Path,
    run: Option<&str>,
) -> Result<(TallyFile, Option<String>, Source), QueueError> {
    let mut state = RunFold::new(run);
    let (mut tail, mut latest, mut events) = (None, None::<String>, 0);
    for_each_file(&QueueDir::new(root), |file| {
        events += 1;
        let stamp = file.name.stamp();
        if latest.as_deref().is_none_or(|l| stamp > l) {
            latest = Some(stamp.to_string());
        }
        let Ok(event) = &file.event else { return };
        state.apply(&file.file_name, event);
        if state.has_session(&event.session) {
            tail = Some(Tail {
                name: file.file_name.clone(),
                sha256: sha256_hex(&file.bytes),
            });
        }
    })?;
    let file = TallyFile {
        v: VERSION,
        run: run.map(str::to_string),
        session: String::new(),
        tail,
        state,
    };
    Ok((file, latest, Source::Scan { events }))
}

/// The run's tally, checked against the chain and caught up, and the
/// newest session stamp known (the tallies of every run, the heartbeat).
fn from_tally(
    root: &Path,
    run: Option<&str>,
    path: &Path,
    bytes: &[u8],
) -> Result<(TallyFile, Option<String>, Source), QueueError> {
    let mut file: TallyFile = serde_json::from_slice(bytes)
        .map_err(|e| untrusted(path, format!("it does not parse ({e})")))?;
    if file.v != VERSION {
        return Err(untrusted(
            path,
            format!("it is version {}, this sidecar reads {VERSION}", file.v),
        ));
    }
    if file.run.as_deref() != run || file.state.run() != run {
        return Err(untrusted(
            path,
            format!(
                "it is the tally of run {}, not of run {}",
                show_run(file.run.as_deref()),
                show_run(run)
            ),
        ));
    }
    if !is_session_id(&file.session) {
        return Err(untrusted(
            path,
            format!("its session {:?} is not a session id", file.session),
        ));
    }
    let queue = QueueDir::new(root);
    let mut read = 0;
    // The tail: still there, it must be the event the tally counted.
    let mut follow: Vec<(String, u64, Option<String>)> = Vec::new();
    if let Some(tail) = &file.tail {
        let name = EventName::parse(&tail.name).ok_or_else(|| {
            untrusted(
                path,
                format!("its tail {:?} is not an event file name", tail.name),
            )
        })?;
        if let Some(bytes) = read_event_file(&queue, &tail.name)? {
            let found = sha256_hex(&bytes);
            if found != tail.sha256 {
                return Err(untrusted(
                    path,
                    format!(
                        "it counts the run up to {} with SHA-256 {}, but that file's SHA-256 is {found}: \
                         the event or the tally was changed, or the tally belongs to another copy of \
                         the queue",
                        tail.name, tail.sha256
                    ),
                ));
            }
        }
        follow.push((
            name.session.clone(),
            name.seq + 1,
            Some(tail.sha256.clone()),
        ));
        if name.session != file.session {
            follow.push((file.session.clone(), 0, None));
        }
    } else {
        follow.push((file.session.clone(), 0, None));
    }
    // What the tally does not count yet: the successors of its tail, then
    // the session it names, each event chained to the one before.
    for (session, from, mut prev) in follow {
        let mut seq = from;
        loop {
            let name = EventName::format(&session, seq);
            let Some(bytes) = read_event_file(&queue, &name)? else {
                break;
            };
            let event: Event = reader::parse_event(Path::new(&name), &bytes).map_err(|e| {
                untrusted(
                    path,
                    format!("{name}, after its tail, does not parse as an event ({e})"),
                )
            })?;
            let chained = event.session == session
                && event.seq == seq
                && match &prev {
                    Some(p) => event.prev.as_deref() == Some(p.as_str()),
                    None => seq == 0,
                };
            if !chained {
                return Err(untrusted(
                    path,
                    format!(
                        "{name}, after its tail, does not follow it in the chain (its seq or prev \
                         differ): the tally is from another copy of the queue, or events were replaced"
                    ),
                ));
            }
            let hash = sha256_hex(&bytes);
            if seq == 0 {
                let ours =
                    matches!(&event.body, EventBody::SessionStart(s) if s.run.as_deref() == run);
                if !ours {
                    return Err(untrusted(
                        path,
                        format!(
                            "it names session {session} as the run's newest, but {name} is not a session_start of the run"
                        ),
                    ));
                }
            }
            file.state.apply(&name, &event);
            file.tail = Some(Tail {
                name,
                sha256: hash.clone(),
            });
            read += 1;
            prev = Some(hash);
            seq += 1;
        }
    }
    // A later session of the run the tally does not know means the tally
    // is older than the run (restored from a copy, say).
    let heartbeat = reader::read_heartbeat(&queue).ok().flatten();
    if let Some(beat) = &heartbeat
        && is_session_id(&beat.session)
        && beat.session > file.session
        && !file.state.has_session(&beat.session)
        && let Some(bytes) = read_event_file(&queue, &EventName::format(&beat.session, 0))?
        && let Ok(event) = reader::parse_event(Path::new(&beat.session), &bytes)
        && matches!(&event.body, EventBody::SessionStart(s) if s.run.as_deref() == run)
    {
        return Err(untrusted(
            path,
            format!(
                "the heartbeat names session {}, a later session of the run that the tally does not \
                 know: the tally is older than the run (restored from a copy?)",
                beat.session
            ),
        ));
    }
    let mut latest = file.session.clone();
    if let Some(tail) = &file.tail
        && let Some(name) = EventName::parse(&tail.name)
        && name.session > latest
    {
        latest = name.session;
    }
    for other in other_sessions(root, path) {
        latest = latest.max(other);
    }
    if let Some(beat) = heartbeat.filter(|b| is_session_id(&b.session)) {
        latest = latest.max(beat.session);
    }
    let stamp = latest.get(..20).map(str::to_string);
    Ok((
        file,
        stamp,
        Source::Tally {
            path: path.to_path_buf(),
            read,
        },
    ))
}

/// The newest session named by each other tally in `run/` (a tally that
/// cannot be read is its own run's problem, found when that run starts).
fn other_sessions(root: &Path, ours: &Path) -> Vec<String> {
    #[derive(Deserialize)]
    struct Named {
        session: String,
    }
    let Ok(entries) = fs::read_dir(root.join(DIR)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p != ours && p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| serde_json::from_slice::<Named>(&fs::read(p).ok()?).ok())
        .map(|n| n.session)
        .filter(|s| is_session_id(s))
        .collect()
}

/// The bytes of event file `name`, in `new/` or (acknowledged since) in
/// `cur/`; `None` when it is in neither.
fn read_event_file(queue: &QueueDir, name: &str) -> Result<Option<Vec<u8>>, QueueError> {
    // new/ first: a host only ever moves a file from new/ to cur/.
    for place in [reader::Place::New, reader::Place::Cur] {
        let p = queue.path_of(place, name);
        match fs::read(&p) {
            Ok(bytes) => return Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(QueueError::io("read", &p)(e)),
        }
    }
    Ok(None)
}

fn show_run(run: Option<&str>) -> String {
    run.map_or("(none)".into(), |r| format!("{r:?}"))
}

/// The error for a tally that cannot be trusted: what is wrong, then what
/// to do.
fn untrusted(path: &Path, what: String) -> QueueError {
    QueueError::Tally {
        path: path.to_path_buf(),
        problem: format!(
            "{what}. The sidecar does not start from a tally it cannot check against the queue. \
             If new/ and cur/ still hold every event of the run, remove {} and start again: the \
             run is then counted from its events. If events of the run were pruned, restore the \
             tally from the host's copy instead (removing it would give the run back what the \
             pruned events spent)",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_events::{intent, start};

    /// A session of run `r1` with `writes` intents; the writer and its names.
    fn session(root: &Path, writes: u64) -> (QueueWriter, Vec<String>) {
        let opened = open(root, Some("r1")).unwrap();
        let w = opened.writer;
        let mut names = vec![w.append(start(Some("r1"))).unwrap().name];
        for i in 1..=writes {
            names.push(w.append(intent(i)).unwrap().name);
        }
        (w, names)
    }

    fn problem(root: &Path) -> String {
        match open(root, Some("r1")) {
            Err(e @ QueueError::Tally { .. }) => e.to_string(),
            Err(e) => panic!("not a tally error: {e}"),
            Ok(o) => panic!("started from a bad tally: {:?}", o.earlier),
        }
    }

    #[test]
    fn a_start_reads_only_what_follows_the_tail() {
        let root = tempfile::tempdir().unwrap();
        let (w, names) = session(root.path(), 2);
        drop(w);
        let again = open(root.path(), Some("r1")).unwrap();
        assert_eq!((again.earlier.sessions, again.earlier.writes), (1, 2));
        assert_eq!(
            again.source,
            Source::Tally {
                path: path(root.path(), Some("r1")),
                read: 0
            }
        );
        // A later session sorts after the earlier one, with no listing.
        let s = again.writer.append(start(Some("r1"))).unwrap();
        assert!(
            &s.name > names.last().unwrap(),
            "{} after {names:?}",
            s.name
        );
    }

    #[test]
    fn a_tally_one_batch_behind_is_caught_up() {
        let root = tempfile::tempdir().unwrap();
        let (w, _) = session(root.path(), 1);
        let behind = fs::read(path(root.path(), Some("r1"))).unwrap();
        w.append(intent(2)).unwrap();
        drop(w);
        // A crash between the event and the tally's save.
        fs::write(path(root.path(), Some("r1")), &behind).unwrap();
        let again = open(root.path(), Some("r1")).unwrap();
        assert_eq!(again.earlier.writes, 2);
        assert!(matches!(again.source, Source::Tally { read: 1, .. }));
        assert_eq!(
            again.earlier,
            crate::run::scan(root.path(), Some("r1")).unwrap()
        );
    }

    #[test]
    fn a_pruned_history_keeps_the_state() {
        let root = tempfile::tempdir().unwrap();
        let (w, _) = session(root.path(), 3);
        drop(w);
        for name in fs::read_dir(root.path().join("new")).unwrap() {
            fs::remove_file(name.unwrap().path()).unwrap();
        }
        let again = open(root.path(), Some("r1")).unwrap();
        assert_eq!((again.earlier.sessions, again.earlier.writes), (1, 3));
    }

    #[test]
    fn a_changed_tail_is_refused_with_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        let (w, names) = session(root.path(), 1);
        drop(w);
        let tail = root.path().join("new").join(names.last().unwrap());
        let mut bytes = fs::read(&tail).unwrap();
        bytes[10] ^= 1;
        fs::write(&tail, bytes).unwrap();
        let p = problem(root.path());
        assert!(
            p.contains("SHA-256") && p.contains(names.last().unwrap()),
            "{p}"
        );
        assert!(p.contains("remove") && p.contains("restore"), "{p}");
    }

    #[test]
    fn events_after_the_tail_that_do_not_follow_it_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let (w, names) = session(root.path(), 1);
        let behind = fs::read(path(root.path(), Some("r1"))).unwrap();
        w.append(intent(2)).unwrap();
        drop(w);
        fs::write(path(root.path(), Some("r1")), &behind).unwrap();
        // The tail is pruned and its successor replaced by another chain.
        fs::remove_file(root.path().join("new").join(names.last().unwrap())).unwrap();
        let next = EventName::parse(names.last().unwrap()).unwrap();
        let successor = root
            .path()
            .join("new")
            .join(EventName::format(&next.session, next.seq + 1));
        let mut event: Event = serde_json::from_slice(&fs::read(&successor).unwrap()).unwrap();
        event.prev = Some("0".repeat(64));
        fs::write(&successor, serde_json::to_vec(&event).unwrap()).unwrap();
        let p = problem(root.path());
        assert!(p.contains("does not follow it"), "{p}");
    }

    #[test]
    fn a_tally_older_than_the_run_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let (w, _) = session(root.path(), 1);
        drop(w);
        let old = fs::read(path(root.path(), Some("r1"))).unwrap();
        // A later session of the run, serving (its heartbeat)...
        let (w, _) = session(root.path(), 1);
        w.heartbeat().unwrap();
        drop(w);
        // ...that a tally restored from a copy does not know.
        fs::write(path(root.path(), Some("r1")), &old).unwrap();
        let p = problem(root.path());
        assert!(p.contains("older than the run"), "{p}");
    }

    #[test]
    fn another_runs_tally_or_garbage_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let (w, _) = session(root.path(), 1);
        drop(w);
        let other = open(root.path(), Some("r2")).unwrap();
        drop(other);
        fs::copy(path(root.path(), Some("r2")), path(root.path(), Some("r1"))).unwrap();
        assert!(problem(root.path()).contains("not of run \"r1\""));
        fs::write(path(root.path(), Some("r1")), b"{").unwrap();
        assert!(problem(root.path()).contains("does not parse"));
    }

    #[test]
    fn without_a_tally_every_event_is_read_once() {
        let root = tempfile::tempdir().unwrap();
        let w = QueueWriter::open(root.path()).unwrap();
        w.append(start(Some("r1"))).unwrap();
        w.append(intent(1)).unwrap();
        drop(w);
        let first = open(root.path(), Some("r1")).unwrap();
        assert_eq!(first.source, Source::Scan { events: 2 });
        assert_eq!(first.earlier.writes, 1);
        drop(first);
        let second = open(root.path(), Some("r1")).unwrap();
        assert!(matches!(second.source, Source::Tally { read: 0, .. }));
        assert_eq!(second.earlier.writes, 1);
    }
}
