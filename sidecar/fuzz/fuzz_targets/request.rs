//! Fuzz the request path the sidecar runs before any handler: JSON-RPC
//! request parsing (as jsonrpsee does it), the strict params check every
//! entry path shares, and the text checker every write goes through.
#![no_main]

use forge_protocol::Method;
use std::sync::LazyLock;

use forge_sidecar::text_check::{self, Policy};
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::new("acme", "widgets", &[17, 18], &text_check::default_rules())
});

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
        // Any text gets a verdict; an accepted one closes nothing outside the scope.
        if let Ok(found) = text_check::check(text, &POLICY) {
            for c in &found.closing {
                assert!(c.target.repo.is_none() && [17, 18].contains(&c.target.number), "{c}");
            }
        }
    }
});
