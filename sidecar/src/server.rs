//! The server: socket, connections, heartbeat and graceful shutdown (the
//! accept loop and its cap are [`crate::listener`]'s).
//!
//! JSON-RPC 2.0 over HTTP/1.1 on a Unix socket: jsonrpsee's tower service
//! served by hyper on each accepted stream (see [`crate::http`]).
//!
//! Connections are capped ([`connection_cap`]): at the cap a new connection
//! that sends a request within [`ADMISSION_WAIT`] is served by closing the
//! longest idle connection; one that sends nothing, or finds every
//! connection busy, is answered at once and closed ([`http::refuse_now`]). So the
//! descriptors in use stay below the soft limit, which is raised to the hard
//! limit at start ([`crate::fds`]). The heartbeat runs on its own thread, so
//! no load on the async thread or the blocking pool can delay it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use forge_protocol::event::Peer;
use forge_protocol::{ErrorCode, ForgeApiServer, RpcError};
use forge_queue::QueueWriter;
use forge_queue::checkpoint::CheckpointSigner;
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::server::{BatchRequestConfig, Server as RpcServer, ServerConfig, stop_channel};
use tokio::net::{UnixListener, UnixStream};

use crate::audit::{AuditHealth, AuditWriter};
use crate::config::Config;
use crate::fds;
use crate::flood::FLUSH_INTERVAL;
use crate::forge::Forge;
use crate::forge_health::ForgeState;
use crate::http::{self, Activity};
use crate::listener::Listener;
use crate::read_guard::ReadGuard;
use crate::rpc::{RpcHandler, StrictParams};
use crate::scope::{Scope, ScopedForge};
use crate::service::Sidecar;
use crate::socket;

/// How long in-flight calls may run after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Most connections served at once (fewer if the descriptor limit is low,
/// see [`connection_cap`]); beyond, the oldest idle connection is closed, or
/// when none is idle the new one gets HTTP 503 with `limit_exceeded`.
/// HTTP/1.1 runs one request at a time per connection, so this also bounds
/// the requests in flight.
pub const MAX_CONNECTIONS: usize = 256;
/// Descriptors kept free of connections: the listener, the queue and its
/// files, the forge connections, the log, the runtime.
pub const RESERVED_FDS: u64 = 64;
/// Connections over the cap that may wait for their request to arrive
/// ([`ADMISSION_WAIT`]); beyond, the one waiting longest is refused (so up
/// to twice this many are open for a moment).
pub const MAX_WAITING: usize = 128;
/// How long a connection over the cap may take to send its request before
/// it is refused. Only one that sends a request makes room for itself by
/// closing the longest idle connection, so a caller that opens connections
/// and sends nothing cannot push out the others.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(250);

/// The connection cap under a soft descriptor limit of `soft`:
/// [`MAX_CONNECTIONS`], or fewer so that connections, those waiting for
/// admission (up to 2 × [`MAX_WAITING`]) and [`RESERVED_FDS`] stay within
/// the limit.
pub fn connection_cap(soft: u64) -> usize {
    let room = soft
        .saturating_sub(RESERVED_FDS + 2 * MAX_WAITING as u64)
        .max(1);
    MAX_CONNECTIONS.min(usize::try_from(room).unwrap_or(usize::MAX))
}
/// Largest response sent, bytes (above the forge response cap).
const MAX_RESPONSE_BYTES: u32 = 32 * 1024 * 1024;

/// A bound, started server: socket listening, session started.
pub struct Server {
    listener: UnixListener,
    socket_path: PathBuf,
    sidecar: Arc<Sidecar>,
    config: Config,
    max_connections: usize,
}

impl Server {
    /// Bind the socket, open the queue and write `session_start`.
    ///
    /// The socket is bound first, so a second sidecar on the same paths is
    /// refused before it touches the queue.
    pub async fn start(config: Config, forge: Arc<dyn Forge>) -> anyhow::Result<Server> {
        Server::start_knowing(config, forge, ForgeState::Unknown).await
    }

    /// [`Server::start`], knowing the forge's state from a probe made just
    /// before (`forge-sidecar serve` probes as `check` does): `/health`
    /// reports it, and an unreachable forge is not asked again at start.
    pub async fn start_knowing(
        config: Config,
        forge: Arc<dyn Forge>,
        known: ForgeState,
    ) -> anyhow::Result<Server> {
        let listener = socket::bind(&config.socket, config.socket_mode)?;
        // The run's state comes from its tally (or, the first time, from
        // every event of the queue); the writer keeps the tally from here.
        let (queue_dir, run) = (config.queue_dir.clone(), config.run_id.clone());
        let opened = tokio::task::spawn_blocking(move || {
            forge_queue::tally::open(&queue_dir, run.as_deref())
        })
        .await?
        .with_context(|| {
            format!(
                "open queue directory {} and the state of the run",
                config.queue_dir.display()
            )
        })?;
        let (queue, earlier) = (opened.writer, opened.earlier);
        match &opened.source {
            forge_queue::tally::Source::Tally { path, read } => tracing::info!(
                tally = %path.display(),
                events_after_tail = read,
                "run state read from the run tally"
            ),
            forge_queue::tally::Source::Scan { events } => tracing::info!(
                events,
                "run state counted from every event of new/ and cur/ (no run tally yet); the run tally is kept from now on"
            ),
        }
        let queue = match &config.signing_key {
            Some(key) => {
                tracing::info!(key = %key.verifier().label(), "signing checkpoints");
                queue.with_checkpoints(CheckpointSigner {
                    key: key.clone(),
                    repository: format!("{}/{}", config.owner, config.repo),
                    issue: config.issue.get(),
                    run: config.run_id.clone(),
                })
            }
            None => queue,
        };
        let scope = Scope {
            owner: config.owner.clone(),
            repo: config.repo.clone(),
            issue: config.issue,
            writable: config.writable(),
            max_body_bytes: config.max_body_bytes,
            max_writes: config.max_writes,
            branch: config.branch.clone(),
            base_branches: config.base_branches.clone(),
            max_prs: config.max_prs,
            text: config.text.clone(),
            description_modes: config.description_modes.clone(),
        };
        let audit = AuditWriter::start(Arc::new(queue)).context("start the audit writer thread")?;
        let sidecar = Arc::new(
            Sidecar::new(
                ScopedForge::new(forge, scope),
                audit,
                config.max_body_bytes,
                config.run_id.clone(),
            )
            .with_read_guard(ReadGuard::new(config.read.clone(), &config.owner)),
        );
        sidecar.continue_run(&earlier);
        if known != ForgeState::Unknown {
            sidecar.forge_health().record(known);
        }
        if earlier.sessions > 0 {
            tracing::info!(
                run = config.run_id.as_deref().unwrap_or("(none)"),
                sessions = earlier.sessions,
                writes = earlier.writes,
                done = earlier.done.as_deref().unwrap_or("no"),
                "continuing the run of earlier sessions in this queue"
            );
        }
        let soft = fds::raise_nofile_limit();
        let max_connections = connection_cap(soft);
        tracing::info!(soft_limit = soft, max_connections, "descriptor limit");
        sidecar
            .start(&config)
            .await
            .context("write session_start to the queue")?;
        // Writes an earlier session left without an op are resolved before
        // any call is served (and before the branch's PRs are looked up, so
        // a PR found here joins the scope as opened by the run).
        if !earlier.pending.is_empty() {
            tracing::info!(
                writes = earlier.pending.len(),
                "resolving the writes an earlier session of the run left without an outcome"
            );
        }
        sidecar
            .resolve_at_start(&earlier.pending)
            .await
            .context("write the resolution of earlier writes to the queue")?;
        sidecar
            .discover_own_prs()
            .await
            .context("write scope_grown to the queue")?;
        Ok(Server {
            listener,
            socket_path: config.socket.clone(),
            sidecar,
            config,
            max_connections,
        })
    }

    /// Serve until `shutdown` resolves (with the reason to record), then stop
    /// accepting, let in-flight calls finish (up to [`SHUTDOWN_GRACE`]),
    /// write `session_end` and remove the socket.
    pub async fn run(self, shutdown: impl Future<Output = String>) -> anyhow::Result<()> {
        let Server {
            listener,
            socket_path,
            sidecar,
            config,
            max_connections,
        } = self;
        let health = Arc::clone(sidecar.audit_health());
        let heartbeat = Heartbeat::start(
            Arc::clone(sidecar.queue()),
            Arc::clone(&health),
            config.heartbeat,
        )
        .context("start the heartbeat thread")?;
        let flusher = tokio::spawn(flush_coalesced(Arc::clone(&sidecar)));
        let (stop_handle, server_handle) = stop_channel();
        let mut methods = RpcHandler::new(Arc::clone(&sidecar)).into_rpc();
        let described = forge_protocol::openrpc::document(env!("CARGO_PKG_VERSION"));
        methods
            .register_method(forge_protocol::openrpc::DISCOVER, move |_, _, _| {
                described.clone()
            })
            .context("register rpc.discover")?;
        let rpc_config = ServerConfig::builder()
            .http_only()
            .max_request_body_size(config.max_request_bytes)
            .max_response_body_size(MAX_RESPONSE_BYTES)
            // StrictParams enforces the batch limit, with our error code and an audit line.
            .set_batch_request_config(BatchRequestConfig::Unlimited)
            .build();
        let strict = Arc::clone(&sidecar);
        let builder = RpcServer::builder()
            .set_config(rpc_config)
            .set_rpc_middleware(
                RpcServiceBuilder::new()
                    .layer_fn(move |s| StrictParams::new(s, Arc::clone(&strict))),
            )
            .to_service_builder()
            .max_connections(max_connections as u32);
        tracing::info!(socket = %socket_path.display(), session = sidecar.session(), "serving");

        let serve = |stream: UnixStream| {
            let peer = peer_of(&stream);
            let activity = Arc::new(Activity::default());
            let rpc = builder.clone().build(methods.clone(), stop_handle.clone());
            let service = http::Connection::new(
                rpc,
                peer,
                Arc::clone(&sidecar),
                config.max_request_bytes,
                Arc::clone(&activity),
            );
            let serving = http::serve(stream, service, stop_handle.clone().shutdown());
            (serving, activity)
        };
        let refuse = |stream: UnixStream| {
            let peer = peer_of(&stream);
            let err = RpcError::new(
                ErrorCode::LimitExceeded,
                format!("the sidecar is busy with its maximum of {max_connections} connections; retry shortly"),
            )
            .with_data(serde_json::json!({ "limit": "max_connections", "max": max_connections, "left": 0 }));
            http::refuse_now(stream, &err);
            let sidecar = Arc::clone(&sidecar);
            tokio::spawn(async move {
                sidecar.refuse("(connection)", err, peer).await;
            });
        };
        // When the audit writer ends, the sidecar keeps answering (`/health`
        // 503 with the reason, every call `audit_unavailable`) for three
        // heartbeat intervals, the host's staleness limit, so its checks
        // see why; then (or at a stop signal) it stops as gracefully as the
        // state allows and exits with an error.
        let watched = Arc::clone(&health);
        let window = 3 * config.heartbeat;
        let stop = async move {
            tokio::pin!(shutdown);
            tokio::select! {
                reason = &mut shutdown => reason,
                ended = watched.wait_ended() => {
                    tracing::error!(
                        reason = %ended,
                        exit_in_secs = window.as_secs(),
                        "the audit writer ended: refusing every call, then exiting with an error"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(window) => {}
                        _ = &mut shutdown => {}
                    }
                    format!("the audit writer ended: {ended}")
                }
            }
        };
        let mut accepting = Listener::new(listener, max_connections, serve, refuse);
        let reason = accepting.run(stop).await;
        let connections = accepting.stop();
        tracing::info!(%reason, in_flight = connections.len(), "stopping");
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        if let Err(e) = std::fs::remove_file(&socket_path) {
            tracing::warn!(cause = %e, socket = %socket_path.display(), "could not remove the socket");
        }
        let _ = server_handle.stop();
        connections.drain(SHUTDOWN_GRACE).await;
        // Calls whose callers hung up run on their own: let them finish too.
        if !sidecar
            .wait_idle(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            tracing::warn!("calls still running after the grace period; abandoning them");
        }
        flusher.abort();
        heartbeat.stop();
        let ended = sidecar
            .end(&reason)
            .await
            .context("write session_end to the queue");
        if let Some(ended) = health.ended() {
            let fatal = format!("the audit writer ended: {ended}");
            anyhow::bail!(
                "{fatal}; no session_end could be written; restart the sidecar once the queue directory is back"
            );
        }
        ended?;
        tracing::info!(session = sidecar.session(), "stopped");
        Ok(())
    }
}

/// The caller's pid/uid/gid from the socket (`SO_PEERCRED`), for the audit.
fn peer_of(stream: &tokio::net::UnixStream) -> Option<Peer> {
    let cred = stream.peer_cred().ok()?;
    Some(Peer {
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

/// Write the calls counted over the audit rate every [`FLUSH_INTERVAL`].
async fn flush_coalesced(sidecar: Arc<Sidecar>) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sidecar.flush_coalesced().await;
    }
}

/// The heartbeat thread: replaces the heartbeat file every interval, on a
/// thread of its own, while the audit writer lives; once it has ended the
/// beat stops, so the host's liveness check sees a sidecar that can audit
/// nothing as dead.
struct Heartbeat {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Heartbeat {
    fn start(
        queue: Arc<QueueWriter>,
        health: Arc<AuditHealth>,
        every: Duration,
    ) -> std::io::Result<Heartbeat> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                loop {
                    let started = Instant::now();
                    if let Some(reason) = health.ended() {
                        tracing::error!(%reason, "heartbeat stopped: the audit writer ended");
                        return;
                    }
                    match queue.heartbeat() {
                        Ok(()) => health.note_write(Ok(())),
                        Err(e) => {
                            tracing::warn!(cause = %e, "heartbeat not written");
                            health.note_write(Err(e.to_string()));
                        }
                    }
                    fds::trim_heap();
                    let wait = every.saturating_sub(started.elapsed());
                    match stopped.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })?;
        Ok(Heartbeat { stop, thread })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_below_the_descriptor_limit() {
        assert_eq!(connection_cap(1 << 20), MAX_CONNECTIONS);
        assert_eq!(connection_cap(1024), MAX_CONNECTIONS);
        let low = 400;
        let cap = connection_cap(low);
        assert!(
            cap as u64 + 2 * MAX_WAITING as u64 + RESERVED_FDS <= low,
            "{cap}"
        );
        assert_eq!(connection_cap(10), 1);
    }
}
