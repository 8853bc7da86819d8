//! Reading a queue directory from the host side: which event files are in
//! `new/` and `cur/`, the bytes and parsed event of one file, the heartbeat.
//!
//! Verification, audit and the watcher all list and parse through here, so
//! "what counts as an event file" is decided in one place: a regular entry
//! whose name [`EventName::parse`] accepts. Anything else in `new/` or `cur/`
//! is a *stray* (reported, never deleted). `tmp/` is never read: a file there
//! is incomplete by definition.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use forge_protocol::event::Event;
use serde::Serialize;

use crate::error::QueueError;
use crate::names::EventName;
use crate::writer::Heartbeat;

/// Which of the two event directories a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// `new/`: published, not yet consumed.
    New,
    /// `cur/`: consumed (acknowledged) by a host.
    Cur,
}

impl Place {
    /// The directory name: `new` or `cur`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Place::New => "new",
            Place::Cur => "cur",
        }
    }
}

/// The paths of one queue directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDir {
    root: PathBuf,
}

impl QueueDir {
    /// The queue rooted at `root` (nothing is touched on disk).
    pub fn new(root: impl Into<PathBuf>) -> QueueDir {
        QueueDir { root: root.into() }
    }

    /// The queue directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/new` or `<root>/cur`.
    pub fn place_dir(&self, place: Place) -> PathBuf {
        self.root.join(place.dir_name())
    }

    /// The path of `file_name` in `place`.
    pub fn path_of(&self, place: Place, file_name: &str) -> PathBuf {
        self.place_dir(place).join(file_name)
    }

    /// `<root>/heartbeat`.
    pub fn heartbeat_path(&self) -> PathBuf {
        self.root.join("heartbeat")
    }

    /// A short label for a file: `new/<name>` or `cur/<name>`.
    pub fn label(place: Place, file_name: &str) -> String {
        format!("{}/{}", place.dir_name(), file_name)
    }
}

/// An event file found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEvent {
    /// The parsed name.
    pub name: EventName,
    /// Where it is.
    pub place: Place,
    /// The file name as on disk.
    pub file_name: String,
}

/// An entry of `new/` or `cur/` that is not an event file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// Where it is.
    pub place: Place,
    /// Its name (lossily decoded if not UTF-8).
    pub file_name: String,
}

/// The contents of `new/` and/or `cur/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Event files in event order: by session, then seq; `new/` before
    /// `cur/` for the (abnormal) case of one name in both.
    pub events: Vec<ListedEvent>,
    /// Everything else, sorted by place and name.
    pub strays: Vec<Stray>,
}

/// List the event files of `new/` and `cur/` together, in event order.
pub fn list(dir: &QueueDir) -> Result<Listing, QueueError> {
    let mut listing = list_places(dir, &[Place::New, Place::Cur])?;
    listing
        .events
        .sort_by(|a, b| (&a.name, a.place).cmp(&(&b.name, b.place)));
    listing
        .strays
        .sort_by(|a, b| (a.place, &a.file_name).cmp(&(b.place, &b.file_name)));
    Ok(listing)
}

/// List one place (`new/` or `cur/`), in event order.
pub fn list_place(dir: &QueueDir, place: Place) -> Result<Listing, QueueError> {
    let mut listing = list_places(dir, &[place])?;
    listing.events.sort_by(|a, b| a.name.cmp(&b.name));
    listing.strays.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(listing)
}

fn list_places(dir: &QueueDir, places: &[Place]) -> Result<Listing, QueueError> {
    // The queue itself must exist: a mistyped path is an error, not an
    // empty queue.
    let root = dir.root();
    let meta = fs::metadata(root).map_err(QueueError::io("open queue directory", root))?;
    if !meta.is_dir() {
        let e = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
        return Err(QueueError::io("open queue directory", root)(e));
    }
    let mut listing = Listing::default();
    for &place in places {
        let path = dir.place_dir(place);
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            // A queue whose sidecar has not started yet has no cur/ or new/:
            // that is an empty listing, not an error.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(QueueError::io("list", &path)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(QueueError::io("list", &path))?;
            let os_name = entry.file_name();
            // A directory named like an event is still not an event file.
            let is_file = entry.file_type().is_ok_and(|t| !t.is_dir());
            match os_name.to_str().and_then(EventName::parse) {
                Some(name) if is_file => listing.events.push(ListedEvent {
                    name,
                    place,
                    file_name: os_name.to_string_lossy().into_owned(),
                }),
                _ => listing.strays.push(Stray {
                    place,
                    file_name: os_name.to_string_lossy().into_owned(),
                }),
            }
        }
    }
    Ok(listing)
}

/// Read and parse one event file; returns the exact bytes (for the chain
/// hash) and the event.
pub fn read_event(path: &Path) -> Result<(Vec<u8>, Event), QueueError> {
    let bytes = fs::read(path).map_err(QueueError::io("read", path))?;
    let event = parse_event(path, &bytes)?;
    Ok((bytes, event))
}

/// Parse the bytes of an event file (`path` only names it in the error).
pub fn parse_event(path: &Path, bytes: &[u8]) -> Result<Event, QueueError> {
    serde_json::from_slice(bytes).map_err(QueueError::parse(path))
}

/// Read `<dir>/heartbeat`; `None` if there is none yet.
pub fn read_heartbeat(dir: &QueueDir) -> Result<Option<Heartbeat>, QueueError> {
    let path = dir.heartbeat_path();
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(QueueError::parse(&path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(QueueError::io("read", &path)(e)),
    }
}

/// Parse an RFC 3339 timestamp (the `ts` of events and heartbeats).
pub fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// One file of a queue, read in event order by [`for_each_file`].
#[derive(Debug)]
pub struct LoadedFile {
    /// Where it is.
    pub place: Place,
    /// Its name as on disk.
    pub file_name: String,
    /// The parsed name.
    pub name: EventName,
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// The parsed event, or why it does not parse.
    pub event: Result<Event, String>,
}

/// Read every event file of `new/` and `cur/` in event order, one at a time
/// (memory stays at one file however long the queue), calling `visit` on
/// each. Strays are returned for the caller to report.
pub fn for_each_file(
    dir: &QueueDir,
    mut visit: impl FnMut(&LoadedFile),
) -> Result<Vec<Stray>, QueueError> {
    let listing = list(dir)?;
    for listed in listing.events {
        let (place, bytes) = read_following_ack(dir, listed.place, &listed.file_name)?;
        let event = serde_json::from_slice(&bytes).map_err(|e| e.to_string());
        visit(&LoadedFile {
            place,
            file_name: listed.file_name,
            name: listed.name,
            bytes,
            event,
        });
    }
    Ok(listing.strays)
}

/// Read a listed file; one listed in `new/` may have been acknowledged (moved
/// to `cur/`) by a watcher since the listing, so look there too.
fn read_following_ack(
    dir: &QueueDir,
    place: Place,
    file_name: &str,
) -> Result<(Place, Vec<u8>), QueueError> {
    let path = dir.path_of(place, file_name);
    match fs::read(&path) {
        Ok(bytes) => Ok((place, bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && place == Place::New => {
            let moved = dir.path_of(Place::Cur, file_name);
            let bytes = fs::read(&moved).map_err(QueueError::io("read", &moved))?;
            Ok((Place::Cur, bytes))
        }
        Err(e) => Err(QueueError::io("read", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, sub: &str, name: &str) {
        fs::create_dir_all(dir.join(sub)).unwrap();
        fs::write(dir.join(sub).join(name), b"{}").unwrap();
    }

    const S1: &str = "20261125T120000.000Z-0a1b2c";
    const S2: &str = "20261125T120000.001Z-000000";

    #[test]
    fn lists_new_and_cur_together_in_event_order() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        touch(p, "cur", &EventName::format(S1, 0));
        touch(p, "new", &EventName::format(S1, 2));
        touch(p, "cur", &EventName::format(S1, 1));
        touch(p, "new", &EventName::format(S2, 0));
        touch(p, "new", "notes.txt");
        fs::create_dir(p.join("cur").join(EventName::format(S1, 9))).unwrap();
        let listing = list(&QueueDir::new(p)).unwrap();
        let got: Vec<_> = listing
            .events
            .iter()
            .map(|e| QueueDir::label(e.place, &e.file_name))
            .collect();
        assert_eq!(
            got,
            vec![
                format!("cur/{S1}-00000000.json"),
                format!("cur/{S1}-00000001.json"),
                format!("new/{S1}-00000002.json"),
                format!("new/{S2}-00000000.json"),
            ]
        );
        let strays: Vec<_> = listing
            .strays
            .iter()
            .map(|s| QueueDir::label(s.place, &s.file_name))
            .collect();
        assert_eq!(
            strays,
            vec![
                "new/notes.txt".to_string(),
                format!("cur/{S1}-00000009.json")
            ]
        );
    }

    #[test]
    fn a_queue_without_subdirectories_lists_empty_but_must_exist() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            list(&QueueDir::new(root.path())).unwrap(),
            Listing::default()
        );
        let err = list(&QueueDir::new(root.path().join("typo"))).unwrap_err();
        assert!(err.to_string().contains("typo"), "{err}");
    }

    #[test]
    fn heartbeat_absent_is_none_and_garbage_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let dir = QueueDir::new(root.path());
        assert_eq!(read_heartbeat(&dir).unwrap(), None);
        fs::write(dir.heartbeat_path(), b"{\"pid\":").unwrap();
        let err = read_heartbeat(&dir).unwrap_err();
        assert!(err.to_string().contains("heartbeat"), "{err}");
    }

    #[test]
    fn parses_event_timestamps() {
        let t = parse_ts("2026-11-25T12:00:00.123Z").unwrap();
        assert_eq!(t.timestamp_millis() % 1000, 123);
        assert_eq!(parse_ts("yesterday"), None);
    }
}
