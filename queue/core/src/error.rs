//! Errors of the queue crate; each names the path it concerns.

use std::io;
use std::path::PathBuf;

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A filesystem operation failed on `path`.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "fsync".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An event could not be serialized (a bug, never user input).
    #[error("serialize event: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A file in the queue (an event or the heartbeat) is not what the format
    /// says it must be: not JSON, or missing fields.
    #[error("parse {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The run's tally (`<queue>/run/<key>.json`) does not agree with the
    /// queue, or cannot be read: the sidecar does not start from it.
    #[error("run tally {path}: {problem}")]
    Tally {
        /// The tally file.
        path: PathBuf,
        /// What is wrong and what to do about it.
        problem: String,
    },
}

impl QueueError {
    /// Wrap an `io::Error` with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> QueueError {
        let path = path.into();
        move |source| QueueError::Io { op, path, source }
    }

    /// Wrap a JSON parse error with the path of the file.
    pub fn parse(path: impl Into<PathBuf>) -> impl FnOnce(serde_json::Error) -> QueueError {
        let path = path.into();
        move |source| QueueError::Parse { path, source }
    }

    /// True when the error is an I/O error of kind `NotFound` (a file that
    /// another consumer moved away, for example).
    pub fn is_not_found(&self) -> bool {
        matches!(self, QueueError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
