//! A fake Gitea HTTP server for the end-to-end tests.
//!
//! [`FakeGitea`] owns a small Gitea 1.25.4 look-alike on `127.0.0.1` (an
//! ephemeral port) serving one repository, `acme/widgets`, seeded from the
//! table in [`seed`]. It answers the endpoints the sidecar uses with the
//! status codes, null fields and error bodies of the real server
//! (as Gitea 1.25 behaves), records every request, checks every request
//! against the official swagger spec ([`contract`]), and can be told to
//! misbehave ([`Fault`]).
//!
//! It runs on its own thread with its own tokio runtime, so sync and async
//! tests can both use it; dropping the handle stops it.
//!
//! Endpoints (all under `/api/v1`, all needing `Authorization: token <T>`
//! or `Bearer <T>` with [`TOKEN`]):
//!
//! | request | answer |
//! |---|---|
//! | `GET /user` | 200 `User` (`forge-bot`) |
//! | `GET /repos/acme/widgets` | 200 `Repository`; another repo: 404 |
//! | `GET /repos/acme/widgets/issues/{n}` | 200 `Issue` (PR numbers too); 404 |
//! | `PATCH /repos/acme/widgets/issues/{n}` | **201** `Issue`; 404; 412 bad/merged `state` |
//! | `GET /repos/acme/widgets/issues/{n}/comments` | 200 `[Comment]`, all, oldest first, `since`/`before`; missing issue: **500** |
//! | `POST /repos/acme/widgets/issues/{n}/comments` | 201 `Comment`; empty body: 422 `[Body]: Required`; missing issue: **500** |
//! | `GET /repos/acme/widgets/pulls/{n}` | 200 `PullRequest`; a plain issue: 404 |
//! | `PATCH /repos/acme/widgets/pulls/{n}` | **201** `PullRequest`; 404; 412 |
//! | `POST /repos/acme/widgets/pulls` | **201** `PullRequest`, numbered from the issue sequence; missing head/base/title: 422 `[Head]: Required`; a missing branch or a fork head: 404; head = base: 422; an open PR for the same head and base: **409** |
//! | `GET /repos/acme/widgets/pulls/{base}/{head}` | 200 the latest PR from `head` of this repository (never a fork's) into `base`; 404 |
//! | `GET /repos/acme/widgets/pulls/{n}/reviews` | 200 `[PullReview]`, `page`/`limit` (30, at most 50), `X-Total-Count`; 404 |
//! | `GET /repos/acme/widgets/pulls/{n}/reviews/{id}/comments` | 200 `[PullReviewComment]`, all; 404 |
//! | `GET /repos/acme/widgets/pulls/{n}/commits` | 200 `[Commit]`, paginated, `X-Total`, `X-HasMore`, `Link`; 404 |
//! | `GET /repos/acme/widgets/compare/{base}...{head}` | 200 `Compare`; a missing branch: 404 |
//! | `GET /repos/acme/widgets/collaborators/{user}` | **204** no body for a collaborator (alice, bob, forge-bot); 404 another known user; 422 no such user |
//! | anything else in the spec | 404 `{"message":"not found",…}` |
//! | anything not in the spec | 404, and a contract violation |
//!
//! Writes need `Content-Type: application/json` (else 422). Requests that
//! break the spec (see [`FakeGitea::contract_violations`]) get 422.

pub mod contract;
mod render;
mod routes;
pub mod seed;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;

use contract::{Contract, RequestView};
use render::Urls;
use routes::Reply;
pub use seed::{
    AGENT_BRANCH, ASSIGNED_ISSUE, ASSIGNED_PR, BOT_LOGIN, DEFAULT_BRANCH, FakeComment, FakeCommit,
    FakeIssue, FakePull, FakeReview, FakeReviewComment, MERGED_PR, MOVED_OWNER, OUT_OF_SCOPE_ISSUE,
    OWNER, REPO, TOKEN,
};

/// Largest request body the fake reads; a larger one gets 413.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// How long dropping the handle waits for the server thread.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunk size of an [`Fault::Oversized`] body.
const OVERSIZED_CHUNK: usize = 64 * 1024;

/// One request as the fake received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query: `/api/v1/repos/acme/widgets/issues/17`.
    pub path: String,
    /// The raw query string, if any (still percent-encoded).
    pub query: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether this is a write (any method but `GET` and `HEAD`).
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }
}

/// A way for the fake to misbehave. Set with [`FakeGitea::set_fault`] or
/// [`FakeGitea::set_fault_for`]. Unless noted, a faulted request is
/// answered by the fault alone: the store is not touched. Every request is
/// still recorded and contract-checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// This status on every matching request, with a Gitea-style error body
    /// (`{"message":"","url":…}` for 500, the not-found body for 404).
    Status(u16),
    /// This status on the next `n` matching requests; after that the fault
    /// clears itself and requests are served normally (to test retries).
    StatusTimes(u16, u32),
    /// Like [`Fault::Status`], plus a `Retry-After` header with this value
    /// (e.g. `"1"`, or an HTTP date). Combine with
    /// [`FaultFilter::times`] for "429 once, then fine".
    StatusRetryAfter(u16, String),
    /// Serve normally, but wait this long before answering. The request
    /// takes effect first: a write that times out on the client has still
    /// happened, as it may on a real server.
    Delay(Duration),
    /// Read the whole request, then close the connection without answering.
    DropConnection,
    /// Serve the request (a write takes effect), then answer this status
    /// instead of the endpoint's answer, as a proxy or a crashing server
    /// may after the work is done.
    AppliedThenStatus(u16),
    /// Serve the request (a write takes effect), then close the connection
    /// without answering.
    AppliedThenDrop,
    /// The success status (200 for GET, 201 for writes) with a body that is
    /// not valid JSON.
    MalformedJson,
    /// The success status with valid JSON of the wrong shape: `["unexpected"]`
    /// where an object is expected, `{"unexpected":true}` where an array is.
    WrongShape,
    /// The success status with a body of exactly this many bytes (one huge
    /// JSON string), streamed in chunks without a Content-Length.
    Oversized(usize),
    /// This redirect status (301, 302, 307, 308) with `Location` pointing
    /// to the same path and query under [`MOVED_OWNER`], as after a rename.
    /// Applies only to paths under `/api/v1/repos/acme/`; the fake does not
    /// serve the new owner, so following the redirect ends in 404.
    Redirect(u16),
    /// This status with no body and no Content-Type (as some Gitea 403s).
    EmptyErrorBody(u16),
}

impl Fault {
    /// This status on the next matching request only.
    pub fn status_once(status: u16) -> Fault {
        Fault::StatusTimes(status, 1)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
enum MethodFilter {
    #[default]
    Any,
    Reads,
    Writes,
    Exactly(String),
}

/// Which requests a fault applies to. Start from [`FaultFilter::all`],
/// [`FaultFilter::reads`], [`FaultFilter::writes`] or
/// [`FaultFilter::method`], then narrow it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultFilter {
    method: MethodFilter,
    path_contains: Option<String>,
    times: Option<u32>,
}

impl FaultFilter {
    /// Every request.
    pub fn all() -> FaultFilter {
        FaultFilter::default()
    }

    /// `GET` and `HEAD` requests.
    pub fn reads() -> FaultFilter {
        FaultFilter {
            method: MethodFilter::Reads,
            ..FaultFilter::default()
        }
    }

    /// Every method but `GET` and `HEAD`.
    pub fn writes() -> FaultFilter {
        FaultFilter {
            method: MethodFilter::Writes,
            ..FaultFilter::default()
        }
    }

    /// Requests with this method (case-insensitive), e.g. `"POST"`.
    pub fn method(method: &str) -> FaultFilter {
        FaultFilter {
            method: MethodFilter::Exactly(method.to_ascii_uppercase()),
            ..FaultFilter::default()
        }
    }

    /// Only requests whose path (without query) contains `fragment`.
    pub fn path_contains(mut self, fragment: &str) -> FaultFilter {
        self.path_contains = Some(fragment.to_owned());
        self
    }

    /// Only the next `n` matching requests; then the fault clears itself.
    pub fn times(mut self, n: u32) -> FaultFilter {
        self.times = Some(n);
        self
    }

    fn matches(&self, rec: &Recorded) -> bool {
        let method_ok = match &self.method {
            MethodFilter::Any => true,
            MethodFilter::Reads => !rec.is_write(),
            MethodFilter::Writes => rec.is_write(),
            MethodFilter::Exactly(m) => rec.method == *m,
        };
        method_ok
            && self
                .path_contains
                .as_ref()
                .is_none_or(|fragment| rec.path.contains(fragment.as_str()))
    }
}

/// The fault in force, with how many more requests it may hit.
#[derive(Debug)]
struct ActiveFault {
    filter: FaultFilter,
    fault: Fault,
    remaining: Option<u32>,
}

/// A running fake Gitea. Dropping it stops the server.
pub struct FakeGitea {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    stopped: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

/// What the handle and the server thread share.
struct Shared {
    contract: Arc<Contract>,
    urls: Urls,
    inner: Mutex<Inner>,
}

struct Inner {
    store: seed::Store,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    fault: Option<ActiveFault>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not take the server down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeGitea {
    /// Starts a seeded fake on `127.0.0.1:0`.
    ///
    /// # Panics
    /// If the swagger spec cannot be found or parsed (see
    /// [`contract::SWAGGER_ENV`]) or the server cannot start.
    pub fn start() -> FakeGitea {
        FakeGitea::try_start().unwrap_or_else(|e| panic!("fake Gitea: {e}"))
    }

    /// Starts a seeded fake, or says why it cannot.
    pub fn try_start() -> Result<FakeGitea, String> {
        let contract = Contract::shared()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("binding 127.0.0.1:0: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("setting the listener non-blocking: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("reading the listener's address: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("building a tokio runtime: {e}"))?;
        let shared = Arc::new(Shared {
            contract,
            urls: Urls {
                web: format!("http://{addr}"),
            },
            inner: Mutex::new(Inner {
                store: seed::Store::seeded(),
                requests: Vec::new(),
                violations: Vec::new(),
                fault: None,
            }),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped_rx) = mpsc::channel();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-gitea-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, server_shared, stop_rx));
                // Drops the connection tasks still running (e.g. a Delay).
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = stopped_tx.send(());
            })
            .map_err(|e| format!("spawning the server thread: {e}"))?;
        Ok(FakeGitea {
            addr,
            shared,
            stop: Some(stop_tx),
            stopped: stopped_rx,
            thread: Some(thread),
        })
    }

    /// The API base the client is configured with: `http://127.0.0.1:PORT/api/v1`.
    pub fn api_base(&self) -> String {
        self.shared.urls.api()
    }

    /// The web root (Gitea's ROOT_URL): `http://127.0.0.1:PORT`.
    pub fn web_base(&self) -> String {
        self.shared.urls.web.clone()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The one token the fake accepts ([`TOKEN`]).
    pub fn token(&self) -> &'static str {
        TOKEN
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The requests received so far that are writes (not `GET`/`HEAD`).
    pub fn writes(&self) -> Vec<Recorded> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.is_write())
            .cloned()
            .collect()
    }

    /// Forgets the requests recorded so far (not the contract violations).
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Applies `fault` to every request from now on, replacing any other.
    pub fn set_fault(&self, fault: Fault) {
        self.set_fault_for(FaultFilter::all(), fault);
    }

    /// Applies `fault` to the requests `filter` selects, replacing any other.
    pub fn set_fault_for(&self, filter: FaultFilter, fault: Fault) {
        let (fault, remaining) = match fault {
            Fault::StatusTimes(status, n) => (
                Fault::Status(status),
                Some(filter.times.map_or(n, |t| t.min(n))),
            ),
            other => (other, filter.times),
        };
        self.shared.lock().fault = Some(ActiveFault {
            filter,
            fault,
            remaining,
        });
    }

    /// Back to normal service.
    pub fn clear_fault(&self) {
        self.shared.lock().fault = None;
    }

    /// Issue or pull request `number` as the fake holds it now.
    pub fn issue(&self, number: u64) -> Option<FakeIssue> {
        self.shared.lock().store.issues.get(&number).cloned()
    }

    /// The pull requests from `head` of this repository, any base or state,
    /// by number.
    pub fn pulls_from(&self, head: &str) -> Vec<FakeIssue> {
        self.shared
            .lock()
            .store
            .issues
            .values()
            .filter(|i| {
                i.pull
                    .as_ref()
                    .is_some_and(|p| p.head == head && p.head_repo == format!("{OWNER}/{REPO}"))
            })
            .cloned()
            .collect()
    }

    /// The comments on issue or PR `number`, oldest first.
    pub fn comments(&self, number: u64) -> Vec<FakeComment> {
        self.shared
            .lock()
            .store
            .comments_of(number)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Pushes `branch` with these commit messages (oldest first), replacing
    /// it if it exists.
    pub fn push_branch(&self, branch: &str, messages: &[&str]) {
        let at = seed::now();
        let commits = messages
            .iter()
            .zip(0..)
            .map(|(m, k)| seed::commit(branch, k, m, at))
            .collect();
        self.shared
            .lock()
            .store
            .branches
            .insert(branch.to_owned(), commits);
    }

    /// Opens a pull request outside the sidecar, from `head` of `head_repo`
    /// (`acme/widgets`, or a fork such as `mallory/widgets`) into `base`;
    /// returns its number.
    pub fn add_pull(&self, head: &str, head_repo: &str, base: &str, author: &str) -> u64 {
        self.shared.lock().store.add_pull(
            head,
            head_repo,
            base,
            author,
            &format!("Changes from {head_repo}:{head}"),
            "",
        )
    }

    /// Adds a review to pull request `pull` with inline comments `(path,
    /// line, body)` (a negative line is on the old side); returns its id.
    pub fn add_review(
        &self,
        pull: u64,
        author: &str,
        state: &str,
        body: &str,
        inline: &[(&str, i64, &str)],
    ) -> u64 {
        self.shared
            .lock()
            .store
            .add_review(pull, author, state, body, inline)
    }

    /// Adds a comment by `author` to issue or PR `number` (as if posted
    /// outside the sidecar); returns its id.
    pub fn add_comment(&self, number: u64, author: &str, body: &str) -> u64 {
        self.shared
            .lock()
            .store
            .add_comment(number, author, body)
            .id
    }

    /// Sets the author, title and body of issue or PR `number` (as if it
    /// had been filed so).
    pub fn set_issue_text(&self, number: u64, author: &str, title: &str, body: &str) {
        if let Some(issue) = self.shared.lock().store.issues.get_mut(&number) {
            issue.author = author.to_owned();
            issue.title = title.to_owned();
            issue.body = body.to_owned();
        }
    }

    /// Makes `login` a collaborator of the repository, or no longer one.
    pub fn set_collaborator(&self, login: &str, collaborator: bool) {
        let collaborators = &mut self.shared.lock().store.collaborators;
        if collaborator {
            collaborators.insert(login.to_ascii_lowercase());
        } else {
            collaborators.retain(|c| !c.eq_ignore_ascii_case(login));
        }
    }

    /// Every way a request so far broke the swagger spec: one line each,
    /// naming the method, the path and what was wrong.
    pub fn contract_violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Panics, listing them, if any request broke the swagger spec.
    pub fn assert_contract_clean(&self) {
        let violations = self.contract_violations();
        assert!(
            violations.is_empty(),
            "requests broke the Gitea API contract:\n  {}",
            violations.join("\n  ")
        );
    }
}

impl Drop for FakeGitea {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Bounded: if the thread does not finish in time it is left behind.
        if self.stopped.recv_timeout(STOP_TIMEOUT).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FakeGitea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGitea")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

type ResponseBody = BoxBody<Bytes, Infallible>;

/// The error a handler returns to make hyper close the connection without
/// answering ([`Fault::DropConnection`]).
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault: connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

/// The accept loop; returns when `stop` fires or its sender is dropped.
async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fake Gitea: cannot use the listener: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        // E.g. out of file descriptors: do not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    // Errors here are dropped connections: nothing to report.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// One request: record it, check it, then answer it or apply the fault.
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            let reply = Reply::error(&shared.urls, 413, "request body too large");
            return Ok(into_response(reply));
        }
    };
    let header = |name: hyper::header::HeaderName| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let rec = Recorded {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        authorization: header(hyper::header::AUTHORIZATION),
        user_agent: header(hyper::header::USER_AGENT),
        content_type: header(hyper::header::CONTENT_TYPE),
        body,
    };
    let checked = shared.contract.check(&RequestView {
        method: &rec.method,
        path: &rec.path,
        query: rec.query.as_deref(),
        content_type: rec.content_type.as_deref(),
        body: &rec.body,
    });

    let outcome = {
        let mut inner = shared.lock();
        let inner = &mut *inner;
        inner.requests.push(rec.clone());
        inner.violations.extend(checked.violations.iter().cloned());
        match take_fault(&mut inner.fault, &rec) {
            None => Outcome::Answer(
                routes::respond(&mut inner.store, &shared.urls, &rec, &checked),
                None,
            ),
            // The request takes effect now; only the answer waits.
            Some(Fault::Delay(delay)) => Outcome::Answer(
                routes::respond(&mut inner.store, &shared.urls, &rec, &checked),
                Some(delay),
            ),
            // The request takes effect; its answer is replaced.
            Some(Fault::AppliedThenStatus(status)) => {
                routes::respond(&mut inner.store, &shared.urls, &rec, &checked);
                Outcome::Fault(Fault::Status(status))
            }
            Some(Fault::AppliedThenDrop) => {
                routes::respond(&mut inner.store, &shared.urls, &rec, &checked);
                Outcome::Fault(Fault::DropConnection)
            }
            Some(fault) => Outcome::Fault(fault),
        }
    };
    match outcome {
        Outcome::Answer(reply, delay) => {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            Ok(into_response(reply))
        }
        Outcome::Fault(fault) => fault_response(&shared.urls, &rec, fault),
    }
}

/// What [`handle`] does with a request once it is recorded.
enum Outcome {
    /// The endpoint's answer, sent after the optional delay.
    Answer(Reply, Option<Duration>),
    /// A fault answers instead; the store is untouched.
    Fault(Fault),
}

/// The answer a fault gives instead of the endpoint's.
fn fault_response(
    urls: &Urls,
    rec: &Recorded,
    fault: Fault,
) -> Result<Response<ResponseBody>, DropConnection> {
    let success = if rec.is_write() { 201 } else { 200 };
    Ok(match fault {
        Fault::Status(status)
        | Fault::StatusTimes(status, _)
        | Fault::AppliedThenStatus(status) => into_response(status_reply(urls, status)),
        Fault::StatusRetryAfter(status, retry_after) => {
            let mut reply = status_reply(urls, status);
            reply.headers.push(("Retry-After", retry_after));
            into_response(reply)
        }
        Fault::DropConnection | Fault::AppliedThenDrop => return Err(DropConnection),
        Fault::MalformedJson => {
            raw_response(success, Some(br#"{"id": 17, "title": "trunc"#.into()))
        }
        Fault::WrongShape => {
            let array_expected = rec.method == "GET" && rec.path.ends_with("/comments");
            let body = if array_expected {
                r#"{"unexpected":true}"#
            } else {
                r#"["unexpected"]"#
            };
            raw_response(success, Some(body.into()))
        }
        Fault::Oversized(size) => json_response(success)
            .body(OversizedBody::new(size).boxed())
            .expect("a valid response"),
        Fault::Redirect(status) => {
            let moved = rec.path.replacen(
                &format!("/repos/{OWNER}/"),
                &format!("/repos/{MOVED_OWNER}/"),
                1,
            );
            let location = match &rec.query {
                Some(q) => format!("{moved}?{q}"),
                None => moved,
            };
            Response::builder()
                .status(status)
                .header(hyper::header::LOCATION, location)
                .body(Empty::new().boxed())
                .expect("a valid response")
        }
        Fault::EmptyErrorBody(status) => raw_response(status, None),
        // Answered by the endpoint, late: see `handle`.
        Fault::Delay(_) => into_response(Reply::internal(urls)),
    })
}

/// The fault that applies to `rec`, if any, counting it against its limit.
fn take_fault(slot: &mut Option<ActiveFault>, rec: &Recorded) -> Option<Fault> {
    let active = slot.as_mut()?;
    if active.remaining == Some(0) {
        *slot = None;
        return None;
    }
    if !active.filter.matches(rec) {
        return None;
    }
    if let Fault::Redirect(_) = active.fault {
        let prefix = format!("/api/v1/repos/{OWNER}/");
        if !rec.path.starts_with(&prefix) {
            return None;
        }
    }
    let fault = active.fault.clone();
    if let Some(remaining) = active.remaining.as_mut() {
        *remaining = remaining.saturating_sub(1);
        if *remaining == 0 {
            *slot = None;
        }
    }
    Some(fault)
}

/// The Gitea-style answer for an injected error status.
fn status_reply(urls: &Urls, status: u16) -> Reply {
    match status {
        404 => Reply::not_found(urls),
        500 => Reply::internal(urls),
        _ => {
            let reason = hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error");
            Reply::error(urls, status, reason)
        }
    }
}

fn json_response(status: u16) -> hyper::http::response::Builder {
    Response::builder().status(status).header(
        hyper::header::CONTENT_TYPE,
        "application/json;charset=utf-8",
    )
}

/// A response with these exact body bytes (`None`: no body, no Content-Type).
fn raw_response(status: u16, body: Option<Vec<u8>>) -> Response<ResponseBody> {
    match body {
        Some(bytes) => json_response(status).body(Full::new(Bytes::from(bytes)).boxed()),
        None => Response::builder()
            .status(status)
            .body(Empty::new().boxed()),
    }
    .expect("a valid response")
}

fn into_response(reply: Reply) -> Response<ResponseBody> {
    let body = reply.body.map(|v| v.to_string().into_bytes());
    let mut response = raw_response(reply.status, body);
    for (name, value) in reply.headers {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// `"xxxx…x"`: a JSON string of exactly `total` bytes, made on the fly.
struct OversizedBody {
    total: usize,
    sent: usize,
}

impl OversizedBody {
    fn new(total: usize) -> OversizedBody {
        OversizedBody { total, sent: 0 }
    }
}

impl Body for OversizedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.sent >= this.total {
            return Poll::Ready(None);
        }
        let len = OVERSIZED_CHUNK.min(this.total - this.sent);
        let mut chunk = vec![b'x'; len];
        if this.sent == 0 {
            chunk[0] = b'"';
        }
        if this.sent + len == this.total {
            chunk[len - 1] = b'"';
        }
        this.sent += len;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

#[cfg(test)]
mod tests;
