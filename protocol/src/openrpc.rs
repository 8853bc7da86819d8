//! The API described as an OpenRPC 1.3 document, the JSON-RPC convention
//! for discovery: what `rpc.discover` answers and `forge-sidecar openrpc`
//! prints.
//!
//! Generated from the one definition of the API: the methods of
//! [`Method::ALL`] with their descriptions (the doc comments of [`Method`]),
//! their params and results (the schemas of [`crate::schema`]), and the
//! error codes of [`ErrorCode`] each method can answer with.

use serde_json::{Map, Value, json};

use crate::error::ErrorCode;
use crate::params::Method;
use crate::schema::schema_of;

/// The OpenRPC version the document follows.
pub const OPENRPC_VERSION: &str = "1.3.2";

/// The discovery method's name (reserved by JSON-RPC's `rpc.` prefix).
pub const DISCOVER: &str = "rpc.discover";

impl Method {
    /// One sentence on what the method does (its doc comment).
    pub fn summary(self) -> String {
        let described = schema_of::<Method>();
        described
            .get("oneOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|v| v.get("const").and_then(Value::as_str) == Some(self.name()))
            .and_then(|v| v.get("description"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| self.name())
            .to_string()
    }

    /// The error codes a call of this method can answer with.
    pub fn errors(self) -> Vec<ErrorCode> {
        let mut codes = vec![ErrorCode::InvalidParams];
        let reads_forge = !matches!(self, Method::SignalDone | Method::Scope);
        if self.writes_forge() {
            codes.push(ErrorCode::ScopeDenied);
        }
        if reads_forge {
            codes.extend([
                ErrorCode::NotFound,
                ErrorCode::ForgeRejected,
                ErrorCode::ForgeUnavailable,
            ]);
        }
        if self.writes_forge() || self == Method::SignalDone {
            codes.push(ErrorCode::LimitExceeded);
        }
        if self == Method::SignalDone {
            codes.push(ErrorCode::AlreadyDone);
        }
        codes.extend([ErrorCode::AuditUnavailable, ErrorCode::Internal]);
        codes
    }
}

/// The OpenRPC document of the API; `version` is the server's version.
pub fn document(version: &str) -> Value {
    let methods: Vec<Value> = Method::ALL.into_iter().map(method).collect();
    json!({
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "forge-sidecar",
            "version": version,
            "description": "Scoped, audited forge access for a sandboxed coding agent: JSON-RPC 2.0 \
                over HTTP/1.1 on the sidecar's Unix socket. Reads reach any issue or pull request \
                of the repository; writes reach only the assigned issue and its pull requests. \
                Params are given by name (an object) or by position (an array in the order listed).",
            "license": { "name": "Apache-2.0" },
        },
        "methods": methods,
    })
}

/// One method object.
fn method(m: Method) -> Value {
    let schema = m.params_schema();
    let properties = schema.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let params: Vec<Value> = m
        .param_names()
        .iter()
        .map(|name| {
            let mut param_schema = properties
                .and_then(|p| p.get(*name))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let description = param_schema.remove("description");
            let mut param = Map::new();
            param.insert("name".into(), json!(name));
            if let Some(d) = description {
                param.insert("description".into(), d);
            }
            param.insert("required".into(), json!(required.contains(name)));
            param.insert("schema".into(), Value::Object(param_schema));
            Value::Object(param)
        })
        .collect();
    let errors: Vec<Value> = m
        .errors()
        .into_iter()
        .map(|code| {
            json!({
                "code": code.code(),
                "message": code.name(),
                "data": { "error": code.name(), "meaning": code.meaning() },
            })
        })
        .collect();
    json!({
        "name": m.name(),
        "summary": m.summary(),
        "paramStructure": "either",
        "params": params,
        "result": { "name": format!("{} result", m.name()), "schema": m.result_schema() },
        "errors": errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_method_in_order_with_its_params() {
        let doc = document("0.0.0");
        let names: Vec<&str> = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        let all: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names, all);
        let post = &doc["methods"][4];
        assert_eq!(post["name"], "post_comment");
        assert_eq!(post["params"][0]["name"], "number");
        assert_eq!(post["params"][0]["required"], true);
        assert_eq!(post["params"][0]["schema"]["minimum"], 1);
        assert_eq!(post["params"][1]["name"], "body");
        let open = &doc["methods"][6];
        assert_eq!(open["params"][2]["name"], "base");
        assert_eq!(open["params"][2]["required"], false);
        assert_eq!(doc["methods"][8]["params"], json!([]));
    }

    #[test]
    fn summaries_are_the_doc_comments() {
        assert_eq!(
            Method::ReadIssue.summary(),
            "Read an issue (or the issue view of a PR)."
        );
        for m in Method::ALL {
            assert_ne!(m.summary(), m.name(), "{m} has no doc comment");
        }
    }

    #[test]
    fn errors_fit_the_method() {
        let codes = |m: Method| -> Vec<i32> { m.errors().iter().map(|c| c.code()).collect() };
        assert!(codes(Method::PostComment).contains(&-32001));
        assert!(!codes(Method::ReadIssue).contains(&-32001));
        assert!(codes(Method::SignalDone).contains(&-32007));
        assert!(!codes(Method::Scope).contains(&-32004));
        let doc = document("0.0.0");
        assert_eq!(doc["methods"][0]["errors"][0]["message"], "invalid_params");
    }
}
