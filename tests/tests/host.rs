//! End-to-end: the host side (`forge-queue`) on queues written by the real
//! sidecar process.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use forge_e2e::fake_gitea::{FakeGitea, Fault, FaultFilter};
use forge_e2e::sidecar::{SidecarProcess, queue_events, workspace_bin};
use forge_queue_host::audit::audit_dir;
use forge_queue_host::watch::{Delivery, WatchOptions, Watcher};
use forge_sidecar::client::SocketClient;
use serde_json::{Value, json};

async fn call(s: &SidecarProcess, method: &str, params: Value) -> Result<Value, Value> {
    SocketClient::new(&s.socket, Duration::from_secs(30))
        .call(method, Some(params))
        .await
        .expect("reachable")
}

/// A finished session on the in-memory forge: reads, writes, a denial, done.
async fn finished_session(status: &str) -> SidecarProcess {
    let mut s = SidecarProcess::memory(&[]);
    call(&s, "read_issue", json!({"number": 17})).await.unwrap();
    call(&s, "post_comment", json!({"number": 17, "body": "on it"}))
        .await
        .unwrap();
    call(&s, "post_comment", json!({"number": 500, "body": "x"}))
        .await
        .unwrap_err();
    call(
        &s,
        "signal_done",
        json!({"status": status, "summary": "finished"}),
    )
    .await
    .unwrap();
    s.stop();
    s
}

fn poll_options() -> WatchOptions {
    WatchOptions {
        notify: false,
        ..WatchOptions::default()
    }
}

#[tokio::test]
async fn every_event_once_in_order_across_a_watcher_restart() {
    let s = finished_session("success").await;
    let all: Vec<String> = queue_events(&s.queue)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(all.len(), 8);

    // The first watcher handles four events, then fails on the fifth (not acked).
    let mut delivered = Vec::new();
    let mut first = Watcher::new([&s.queue], poll_options()).unwrap();
    let result = first.poll(|d| match d {
        Delivery::Event(e) if delivered.len() < 4 => {
            delivered.push(e.file_name.clone());
            Ok(())
        }
        Delivery::Event(_) => Err("host crashed"),
        _ => Ok(()),
    });
    assert!(result.is_err());
    drop(first);
    // A new watcher delivers the rest, starting with the unacked one.
    let mut second = Watcher::new([&s.queue], poll_options()).unwrap();
    second
        .poll(|d| {
            if let Delivery::Event(e) = d {
                delivered.push(e.file_name.clone());
            }
            Ok::<_, ()>(())
        })
        .unwrap();
    assert_eq!(delivered, all, "each event exactly once, in order");
    assert!(
        std::fs::read_dir(s.queue.join("new"))
            .unwrap()
            .next()
            .is_none(),
        "all acked"
    );
}

#[tokio::test]
async fn a_late_watcher_delivers_the_backlog_and_until_done_reports_the_status() {
    for (status, code) in [("success", 0), ("failure", 1), ("blocked", 3)] {
        let s = finished_session(status).await;
        let out = Command::new(workspace_bin("forge-queue"))
            .args(["watch", "--json", "--until-done"])
            .arg(&s.queue)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{status}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
        // Everything in new/ is delivered, what follows the done included.
        assert_eq!(
            kinds,
            [
                "session_start",
                "op",
                "intent",
                "op",
                "op",
                "done",
                "op",
                "session_end"
            ],
            "{status}"
        );
        assert_eq!(lines[5]["status"], status);
        assert_eq!(lines[6]["op"], "signal_done");
        assert!(
            std::fs::read_dir(s.queue.join("new"))
                .unwrap()
                .next()
                .is_none(),
            "nothing left behind in new/"
        );
        assert_eq!(lines[0]["dir"], s.queue.display().to_string());
    }
}

#[tokio::test]
async fn verify_catches_tampering_with_a_real_session() {
    let s = finished_session("success").await;
    let verify = || {
        Command::new(workspace_bin("forge-queue"))
            .arg("verify")
            .arg(&s.queue)
            .output()
            .unwrap()
    };
    assert_eq!(verify().status.code(), Some(0));
    let events = queue_events(&s.queue);
    let denied = events
        .iter()
        .position(|(_, _, v)| v["outcome"] == "denied")
        .unwrap();
    let victim = s.queue.join("new").join(&events[denied].0);
    let original = std::fs::read(&victim).unwrap();
    let edited = String::from_utf8(original.clone())
        .unwrap()
        .replace("#500", "#501");
    std::fs::write(&victim, edited).unwrap();
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&events[4].0),
        "names the event after the edit"
    );
    std::fs::write(&victim, original).unwrap();
    assert_eq!(verify().status.code(), Some(0));
}

#[tokio::test]
async fn a_write_interrupted_by_sigkill_is_audited_as_unknown_and_the_sidecar_as_stale() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[("FORGE_HEARTBEAT_SECS", "1")]);
    call(&s, "post_comment", json!({"number": 500, "body": "x"}))
        .await
        .unwrap_err();
    // The forge takes the write but never answers; the sidecar dies meanwhile.
    gitea.set_fault_for(FaultFilter::writes(), Fault::Delay(Duration::from_secs(60)));
    let socket = s.socket.clone();
    let pending = tokio::spawn(async move {
        SocketClient::new(&socket, Duration::from_secs(60))
            .call(
                "post_comment",
                Some(json!({"number": 17, "body": "half way"})),
            )
            .await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !queue_events(&s.queue)
        .iter()
        .any(|(_, _, v)| v["kind"] == "intent")
    {
        assert!(std::time::Instant::now() < deadline, "no intent written");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.signal_and_wait("KILL");
    assert!(
        pending.await.unwrap().is_err(),
        "the caller sees the sidecar die"
    );

    let audit = audit_dir(&s.queue, Utc::now()).unwrap();
    let session = &audit.sessions[0];
    assert_eq!(session.unknown_writes.len(), 1);
    assert_eq!(
        (
            session.unknown_writes[0].op.as_str(),
            session.unknown_writes[0].target
        ),
        ("post_comment", Some(17))
    );
    assert_eq!(session.failed_writes.len(), 1, "the denied write is listed");
    let out = Command::new(workspace_bin("forge-queue"))
        .arg("audit")
        .arg(&s.queue)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("outcome unknown") && table.contains("#500"),
        "{table}"
    );

    // A watcher whose clock is past three heartbeat intervals reports it stale.
    let later = Utc::now() + chrono::Duration::seconds(10);
    let options = WatchOptions {
        notify: false,
        clock: Arc::new(move || later),
        ..WatchOptions::default()
    };
    let notices = Mutex::new(Vec::new());
    Watcher::new([&s.queue], options)
        .unwrap()
        .poll(|d| {
            if let Delivery::Stale(n) = d {
                notices.lock().unwrap().push(n.dir.clone());
            }
            Ok::<_, ()>(())
        })
        .unwrap();
    assert_eq!(notices.into_inner().unwrap(), [s.queue.clone()]);
}
