//! [`SocketClient`]: a small JSON-RPC client over the sidecar's Unix socket,
//! for `forge-sidecar call`, the tests and other tools.
//!
//! One client pools keep-alive connections (hyper-util over hyperlocal).

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde_json::{Value, json};

/// Why a call produced no JSON-RPC response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect or the connection failed.
    #[error("the forge sidecar is unreachable at {path}: {cause}")]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        cause: String,
    },
    /// No answer within the timeout.
    #[error("the forge sidecar at {0} did not answer within the timeout")]
    Timeout(PathBuf),
    /// An HTTP error status with its body.
    #[error("the forge sidecar answered HTTP {status}: {body}")]
    Http {
        /// Status code.
        status: u16,
        /// Response body, as text.
        body: String,
    },
    /// The answer is not JSON-RPC.
    #[error("the forge sidecar sent an invalid response: {0}")]
    Invalid(String),
}

/// A JSON-RPC client for one socket path.
#[derive(Clone)]
pub struct SocketClient {
    path: PathBuf,
    http: Client<UnixConnector, Full<Bytes>>,
    timeout: Duration,
}

impl SocketClient {
    /// A client for the socket at `path`, with a per-request `timeout`.
    pub fn new(path: impl AsRef<Path>, timeout: Duration) -> Self {
        let http = Client::builder(TokioExecutor::new()).build(UnixConnector);
        SocketClient {
            path: path.as_ref().to_path_buf(),
            http,
            timeout,
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Send raw bytes as a `POST /` JSON body; the HTTP status and body.
    pub async fn post_raw(&self, body: impl Into<Bytes>) -> Result<(u16, Bytes), ClientError> {
        let req = hyper::Request::post(hyperlocal::Uri::new(&self.path, "/"))
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.send(req).await
    }

    /// `GET path` (e.g. `/health`); the HTTP status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, Bytes), ClientError> {
        let req = hyper::Request::get(hyperlocal::Uri::new(&self.path, path))
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.send(req).await
    }

    async fn send(&self, req: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), ClientError> {
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| ClientError::Unreachable {
                    path: self.path.clone(),
                    cause: root_cause(&e),
                })?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Unreachable {
                    path: self.path.clone(),
                    cause: e.to_string(),
                })?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.path.clone()))?
    }

    /// Call `method` with `params`; `Ok(Ok(result))` or `Ok(Err(error object))`.
    pub async fn call(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<Result<Value, Value>, ClientError> {
        let mut req = json!({ "jsonrpc": "2.0", "id": 1, "method": method });
        if let Some(p) = params {
            req["params"] = p;
        }
        let (status, body) = self
            .post_raw(serde_json::to_vec(&req).expect("a Value serializes"))
            .await?;
        let resp: Value = serde_json::from_slice(&body).map_err(|_| ClientError::Http {
            status,
            body: String::from_utf8_lossy(&body).chars().take(500).collect(),
        })?;
        if let Some(result) = resp.get("result") {
            return Ok(Ok(result.clone()));
        }
        match resp.get("error") {
            Some(err) => Ok(Err(err.clone())),
            None => Err(ClientError::Invalid(format!(
                "no result or error in {resp}"
            ))),
        }
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
