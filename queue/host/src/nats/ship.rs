//! The shipper: publishes each delivery of a [`Watcher`] to JetStream,
//! several at a time, and moves each event file to `cur/` once the
//! server has acked that very message.
//!
//! ```no_run
//! use forge_queue_host::nats::ship::{ShipOptions, Shipper};
//! use forge_queue_host::watch::{WatchOptions, Watcher};
//! # fn options() -> ShipOptions { panic!("an example") }
//!
//! let mut shipper = Shipper::connect(options(), |warning| eprintln!("{warning}"))?;
//! let mut watcher = Watcher::new(["/run/forge/queue"], Shipper::watch_options(WatchOptions::default()))?;
//! watcher.poll(|d| shipper.ship(d))?;
//! let shipped = shipper.finish()?; // every file acked by the server is in cur/
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Pipeline.** The watcher's thread reads each event's exact bytes and
//! hands the message to a publishing task; up to
//! [`ShipOptions::max_in_flight`] messages are published and not yet acked
//! at a time. Acks are taken in publish order: a file moves from `new/` to
//! `cur/` only after its own PubAck and after every message published
//! before it was acked. The watcher runs with `ack: false` and this task
//! does the moves (and the fsync of `cur/`).
//!
//! **Order and duplicates.** Messages go out in delivery order, which is
//! seq order per session, on one connection, and the server stores what one
//! connection sends in that order. Every publish carries
//! `Nats-Msg-Id: <session>-<seq>`; an event stored but not acked (ack lost,
//! shipper killed before the move) is published again and JetStream drops
//! the copy (within the stream's duplicate window, 2 minutes by default).
//!
//! **Failures.** A publish that fails, is refused or is not acked in time
//! ends the connection's turn: nothing more is sent on it, and once the
//! messages in flight have their answers (or the connection is lost) every
//! message from the first unacked one on is published again, in the same
//! order and with the same ids, on a new connection, backing off from
//! 100 ms to 5 s, indefinitely; meanwhile their files stay in `new/`. A
//! connection is never re-established by the client itself
//! ([`super::Fenced`]): publishes it held unsent when it broke would reach
//! the server after the one the break swallowed, and the retry of that one
//! would land behind them. The stream is (re)created before the first
//! publish of each connection.
//!
//! **Provenance.** Checkpoint files ([`WatchOptions::checkpoint_files`])
//! are published as read, kind `checkpoint`, after the events listed
//! before them, with `Nats-Msg-Id: <session>-checkpoint-<sha256>`; liveness
//! notices as kind `stale` / `recovered`. Whoever holds the verifier key
//! checks them (`verify --nats --key`, `watch --nats --key`).

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage, publish::PublishAck};
use bytes::Bytes;
use forge_protocol::event::{Event, EventBody};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::subject::{self, Scope};
use super::{Connection, NatsError, StreamSpec};
use crate::names::{EventName, sha256_hex};
use crate::reader::{self, Place, QueueDir};
use crate::watch::{Delivery, LivenessNotice, WatchOptions};
use crate::writer::{Heartbeat, rfc3339_ms};

#[cfg(doc)]
use crate::watch::Watcher;

/// How a [`Shipper`] connects and publishes.
#[derive(Debug, Clone)]
pub struct ShipOptions {
    /// The server.
    pub conn: Connection,
    /// The stream, created if missing.
    pub stream: StreamSpec,
    /// This machine's name, sent in the `Forge-Host` header.
    pub host: String,
    /// How long to wait for the server's ack before publishing again.
    pub ack_timeout: Duration,
    /// Messages published and not yet acked, at most (at least 1).
    pub max_in_flight: usize,
}

/// The body of a liveness message (`stale` / `recovered`): the watcher's
/// [`LivenessNotice`] without its directory (that is the `Forge-Dir`
/// header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeBody {
    /// When the shipper noticed, RFC 3339 UTC ms.
    pub at: String,
    /// The directory's latest session, if any.
    pub session: Option<String>,
    /// The heartbeat file's content, if any.
    pub heartbeat: Option<Heartbeat>,
    /// Age of the liveness reference, ms.
    pub age_ms: u64,
    /// The stale threshold, ms.
    pub threshold_ms: u64,
}

impl NoticeBody {
    /// The body for `n`.
    pub fn from_notice(n: &LivenessNotice) -> NoticeBody {
        NoticeBody {
            at: rfc3339_ms(n.at),
            session: n.session.clone(),
            heartbeat: n.heartbeat.clone(),
            age_ms: n.age.as_millis() as u64,
            threshold_ms: n.threshold.as_millis() as u64,
        }
    }

    /// The notice again, for the directory `dir`; `None` if `at` is not a
    /// timestamp.
    pub fn to_notice(&self, dir: PathBuf) -> Option<LivenessNotice> {
        Some(LivenessNotice {
            dir,
            at: reader::parse_ts(&self.at)?,
            session: self.session.clone(),
            heartbeat: self.heartbeat.clone(),
            age: Duration::from_millis(self.age_ms),
            threshold: Duration::from_millis(self.threshold_ms),
        })
    }
}

/// Counts of what a [`Shipper`] published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shipped {
    /// Events stored by the server.
    pub events: u64,
    /// Of those, how many the server already had (dropped as duplicates).
    pub duplicates: u64,
    /// Liveness notices published.
    pub notices: u64,
    /// Checkpoint files published.
    pub checkpoints: u64,
}

/// Publishes deliveries to JetStream; see the module documentation.
pub struct Shipper {
    rt: tokio::runtime::Runtime,
    outgoing: Option<mpsc::Sender<Outgoing>>,
    task: Option<tokio::task::JoinHandle<Result<(), NatsError>>>,
    shared: Arc<Shared>,
    prefix: String,
    host: String,
    /// Per directory: its latest session and that session's scope.
    scopes: HashMap<PathBuf, (String, Option<Scope>)>,
}

/// What the publishing task and the watcher's thread share.
#[derive(Default)]
struct Shared {
    shipped: Mutex<Shipped>,
}

/// One message on its way.
struct Outgoing {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    id: String,
    what: What,
    /// Published before, on a connection that failed.
    again: bool,
}

/// What a message is, and for an event the file to move once acked.
enum What {
    Event {
        new: PathBuf,
        cur: PathBuf,
        name: EventName,
    },
    Notice,
    Checkpoint,
}

impl Shipper {
    /// Start the publishing task; it connects in the background (an
    /// unreachable server is retried, not an error); `warn` gets one line
    /// per failed connection or publish. Fails only on options that cannot
    /// work (subject prefix, unreadable credentials or CA file).
    pub fn connect(
        options: ShipOptions,
        warn: impl FnMut(String) + Send + 'static,
    ) -> Result<Shipper, NatsError> {
        subject::check_prefix(&options.stream.prefix).map_err(|e| NatsError::Setup {
            what: "subject prefix".into(),
            source: e.into(),
        })?;
        // One worker runs the pipeline and keeps the connection alive
        // while the watcher waits for files.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("forge-queue-nats")
            .enable_all()
            .build()
            .map_err(|e| NatsError::Setup {
                what: "start the async runtime".into(),
                source: Box::new(e),
            })?;
        // The options that need no server are checked now.
        rt.block_on(super::connect_options(&options.conn))?;
        let depth = options.max_in_flight.max(1);
        let (tx, rx) = mpsc::channel(depth);
        let shared = Arc::new(Shared::default());
        let (prefix, host) = (options.stream.prefix.clone(), options.host.clone());
        let task = rt.spawn(pipeline(options, rx, shared.clone(), Box::new(warn)));
        Ok(Shipper {
            rt,
            outgoing: Some(tx),
            task: Some(task),
            shared,
            prefix,
            host,
            scopes: HashMap::new(),
        })
    }

    /// The watch options a shipper needs: the shipper acks (moves) the
    /// files itself, and checkpoint files are read to be shipped.
    pub fn watch_options(options: WatchOptions) -> WatchOptions {
        WatchOptions {
            ack: false,
            checkpoint_files: true,
            checkpoint_key: None,
            ..options
        }
    }

    /// What the server acked so far.
    pub fn shipped(&self) -> Shipped {
        *self
            .shared
            .shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Hand one delivery to the pipeline; waits only while
    /// [`ShipOptions::max_in_flight`] messages are already waiting.
    /// Invalid files are not published: they stay in `new/` and the
    /// watcher reports them. Fails if the event file changed since the
    /// watcher read it, or if the pipeline stopped (a file could not be
    /// moved to `cur/`).
    pub fn ship(&mut self, d: &Delivery) -> Result<(), NatsError> {
        let out = match d {
            Delivery::Event(e) => {
                let bytes = read_event_bytes(&e.dir, &e.file_name)?;
                if sha256_hex(&bytes) != e.sha256 {
                    return Err(NatsError::Changed {
                        file: QueueDir::new(&e.dir).path_of(Place::New, &e.file_name),
                    });
                }
                let name = EventName::parse(&e.file_name).unwrap_or_else(|| EventName {
                    session: e.event.session.clone(),
                    seq: e.event.seq,
                });
                let scope = self.scope(&e.dir, &name.session, &e.event);
                let kind = e.event.body.kind();
                let subject =
                    subject::subject(&self.prefix, scope.as_ref(), Some(&name.session), kind);
                let id = format!("{}-{}", name.session, name.seq);
                let mut headers = self.headers(&e.dir, &id, Some(&name.session), kind);
                headers.insert(subject::SEQ, name.seq.to_string().as_str());
                let queue = QueueDir::new(&e.dir);
                Outgoing {
                    subject,
                    headers,
                    payload: Bytes::from(bytes),
                    id,
                    what: What::Event {
                        new: queue.path_of(Place::New, &e.file_name),
                        cur: queue.path_of(Place::Cur, &e.file_name),
                        name,
                    },
                    again: false,
                }
            }
            Delivery::Stale(n) | Delivery::Recovered(n) => {
                let kind = d.kind();
                let scope = n
                    .session
                    .as_deref()
                    .and_then(|s| self.scope_of_session(&n.dir, s));
                let subject =
                    subject::subject(&self.prefix, scope.as_ref(), n.session.as_deref(), kind);
                // The same verdict on the same heartbeat is one message,
                // however often a restarted shipper reaches it again.
                let id = format!(
                    "{}-{kind}-{}",
                    n.session.as_deref().unwrap_or("none"),
                    n.heartbeat.as_ref().map_or("none", |h| h.ts.as_str())
                );
                let headers = self.headers(&n.dir, &id, n.session.as_deref(), kind);
                let body = serde_json::to_vec(&NoticeBody::from_notice(n)).unwrap_or_default();
                Outgoing {
                    subject,
                    headers,
                    payload: Bytes::from(body),
                    id,
                    what: What::Notice,
                    again: false,
                }
            }
            Delivery::CheckpointFile(c) => {
                let kind = d.kind();
                let scope = self.scope_of_session(&c.dir, &c.session);
                let subject =
                    subject::subject(&self.prefix, scope.as_ref(), Some(&c.session), kind);
                // The same note is one message, however often it is read.
                let id = format!("{}-{kind}-{}", c.session, sha256_hex(&c.note));
                let headers = self.headers(&c.dir, &id, Some(&c.session), kind);
                Outgoing {
                    subject,
                    headers,
                    payload: Bytes::from(c.note.clone()),
                    id,
                    what: What::Checkpoint,
                    again: false,
                }
            }
            // Invalid files stay in new/ (the watcher reports them); a
            // checkpoint file is not verified here (no key), and the
            // watchdog is not asked for.
            _ => return Ok(()),
        };
        let sent = match &self.outgoing {
            Some(tx) => tx.blocking_send(out).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The task ended: its error says why.
            self.outgoing = None;
            Err(self.join().err().unwrap_or_else(|| NatsError::Setup {
                what: "publish".into(),
                source: "the publishing task stopped".into(),
            }))
        }
    }

    /// Wait until every message handed over is acked and its file moved,
    /// then stop; what was shipped in all.
    pub fn finish(mut self) -> Result<Shipped, NatsError> {
        self.outgoing = None;
        self.join()?;
        Ok(self.shipped())
    }

    fn join(&mut self) -> Result<(), NatsError> {
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        self.rt.block_on(task).map_err(|e| NatsError::Setup {
            what: "the publishing task".into(),
            source: Box::new(e),
        })?
    }

    fn headers(&self, dir: &Path, id: &str, session: Option<&str>, kind: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(async_nats::header::NATS_MESSAGE_ID, id);
        h.insert(
            subject::DIR,
            subject::header_value(&dir.to_string_lossy()).as_str(),
        );
        h.insert(subject::HOST, subject::header_value(&self.host).as_str());
        if let Some(session) = session {
            h.insert(subject::SESSION, subject::header_value(session).as_str());
        }
        h.insert(subject::KIND, kind);
        h
    }

    /// The scope for an event of `session` in `dir`.
    fn scope(&mut self, dir: &Path, session: &str, event: &Event) -> Option<Scope> {
        if let EventBody::SessionStart(s) = &event.body {
            let scope = Some(Scope {
                owner: s.owner.clone(),
                repo: s.repo.clone(),
                issue: Some(s.issue),
            });
            self.remember(dir, session, scope.clone());
            return scope;
        }
        self.scope_of_session(dir, session)
    }

    /// The scope of `session`, from the cache or its `session_start` file.
    fn scope_of_session(&mut self, dir: &Path, session: &str) -> Option<Scope> {
        if let Some((s, scope)) = self.scopes.get(dir)
            && s == session
        {
            return scope.clone();
        }
        let scope = read_scope(dir, session);
        self.remember(dir, session, scope.clone());
        scope
    }

    fn remember(&mut self, dir: &Path, session: &str, scope: Option<Scope>) {
        let newer = self
            .scopes
            .get(dir)
            .is_none_or(|(s, _)| session >= s.as_str());
        if newer {
            self.scopes
                .insert(dir.to_path_buf(), (session.to_string(), scope));
        }
    }
}

/// The publishing task: one connection after another until the watcher's
/// side is done and everything handed over is acked.
async fn pipeline(
    options: ShipOptions,
    mut incoming: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
    mut warn: Box<dyn FnMut(String) + Send>,
) -> Result<(), NatsError> {
    let mut retry: VecDeque<Outgoing> = VecDeque::new();
    let mut delay = Duration::from_millis(100);
    loop {
        let turn = match super::Fenced::connect(&options.conn).await {
            Ok(conn) => {
                let mut js = jetstream::new(conn.client.clone());
                js.set_timeout(options.ack_timeout);
                match super::ensure_stream(&js, &options.stream).await {
                    Ok(_) => {
                        let mut turn = Turn {
                            warn: &mut *warn,
                            stored_again: HashMap::new(),
                            conn: &conn,
                            js: &js,
                            depth: options.max_in_flight.max(1),
                            shared: &shared,
                            in_flight: FuturesOrdered::new(),
                            waiting: VecDeque::new(),
                            synced: Vec::new(),
                            acked: 0,
                        };
                        turn.run(&mut incoming, &mut retry).await
                    }
                    Err(e) => TurnEnd::Failed(e),
                }
            }
            Err(e) => TurnEnd::Failed(e),
        };
        match turn {
            TurnEnd::Done => return Ok(()),
            TurnEnd::Fatal(e) => return Err(e),
            TurnEnd::Progress(e) => {
                delay = Duration::from_millis(100);
                warn(format!(
                    "{e}; {} messages wait (their files in new/) and are published again, in order",
                    retry.len()
                ));
            }
            TurnEnd::Failed(e) => {
                let waiting = match retry.front() {
                    Some(first) => format!(
                        "{} and the {} messages behind it stay in new/",
                        first.id,
                        retry.len() - 1
                    ),
                    None => "nothing is waiting".into(),
                };
                warn(format!(
                    "{e}; {waiting}, retrying in {} ms",
                    delay.as_millis()
                ));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// How one connection's turn ended.
enum TurnEnd {
    /// Everything handed over is acked; nothing more will come.
    Done,
    /// The connection failed after some acks: publish the rest again at
    /// once on a new one.
    Progress(NatsError),
    /// It failed before any ack: back off first.
    Failed(NatsError),
    /// Acking locally failed: stop.
    Fatal(NatsError),
}

type AckFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<PublishAck, NatsError>> + Send>>;

/// One connection's share of the work.
struct Turn<'a> {
    warn: &'a mut (dyn FnMut(String) + Send),
    /// Per session, the lowest seq that a publish again stored for the
    /// first time: a later seq of it found stored already is out of order.
    stored_again: HashMap<String, u64>,
    conn: &'a super::Fenced,
    js: &'a jetstream::Context,
    depth: usize,
    shared: &'a Shared,
    /// Acks awaited, in publish order.
    in_flight: FuturesOrdered<AckFuture>,
    /// The messages those acks are for, same order.
    waiting: VecDeque<Outgoing>,
    /// `cur/` directories with moves not yet fsynced.
    synced: Vec<PathBuf>,
    acked: u64,
}

impl Turn<'_> {
    async fn run(
        &mut self,
        incoming: &mut mpsc::Receiver<Outgoing>,
        retry: &mut VecDeque<Outgoing>,
    ) -> TurnEnd {
        let mut closed = false;
        let failure = loop {
            if self.conn.is_lost() {
                break self.lost();
            }
            // What waits for a retry goes first, in its order.
            if self.waiting.len() < self.depth
                && let Some(m) = retry.pop_front()
            {
                if let Err(e) = self.publish(m).await {
                    break e;
                }
                continue;
            }
            if closed && self.waiting.is_empty() {
                return match self.sync() {
                    Ok(()) => TurnEnd::Done,
                    Err(e) => TurnEnd::Fatal(e),
                };
            }
            let room = self.waiting.len() < self.depth && !closed;
            tokio::select! {
                biased;
                () = self.conn.lost() => break self.lost(),
                Some(ack) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    match ack {
                        Ok(ack) => {
                            if let Err(e) = self.acked(&ack) {
                                return TurnEnd::Fatal(e);
                            }
                        }
                        Err(e) => break e,
                    }
                }
                m = incoming.recv(), if room => match m {
                    Some(m) => {
                        if let Err(e) = self.publish(m).await {
                            break e;
                        }
                    }
                    None => closed = true,
                },
            }
            if self.in_flight.is_empty()
                && let Err(e) = self.sync()
            {
                return TurnEnd::Fatal(e);
            }
        };
        // Nothing more on this connection. Everything not acked, in order,
        // then what was waiting for a retry.
        if let Err(e) = self.sync() {
            return TurnEnd::Fatal(e);
        }
        let mut again: VecDeque<Outgoing> = self.waiting.drain(..).collect();
        again.append(retry);
        for m in &mut again {
            m.again = true;
        }
        *retry = again;
        if self.acked > 0 {
            TurnEnd::Progress(failure)
        } else {
            TurnEnd::Failed(failure)
        }
    }

    fn lost(&self) -> NatsError {
        NatsError::JetStream {
            what: "connection".into(),
            source: "lost".into(),
        }
    }

    /// Send one message; its ack is awaited in order.
    async fn publish(&mut self, m: Outgoing) -> Result<(), NatsError> {
        let publish = PublishMessage::build()
            .payload(m.payload.clone())
            .headers(m.headers.clone());
        let id = m.id.clone();
        let sent = self.js.send_publish(m.subject.clone(), publish).await;
        // Kept in line even if sending failed: it is published again.
        self.waiting.push_back(m);
        let ack = sent.map_err(|e| NatsError::js(format!("publish {id}"))(Box::new(e)))?;
        self.in_flight.push_back(Box::pin(async move {
            ack.await
                .map_err(|e| NatsError::js(format!("ack of {id}"))(Box::new(e)))
        }));
        Ok(())
    }

    /// The oldest message is acked: move its file.
    fn acked(&mut self, ack: &PublishAck) -> Result<(), NatsError> {
        let Some(m) = self.waiting.pop_front() else {
            return Ok(());
        };
        self.acked += 1;
        let mut shipped = self
            .shared
            .shipped
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &m.what {
            What::Event { new, cur, name } => {
                if m.again {
                    self.check_order(name, ack.duplicate);
                }
                match std::fs::rename(new, cur) {
                    Ok(()) => {}
                    // Someone else acked it: it is where it belongs.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(
                            forge_queue::QueueError::io("ack (rename to cur/)", new)(e).into()
                        );
                    }
                }
                if let Some(dir) = cur.parent()
                    && !self.synced.iter().any(|d| d == dir)
                {
                    self.synced.push(dir.to_path_buf());
                }
                shipped.events += 1;
                shipped.duplicates += u64::from(ack.duplicate);
            }
            What::Notice => shipped.notices += 1,
            What::Checkpoint => shipped.checkpoints += 1,
        }
        Ok(())
    }

    /// A message published again: if the server stored it only now, while
    /// a later event of its session was stored already (by a connection
    /// that failed after the server refused this one), the stream holds
    /// that session out of order. Nothing can undo it; say so.
    fn check_order(&mut self, name: &EventName, duplicate: bool) {
        if !duplicate {
            self.stored_again
                .entry(name.session.clone())
                .or_insert(name.seq);
        } else if let Some(&first) = self.stored_again.get(&name.session)
            && first < name.seq
        {
            (self.warn)(format!(
                "the stream holds seq {} of session {} before seq {first}: the server refused seq {first} but stored what was sent behind it; consumers that need order must sort this session by seq",
                name.seq, name.session
            ));
            // Once per session and connection is enough.
            self.stored_again.insert(name.session.clone(), u64::MAX);
        }
    }

    /// fsync the `cur/` directories moved into.
    fn sync(&mut self) -> Result<(), NatsError> {
        for dir in self.synced.drain(..) {
            forge_queue::durable::sync_dir(&dir)?;
        }
        Ok(())
    }
}

/// The exact bytes of an event the watcher delivered from `new/` (or, if
/// someone acked it meanwhile, from `cur/`).
fn read_event_bytes(dir: &Path, file_name: &str) -> Result<Vec<u8>, NatsError> {
    let queue = QueueDir::new(dir);
    let path = queue.path_of(Place::New, file_name);
    match fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let moved = queue.path_of(Place::Cur, file_name);
            fs::read(&moved).map_err(|e| forge_queue::QueueError::io("read", &moved)(e).into())
        }
        Err(e) => Err(forge_queue::QueueError::io("read", &path)(e).into()),
    }
}

/// The scope in `session`'s `session_start` (seq 0), wherever it is.
fn read_scope(dir: &Path, session: &str) -> Option<Scope> {
    let queue = QueueDir::new(dir);
    let name = EventName::format(session, 0);
    [Place::New, Place::Cur].iter().find_map(|&place| {
        let (_, event) = reader::read_event(&queue.path_of(place, &name)).ok()?;
        match event.body {
            EventBody::SessionStart(s) => Some(Scope {
                owner: s.owner,
                repo: s.repo,
                issue: Some(s.issue),
            }),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_survives_the_trip_through_its_body() {
        let n = LivenessNotice {
            dir: "/q/a".into(),
            at: reader::parse_ts("2026-11-25T12:00:20.000Z").unwrap(),
            session: Some("20261125T120000.000Z-0a1b2c".into()),
            heartbeat: Some(Heartbeat {
                pid: 9,
                session: "20261125T120000.000Z-0a1b2c".into(),
                ts: "2026-11-25T12:00:00.000Z".into(),
            }),
            age: Duration::from_secs(20),
            threshold: Duration::from_secs(15),
        };
        let body = serde_json::to_vec(&NoticeBody::from_notice(&n)).unwrap();
        let back: NoticeBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(back.to_notice("/q/a".into()), Some(n));
    }
}
