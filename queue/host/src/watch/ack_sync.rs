//! Making acks durable off the delivery path.
//!
//! An ack is a rename `new/` -> `cur/`; fsyncing `cur/` afterwards makes it
//! survive a power loss. On a disk that fsync takes milliseconds, and doing
//! it on the delivery thread would hold up the next event, so a helper
//! thread does it, coalescing requests for the same directory. Losing an
//! ack that was not yet synced only means redelivery, which at-least-once
//! delivery allows; a process crash loses nothing (the rename is done).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::durable;
use crate::error::QueueError;

/// The helper thread; dropping this waits for every requested fsync.
pub(crate) struct AckSyncer {
    requests: Option<Sender<PathBuf>>,
    thread: Option<JoinHandle<()>>,
    failure: Arc<Mutex<Option<QueueError>>>,
}

impl AckSyncer {
    pub(crate) fn start() -> AckSyncer {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let failure = Arc::new(Mutex::new(None));
        let report = failure.clone();
        let thread = std::thread::Builder::new()
            .name("forge-queue-ack-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut dirs = BTreeSet::from([first]);
                    dirs.extend(rx.try_iter());
                    for dir in dirs {
                        if let Err(e) = durable::sync_dir(&dir) {
                            *report.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        }
                    }
                }
            })
            .ok();
        AckSyncer {
            requests: thread.as_ref().map(|_| tx),
            thread,
            failure,
        }
    }

    /// fsync `dir` soon. Without a helper thread (it could not be started),
    /// fsync now.
    pub(crate) fn request(&self, dir: PathBuf) -> Result<(), QueueError> {
        match &self.requests {
            Some(tx) if tx.send(dir.clone()).is_ok() => Ok(()),
            _ => durable::sync_dir(&dir),
        }
    }

    /// A failure of an earlier fsync, reported once.
    pub(crate) fn take_failure(&self) -> Option<QueueError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl Drop for AckSyncer {
    fn drop(&mut self) {
        self.requests = None; // ends the thread's loop once it is drained
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = AckSyncer::start();
        syncer.request(dir.path().to_path_buf()).unwrap();
        syncer.request(dir.path().join("missing")).unwrap();
        let failure = syncer.failure.clone();
        drop(syncer);
        let err = failure
            .lock()
            .unwrap()
            .take()
            .expect("the missing dir fails");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
