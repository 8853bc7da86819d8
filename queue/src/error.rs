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
}

impl QueueError {
    /// Wrap an `io::Error` with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> QueueError {
        let path = path.into();
        move |source| QueueError::Io { op, path, source }
    }
}
