//! Events the queue's unit tests write: a session start and an intent.

use forge_protocol::event::{EventBody, Intent, Limits, SessionStart};

/// A `session_start` of `acme/widgets` #17, of run `run` if given.
pub(crate) fn start(run: Option<&str>) -> EventBody {
    EventBody::SessionStart(SessionStart {
        version: "0".into(),
        forge: "memory".into(),
        api_base: None,
        owner: "acme".into(),
        repo: "widgets".into(),
        issue: 17,
        writable: vec![17],
        limits: Limits {
            max_request_bytes: 1,
            max_body_bytes: 1,
            max_writes: 1,
            http_timeout_secs: 1,
            heartbeat_secs: 1,
        },
        text: Default::default(),
        pid: 1,
        run: run.map(str::to_string),
    })
}

/// An `intent` to comment on #17, call `op_id`.
pub(crate) fn intent(op_id: u64) -> EventBody {
    EventBody::Intent(Intent {
        op_id,
        op: "post_comment".into(),
        target: Some(17),
        write: None,
    })
}
