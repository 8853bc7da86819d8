//! Fuzz the request path the sidecar runs before any handler: JSON-RPC
//! request parsing (as jsonrpsee does it), the strict params check every
//! entry path shares, and the closing-keyword scan the scope decision uses.
#![no_main]

use forge_protocol::Method;
use forge_sidecar::closing::closing_refs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<jsonrpsee_types::Request<'_>>(data) {
        if let Some(method) = Method::from_name(&req.method) {
            let _ = method.check_params(req.params.as_deref());
        }
    }
    if let Ok(batch) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(data) {
        for entry in batch {
            if let Ok(req) = serde_json::from_str::<jsonrpsee_types::Request<'_>>(entry.get()) {
                if let Some(method) = Method::from_name(&req.method) {
                    let _ = method.check_params(req.params.as_deref());
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for r in closing_refs(text) {
            assert!(text.contains(&r.number.to_string()), "a reference's number comes from the text");
        }
    }
});
