//! [`AuditWriter`]: the one thread that writes audit events, with group commit.
//!
//! Calls hand their event to the thread and wait for its answer. The thread
//! takes everything queued at that moment and appends it as one batch: each
//! event file is written and fsynced, then `new/` is fsynced once for the
//! batch, and only then is each caller told its event is durable. So an
//! event is still durable before its call returns, while concurrent calls
//! share the directory fsync, and no call pays a blocking-pool hop.
//!
//! When the queue is on a memory filesystem (tmpfs, as under `/run`) its
//! fsyncs cost nothing, so grouping saves nothing; there a call that runs
//! alone appends its event in place, on its own thread, and saves the two
//! thread wake-ups of the hand-off ([`AuditWriter::append`]). Calls that run
//! together still go through the thread, so they are grouped and the
//! appends do not queue up on the async thread.
//!
//! The writer's state is watched ([`AuditHealth`]): a batch that failed
//! whole makes the queue "failing" until a write succeeds again, and the
//! thread's end (a panic, or the queue directory removed or replaced under
//! it, from which no retry recovers) is recorded with its reason, so
//! `/health`, the heartbeat and the server's run loop all see it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// How a batch of events is written (the queue's `append_batch`; tests put
/// a failing one in its place).
type AppendFn =
    dyn Fn(&QueueWriter, Vec<EventBody>) -> Vec<Result<Written, QueueError>> + Send + Sync;

/// Handle to the audit writer thread; the thread ends when the handle is dropped.
pub struct AuditWriter {
    jobs: mpsc::Sender<Job>,
    queue: Arc<QueueWriter>,
    health: Arc<AuditHealth>,
    append: Arc<AppendFn>,
    /// Whether a call alone may append in place (the queue is on tmpfs).
    in_place: bool,
    /// Events handed to the thread and not yet answered.
    queued: Arc<AtomicUsize>,
}

impl AuditWriter {
    /// Start the writer thread for `queue`; appends run in place when
    /// alone if the queue is on a memory filesystem ([`on_memory_fs`]).
    pub fn start(queue: Arc<QueueWriter>) -> std::io::Result<AuditWriter> {
        let in_place = on_memory_fs(queue.root());
        AuditWriter::start_with(queue, in_place, |q, bodies| q.append_batch(bodies))
    }

    /// Start the writer thread with `append` as the way a batch is written.
    fn start_with<F>(
        queue: Arc<QueueWriter>,
        in_place: bool,
        append: F,
    ) -> std::io::Result<AuditWriter>
    where
        F: Fn(&QueueWriter, Vec<EventBody>) -> Vec<Result<Written, QueueError>>
            + Send
            + Sync
            + 'static,
    {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let writer = Arc::clone(&queue);
        let health = Arc::new(AuditHealth::new());
        let append: Arc<AppendFn> = Arc::new(append);
        let queued = Arc::new(AtomicUsize::new(0));
        let mut guard = EndGuard {
            health: Arc::clone(&health),
            reason: None,
        };
        let (batch_append, answered) = (Arc::clone(&append), Arc::clone(&queued));
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
                    let results = batch_append(&writer, bodies);
                    // The state is recorded before any caller is answered,
                    // so a `/health` asked after a refusal already says why.
                    let gone = note_batch(&writer, &guard.health, &results);
                    if let Some(gone) = &gone {
                        guard.ends_because(gone.clone());
                    }
                    answered.fetch_sub(replies.len(), Ordering::SeqCst);
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
            append,
            in_place,
            queued,
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
    ///
    /// `alone` says that no other call is running: then, on a queue on a
    /// memory filesystem with nothing waiting for the thread, the event is
    /// appended in place (a few syscalls, no fsync cost) instead of being
    /// handed to the thread and waited for. Otherwise the thread writes it,
    /// grouped with what the other calls hand it.
    pub async fn append(&self, body: EventBody, alone: bool) -> Result<Written, QueueError> {
        let stopped = || QueueError::Io {
            op: "append",
            path: self.queue.root().to_path_buf(),
            source: std::io::Error::other(
                self.health
                    .ended()
                    .unwrap_or_else(|| "the audit writer thread stopped".into()),
            ),
        };
        if self.health.ended().is_some() {
            return Err(stopped());
        }
        if alone && self.in_place && self.queued.load(Ordering::SeqCst) == 0 {
            let results = (self.append)(&self.queue, vec![body]);
            if let Some(gone) = note_batch(&self.queue, &self.health, &results) {
                self.health.end(gone);
            }
            return results.into_iter().next().unwrap_or_else(|| Err(stopped()));
        }
        let (reply, answer) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.jobs.send((body, reply)).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// Record what a batch's results say of the queue in `health`; the reason
/// the queue takes no event again, when it was removed or replaced (every
/// event of the batch failed and the directory is no longer the one opened).
fn note_batch(
    queue: &QueueWriter,
    health: &AuditHealth,
    results: &[Result<Written, QueueError>],
) -> Option<String> {
    if let Some(e) = queue.take_checkpoint_failure() {
        tracing::warn!(cause = %e, "no signed checkpoint covers the latest done or session_end yet; the heartbeat tries again");
    }
    if let Some(e) = queue.take_tally_failure() {
        tracing::warn!(cause = %e, "the run tally was not saved; the events stand, and the next start reads those after the tally's tail");
    }
    let failed = results
        .iter()
        .find_map(|r| r.as_ref().err().map(ToString::to_string));
    match failed {
        None => {
            health.note_write(Ok(()));
            None
        }
        Some(e) => {
            health.note_write(Err(e));
            if results.iter().all(Result::is_err) {
                queue.still_in_place().err().map(|gone| gone.to_string())
            } else {
                None
            }
        }
    }
}

/// Whether `dir` is on a memory filesystem (tmpfs or ramfs), where an
/// fsync costs nothing. False when it cannot be told.
pub fn on_memory_fs(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: statfs fills the zeroed struct it is given; `path` is a
        // NUL-terminated string that outlives the call.
        #[allow(unsafe_code)]
        let (got, kind) = unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            let got = libc::statfs(path.as_ptr(), &mut st);
            (got, st.f_type)
        };
        #[allow(clippy::unnecessary_cast)]
        let kind = kind as i64;
        got == 0 && (kind == TMPFS_MAGIC || kind == RAMFS_MAGIC)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
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
                writer.append(body, false).await.unwrap()
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
        let writer = AuditWriter::start_with(queue, false, |q, bodies| {
            if bodies
                .iter()
                .any(|b| matches!(b, EventBody::Done(d) if d.summary == "boom"))
            {
                panic!("a bug in the writer");
            }
            q.append_batch(bodies)
        })
        .unwrap();
        writer.append(done("fine"), false).await.unwrap();
        assert_eq!(writer.health().problem(), None);
        writer.append(done("boom"), false).await.unwrap_err();
        let reason = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            writer.health().wait_ended(),
        )
        .await
        .expect("the end is announced");
        assert!(reason.contains("panicked"), "{reason}");
        let err = writer.append(done("after"), false).await.unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert!(writer.health().problem().unwrap().contains("panicked"));
    }

    /// A writer whose appends record the thread they ran on.
    fn recording(
        root: &std::path::Path,
        in_place: bool,
    ) -> (AuditWriter, Arc<Mutex<Vec<std::thread::ThreadId>>>) {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&threads);
        let queue = Arc::new(QueueWriter::open(root).unwrap());
        let writer = AuditWriter::start_with(queue, in_place, move |q, bodies| {
            seen.lock().unwrap().push(std::thread::current().id());
            q.append_batch(bodies)
        })
        .unwrap();
        (writer, threads)
    }

    #[tokio::test]
    async fn a_call_alone_on_a_memory_queue_appends_in_place_and_others_go_through_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::thread::current().id();
        let (writer, threads) = recording(dir.path(), true);
        let alone = writer.append(done("alone"), true).await.unwrap();
        assert!(
            dir.path().join("new").join(&alone.name).exists(),
            "durable when answered"
        );
        let busy = writer.append(done("with others"), false).await.unwrap();
        let ran_on = threads.lock().unwrap().clone();
        assert_eq!(ran_on.len(), 2);
        assert_eq!(ran_on[0], me, "in place");
        assert_ne!(ran_on[1], me, "handed to the writer thread");
        assert_eq!((alone.seq, busy.seq), (0, 1));

        // On a disk queue, a call alone still goes through the thread.
        let dir = tempfile::tempdir().unwrap();
        let (writer, threads) = recording(dir.path(), false);
        writer.append(done("alone on disk"), true).await.unwrap();
        assert_ne!(threads.lock().unwrap()[0], me);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_in_place_and_through_the_thread_form_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _) = recording(dir.path(), true);
        let writer = Arc::new(writer);
        let mut tasks = Vec::new();
        for i in 0..200 {
            let writer = Arc::clone(&writer);
            tasks.push(tokio::spawn(async move {
                writer
                    .append(done(&format!("{i}")), i % 2 == 0)
                    .await
                    .unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().seq);
        }
        seqs.sort();
        assert_eq!(seqs, (0..200).collect::<Vec<_>>());
        let report = forge_queue::verify::verify_dir(dir.path()).unwrap();
        assert!(report.is_intact(), "{report}");
    }

    #[tokio::test]
    async fn a_queue_removed_under_a_call_appending_in_place_ends_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("queue");
        let (writer, _) = recording(&root, true);
        writer.append(done("one"), true).await.unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        writer.append(done("two"), true).await.unwrap_err();
        let reason = writer.health().ended().expect("ended");
        assert!(reason.contains("removed or replaced"), "{reason}");
        let err = writer.append(done("three"), false).await.unwrap_err();
        assert!(err.to_string().contains("removed or replaced"), "{err}");
    }

    #[test]
    fn a_memory_filesystem_is_told_from_a_disk() {
        if std::path::Path::new("/dev/shm").is_dir() {
            assert!(on_memory_fs(std::path::Path::new("/dev/shm")));
        }
        assert!(!on_memory_fs(std::path::Path::new("/proc/self")));
        assert!(!on_memory_fs(std::path::Path::new("/nonexistent/queue")));
    }

    #[tokio::test]
    async fn a_queue_removed_under_the_session_ends_the_writer_and_a_failure_clears() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("queue");
        let writer = AuditWriter::start(Arc::new(QueueWriter::open(&root).unwrap())).unwrap();
        writer.append(done("one"), false).await.unwrap();
        // A failure that passes: recorded, then cleared by the next success.
        writer.health().note_write(Err("disk full".into()));
        assert_eq!(writer.health().problem().as_deref(), Some("disk full"));
        writer.append(done("two"), false).await.unwrap();
        assert_eq!(writer.health().problem(), None);
        std::fs::remove_dir_all(&root).unwrap();
        writer.append(done("three"), false).await.unwrap_err();
        let reason = writer.health().wait_ended().await;
        assert!(reason.contains("removed or replaced"), "{reason}");
    }
}
