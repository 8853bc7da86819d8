//! Helpers shared by the integration tests: event bodies, heartbeats, and
//! running the `forge-queue` binary with bounded waits.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_protocol::DoneStatus;
use forge_protocol::event::{
    Done, EventBody, Intent, Limits, Op, OpError, Outcome, OutcomeCounts, SessionEnd, SessionStart,
};
use forge_queue::Heartbeat;

/// Every wait in the tests is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn session_start(heartbeat_secs: u64) -> EventBody {
    EventBody::SessionStart(SessionStart {
        version: "0.1.0".into(),
        forge: "memory".into(),
        api_base: None,
        owner: "acme".into(),
        repo: "widgets".into(),
        issue: 17,
        writable: vec![17, 18],
        limits: Limits {
            max_request_bytes: 1 << 20,
            max_body_bytes: 64 << 10,
            max_writes: 100,
            http_timeout_secs: 30,
            heartbeat_secs,
        },
        text: Default::default(),
        pid: 4242,
        run: None,
    })
}

pub fn op(op_id: u64, method: &str, target: u64, outcome: Outcome) -> EventBody {
    let error = match outcome {
        Outcome::Ok => None,
        Outcome::Denied => Some(OpError {
            code: -32001,
            name: "scope_denied".into(),
            message: format!(
                "write to #{target} denied: outside the assigned scope (writable: #17, #18)"
            ),
        }),
        Outcome::Error => Some(OpError {
            code: -32004,
            name: "forge_unavailable".into(),
            message: "forge timed out after 30 s".into(),
        }),
    };
    EventBody::Op(Op {
        op_id,
        op: method.into(),
        target: Some(target),
        outcome,
        summary: format!("{method} #{target}: {}", outcome.as_str()),
        error,
        duration_ms: 3,
        peer: None,
        foreign_refs: None,
        mentions: None,
        coalesced: None,
    })
}

pub fn intent(op_id: u64, method: &str, target: u64) -> EventBody {
    EventBody::Intent(Intent {
        op_id,
        op: method.into(),
        target: Some(target),
    })
}

pub fn done(status: DoneStatus, summary: &str) -> EventBody {
    EventBody::Done(Done {
        status,
        summary: summary.into(),
        warnings: vec![],
    })
}

pub fn session_end(done: bool) -> EventBody {
    EventBody::SessionEnd(SessionEnd {
        reason: "SIGTERM".into(),
        counts: OutcomeCounts::default(),
        done,
    })
}

/// Replace `<dir>/heartbeat` atomically (as the sidecar does) with `ts`.
pub fn write_heartbeat(dir: &Path, session: &str, ts: DateTime<Utc>) {
    let beat = Heartbeat {
        pid: 4242,
        session: session.into(),
        ts: forge_queue::writer::rfc3339_ms(ts),
    };
    let tmp = dir.join("tmp").join("heartbeat");
    fs::write(&tmp, serde_json::to_vec(&beat).unwrap()).unwrap();
    fs::rename(&tmp, dir.join("heartbeat")).unwrap();
}

/// File names in `<dir>/<sub>`, sorted.
pub fn names_in(dir: &Path, sub: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join(sub))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn forge_queue() -> Command {
    Command::new(env!("CARGO_BIN_EXE_forge-queue"))
}

/// Run to completion (bounded) and return (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let mut child = forge_queue()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let out = std::io::read_to_string(stdout).unwrap_or_default();
        let _ = tx.send(out);
    });
    let err_thread =
        std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out,
        Err(_) => {
            let _ = child.kill();
            panic!("forge-queue {args:?} did not finish within {TIMEOUT:?}");
        }
    };
    let status = child.wait().unwrap();
    let err = err_thread.join().unwrap();
    (status.code().unwrap_or(-1), out, err)
}

/// A running `forge-queue` whose stdout lines arrive on a channel.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
}

impl Running {
    pub fn spawn(args: &[&str]) -> Running {
        let mut child = forge_queue()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next stdout line, waiting at most [`TIMEOUT`].
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no output line within {TIMEOUT:?}"))
    }

    /// The next line as JSON.
    pub fn next_json(&self) -> serde_json::Value {
        let line = self.next_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().to_path_buf();
    (t, p)
}
