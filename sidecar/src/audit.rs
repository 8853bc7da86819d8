//! [`AuditWriter`]: the one thread that writes audit events, with group commit.
//!
//! Calls hand their event to the thread and wait for its answer. The thread
//! takes everything queued at that moment and appends it as one batch: each
//! event file is written and fsynced, then `new/` is fsynced once for the
//! batch, and only then is each caller told its event is durable. So an
//! event is still durable before its call returns, while concurrent calls
//! share the directory fsync, and no call pays a blocking-pool hop.
//!
//! The writer's state is watched ([`AuditHealth`]): a batch that failed
//! whole makes the queue "failing" until a write succeeds again, and the
//! thread's end (a panic, or the queue directory removed or replaced under
//! it, from which no retry recovers) is recorded with its reason, so
//! `/health`, the heartbeat and the server's run loop all see it.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use forge_protocol::event::EventBody;
use forge_queue::{QueueError, QueueWriter, Written};
use tokio::sync::{oneshot, watch};

/// Most events appended in one batch.
const MAX_BATCH: usize = 256;

type Job = (EventBody, oneshot::Sender<Result<Written, QueueError>>);

/// Whether the queue takes events: the writer thread's end (for good)
/// and the latest write failure (until a write succeeds).
pub struct AuditHealth {
    ended: watch::Sender<Option<String>>,
    failing: Mutex<Option<String>>,
}

impl AuditHealth {
    fn new() -> AuditHealth {
        AuditHealth {
            ended: watch::Sender::new(None),
            failing: Mutex::new(None),
        }
    }

    /// Why the writer thread ended, once it has: nothing more is audited.
    pub fn ended(&self) -> Option<String> {
        self.ended.borrow().clone()
    }

    /// Resolves once the writer thread has ended, with the reason.
    pub async fn wait_ended(&self) -> String {
        let mut rx = self.ended.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the audit writer's state was dropped".into(),
        }
    }

    /// What keeps the queue from taking events now, if anything.
    pub fn problem(&self) -> Option<String> {
        self.ended().or_else(|| {
            self.failing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }

    /// Record the outcome of a write to the queue (an event batch or the
    /// heartbeat): a failure stands until a later write succeeds.
    pub fn note_write(&self, outcome: Result<(), String>) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => {
                if let Some(was) = failing.take() {
                    tracing::info!(was = %was, "the queue takes events again");
                }
            }
            Err(e) => {
                if failing.is_none() {
                    tracing::error!(cause = %e, "the queue does not take events; calls are refused until it does");
                }
                *failing = Some(e);
            }
        }
    }

    /// Record the end; the first reason stands.
    fn end(&self, reason: String) {
        let first = self.ended.send_if_modified(|ended| {
            if ended.is_some() {
                return false;
            }
            *ended = Some(reason.clone());
            true
        });
        if first {
            tracing::error!(%reason, "the audit writer ended: no call can be audited any more");
        }
    }
}

/// Records the writer thread's end however it ends (a panic included).
struct EndGuard {
    health: Arc<AuditHealth>,
    reason: Option<String>,
}

impl EndGuard {
    /// The thread ends for `reason`: recorded now, before the callers of
    /// the failed batch are answered.
    fn ends_because(&mut self, reason: String) {
        self.health.end(reason.clone());
        self.reason = Some(reason);
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let reason = match self.reason.take() {
            Some(r) => r,
            None if std::thread::panicking() => "the audit writer thread panicked".into(),
            None => "the audit writer thread stopped".into(),
        };
        self.health.end(reason);
    }
}

/// Handle to the audit writer thread; the thread ends when the handle is dropped.
pub struct AuditWriter {
    jobs: mpsc::Sender<Job>,
    queue: Arc<QueueWriter>,
    health: Arc<AuditHealth>,
}

impl AuditWriter {
    /// Start the writer thread for `queue`.
    pub fn start(queue: Arc<QueueWriter>) -> std::io::Result<AuditWriter> {
        AuditWriter::start_with(queue, |q, bodies| q.append_batch(bodies))
    }

    /// Start the writer thread with `append` as the way a batch is written
    /// (the queue's `append_batch`; tests put a failing one in its place).
    fn start_with<F>(queue: Arc<QueueWriter>, append: F) -> std::io::Result<AuditWriter>
    where
        F: Fn(&QueueWriter, Vec<EventBody>) -> Vec<Result<Written, QueueError>> + Send + 'static,
    {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let writer = Arc::clone(&queue);
        let health = Arc::new(AuditHealth::new());
        let mut guard = EndGuard {
            health: Arc::clone(&health),
            reason: None,
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                while let Ok(first) = inbox.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match inbox.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let (bodies, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let results = append(&writer, bodies);
                    let failed = results
                        .iter()
                        .find_map(|r| r.as_ref().err().map(ToString::to_string));
                    // The state is recorded before any caller is answered,
                    // so a `/health` asked after a refusal already says why.
                    if let Some(e) = writer.take_checkpoint_failure() {
                        tracing::warn!(cause = %e, "no signed checkpoint covers the latest done or session_end yet; the heartbeat tries again");
                    }
                    if let Some(e) = writer.take_tally_failure() {
                        tracing::warn!(cause = %e, "the run tally was not saved; the events stand, and the next start reads those after the tally's tail");
                    }
                    let mut gone = None;
                    match failed {
                        None => guard.health.note_write(Ok(())),
                        Some(e) => {
                            guard.health.note_write(Err(e));
                            // A queue directory removed or replaced under the
                            // session takes no event again: stop for good.
                            if results.iter().all(Result::is_err) {
                                gone = writer.still_in_place().err();
                            }
                        }
                    }
                    if let Some(gone) = &gone {
                        guard.ends_because(gone.to_string());
                    }
                    for (reply, result) in replies.into_iter().zip(results) {
                        // A caller that went away (connection closed) needs no answer.
                        let _ = reply.send(result);
                    }
                    if gone.is_some() {
                        return;
                    }
                }
            })?;
        Ok(AuditWriter {
            jobs,
            queue,
            health,
        })
    }

    /// Whether the queue takes events (see [`AuditHealth`]).
    pub fn health(&self) -> &Arc<AuditHealth> {
        &self.health
    }

    /// The queue written to.
    pub fn queue(&self) -> &Arc<QueueWriter> {
        &self.queue
    }

    /// Append `body`; resolves once it is durable in `new/` (or failed).
    pub async fn append(&self, body: EventBody) -> Result<Written, QueueError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || QueueError::Io {
            op: "append",
            path: self.queue.root().to_path_buf(),
            source: std::io::Error::other(
                self.health
                    .ended()
                    .unwrap_or_else(|| "the audit writer thread stopped".into()),
            ),
        };
        self.jobs.send((body, reply)).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_protocol::DoneStatus;
    use forge_protocol::event::Done;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_form_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let writer =
            Arc::new(AuditWriter::start(Arc::new(QueueWriter::open(dir.path()).unwrap())).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let writer = Arc::clone(&writer);
            tasks.push(tokio::spawn(async move {
                let body = EventBody::Done(Done {
                    status: DoneStatus::Success,
                    summary: format!("{i}"),
                    warnings: vec![],
                });
                writer.append(body).await.unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            let written = t.await.unwrap();
            assert!(
                dir.path().join("new").join(&written.name).exists(),
                "durable when answered"
            );
            seqs.push(written.seq);
        }
        seqs.sort();
        assert_eq!(seqs, (0..200).collect::<Vec<_>>());
        let report = forge_queue::verify::verify_dir(dir.path()).unwrap();
        assert!(report.is_intact(), "{report}");
    }

    fn done(summary: &str) -> EventBody {
        EventBody::Done(Done {
            status: DoneStatus::Success,
            summary: summary.into(),
            warnings: vec![],
        })
    }

    #[tokio::test]
    async fn a_dead_writer_thread_is_recorded_with_its_reason_and_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Arc::new(QueueWriter::open(dir.path()).unwrap());
        let writer = AuditWriter::start_with(queue, |q, bodies| {
            if bodies
                .iter()
                .any(|b| matches!(b, EventBody::Done(d) if d.summary == "boom"))
            {
                panic!("a bug in the writer");
            }
            q.append_batch(bodies)
        })
        .unwrap();
        writer.append(done("fine")).await.unwrap();
        assert_eq!(writer.health().problem(), None);
        writer.append(done("boom")).await.unwrap_err();
        let reason = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            writer.health().wait_ended(),
        )
        .await
        .expect("the end is announced");
        assert!(reason.contains("panicked"), "{reason}");
        let err = writer.append(done("after")).await.unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert!(writer.health().problem().unwrap().contains("panicked"));
    }

    #[tokio::test]
    async fn a_queue_removed_under_the_session_ends_the_writer_and_a_failure_clears() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("queue");
        let writer = AuditWriter::start(Arc::new(QueueWriter::open(&root).unwrap())).unwrap();
        writer.append(done("one")).await.unwrap();
        // A failure that passes: recorded, then cleared by the next success.
        writer.health().note_write(Err("disk full".into()));
        assert_eq!(writer.health().problem().as_deref(), Some("disk full"));
        writer.append(done("two")).await.unwrap();
        assert_eq!(writer.health().problem(), None);
        std::fs::remove_dir_all(&root).unwrap();
        writer.append(done("three")).await.unwrap_err();
        let reason = writer.health().wait_ended().await;
        assert!(reason.contains("removed or replaced"), "{reason}");
    }
}
