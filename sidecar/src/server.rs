//! The server: socket, connections, heartbeat and graceful shutdown.
//!
//! JSON-RPC 2.0 over HTTP/1.1 on a Unix socket: jsonrpsee's tower service
//! served by hyper on each accepted stream (see [`crate::http`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use forge_protocol::event::Peer;
use forge_protocol::{ErrorCode, ForgeApiServer, RpcError};
use forge_queue::QueueWriter;
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::server::{BatchRequestConfig, Server as RpcServer, ServerConfig, stop_channel};
use tokio::net::UnixListener;
use tokio::task::JoinSet;

use crate::audit::AuditWriter;
use crate::config::Config;
use crate::forge::Forge;
use crate::http;
use crate::rpc::{RpcHandler, StrictParams};
use crate::scope::{Scope, ScopedForge};
use crate::service::Sidecar;
use crate::socket;

/// How long in-flight calls may run after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Most connections served at once; beyond, a connection gets HTTP 503
/// with `limit_exceeded`. HTTP/1.1 runs one request at a time per
/// connection, so this also bounds the requests in flight.
pub const MAX_CONNECTIONS: usize = 256;
/// Largest response sent, bytes (above the forge response cap).
const MAX_RESPONSE_BYTES: u32 = 32 * 1024 * 1024;

/// A bound, started server: socket listening, session started.
pub struct Server {
    listener: UnixListener,
    socket_path: PathBuf,
    sidecar: Arc<Sidecar>,
    config: Config,
}

impl Server {
    /// Bind the socket, open the queue and write `session_start`.
    ///
    /// The socket is bound first, so a second sidecar on the same paths is
    /// refused before it touches the queue.
    pub async fn start(config: Config, forge: Arc<dyn Forge>) -> anyhow::Result<Server> {
        let listener = socket::bind(&config.socket, config.socket_mode)?;
        let queue_dir = config.queue_dir.clone();
        let queue = tokio::task::spawn_blocking(move || QueueWriter::open(&queue_dir))
            .await?
            .with_context(|| format!("open queue directory {}", config.queue_dir.display()))?;
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
        };
        let audit = AuditWriter::start(Arc::new(queue)).context("start the audit writer thread")?;
        let sidecar = Arc::new(Sidecar::new(
            ScopedForge::new(forge, scope),
            audit,
            config.max_body_bytes,
        ));
        sidecar
            .start(&config)
            .await
            .context("write session_start to the queue")?;
        sidecar
            .discover_own_prs()
            .await
            .context("write scope_grown to the queue")?;
        Ok(Server {
            listener,
            socket_path: config.socket.clone(),
            sidecar,
            config,
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
        } = self;
        let heartbeat = tokio::spawn(heartbeat(Arc::clone(sidecar.queue()), config.heartbeat));
        let (stop_handle, server_handle) = stop_channel();
        let methods = RpcHandler::new(Arc::clone(&sidecar)).into_rpc();
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
            .max_connections(MAX_CONNECTIONS as u32);
        tracing::info!(socket = %socket_path.display(), session = sidecar.session(), "serving");

        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        let reason = loop {
            tokio::select! {
                reason = &mut shutdown => break reason,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) if connections.len() >= MAX_CONNECTIONS => {
                        let peer = peer_of(&stream);
                        let err = RpcError::new(
                            ErrorCode::LimitExceeded,
                            format!("the sidecar is serving its maximum of {MAX_CONNECTIONS} connections; retry shortly"),
                        )
                        .with_data(serde_json::json!({ "limit": "max_connections", "max": MAX_CONNECTIONS, "left": 0 }));
                        let sidecar = Arc::clone(&sidecar);
                        tokio::spawn(async move {
                            let err = sidecar.refuse("(connection)", err, peer).await;
                            http::refuse(stream, err).await;
                        });
                    }
                    Ok((stream, _)) => {
                        let peer = peer_of(&stream);
                        let rpc = builder.clone().build(methods.clone(), stop_handle.clone());
                        let service = http::Connection::new(rpc, peer, Arc::clone(&sidecar), config.max_request_bytes);
                        connections.spawn(http::serve(stream, service, stop_handle.clone().shutdown()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(cause = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        };
        tracing::info!(%reason, in_flight = connections.len(), "stopping");
        drop(listener);
        if let Err(e) = std::fs::remove_file(&socket_path) {
            tracing::warn!(cause = %e, socket = %socket_path.display(), "could not remove the socket");
        }
        let _ = server_handle.stop();
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "calls still running after the grace period; abandoning them"
            );
            connections.abort_all();
        }
        heartbeat.abort();
        sidecar
            .end(&reason)
            .await
            .context("write session_end to the queue")?;
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

/// Replace the heartbeat file every `every` until aborted.
async fn heartbeat(queue: Arc<QueueWriter>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let queue = Arc::clone(&queue);
        match tokio::task::spawn_blocking(move || queue.heartbeat()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(cause = %e, "heartbeat not written"),
            Err(e) => tracing::warn!(cause = %e, "heartbeat task failed"),
        }
    }
}
