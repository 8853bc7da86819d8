//! Consuming the stream: a durable pull consumer whose messages become the
//! same [`Delivery`] values a directory [`Watcher`] gives, so a host prints
//! ([`crate::render`]) and handles them with the same code.
//!
//! **Ack.** A message is acked to JetStream after the handler returns `Ok`
//! for it, as the directory watcher moves a file after its handler. Acks
//! lost to a server restart do not repeat events: the process remembers
//! each session's highest seq handled and skips (acks) redeliveries. A
//! crash of the process between handling and ack delivers the message
//! again to the next process: at-least-once; `(session, seq)` stays the
//! idempotency key.
//!
//! **Order.** One consumer process per durable name. Messages are handled
//! one at a time in stream order (which is seq order per session), and at
//! most one fetch (`batch` messages) is unacked at any time. If a previous
//! process died with messages unacked, the durable consumer is recreated
//! from its ack floor on start, so the next process resumes right after the
//! last acked message, in order, without waiting out the ack wait (not done
//! for interest retention, where deleting the only consumer would drop
//! messages: there the redelivery after `ack_wait` resumes).
//!
//! **`--until-done`.** [`SessionsSettled`] tracks each session seen: done,
//! ended without done (abandoned), or stale; the run stops once every
//! session seen is settled and the consumer has caught up with the stream.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, stream::RetentionPolicy};
use forge_protocol::DoneStatus;
use forge_protocol::event::{Event, EventBody};
use futures_util::StreamExt;

use super::ship::NoticeBody;
use super::{Connection, NatsError, subject};
use crate::checkpoint::Checkpoint;
use crate::names::{EventName, sha256_hex};
use crate::note::VerifierKey;
use crate::trust::{DoneTrust, Verdict};
use crate::watch::{CheckpointNotice, Delivery, EventDelivery, InvalidFile};

#[cfg(doc)]
use crate::watch::Watcher;

/// How a [`StreamWatcher`] consumes.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// The server.
    pub conn: Connection,
    /// The stream (must exist).
    pub stream: String,
    /// The durable consumer's name; created if missing.
    pub durable: String,
    /// Only subjects matching this (default: the whole stream).
    pub filter: Option<String>,
    /// Messages per fetch, and the most left unacked at a time.
    pub batch: usize,
    /// Unacked messages are redelivered after this.
    pub ack_wait: Duration,
    /// Verify shipped checkpoints with this key and deliver them
    /// ([`Delivery::Checkpoint`], [`Delivery::BadCheckpoint`]); without
    /// it they are acked unseen, as a directory watcher without a key does
    /// not read them.
    pub checkpoint_key: Option<VerifierKey>,
}

/// Why [`StreamWatcher::run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError<E> {
    /// Talking to the server failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The handler failed; the message it was given is not acked.
    #[error("handler failed: {0}")]
    Handler(E),
}

/// Delivers a durable consumer's messages; see the module documentation.
pub struct StreamWatcher {
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    js: jetstream::Context,
    consumer: PullConsumer,
    options: ConsumeOptions,
    batch: usize,
    warn: Box<dyn FnMut(String) + Send>,
    /// Per session, the highest seq handled by this process.
    printed: HashMap<String, Option<u64>>,
}

impl StreamWatcher {
    /// Connect, and get or create the durable consumer (recreating it from
    /// its ack floor if a previous process left messages unacked). Later
    /// failures (server restarts) are retried; `warn` gets a line for each.
    pub fn connect(
        options: &ConsumeOptions,
        warn: impl FnMut(String) + Send + 'static,
    ) -> Result<StreamWatcher, NatsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NatsError::Setup {
                what: "start the async runtime".into(),
                source: Box::new(e),
            })?;
        let mut warn: Box<dyn FnMut(String) + Send> = Box::new(warn);
        let (client, js, consumer) = rt.block_on(async {
            let client = super::connect(&options.conn, false).await?;
            let js = jetstream::new(client.clone());
            // A consumer may start before the first shipper: wait for the
            // stream rather than fail.
            let mut delay = Duration::from_millis(100);
            let mut told = false;
            while super::find_stream(&js, &options.stream).await?.is_none() {
                if !told {
                    warn(format!(
                        "stream {} does not exist yet; waiting for it (`forge-queue ship` creates it with the first event)",
                        options.stream
                    ));
                    told = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            let consumer = durable_consumer(&js, options).await?;
            Ok::<_, NatsError>((client, js, consumer))
        })?;
        Ok(StreamWatcher {
            rt,
            client,
            js,
            consumer,
            options: options.clone(),
            batch: options.batch.max(1),
            warn,
            printed: HashMap::new(),
        })
    }

    /// Deliver messages to `handler` until it fails or, with `until_done`,
    /// every session seen is settled and the stream has no more for us.
    /// The handler also gets the verdicts on `done` events the delivery
    /// settled (with a trusting `until_done`).
    pub fn run<E>(
        &mut self,
        mut until_done: Option<&mut SessionsSettled>,
        mut handler: impl FnMut(&Delivery, &[Verdict]) -> Result<(), E>,
    ) -> Result<(), ConsumeError<E>> {
        let batch = self.batch;
        let (consumer, client, js, options, warn, printed) = (
            &mut self.consumer,
            &self.client,
            &self.js,
            &self.options,
            &mut self.warn,
            &mut self.printed,
        );
        self.rt.block_on(async {
            let mut delay = Duration::from_millis(100);
            let result = loop {
                let failure = match pass(
                    consumer,
                    batch,
                    options.checkpoint_key.as_ref(),
                    printed,
                    &mut until_done,
                    &mut handler,
                )
                .await
                {
                    Ok(()) => break Ok(()),
                    Err(ConsumeError::Handler(e)) => break Err(ConsumeError::Handler(e)),
                    Err(ConsumeError::Nats(e)) => e,
                };
                // The server went away or the fetch failed: once it answers
                // again, resume right after the last ack (messages in
                // flight would otherwise come back only after the ack wait,
                // behind newer ones).
                let mut failure = failure;
                loop {
                    warn(format!(
                        "{failure}; resuming after the last ack in {} ms",
                        delay.as_millis()
                    ));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    match durable_consumer(js, options).await {
                        Ok(c) => {
                            *consumer = c;
                            delay = Duration::from_millis(100);
                            break;
                        }
                        Err(e) => failure = e,
                    }
                }
            };
            // Acks are fire-and-forget: push the last ones out.
            let _ = client.flush().await;
            result
        })
    }
}

/// Fetch and deliver until `until_done` is satisfied (`Ok`) or something
/// fails. An event whose session already had this seq or a later one
/// handled by this process (a redelivery after a lost ack) is acked
/// without handling it again.
async fn pass<E>(
    consumer: &PullConsumer,
    batch: usize,
    key: Option<&VerifierKey>,
    printed: &mut HashMap<String, Option<u64>>,
    until_done: &mut Option<&mut SessionsSettled>,
    handler: &mut impl FnMut(&Delivery, &[Verdict]) -> Result<(), E>,
) -> Result<(), ConsumeError<E>> {
    loop {
        let mut messages = consumer
            .batch()
            .max_messages(batch)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|e| NatsError::js("fetch")(Box::new(e)))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(NatsError::js("fetch"))?;
            let (delivery, pending) = to_delivery(&message, key);
            let seen = match &delivery {
                // A checkpoint without a key to check it: not shown.
                None => true,
                Some(Delivery::Event(e)) => {
                    let last = printed.entry(e.event.session.clone()).or_default();
                    let seen = last.is_some_and(|l| e.event.seq <= l);
                    *last = Some(e.event.seq.max(last.unwrap_or(0)));
                    seen
                }
                _ => false,
            };
            if !seen && let Some(delivery) = &delivery {
                let verdicts = match until_done.as_deref_mut() {
                    Some(until) => {
                        until.observe(delivery);
                        until.take_verdicts()
                    }
                    None => Vec::new(),
                };
                handler(delivery, &verdicts).map_err(ConsumeError::Handler)?;
            }
            let kind = match delivery {
                // In the stream for audit and verify to report; redelivering
                // it would change nothing.
                Some(Delivery::Invalid(_)) => AckKind::Term,
                _ => AckKind::Ack,
            };
            message.ack_with(kind).await.map_err(NatsError::js("ack"))?;
            if let Some(until) = until_done.as_deref()
                && pending == 0
                && until.all_settled()
            {
                return Ok(());
            }
        }
    }
}

async fn durable_consumer(
    js: &jetstream::Context,
    options: &ConsumeOptions,
) -> Result<PullConsumer, NatsError> {
    let mut stream = super::get_stream(js, &options.stream).await?;
    let retention = stream
        .info()
        .await
        .map_err(|e| NatsError::js(format!("stream {} info", options.stream))(Box::new(e)))?
        .config
        .retention;
    let config = pull::Config {
        durable_name: Some(options.durable.clone()),
        filter_subject: options.filter.clone().unwrap_or_default(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: options.ack_wait,
        max_ack_pending: options.batch.max(1) as i64,
        deliver_policy: DeliverPolicy::All,
        ..Default::default()
    };
    let what = format!("consumer {} on stream {}", options.durable, options.stream);
    if let Ok(mut existing) = stream.get_consumer::<pull::Config>(&options.durable).await {
        let info = existing
            .info()
            .await
            .map_err(|e| NatsError::js(what.clone())(Box::new(e)))?
            .clone();
        if info.num_ack_pending == 0 || retention == RetentionPolicy::Interest {
            return Ok(existing);
        }
        // The previous process died holding messages: start again right
        // after the last one it acked.
        let floor = info.ack_floor.stream_sequence;
        let deliver_policy = if floor == 0 {
            info.config.deliver_policy
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            }
        };
        stream
            .delete_consumer(&options.durable)
            .await
            .map_err(|e| NatsError::js(format!("recreate {what}"))(Box::new(e)))?;
        let config = pull::Config {
            deliver_policy,
            filter_subject: info.config.filter_subject,
            ..config
        };
        return stream
            .create_consumer(config)
            .await
            .map_err(|e| NatsError::js(format!("recreate {what}"))(Box::new(e)));
    }
    stream
        .create_consumer(config)
        .await
        .map_err(|e| NatsError::js(format!("create {what}"))(Box::new(e)))
}

/// The delivery a message stands for (none: a checkpoint, and no key to
/// check it), and how many messages the consumer has yet to deliver after
/// it.
fn to_delivery(message: &jetstream::Message, key: Option<&VerifierKey>) -> (Option<Delivery>, u64) {
    let (seq, pending) = message
        .info()
        .map_or((0, 0), |i| (i.stream_sequence, i.pending));
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
    };
    let dir = PathBuf::from(header(subject::DIR).unwrap_or_default());
    let invalid = |dir: PathBuf, reason: String| {
        Delivery::Invalid(InvalidFile {
            dir,
            file_name: format!("stream message {seq}"),
            reason,
        })
    };
    let kind = header(subject::KIND).unwrap_or_default();
    if kind == "checkpoint" {
        let Some(key) = key else {
            return (None, pending);
        };
        let session = header(subject::SESSION).unwrap_or_default();
        let bad = |reason: String| {
            Delivery::BadCheckpoint(InvalidFile {
                dir: dir.clone(),
                file_name: format!("stream message {seq} (checkpoint of {session})"),
                reason,
            })
        };
        let delivery = match Checkpoint::open(&message.payload, key) {
            Ok(c) if c.session == session => Delivery::Checkpoint(CheckpointNotice {
                dir: dir.clone(),
                checkpoint: c,
                note: message.payload.to_vec(),
                key: key.label(),
            }),
            Ok(c) => bad(format!("it is the checkpoint of session {}", c.session)),
            Err(e) => bad(e.to_string()),
        };
        return (Some(delivery), pending);
    }
    let delivery = if kind == "stale" || kind == "recovered" {
        let notice = serde_json::from_slice::<NoticeBody>(&message.payload)
            .ok()
            .and_then(|n| n.to_notice(dir.clone()));
        match notice {
            Some(n) if kind == "stale" => Delivery::Stale(n),
            Some(n) => Delivery::Recovered(n),
            None => invalid(dir, format!("not a {kind} notice")),
        }
    } else {
        match serde_json::from_slice::<Event>(&message.payload) {
            Ok(event) => Delivery::Event(EventDelivery {
                dir,
                file_name: EventName::format(&event.session, event.seq),
                event,
                backlog: pending as usize,
                sha256: sha256_hex(&message.payload),
            }),
            Err(e) => invalid(dir, format!("not an event: {e}")),
        }
    };
    (Some(delivery), pending)
}

/// How a session finished, for `--until-done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Signalled done.
    Done(DoneStatus),
    /// Its sidecar went stale (a recovery reopens it).
    Stale,
    /// Ended without done.
    Abandoned,
}

impl Settled {
    /// For the exit report.
    pub fn describe(self) -> &'static str {
        match self {
            Settled::Done(status) => status.as_str(),
            Settled::Stale => "no done: sidecar stale",
            Settled::Abandoned => "no done: session ended without done (abandoned)",
        }
    }
}

/// Per-session `--until-done` bookkeeping over a stream, with the exit codes
/// of the directory watcher.
#[derive(Debug, Default)]
pub struct SessionsSettled {
    sessions: BTreeMap<String, Option<Settled>>,
    /// With a key: a `done` settles its session only once a signed
    /// checkpoint covers it.
    trust: Option<DoneTrust>,
    /// Verdicts on `done` events not yet taken by [`Self::take_verdicts`].
    verdicts: Vec<Verdict>,
}

impl SessionsSettled {
    /// Bookkeeping that acts on a `done` only once a checkpoint verified
    /// with the consumer's key (and signed for `run`, if given) covers it,
    /// as `watch --key` does on a directory.
    pub fn trusting(run: Option<String>) -> SessionsSettled {
        SessionsSettled {
            trust: Some(DoneTrust::for_run(run)),
            ..SessionsSettled::default()
        }
    }

    /// The verdicts on `done` events reached since the last call.
    pub fn take_verdicts(&mut self) -> Vec<Verdict> {
        std::mem::take(&mut self.verdicts)
    }

    /// The `done` events still waiting for a checkpoint: (session, seq).
    pub fn pending(&self) -> Vec<(String, u64)> {
        self.trust
            .as_ref()
            .map(DoneTrust::pending_everywhere)
            .unwrap_or_default()
    }

    /// Learn from a delivery. A liveness notice without a session is
    /// tracked under its directory.
    pub fn observe(&mut self, d: &Delivery) {
        if let Some(trust) = &mut self.trust {
            let verdicts = trust.observe(d);
            for v in &verdicts {
                if let Verdict::Trusted {
                    session, status, ..
                } = v
                {
                    let slot = self.sessions.entry(session.clone()).or_default();
                    if matches!(slot, None | Some(Settled::Stale)) {
                        *slot = Some(Settled::Done(*status));
                    }
                }
            }
            self.verdicts.extend(verdicts);
        }
        let trusting = self.trust.is_some();
        let key = match d {
            Delivery::Event(e) => e.event.session.clone(),
            Delivery::Stale(n) | Delivery::Recovered(n) => n
                .session
                .clone()
                .unwrap_or_else(|| n.dir.to_string_lossy().into_owned()),
            _ => return,
        };
        let slot = self.sessions.entry(key).or_default();
        let open = matches!(slot, None | Some(Settled::Stale));
        match d {
            Delivery::Event(e) => match &e.event.body {
                EventBody::Done(done) if open && !trusting => {
                    *slot = Some(Settled::Done(done.status))
                }
                EventBody::SessionEnd(end) if open && !end.done => *slot = Some(Settled::Abandoned),
                _ => {}
            },
            Delivery::Stale(_) if slot.is_none() => *slot = Some(Settled::Stale),
            Delivery::Recovered(_) if *slot == Some(Settled::Stale) => *slot = None,
            _ => {}
        }
    }

    /// At least one session seen, and every one settled.
    pub fn all_settled(&self) -> bool {
        !self.sessions.is_empty() && self.sessions.values().all(Option::is_some)
    }

    /// Each session that did not succeed, with why.
    pub fn report(&self) -> Vec<(String, &'static str)> {
        self.sessions
            .iter()
            .filter_map(|(s, settled)| match settled {
                Some(Settled::Done(DoneStatus::Success)) => None,
                Some(x) => Some((s.clone(), x.describe())),
                None => Some((s.clone(), "not settled")),
            })
            .collect()
    }

    /// 1 any failure, else 4 any without done (stale or abandoned), else 3
    /// any blocked, else 0.
    pub fn exit_code(&self) -> u8 {
        let any = |f: fn(&Settled) -> bool| self.sessions.values().flatten().any(f);
        if any(|s| *s == Settled::Done(DoneStatus::Failure)) {
            1
        } else if any(|s| matches!(s, Settled::Stale | Settled::Abandoned)) {
            4
        } else if any(|s| *s == Settled::Done(DoneStatus::Blocked)) {
            3
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::LivenessNotice;
    use forge_protocol::event::{Done, OutcomeCounts, SessionEnd};

    fn event(session: &str, seq: u64, body: EventBody) -> Delivery {
        Delivery::Event(EventDelivery {
            dir: "/q".into(),
            file_name: EventName::format(session, seq),
            event: Event {
                v: 1,
                session: session.into(),
                seq,
                ts: "2026-11-25T12:00:00.000Z".into(),
                prev: None,
                body,
            },
            backlog: 0,
            sha256: String::new(),
        })
    }

    fn done(session: &str, status: DoneStatus) -> Delivery {
        event(
            session,
            1,
            EventBody::Done(Done {
                status,
                summary: "s".into(),
                warnings: vec![],
            }),
        )
    }

    fn notice(session: &str) -> LivenessNotice {
        LivenessNotice {
            dir: "/q".into(),
            at: chrono::Utc::now(),
            session: Some(session.into()),
            heartbeat: None,
            age: Duration::from_secs(20),
            threshold: Duration::from_secs(15),
        }
    }

    const A: &str = "20261125T120000.000Z-00000a";
    const B: &str = "20261125T120000.000Z-00000b";

    #[test]
    fn settles_per_session_with_the_directory_exit_codes() {
        let mut s = SessionsSettled::default();
        assert!(!s.all_settled(), "nothing seen yet: wait");
        s.observe(&done(A, DoneStatus::Blocked));
        assert!(s.all_settled());
        assert_eq!(s.exit_code(), 3);
        s.observe(&Delivery::Stale(notice(B)));
        assert_eq!(s.exit_code(), 4);
        s.observe(&Delivery::Recovered(notice(B)));
        assert!(!s.all_settled(), "recovered: wait for B again");
        s.observe(&event(
            B,
            2,
            EventBody::SessionEnd(SessionEnd {
                reason: "SIGTERM".into(),
                counts: OutcomeCounts::default(),
                done: false,
            }),
        ));
        assert!(s.all_settled());
        assert_eq!(s.exit_code(), 4);
        assert_eq!(
            s.report(),
            vec![
                (A.to_string(), "blocked"),
                (B.to_string(), Settled::Abandoned.describe())
            ]
        );
        s.observe(&done(B, DoneStatus::Failure));
        assert_eq!(s.exit_code(), 4, "a session_end without done is final");
    }
}
