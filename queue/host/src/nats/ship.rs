//! The shipper: publishes each delivery of a [`Watcher`] to JetStream and
//! returns only once the server has acked it, so the watcher's own ack (the
//! move to `cur/`) follows the server's.
//!
//! ```no_run
//! use forge_queue_host::nats::ship::{ShipOptions, Shipper};
//! use forge_queue_host::watch::{WatchOptions, Watcher};
//! # fn options() -> ShipOptions { panic!("an example") }
//!
//! let mut shipper = Shipper::connect(options(), |warning| eprintln!("{warning}"))?;
//! let mut watcher = Watcher::new(["/run/forge/queue"], WatchOptions::default())?;
//! watcher.run(|d| shipper.ship(d))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Order and duplicates.** One message is in flight at a time: event n+1
//! is published only after event n's ack, so the stream holds each session
//! in seq order. Every publish carries `Nats-Msg-Id: <session>-<seq>`; a
//! crash after the server stored an event but before its file moved to
//! `cur/` republishes it on restart, and JetStream drops the copy (within
//! the stream's duplicate window, 2 minutes by default).
//!
//! **Unreachable server.** A publish that fails or is not acked in time is
//! retried with the same id, backing off from 100 ms to 5 s, indefinitely;
//! meanwhile the file stays in `new/` and nothing behind it is published.
//! The stream is (re)created before the first publish and after a failure.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use forge_protocol::event::{Event, EventBody};
use serde::{Deserialize, Serialize};

use super::subject::{self, Scope};
use super::{Connection, NatsError, StreamSpec};
use crate::names::{EventName, sha256_hex};
use crate::reader::{self, Place, QueueDir};
use crate::watch::{Delivery, LivenessNotice};
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
}

/// Publishes deliveries to JetStream; see the module documentation.
pub struct Shipper {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    options: ShipOptions,
    stream_ready: bool,
    /// Per directory: its latest session and that session's scope.
    scopes: HashMap<PathBuf, (String, Option<Scope>)>,
    warn: Box<dyn FnMut(String) + Send>,
    shipped: Shipped,
}

impl Shipper {
    /// Start connecting (in the background: an unreachable server is
    /// retried, not an error); `warn` gets one line per failed publish.
    pub fn connect(
        options: ShipOptions,
        warn: impl FnMut(String) + Send + 'static,
    ) -> Result<Shipper, NatsError> {
        subject::check_prefix(&options.stream.prefix).map_err(|e| NatsError::Setup {
            what: "subject prefix".into(),
            source: e.into(),
        })?;
        // One worker keeps the connection alive (pings, reconnects) while
        // the watcher waits for files.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("forge-queue-nats")
            .enable_all()
            .build()
            .map_err(|e| NatsError::Setup {
                what: "start the async runtime".into(),
                source: Box::new(e),
            })?;
        let mut js = rt.block_on(async {
            // Inside the runtime: the context spawns its ack handler.
            let client = super::connect(&options.conn, true).await?;
            Ok::<_, NatsError>(jetstream::new(client))
        })?;
        js.set_timeout(options.ack_timeout);
        Ok(Shipper {
            rt,
            js,
            options,
            stream_ready: false,
            scopes: HashMap::new(),
            warn: Box::new(warn),
            shipped: Shipped::default(),
        })
    }

    /// What was published so far.
    pub fn shipped(&self) -> Shipped {
        self.shipped
    }

    /// Publish one delivery and wait for the server's ack (retrying until
    /// it comes). Invalid files are not published: they stay in `new/` and
    /// the watcher reports them. The `Result` fits [`Watcher::run`]'s
    /// handler; reading the event file again is the only thing that fails.
    pub fn ship(&mut self, d: &Delivery) -> Result<(), NatsError> {
        match d {
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
                let subject = subject::subject(
                    &self.options.stream.prefix,
                    scope.as_ref(),
                    Some(&name.session),
                    kind,
                );
                let id = format!("{}-{}", name.session, name.seq);
                let mut headers = self.headers(&e.dir, &id, Some(&name.session), kind);
                headers.insert(subject::SEQ, name.seq.to_string().as_str());
                let duplicate = self.publish(subject, headers, Bytes::from(bytes), &id);
                self.shipped.events += 1;
                self.shipped.duplicates += u64::from(duplicate);
            }
            Delivery::Stale(n) | Delivery::Recovered(n) => {
                let kind = d.kind();
                let scope = n
                    .session
                    .as_deref()
                    .and_then(|s| self.scope_of_session(&n.dir, s));
                let subject = subject::subject(
                    &self.options.stream.prefix,
                    scope.as_ref(),
                    n.session.as_deref(),
                    kind,
                );
                // The same verdict on the same heartbeat is one message,
                // however often a restarted shipper reaches it again.
                let id = format!(
                    "{}-{kind}-{}",
                    n.session.as_deref().unwrap_or("none"),
                    n.heartbeat.as_ref().map_or("none", |h| h.ts.as_str())
                );
                let headers = self.headers(&n.dir, &id, n.session.as_deref(), kind);
                let body = serde_json::to_vec(&NoticeBody::from_notice(n)).unwrap_or_default();
                self.publish(subject, headers, Bytes::from(body), &id);
                self.shipped.notices += 1;
            }
            // Invalid files stay in new/ (the watcher reports them);
            // checkpoints and the watchdog are not asked for.
            _ => {}
        }
        Ok(())
    }

    fn headers(&self, dir: &Path, id: &str, session: Option<&str>, kind: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(async_nats::header::NATS_MESSAGE_ID, id);
        h.insert(
            subject::DIR,
            subject::header_value(&dir.to_string_lossy()).as_str(),
        );
        h.insert(
            subject::HOST,
            subject::header_value(&self.options.host).as_str(),
        );
        if let Some(session) = session {
            h.insert(subject::SESSION, subject::header_value(session).as_str());
        }
        h.insert(subject::KIND, kind);
        h
    }

    /// Publish until the server acks; true if it was a duplicate.
    fn publish(&mut self, subject: String, headers: HeaderMap, payload: Bytes, id: &str) -> bool {
        let mut delay = Duration::from_millis(100);
        loop {
            let (js, spec, ready) = (&self.js, &self.options.stream, &mut self.stream_ready);
            let attempt = self.rt.block_on(async {
                if !*ready {
                    super::ensure_stream(js, spec).await?;
                    *ready = true;
                }
                let publish = PublishMessage::build()
                    .payload(payload.clone())
                    .headers(headers.clone());
                let ack = js
                    .send_publish(subject.clone(), publish)
                    .await
                    .map_err(|e| NatsError::js(format!("publish {id}"))(Box::new(e)))?;
                ack.await
                    .map_err(|e| NatsError::js(format!("ack of {id}"))(Box::new(e)))
            });
            match attempt {
                Ok(ack) => return ack.duplicate,
                Err(e) => {
                    (self.warn)(format!(
                        "{e}; {id} stays in new/, retrying in {} ms",
                        delay.as_millis()
                    ));
                    // The stream may have been deleted or never created.
                    self.stream_ready = false;
                    self.rt.block_on(async { tokio::time::sleep(delay).await });
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
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
