//! A long run written straight into a queue directory: what a sidecar that
//! served for a long time leaves behind, made in seconds (no sidecar, no
//! fsync), for the start-up test and bench.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

/// The session id the history is written under (it sorts before any
/// session a sidecar starts today).
pub const SESSION: &str = "20200101T000000.000Z-000001";

/// Write one session of run `run` into `<queue>/cur/` (as consumed events):
/// `session_start` (with `max_writes` 10), `writes` forge writes (`intent`,
/// then its `op`), `reads` read `op`s and a `done`, chained as the sidecar
/// chains them (`seq`, `prev`). Returns the number of events written.
pub fn write_run(queue: &Path, run: &str, writes: u64, reads: u64) -> u64 {
    let cur = queue.join("cur");
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir_all(queue.join(sub)).expect("create queue directory");
    }
    let mut bodies: Vec<Value> = vec![json!({
        "kind": "session_start", "version": "0", "forge": "memory", "api_base": null,
        "owner": "acme", "repo": "widgets", "issue": 17, "writable": [17],
        "limits": {"max_request_bytes": 1048576, "max_body_bytes": 65536, "max_writes": 10,
                   "http_timeout_secs": 30, "heartbeat_secs": 5},
        "pid": 1, "run": run,
    })];
    let op = |op_id: u64, op: &str, summary: &str| {
        json!({"kind": "op", "op_id": op_id, "op": op, "target": 17, "outcome": "ok",
               "summary": summary, "error": null, "duration_ms": 1, "peer": null})
    };
    let mut op_id = 0;
    for _ in 0..writes {
        op_id += 1;
        bodies.push(json!({"kind": "intent", "op_id": op_id, "op": "post_comment", "target": 17}));
        bodies.push(op(op_id, "post_comment", "posted comment to #17"));
    }
    for _ in 0..reads {
        op_id += 1;
        bodies.push(op(op_id, "read_issue", "read issue #17"));
    }
    bodies.push(json!({"kind": "done", "status": "failure", "summary": "tests fail"}));
    let count = bodies.len() as u64;
    let mut prev: Option<String> = None;
    for (seq, body) in bodies.into_iter().enumerate() {
        let mut event = json!({
            "v": 1, "session": SESSION, "seq": seq,
            "ts": "2020-01-01T00:00:00.000Z", "prev": prev,
        });
        if let (Some(e), Some(b)) = (event.as_object_mut(), body.as_object()) {
            e.extend(b.clone());
        }
        let mut bytes = serde_json::to_vec(&event).expect("serialize event");
        bytes.push(b'\n');
        prev = Some(forge_queue::sha256_hex(&bytes));
        fs::write(cur.join(format!("{SESSION}-{seq:08}.json")), &bytes).expect("write event");
    }
    count
}
