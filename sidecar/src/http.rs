//! One connection's HTTP handling, in front of jsonrpsee.
//!
//! - `GET /health` answers 200 `ok` while serving and the queue takes
//!   events (503 with the reason while it does not), and on a second line
//!   the forge's last known state ([`crate::forge_health`]).
//! - The request body is read here, bounded in size
//!   (`FORGE_MAX_REQUEST_BYTES`: over it, HTTP 413 with `limit_exceeded`,
//!   audited) and in time (a client that trickles its body is cut off).
//! - Every request is tagged with the caller's `SO_PEERCRED` for the audit.
//! - Slow headers are cut off by hyper's header read timeout.
//! - Each connection reports whether it is busy with a request, and since
//!   when it has been idle ([`Activity`]), so the accept loop can close the
//!   oldest idle connection when it is at its cap.
//! - A connection over the cap is answered at once by [`refuse_now`] and
//!   closed, holding no descriptor or task.
//! - An answer is handed to hyper in chunks ([`ANSWER_CHUNK`]) and counted
//!   in the sidecar's [`Budget`] until its caller has taken it, so the bytes
//!   of answers waiting for slow callers hold back new forge calls; a caller that takes longer than
//!   [`ANSWER_WRITE_TIMEOUT`] to read an answer is disconnected.

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use std::time::Instant;

use forge_protocol::event::Peer;
use forge_protocol::{ErrorCode, RpcError};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpResponse};
use tokio::net::UnixStream;
use tower::Service;

use crate::budget::Budget;
use crate::service::Sidecar;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to read an answer.
pub const ANSWER_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Answers are handed to hyper in pieces of this size, so hyper buffers
/// little of an answer its caller is slow to read.
pub const ANSWER_CHUNK: usize = 64 * 1024;
/// Milliseconds since the first call, the clock of [`Activity`].
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Whether a connection is busy with a request, and since when it is idle.
#[derive(Debug)]
pub struct Activity {
    requests: AtomicUsize,
    idle_since_ms: AtomicU64,
    /// Since when an answer is being written (`u64::MAX`: none).
    writing_since_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            requests: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now_ms()),
            writing_since_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl Activity {
    /// How long the answer being written has been waiting for its caller.
    fn writing_for(&self) -> Duration {
        let since = self.writing_since_ms.load(Ordering::SeqCst);
        Duration::from_millis(now_ms().saturating_sub(since))
    }

    /// Since when the connection has been idle (ms on a private clock), or
    /// `None` while it is handling a request.
    pub fn idle_since(&self) -> Option<u64> {
        (self.requests.load(Ordering::SeqCst) == 0)
            .then(|| self.idle_since_ms.load(Ordering::SeqCst))
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }
}

/// A request in progress on a connection (from its headers until its answer
/// is taken); dropping it marks the end.
struct Busy(Arc<Activity>);

/// An answer on its way to its caller: handed to hyper in
/// [`ANSWER_CHUNK`] pieces, counted in the [`Budget`] and keeping the
/// connection busy until it is taken (dropped).
struct Sending {
    inner: HttpBody,
    pending: Bytes,
    counted: usize,
    budget: Arc<Budget>,
    busy: Busy,
}

impl Sending {
    fn wrap(response: HttpResponse, budget: &Arc<Budget>, busy: Busy) -> HttpResponse {
        response.map(|inner| {
            let counted = usize::try_from(inner.size_hint().lower()).unwrap_or(usize::MAX);
            budget.answer_waiting(counted);
            busy.0.writing_since_ms.store(now_ms(), Ordering::SeqCst);
            HttpBody::new(Sending {
                inner,
                pending: Bytes::new(),
                counted,
                budget: Arc::clone(budget),
                busy,
            })
        })
    }
}

impl hyper::body::Body for Sending {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        loop {
            if !self.pending.is_empty() {
                let n = ANSWER_CHUNK.min(self.pending.len());
                let chunk = self.pending.split_to(n);
                return Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))));
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.pending = data,
                    Err(other) => return Poll::Ready(Some(Ok(other))),
                },
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let inner = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        let mut hint = hyper::body::SizeHint::new();
        hint.set_lower(inner.lower() + pending);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + pending);
        }
        hint
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.busy
            .0
            .writing_since_ms
            .store(u64::MAX, Ordering::SeqCst);
        self.budget.answer_taken(self.counted);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(now_ms(), Ordering::SeqCst);
        self.0.requests.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The HTTP service of one connection.
#[derive(Clone)]
pub struct Connection<S> {
    rpc: S,
    peer: Option<Peer>,
    sidecar: Arc<Sidecar>,
    max_request_bytes: usize,
    activity: Arc<Activity>,
}

impl<S> Connection<S> {
    /// Wrap jsonrpsee's service `rpc` for a caller `peer`; requests are
    /// reported to `activity`.
    pub fn new(
        rpc: S,
        peer: Option<Peer>,
        sidecar: Arc<Sidecar>,
        max_request_bytes: u32,
        activity: Arc<Activity>,
    ) -> Self {
        Connection {
            rpc,
            peer,
            sidecar,
            max_request_bytes: max_request_bytes as usize,
            activity,
        }
    }
}

/// Serve HTTP/1.1 on `stream` until the client leaves or `stopped`
/// resolves; then finish the request in flight and close.
pub async fn serve<S>(stream: UnixStream, service: Connection<S>, stopped: impl Future<Output = ()>)
where
    S: Service<hyper::Request<Full<Bytes>>, Response = HttpResponse, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let activity = Arc::clone(&service.activity);
    let conn = http1().serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn, stopped);
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            result = &mut conn => break result,
            () = &mut stopped => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            _ = check.tick() => {
                if activity.writing_for() > ANSWER_WRITE_TIMEOUT {
                    tracing::info!("closing a connection whose caller did not read its answer in time");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(cause = %e, "connection ended with an error");
    }
}

impl<S> Service<hyper::Request<Incoming>> for Connection<S>
where
    S: Service<hyper::Request<Full<Bytes>>, Response = HttpResponse, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.rpc.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<Incoming>) -> Self::Future {
        if req.method() == hyper::Method::GET && req.uri().path() == "/health" {
            let answer = health_answer(
                self.sidecar.audit_health().problem(),
                &self.sidecar.forge_health().line(),
            );
            return Box::pin(async move { Ok(answer) });
        }
        let mut rpc = self.rpc.clone();
        let (peer, sidecar, limit) = (self.peer, Arc::clone(&self.sidecar), self.max_request_bytes);
        let busy = self.activity.busy();
        let budget = Arc::clone(self.sidecar.budget());
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let read =
                tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect()).await;
            let bytes = match read {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(e)) if e.is::<LengthLimitError>() => {
                    let err = RpcError::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "the request is larger than the {limit}-byte limit (FORGE_MAX_REQUEST_BYTES); \
                             send a smaller request (bodies are limited separately by FORGE_MAX_BODY_BYTES)"
                        ),
                    )
                    .with_data(serde_json::json!({ "limit": "max_request_bytes", "max": limit }));
                    let err = sidecar.refuse("(oversized request)", err, peer).await;
                    return Ok(error_response(hyper::StatusCode::PAYLOAD_TOO_LARGE, &err));
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    let err = RpcError::new(
                        ErrorCode::InvalidRequest,
                        format!(
                            "the request body did not arrive within {} s",
                            BODY_READ_TIMEOUT.as_secs()
                        ),
                    );
                    return Ok(error_response(hyper::StatusCode::REQUEST_TIMEOUT, &err));
                }
            };
            if let Some(peer) = peer {
                parts.extensions.insert(peer);
            }
            let response = rpc
                .call(hyper::Request::from_parts(parts, Full::new(bytes)))
                .await?;
            Ok(Sending::wrap(response, &budget, busy))
        })
    }
}

/// Whether the peer has already sent something on `stream` (without
/// consuming it).
pub fn has_sent(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd as _;
    let mut byte = 0u8;
    // SAFETY: recv writes at most 1 byte into `byte`, which outlives the call;
    // the descriptor is owned by `stream`, open for the whole call.
    #[allow(unsafe_code)]
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

/// `GET /health`: 200 `ok` while the queue takes events; 503 with the
/// reason while it does not (every call is then refused with
/// `audit_unavailable`), so a liveness check sees a sidecar that can do
/// nothing.
fn health_answer(problem: Option<String>, forge: &str) -> HttpResponse {
    match problem {
        None => HttpResponse::new(HttpBody::from(format!("ok\n{forge}\n"))),
        Some(reason) => {
            let mut answer = HttpResponse::new(HttpBody::from(format!(
                "unavailable: the audit queue takes no events ({reason}); every call is refused with audit_unavailable\n{forge}\n"
            )));
            *answer.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
            answer
        }
    }
}

/// Answer a connection over the cap at once and close it: `GET /health`
/// (when the request is already readable) gets 200 `ok`, anything else
/// HTTP 503 with `err`. Never waits: nothing is held once this returns.
pub fn refuse_now(stream: UnixStream, err: &RpcError) {
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    // Non-blocking (as tokio left it): read what has already arrived.
    let mut head = [0u8; 64];
    let got = stream.read(&mut head).unwrap_or(0);
    let (status, content_type, body) = if head[..got].starts_with(b"GET /health ") {
        ("200 OK", "text/plain", "ok\n".to_string())
    } else {
        let body =
            serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": err.to_error_object() });
        (
            "503 Service Unavailable",
            "application/json",
            body.to_string(),
        )
    };
    // Drain what else has arrived (bounded): closing a Unix socket with
    // unread data makes the client's read fail instead of seeing the answer.
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A few hundred bytes fit in any socket buffer; a client that is gone
    // gets nothing, which is all it can get.
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// HTTP/1.1 with slow headers cut off, as every connection is served.
fn http1() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
}

/// A JSON-RPC error response (id null) with an HTTP status.
fn error_response(status: hyper::StatusCode, err: &RpcError) -> HttpResponse {
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": null, "error": err.to_error_object() });
    let mut resp = HttpResponse::new(HttpBody::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_is_counted_until_taken_and_handed_over_in_chunks() {
        let budget = Arc::new(Budget::default());
        let activity = Arc::new(Activity::default());
        let answer = HttpResponse::new(HttpBody::from(vec![b'x'; 200_000]));
        let mut body = Sending::wrap(answer, &budget, activity.busy()).into_body();
        assert_eq!(budget.bytes(), 200_000);
        assert_eq!(activity.idle_since(), None, "busy while the answer waits");
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes, vec![65_536, 65_536, 65_536, 3_392]);
        assert_eq!(budget.bytes(), 200_000, "counted until the body is dropped");
        drop(body);
        assert_eq!(budget.bytes(), 0);
        assert!(activity.idle_since().is_some());
        tokio::time::timeout(Duration::from_secs(1), budget.admit())
            .await
            .expect("nothing waits once the answers are taken");
    }
}
