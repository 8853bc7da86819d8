//! The JSON-RPC surface: [`RpcHandler`] implements the protocol's
//! [`ForgeApiServer`] on top of [`Sidecar`], and [`StrictParams`] is the RPC
//! middleware that refuses unknown methods and bad params (naming the field)
//! for single calls and for every batch entry, auditing each refusal.

use std::sync::Arc;

use forge_protocol::event::Peer;
use forge_protocol::openrpc;
use forge_protocol::{
    BranchName, Comment, CommentPage, Cursor, DescriptionMode, DoneReceipt, DoneStatus, ErrorCode,
    ForgeApiServer, Issue, IssueNumber, Method, Order, PageLimit, PageParams, PullRequest,
    ReviewPage, RpcError, ScopeInfo, Text, Updated,
};
use jsonrpsee::core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT};
use jsonrpsee::core::{RpcResult, async_trait};
use jsonrpsee::types::{Id, Request};
use jsonrpsee::{Extensions, MethodResponse};

use crate::service::Sidecar;

/// Serves the API methods by delegating to the [`Sidecar`].
pub struct RpcHandler {
    sidecar: Arc<Sidecar>,
}

impl RpcHandler {
    /// A handler for `sidecar`.
    pub fn new(sidecar: Arc<Sidecar>) -> Self {
        RpcHandler { sidecar }
    }
}

fn peer(ext: &Extensions) -> Option<Peer> {
    ext.get::<Peer>().copied()
}

impl RpcHandler {
    /// Run one method on its own task ([`Sidecar::detached`]): a caller that
    /// hangs up cannot cancel it half-way and lose its audit.
    async fn call<T, F, Fut>(&self, ext: &Extensions, method: F) -> RpcResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Sidecar>, Option<Peer>) -> Fut,
        Fut: Future<Output = Result<T, RpcError>> + Send + 'static,
    {
        let call = method(Arc::clone(&self.sidecar), peer(ext));
        Ok(self.sidecar.detached(call).await?)
    }
}

#[async_trait]
impl ForgeApiServer for RpcHandler {
    async fn read_issue(&self, ext: &Extensions, number: IssueNumber) -> RpcResult<Issue> {
        self.call(
            ext,
            move |s, p| async move { s.read_issue(number, p).await },
        )
        .await
    }

    async fn read_pr(&self, ext: &Extensions, number: IssueNumber) -> RpcResult<PullRequest> {
        self.call(ext, move |s, p| async move { s.read_pr(number, p).await })
            .await
    }

    async fn read_comments(
        &self,
        ext: &Extensions,
        number: IssueNumber,
        limit: Option<PageLimit>,
        cursor: Option<Cursor>,
        order: Option<Order>,
    ) -> RpcResult<CommentPage> {
        let params = PageParams {
            number,
            limit,
            cursor,
            order,
        };
        self.call(
            ext,
            move |s, p| async move { s.read_comments(params, p).await },
        )
        .await
    }

    async fn read_reviews(
        &self,
        ext: &Extensions,
        number: IssueNumber,
        limit: Option<PageLimit>,
        cursor: Option<Cursor>,
        order: Option<Order>,
    ) -> RpcResult<ReviewPage> {
        let params = PageParams {
            number,
            limit,
            cursor,
            order,
        };
        self.call(
            ext,
            move |s, p| async move { s.read_reviews(params, p).await },
        )
        .await
    }

    async fn open_pr(
        &self,
        ext: &Extensions,
        title: Text,
        body: Text,
        base: Option<BranchName>,
    ) -> RpcResult<PullRequest> {
        self.call(ext, move |s, p| async move {
            s.open_pr(title, body, base, p).await
        })
        .await
    }

    async fn post_comment(
        &self,
        ext: &Extensions,
        number: IssueNumber,
        body: Text,
    ) -> RpcResult<Comment> {
        self.call(ext, move |s, p| async move {
            s.post_comment(number, body, p).await
        })
        .await
    }

    async fn update_description(
        &self,
        ext: &Extensions,
        number: IssueNumber,
        body: Text,
        mode: Option<DescriptionMode>,
    ) -> RpcResult<Updated> {
        self.call(ext, move |s, p| async move {
            s.update_description(number, body, mode, p).await
        })
        .await
    }

    async fn signal_done(
        &self,
        ext: &Extensions,
        status: DoneStatus,
        summary: Text,
    ) -> RpcResult<DoneReceipt> {
        self.call(ext, move |s, p| async move {
            s.signal_done(status, summary, p).await
        })
        .await
    }

    async fn scope(&self, ext: &Extensions) -> RpcResult<ScopeInfo> {
        self.call(ext, move |s, p| async move { s.scope(p).await })
            .await
    }
}

/// Most entries accepted in one batch request.
pub const MAX_BATCH_LEN: usize = 64;

/// RPC middleware: strict method and params checking before dispatch.
#[derive(Clone)]
pub struct StrictParams<S> {
    inner: S,
    sidecar: Arc<Sidecar>,
}

impl<S> StrictParams<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, sidecar: Arc<Sidecar>) -> Self {
        StrictParams { inner, sidecar }
    }
}

/// Check a call's method and params; the error to send if they are wrong.
fn check(req: &Request<'_>) -> Result<(), RpcError> {
    let name = req.method_name();
    if name == openrpc::DISCOVER {
        return match req.params.as_deref().map(|p| p.get().trim()) {
            None | Some("[]" | "{}" | "null") => Ok(()),
            Some(_) => Err(RpcError::invalid_params(format!(
                "{} takes no params",
                openrpc::DISCOVER
            ))),
        };
    }
    let Some(method) = Method::from_name(name) else {
        let known: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        return Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!(
                "unknown method '{}'; the methods are: {} (and {} describes them)",
                forge_protocol::echo::quote(name),
                known.join(", "),
                openrpc::DISCOVER
            ),
        ));
    };
    method
        .check_params(req.params.as_deref())
        .map_err(RpcError::invalid_params)
}

impl<S> RpcServiceT for StrictParams<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    type MethodResponse = MethodResponse;
    type BatchResponse = MethodResponse;
    type NotificationResponse = MethodResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let inner = self.inner.clone();
        let sidecar = Arc::clone(&self.sidecar);
        async move {
            match check(&req) {
                Ok(()) => inner.call(req).await,
                Err(err) => {
                    let err = sidecar
                        .refuse(req.method_name(), err, peer(&req.extensions))
                        .await;
                    MethodResponse::error(req.id, err.to_error_object())
                }
            }
        }
    }

    fn batch<'a>(&self, mut batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
        let inner = self.inner.clone();
        let sidecar = Arc::clone(&self.sidecar);
        async move {
            if batch.len() > MAX_BATCH_LEN {
                let err = RpcError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "a batch of {} entries is over the limit of {MAX_BATCH_LEN}; split it into smaller batches",
                        batch.len()
                    ),
                )
                .with_data(serde_json::json!({ "limit": "max_batch_len", "max": MAX_BATCH_LEN }));
                let peer = batch.extensions().get::<Peer>().copied();
                let err = sidecar.refuse("(batch)", err, peer).await;
                return MethodResponse::error(Id::Null, err.to_error_object());
            }
            for entry in batch.iter_mut() {
                let Ok(BatchEntry::Call(req)) = entry else {
                    continue;
                };
                if let Err(err) = check(req) {
                    let err = sidecar
                        .refuse(req.method_name(), err, peer(&req.extensions))
                        .await;
                    *entry = Err(BatchEntryErr::new(req.id.clone(), err.to_error_object()));
                }
            }
            inner.batch(batch).await
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = MethodResponse> + Send + 'a {
        // Notifications are never dispatched to a method: there is no one to
        // tell the outcome to, so nothing runs (and nothing reaches the forge).
        self.inner.notification(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn trait_methods_are_the_protocol_methods() {
        let dir = tempfile::tempdir().unwrap();
        let module = RpcHandler::new(crate::service::test_sidecar(dir.path())).into_rpc();
        let registered: BTreeSet<&str> = module.method_names().collect();
        let protocol: BTreeSet<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(registered, protocol);
    }
}
