//! [`AuditWriter`]: the one thread that writes audit events, with group commit.
//!
//! Calls hand their event to the thread and wait for its answer. The thread
//! takes everything queued at that moment and appends it as one batch: each
//! event file is written and fsynced, then `new/` is fsynced once for the
//! batch, and only then is each caller told its event is durable. So an
//! event is still durable before its call returns, while concurrent calls
//! share the directory fsync, and no call pays a blocking-pool hop.

use std::sync::Arc;
use std::sync::mpsc;

use forge_protocol::event::EventBody;
use forge_queue::{QueueError, QueueWriter, Written};
use tokio::sync::oneshot;

/// Most events appended in one batch.
const MAX_BATCH: usize = 256;

type Job = (EventBody, oneshot::Sender<Result<Written, QueueError>>);

/// Handle to the audit writer thread; the thread ends when the handle is dropped.
pub struct AuditWriter {
    jobs: mpsc::Sender<Job>,
    queue: Arc<QueueWriter>,
}

impl AuditWriter {
    /// Start the writer thread for `queue`.
    pub fn start(queue: Arc<QueueWriter>) -> std::io::Result<AuditWriter> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let writer = Arc::clone(&queue);
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
                    for (reply, result) in replies.into_iter().zip(writer.append_batch(bodies)) {
                        // A caller that went away (connection closed) needs no answer.
                        let _ = reply.send(result);
                    }
                }
            })?;
        Ok(AuditWriter { jobs, queue })
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
            source: std::io::Error::other("the audit writer thread stopped"),
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
}
