//! Reading shipped messages back, for `audit --nats` and `verify --nats`:
//! the messages a filter matches, in stream order, through a short-lived
//! consumer that acks nothing (the stream and durable consumers are not
//! touched).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use futures_util::StreamExt;

use super::ship::NoticeBody;
use super::{Connection, NatsError, subject};
use crate::audit::{self, DirAudit};
use crate::names::EventName;
use crate::note::VerifierKey;
use crate::verify::{self, DirVerification, NamedCheckpoint, NamedEvent, Problem, ProblemKind};

/// How long reading may go without a message before giving up.
const STALL: Duration = Duration::from_secs(30);

/// One message as stored.
#[derive(Debug, Clone)]
pub struct Record {
    /// Stream sequence.
    pub seq: u64,
    /// `Forge-Kind`.
    pub kind: Option<String>,
    /// `Forge-Session`.
    pub session: Option<String>,
    /// `Forge-Seq`.
    pub event_seq: Option<u64>,
    /// The body.
    pub payload: Vec<u8>,
}

impl Record {
    fn is_notice(&self) -> bool {
        matches!(self.kind.as_deref(), Some("stale" | "recovered"))
    }

    fn is_checkpoint(&self) -> bool {
        self.kind.as_deref() == Some("checkpoint")
    }

    /// The event this message claims to be: session and seq from its
    /// headers, else from its body; `None` if neither says.
    fn name(&self) -> Option<EventName> {
        if let (Some(session), Some(seq)) = (&self.session, self.event_seq) {
            return Some(EventName {
                session: session.clone(),
                seq,
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&self.payload).ok()?;
        Some(EventName {
            session: v.get("session")?.as_str()?.to_string(),
            seq: v.get("seq")?.as_u64()?,
        })
    }

    fn label(&self, name: Option<&EventName>) -> String {
        match name {
            Some(n) => format!("#{} {}", self.seq, EventName::format(&n.session, n.seq)),
            None => format!("#{}", self.seq),
        }
    }
}

/// Every message of `stream` matching `filter`, in stream order (those
/// stored when reading starts).
pub fn read(conn: &Connection, stream: &str, filter: &str) -> Result<Vec<Record>, NatsError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NatsError::Setup {
            what: "start the async runtime".into(),
            source: Box::new(e),
        })?;
    rt.block_on(async {
        let client = super::connect(conn, false).await?;
        let js = jetstream::new(client);
        let stream_handle = super::get_stream(&js, stream).await?;
        let mut consumer = stream_handle
            .create_consumer(pull::Config {
                filter_subject: filter.to_string(),
                ack_policy: AckPolicy::None,
                deliver_policy: DeliverPolicy::All,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::js(format!("read stream {stream}"))(Box::new(e)))?;
        let total = consumer
            .info()
            .await
            .map_err(|e| NatsError::js(format!("read stream {stream}"))(Box::new(e)))?
            .num_pending as usize;
        let mut records = Vec::with_capacity(total);
        let mut last_progress = Instant::now();
        while records.len() < total {
            let mut batch = consumer
                .batch()
                .max_messages((total - records.len()).min(1000))
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| NatsError::js(format!("read stream {stream}"))(Box::new(e)))?;
            while let Some(m) = batch.next().await {
                let m = m.map_err(NatsError::js(format!("read stream {stream}")))?;
                records.push(record(&m));
                last_progress = Instant::now();
            }
            if last_progress.elapsed() > STALL {
                return Err(NatsError::JetStream {
                    what: format!("read stream {stream}"),
                    source: format!(
                        "no message for {}s after {} of {total}",
                        STALL.as_secs(),
                        records.len()
                    )
                    .into(),
                });
            }
        }
        let name = consumer.cached_info().name.clone();
        let _ = stream_handle.delete_consumer(&name).await;
        Ok(records)
    })
}

fn record(m: &jetstream::Message) -> Record {
    let header = |name: &str| {
        m.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_string())
    };
    Record {
        seq: m.info().map_or(0, |i| i.stream_sequence),
        kind: header(subject::KIND),
        session: header(subject::SESSION),
        event_seq: header(subject::SEQ).and_then(|s| s.parse().ok()),
        payload: m.payload.to_vec(),
    }
}

/// The events among `records`, and a problem for each message that names
/// no event.
fn events(records: Vec<Record>) -> (Vec<NamedEvent>, Vec<Problem>) {
    let mut events = Vec::new();
    let mut problems = Vec::new();
    for r in records
        .into_iter()
        .filter(|r| !r.is_notice() && !r.is_checkpoint())
    {
        let name = r.name();
        let label = r.label(name.as_ref());
        match name {
            Some(name) => events.push(NamedEvent {
                label,
                name,
                bytes: r.payload,
            }),
            None => problems.push(Problem {
                file: label,
                kind: ProblemKind::NotAnEvent,
            }),
        }
    }
    (events, problems)
}

/// The chain check of the events in `records`, as `verify` gives for a
/// directory; `label` names the stream in the report.
pub fn verify_records(label: &str, records: Vec<Record>) -> DirVerification {
    let (events, problems) = events(records);
    let mut v = verify::verify_events(label, events);
    v.problems.extend(problems);
    v
}

/// [`verify_records`] with the shipped checkpoints checked against `key`
/// (and every session bound to `run`, if given): the verdicts
/// `verify --key` gives for a directory, on the signed tail, a `done`
/// after `session_end` and the run.
pub fn verify_records_signed(
    label: &str,
    records: Vec<Record>,
    key: &VerifierKey,
    run: Option<&str>,
) -> DirVerification {
    let (checkpoints, records): (Vec<Record>, Vec<Record>) =
        records.into_iter().partition(Record::is_checkpoint);
    let checkpoints = checkpoints
        .into_iter()
        .map(|r| NamedCheckpoint {
            label: format!(
                "#{} checkpoint {}",
                r.seq,
                r.session.as_deref().unwrap_or("(no session)")
            ),
            // A checkpoint shipped without a session names none; the
            // note still says whose it is.
            session: r.session,
            note: r.payload,
        })
        .collect();
    let (events, problems) = events(records);
    let mut v = verify::verify_events_signed(label, events, checkpoints, key, run);
    v.problems.extend(problems);
    v
}

/// The audit of the sessions in `records`, as `audit` gives for a
/// directory; a session's last liveness notice stands in for the heartbeat.
pub fn audit_records(label: &str, records: Vec<Record>) -> DirAudit {
    let mut stale: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.is_notice()) {
        let Ok(body) = serde_json::from_slice::<NoticeBody>(&r.payload) else {
            continue;
        };
        let Some(session) = body.session else {
            continue;
        };
        if r.kind.as_deref() == Some("stale") {
            stale.insert(session, body.heartbeat.map(|h| h.ts));
        } else {
            stale.remove(&session);
        }
    }
    let (events, problems) = events(records);
    let mut a = audit::audit_events(label, events, &stale);
    a.problems.extend(problems);
    a
}
