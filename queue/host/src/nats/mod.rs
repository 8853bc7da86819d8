//! Fleet mode: queue directories shipped into a NATS JetStream stream, and
//! the stream consumed, audited and verified like a directory (host side
//! only: the sidecar does not link this crate).
//!
//! - [`ship::Shipper`] publishes what a [`crate::watch::Watcher`] delivers:
//!   each event's exact file bytes, with `Nats-Msg-Id: <session>-<seq>`,
//!   awaiting the server's ack before the watcher acks the file (moves it to
//!   `cur/`); liveness notices too. While the server is unreachable it
//!   retries with backoff and the events wait in `new/`.
//! - [`consume::StreamWatcher`] turns a durable pull consumer's messages
//!   back into [`crate::watch::Delivery`] values, so a host prints and
//!   handles them exactly as it does a directory's.
//! - [`read`] reads messages back for [`crate::audit`] and [`crate::verify`].
//!
//! [`subject`] says how subjects and headers are formed.

pub mod consume;
pub mod read;
pub mod ship;
pub mod subject;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Server URL(s), comma-separated: `nats://host:4222`, `tls://...`.
    pub url: String,
    /// A `.creds` file (JWT and nkey seed).
    pub creds: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for TLS.
    pub tls_ca: Option<PathBuf>,
    /// The client name the server shows.
    pub name: String,
}

/// The stream: its name, subjects and the settings used when creating it.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Stream name (default `FORGE`).
    pub name: String,
    /// Subject prefix (default `forge`); the stream holds `<prefix>.>`.
    pub prefix: String,
    /// Retention when the stream is created.
    pub retention: stream::RetentionPolicy,
    /// Replicas when the stream is created (1 for a single server).
    pub replicas: usize,
    /// JetStream's duplicate window when the stream is created: a message
    /// id seen within it is dropped.
    pub duplicate_window: Duration,
}

impl Default for StreamSpec {
    fn default() -> StreamSpec {
        StreamSpec {
            name: "FORGE".into(),
            prefix: "forge".into(),
            retention: stream::RetentionPolicy::Limits,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl StreamSpec {
    fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            retention: self.retention,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            storage: stream::StorageType::File,
            ..Default::default()
        }
    }
}

/// What went wrong talking to NATS; each message names the server or
/// stream and says what to check.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The options could not be used (unreadable creds file, bad URL, ...).
    #[error("NATS {what}: {source}")]
    Setup {
        /// What was being set up.
        what: String,
        /// The cause.
        #[source]
        source: async_nats::Error,
    },
    /// A JetStream request failed (stream or consumer lookup, creation, fetch).
    #[error("JetStream {what}: {source}")]
    JetStream {
        /// What was asked.
        what: String,
        /// The cause.
        #[source]
        source: async_nats::Error,
    },
    /// A message in the stream is not what a shipper publishes.
    #[error("stream message {seq}: {reason}")]
    BadMessage {
        /// Its stream sequence.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// An event file changed between the watcher reading it and the
    /// shipper reading it again: files in `new/` are written once.
    #[error(
        "{} changed while being shipped: it is not the event the watcher read; \
         find out what writes to the queue, then restart the shipper",
        file.display()
    )]
    Changed {
        /// The file.
        file: PathBuf,
    },
    /// Reading the queue directory failed.
    #[error(transparent)]
    Queue(#[from] forge_queue::QueueError),
}

impl NatsError {
    fn js(what: impl Into<String>) -> impl FnOnce(async_nats::Error) -> NatsError {
        let what = what.into();
        move |source| NatsError::JetStream { what, source }
    }
}

/// The client options for `conn` (reads the credentials file).
async fn connect_options(conn: &Connection) -> Result<async_nats::ConnectOptions, NatsError> {
    let setup = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| NatsError::Setup {
            what,
            source: Box::new(e),
        }
    };
    let mut options = async_nats::ConnectOptions::new().name(&conn.name);
    if let Some(creds) = &conn.creds {
        options = options
            .credentials_file(creds)
            .await
            .map_err(setup(&format!("credentials file {}", creds.display())))?;
    }
    if let Some(ca) = &conn.tls_ca {
        if let Err(e) = std::fs::metadata(ca) {
            return Err(setup(&format!("CA file {}", ca.display()))(e));
        }
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    Ok(options)
}

fn connect_failed(conn: &Connection) -> impl FnOnce(async_nats::ConnectError) -> NatsError + '_ {
    move |e| NatsError::Setup {
        what: format!(
            "connect to {} (is the server running and reachable?)",
            conn.url
        ),
        source: Box::new(e),
    }
}

/// Connect to `conn.url`. The client reconnects on its own, backing off
/// (up to 4 s between attempts) for as long as the process runs; with
/// `retry` the first connection is retried the same way instead of
/// failing.
pub async fn connect(conn: &Connection, retry: bool) -> Result<async_nats::Client, NatsError> {
    let mut options = connect_options(conn)
        .await?
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay);
    if retry {
        options = options.retry_on_initial_connect();
    }
    options
        .connect(conn.url.as_str())
        .await
        .map_err(connect_failed(conn))
}

/// A connection that is never re-established: once lost, the client stays
/// disconnected, so nothing it still held unsent (publishes queued behind
/// one the broken connection swallowed) reaches the server later, behind
/// that one's retry. The shipper opens a new one instead.
pub struct Fenced {
    /// The client, for this one connection.
    pub client: async_nats::Client,
    lost: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
}

impl Fenced {
    /// Connect once (no retry: the caller backs off and calls again).
    pub async fn connect(conn: &Connection) -> Result<Fenced, NatsError> {
        let connected = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (c, l, w) = (connected.clone(), lost.clone(), wake.clone());
        let client = connect_options(conn)
            .await?
            .max_reconnects(None)
            // Once connected, a reconnection attempt waits for ever: this
            // client is done, and its task sleeps until the process ends.
            .reconnect_delay_callback(move |_| {
                if c.load(Ordering::SeqCst) {
                    FENCED
                } else {
                    Duration::ZERO
                }
            })
            .event_callback(move |event| {
                let (l, w) = (l.clone(), w.clone());
                async move {
                    if matches!(event, async_nats::Event::Disconnected) {
                        l.store(true, Ordering::SeqCst);
                        w.notify_one();
                    }
                }
            })
            .connect(conn.url.as_str())
            .await
            .map_err(connect_failed(conn))?;
        connected.store(true, Ordering::SeqCst);
        Ok(Fenced { client, lost, wake })
    }

    /// Whether the connection was lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Returns once the connection is lost.
    pub async fn lost(&self) {
        while !self.is_lost() {
            self.wake.notified().await;
        }
    }
}

/// How long a fenced client waits before reconnecting: longer than any run.
const FENCED: Duration = Duration::from_secs(365 * 24 * 3600);

/// Backoff between reconnection attempts: 50 ms doubling to 4 s.
pub fn reconnect_delay(attempts: usize) -> Duration {
    let exp = attempts.saturating_sub(1).min(7) as u32;
    Duration::from_millis(50 * 2u64.pow(exp)).min(Duration::from_secs(4))
}

/// The stream `spec.name`, created from `spec` if missing (an existing
/// stream keeps its own settings).
pub async fn ensure_stream(
    js: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<jetstream::stream::Stream, NatsError> {
    js.get_or_create_stream(spec.config())
        .await
        .map_err(|e| NatsError::js(format!("get or create stream {}", spec.name))(Box::new(e)))
}

/// The stream `name`, which must exist.
pub async fn get_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<jetstream::stream::Stream, NatsError> {
    find_stream(js, name)
        .await?
        .ok_or_else(|| NatsError::JetStream {
            what: format!("stream {name}"),
            source: "it does not exist: `forge-queue ship` creates it with the first event".into(),
        })
}

/// The stream `name`, or `None` if the server says there is none.
pub async fn find_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<jetstream::stream::Stream>, NatsError> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e)
            if matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(None)
        }
        Err(e) => Err(NatsError::js(format!("stream {name}"))(Box::new(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backs_off_to_four_seconds() {
        assert_eq!(reconnect_delay(0), Duration::from_millis(50));
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(100), Duration::from_secs(4));
    }
}
