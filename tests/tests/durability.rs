//! End-to-end: crash safety and a queue that cannot take events.
//!
//! SIGKILL at arbitrary points of a stream of calls must leave only complete,
//! chained events; a full or read-only queue must refuse calls with
//! `audit_unavailable` and keep the forge untouched, then recover.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use forge_e2e::fake_gitea::{FakeGitea, TOKEN};
use forge_e2e::sidecar::{SidecarProcess, gitea_env, queue_events};
use forge_queue::verify::verify_dir;
use forge_sidecar::client::SocketClient;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn memory_sidecar_on(queue: &Path) -> SidecarProcess {
    SidecarProcess::start_at(
        tempfile::tempdir().unwrap(),
        queue.to_path_buf(),
        &["--forge", "memory"],
        &[],
    )
}

#[tokio::test]
async fn sigkill_during_a_stream_of_calls_leaves_only_complete_chained_events() {
    let root = tempfile::tempdir().unwrap();
    let queue = root.path().join("queue");
    let mut killed_sessions = 0;
    for round in 0..6u64 {
        let mut sidecar = memory_sidecar_on(&queue);
        let before = queue_events(&queue).len();
        let mut callers = Vec::new();
        for worker in 0..4u64 {
            let client = SocketClient::new(&sidecar.socket, Duration::from_secs(5));
            callers.push(tokio::spawn(async move {
                for i in 0..5_000u64 {
                    let result = if (i + worker) % 3 == 0 {
                        client
                            .call(
                                "post_comment",
                                Some(json!({"number": 17, "body": format!("w{worker} #{i}")})),
                            )
                            .await
                    } else {
                        client
                            .call("read_issue", Some(json!({"number": 1 + (i % 20)})))
                            .await
                    };
                    if result.is_err() {
                        break; // the sidecar is gone
                    }
                }
            }));
        }
        // Kill at a different depth into the stream each round.
        let target = before + 5 + (round as usize * 13) % 40;
        let deadline = Instant::now() + WAIT;
        while queue_events(&queue).len() < target {
            assert!(Instant::now() < deadline, "no progress:\n{}", sidecar.log());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sidecar.signal_and_wait("KILL");
        killed_sessions += 1;
        for caller in callers {
            tokio::time::timeout(WAIT, caller)
                .await
                .expect("callers stop when the sidecar dies")
                .unwrap();
        }
    }
    // A new start removes what a crash left in tmp/ and starts a later session.
    std::fs::write(
        queue.join("tmp").join("crashed-mid-write.json"),
        b"{\"v\":1,\"sess",
    )
    .unwrap();
    let mut last = memory_sidecar_on(&queue);
    let leftovers: Vec<String> = last
        .tmp_files()
        .into_iter()
        .filter(|f| f != "heartbeat")
        .collect();
    assert!(
        leftovers.is_empty(),
        "tmp/ not cleaned at start: {leftovers:?}"
    );
    last.stop();

    let events = queue_events(&queue);
    let mut sessions: Vec<String> = events
        .iter()
        .map(|(_, _, v)| v["session"].as_str().unwrap().to_string())
        .collect();
    sessions.dedup();
    assert_eq!(
        sessions.len(),
        killed_sessions + 1,
        "one session per start, in name order"
    );
    let ends = events
        .iter()
        .filter(|(_, _, v)| v["kind"] == "session_end")
        .count();
    assert_eq!(ends, 1, "only the clean stop wrote session_end");
    let report = verify_dir(&queue).unwrap();
    assert!(
        report.is_intact(),
        "chain broken: {:?}",
        report.all_problems().collect::<Vec<_>>()
    );
    assert_eq!(report.event_count(), events.len() as u64);
}

/// A tmpfs of `size` mounted at `dir` for the test's lifetime (needs root,
/// as CI runs).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mount one (root is needed, as CI runs), or `None` after printing
    /// why this machine cannot (not root, no mount namespace).
    fn try_mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        match Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
        {
            Ok(status) if status.success() => Some(Tmpfs(dir.to_path_buf())),
            other => {
                println!(
                    "SKIPPED: cannot mount a tmpfs at {} ({other:?}); run as root (CI does) to try a full disk for real",
                    dir.display()
                );
                None
            }
        }
    }

    fn remount(&self, opts: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the filesystem of `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test]
async fn a_full_or_read_only_queue_refuses_calls_and_recovers() {
    let gitea = FakeGitea::start();
    let root = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::try_mount(&root.path().join("fs"), "1m") else {
        return;
    };
    let queue = fs.0.join("queue");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    forge_e2e::sidecar::write_token(&token, TOKEN);
    let env = gitea_env(&gitea, &token);
    let mut sidecar = SidecarProcess::start_at(dir, queue.clone(), &[], &env);
    let client = SocketClient::new(&sidecar.socket, Duration::from_secs(20));
    let comment = json!({"number": 17, "body": "progress report"});
    // Mid-session: one write goes through, then the disk fills.
    client
        .call("post_comment", Some(comment.clone()))
        .await
        .unwrap()
        .expect("a write before the disk fills");
    assert_eq!(gitea.writes().len(), 1);

    // A new text: the first one again would be a repeat of a write
    // already on the forge, which is answered without writing.
    let second = json!({"number": 17, "body": "second report"});
    let filler = fill(&fs.0);
    for method in ["post_comment", "read_issue"] {
        let e = client
            .call(method, Some(second.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", sidecar.log()))
            .unwrap_err();
        assert_eq!(e["code"], -32006, "{method}: {e}");
    }
    let e = client
        .call("post_comment", Some(second.clone()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("nothing was sent to the forge"),
        "{e}"
    );
    assert_eq!(
        gitea.writes().len(),
        1,
        "a write reached the forge without its audit event"
    );
    // The host's health check says why; the done signal fails loudly
    // instead of being lost, and can be given again.
    let (status, body) = client.get("/health").await.unwrap();
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("No space left on device") && body.contains("audit_unavailable"),
        "{body}"
    );
    let done = json!({"status": "success", "summary": "finished"});
    let e = client
        .call("signal_done", Some(done.clone()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e["code"], -32006, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("call signal_done again"),
        "{e}"
    );

    std::fs::remove_file(filler).unwrap();
    client
        .call("post_comment", Some(second.clone()))
        .await
        .unwrap()
        .expect("recovered when space returned");
    assert_eq!(gitea.writes().len(), 2);
    let (status, body) = client.get("/health").await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    fs.remount("ro");
    let e = client
        .call("post_comment", Some(second.clone()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e["code"], -32006, "{e}");
    assert_eq!(gitea.writes().len(), 2);
    fs.remount("rw");
    // Another text: the same one again would return the comment posted.
    client
        .call(
            "post_comment",
            Some(json!({"number": 17, "body": "another status"})),
        )
        .await
        .unwrap()
        .expect("recovered when writable again");
    assert_eq!(gitea.writes().len(), 3);

    client
        .call("signal_done", Some(done))
        .await
        .unwrap()
        .expect("the done signal, given again, is recorded");
    sidecar.stop();
    let report = verify_dir(&queue).unwrap();
    assert!(
        report.is_intact(),
        "{:?}",
        report.all_problems().collect::<Vec<_>>()
    );
    // Every write that reached the forge has its intent before its op, and
    // the run has one done.
    let events: Vec<serde_json::Value> = queue_events(&queue)
        .into_iter()
        .map(|(_, _, v)| v)
        .collect();
    let kinds = |k: &str| events.iter().filter(|v| v["kind"] == k).count();
    assert_eq!(kinds("done"), 1);
    let sent: Vec<&serde_json::Value> = events
        .iter()
        .filter(|v| v["kind"] == "op" && v["op"] == "post_comment" && v["outcome"] == "ok")
        .collect();
    assert_eq!(sent.len(), gitea.writes().len());
    for op in sent {
        let intent = events.iter().position(|v| {
            v["kind"] == "intent" && v["op_id"] == op["op_id"] && v["session"] == op["session"]
        });
        let at = events.iter().position(|v| std::ptr::eq(v, op));
        assert!(intent.is_some() && intent < at, "no intent before {op}");
    }
}
