//! Error codes of the API (README, "Errors") and the error value every layer returns.
//!
//! The standard JSON-RPC codes (-32700..-32603) come from jsonrpsee; the
//! application codes below are the contract agents and hosts match on.

use std::fmt;

use jsonrpsee::types::ErrorObjectOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Application error codes, each with a stable snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// -32001: write outside the assigned scope.
    ScopeDenied,
    /// -32002: the forge has no such issue/PR (or it is the other kind).
    NotFound,
    /// -32003: the forge refused the request (401/403/422/...).
    ForgeRejected,
    /// -32004: timeout, connection failure, 5xx after retries.
    ForgeUnavailable,
    /// -32005: write budget used up, or a body too large.
    LimitExceeded,
    /// -32006: the audit event could not be durably queued; nothing was sent.
    AuditUnavailable,
    /// -32007: `signal_done` was already called in this run.
    AlreadyDone,
    /// -32600: not a valid JSON-RPC request (standard JSON-RPC code).
    InvalidRequest,
    /// -32601: no such method (standard JSON-RPC code).
    MethodNotFound,
    /// -32602: the params are wrong (standard JSON-RPC code).
    InvalidParams,
    /// -32603: an internal error (standard JSON-RPC code).
    Internal,
}

impl ErrorCode {
    /// The numeric JSON-RPC error code.
    pub fn code(self) -> i32 {
        match self {
            ErrorCode::ScopeDenied => -32001,
            ErrorCode::NotFound => -32002,
            ErrorCode::ForgeRejected => -32003,
            ErrorCode::ForgeUnavailable => -32004,
            ErrorCode::LimitExceeded => -32005,
            ErrorCode::AuditUnavailable => -32006,
            ErrorCode::AlreadyDone => -32007,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::Internal => -32603,
        }
    }

    /// The stable name, e.g. `scope_denied`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ScopeDenied => "scope_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ForgeRejected => "forge_rejected",
            ErrorCode::ForgeUnavailable => "forge_unavailable",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::AlreadyDone => "already_done",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MethodNotFound => "method_not_found",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::Internal => "internal_error",
        }
    }

    /// The code for a numeric value, if it is one of ours.
    pub fn from_code(code: i32) -> Option<ErrorCode> {
        [
            ErrorCode::ScopeDenied,
            ErrorCode::NotFound,
            ErrorCode::ForgeRejected,
            ErrorCode::ForgeUnavailable,
            ErrorCode::LimitExceeded,
            ErrorCode::AuditUnavailable,
            ErrorCode::AlreadyDone,
            ErrorCode::InvalidRequest,
            ErrorCode::MethodNotFound,
            ErrorCode::InvalidParams,
            ErrorCode::Internal,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error as the agent sees it: a code, a message it can act on, and data.
///
/// `data` always carries `{"error": "<name>"}` plus the code-specific fields
/// of the README's error table (e.g. `number` and `writable` for `scope_denied`).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// What kind of error.
    pub code: ErrorCode,
    /// A sentence saying what happened and what to do next.
    pub message: String,
    /// Code-specific details (an object).
    pub data: Value,
}

impl RpcError {
    /// An error with no extra data.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: json!({}),
        }
    }

    /// Attach code-specific data (merged into the data object).
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// `scope_denied` for a write to `number` outside `writable`.
    pub fn scope_denied(number: u64, writable: &[u64]) -> Self {
        RpcError::new(
            ErrorCode::ScopeDenied,
            format!(
                "write to #{number} denied: outside the assigned scope (writable: {}); \
                 read it if you need to, but write only to the writable numbers",
                number_list(writable)
            ),
        )
        .with_data(json!({ "number": number, "writable": writable }))
    }

    /// `invalid_params` with a message naming the problem.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        RpcError::new(ErrorCode::InvalidParams, message)
    }

    /// The wire form, with `data.error` set to the code's name.
    pub fn to_error_object(&self) -> ErrorObjectOwned {
        let mut data = match &self.data {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        data.insert("error".into(), Value::String(self.code.name().into()));
        ErrorObjectOwned::owned(
            self.code.code(),
            self.message.clone(),
            Some(Value::Object(data)),
        )
    }
}

/// Issue numbers as messages show them: `#17, #18`.
pub fn number_list(numbers: &[u64]) -> String {
    let list: Vec<String> = numbers.iter().map(|n| format!("#{n}")).collect();
    list.join(", ")
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.name(),
            self.code.code(),
            self.message
        )
    }
}

impl std::error::Error for RpcError {}

impl From<RpcError> for ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        e.to_error_object()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_contract() {
        assert_eq!(ErrorCode::ScopeDenied.code(), -32001);
        assert_eq!(ErrorCode::AlreadyDone.code(), -32007);
        assert_eq!(
            ErrorCode::from_code(-32004),
            Some(ErrorCode::ForgeUnavailable)
        );
        assert_eq!(ErrorCode::from_code(-1), None);
    }

    #[test]
    fn scope_denied_names_target_and_writable_set() {
        let e = RpcError::scope_denied(500, &[17, 18]);
        assert!(
            e.message.starts_with(
                "write to #500 denied: outside the assigned scope (writable: #17, #18)"
            )
        );
        let obj = e.to_error_object();
        assert_eq!(obj.code(), -32001);
        let data: Value = serde_json::from_str(obj.data().unwrap().get()).unwrap();
        assert_eq!(
            data,
            json!({"number": 500, "writable": [17, 18], "error": "scope_denied"})
        );
    }
}
