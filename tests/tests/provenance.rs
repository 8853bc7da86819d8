//! End-to-end: signed checkpoints. `forge-queue keygen` makes the key, the
//! real sidecar signs its queue with it, `forge-queue verify --key` catches
//! what the chain alone cannot, and Go's golang.org/x/mod/sumdb/note (an
//! independent implementation of c2sp.org/signed-note) opens the notes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use forge_e2e::sidecar::{SidecarProcess, queue_events, workspace_bin};
use forge_queue::sha256_hex;
use forge_sidecar::client::SocketClient;
use serde_json::{Value, json};

async fn call(s: &SidecarProcess, method: &str, params: Value) -> Result<Value, Value> {
    SocketClient::new(&s.socket, Duration::from_secs(30))
        .call(method, Some(params))
        .await
        .expect("reachable")
}

fn forge_queue(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(workspace_bin("forge-queue"))
        .args(args)
        .args(paths)
        .output()
        .expect("run forge-queue")
}

/// A key pair from `forge-queue keygen`: (signing key file, verifier key).
fn keygen(dir: &Path) -> (PathBuf, String) {
    let out = forge_queue(&["keygen", "forge-sidecar.test", "--dir"], &[dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let skey = dir.join("forge-sidecar.test.skey");
    let mode = fs::metadata(&skey).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600, "the signing key is private");
    assert_eq!(
        fs::read_to_string(dir.join("forge-sidecar.test.vkey"))
            .unwrap()
            .trim(),
        vkey
    );
    (skey, vkey)
}

/// A signed, finished session on the in-memory forge.
async fn signed_session(keys: &Path) -> (SidecarProcess, String) {
    let (skey, vkey) = keygen(keys);
    let mut s = SidecarProcess::memory(&["--signing-key-file", skey.to_str().unwrap()]);
    call(&s, "read_issue", json!({"number": 17})).await.unwrap();
    call(&s, "post_comment", json!({"number": 17, "body": "on it"}))
        .await
        .unwrap();
    call(
        &s,
        "signal_done",
        json!({"status": "success", "summary": "finished"}),
    )
    .await
    .unwrap();
    s.stop();
    (s, vkey)
}

fn checkpoint_of(queue: &Path) -> PathBuf {
    let dir = queue.join("checkpoint");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one session, one checkpoint file");
    files.remove(0)
}

/// The Go verifier, built by tests/note/install.sh (tests/run.sh runs it).
fn go_verifier() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("note/bin/note-verify");
    assert!(
        bin.exists(),
        "{} is missing: run tests/note/install.sh (tests/run.sh does)",
        bin.display()
    );
    bin
}

#[tokio::test]
async fn go_opens_the_sidecars_checkpoint_with_the_key_keygen_printed() {
    let keys = tempfile::tempdir().unwrap();
    let (s, vkey) = signed_session(keys.path()).await;
    let note = checkpoint_of(&s.queue);
    let out = Command::new(go_verifier())
        .arg(&vkey)
        .arg(&note)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Go refused the note: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let events = queue_events(&s.queue);
    let last = &events.last().unwrap().1;
    let session = events[0].2["session"].as_str().unwrap();
    for line in [
        "forge-sidecar checkpoint v1\nrepository acme/widgets\nissue 17\n".to_string(),
        format!("session {session}\nevents {}\n", events.len()),
        format!("last {}\n", sha256_hex(last)),
        format!(
            "signed by forge-sidecar.test {}",
            &vkey.split('+').nth(1).unwrap()
        ),
    ] {
        assert!(text.contains(&line), "{line:?} not in {text}");
    }
    // An altered note is refused by Go too.
    let altered = fs::read_to_string(&note)
        .unwrap()
        .replace("issue 17", "issue 18");
    let bad = keys.path().join("altered");
    fs::write(&bad, altered).unwrap();
    let out = Command::new(go_verifier())
        .arg(&vkey)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn the_signing_key_appears_in_no_log_event_or_checkpoint() {
    let keys = tempfile::tempdir().unwrap();
    let (s, _) = signed_session(keys.path()).await;
    let secret = fs::read_to_string(keys.path().join("forge-sidecar.test.skey")).unwrap();
    let seed = secret.trim().rsplit('+').next().unwrap();
    assert!(!s.log().contains(seed));
    for (name, bytes, _) in queue_events(&s.queue) {
        assert!(!String::from_utf8_lossy(&bytes).contains(seed), "{name}");
    }
    assert!(
        !fs::read_to_string(checkpoint_of(&s.queue))
            .unwrap()
            .contains(seed)
    );
}

#[tokio::test]
async fn verify_with_the_key_catches_a_cut_tail_and_a_rewritten_done() {
    let keys = tempfile::tempdir().unwrap();
    let (s, vkey) = signed_session(keys.path()).await;
    let verify = || forge_queue(&["verify", "--key", &vkey], &[&s.queue]);
    let out = verify();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let new = s.queue.join("new");
    let events = queue_events(&s.queue);
    let n = events.len();
    let saved: Vec<(PathBuf, Vec<u8>)> = events
        .iter()
        .map(|(name, bytes, _)| (new.join(name), bytes.clone()))
        .collect();
    let restore = || {
        for (path, bytes) in &saved {
            fs::write(path, bytes).unwrap();
        }
    };

    // Delete the last two events (done and session_end).
    for (path, _) in &saved[n - 2..] {
        fs::remove_file(path).unwrap();
    }
    let out = forge_queue(&["verify"], &[&s.queue]);
    assert_eq!(out.status.code(), Some(0), "the chain alone cannot tell");
    let out = verify();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("the tail was cut after signing"),
        "{report}"
    );
    restore();

    // Rewrite the done summary and fix up every hash after it.
    let done = events
        .iter()
        .position(|(_, _, v)| v["kind"] == "done")
        .unwrap();
    let mut prev: Option<String> = None;
    for (i, (path, bytes)) in saved.iter().enumerate().skip(done) {
        let mut event: Value = serde_json::from_slice(bytes).unwrap();
        if i == done {
            event["summary"] = json!("merged and deployed");
        } else {
            event["prev"] = json!(prev);
        }
        let mut out = serde_json::to_vec(&event).unwrap();
        out.push(b'\n');
        fs::write(path, &out).unwrap();
        prev = Some(sha256_hex(&out));
    }
    assert_eq!(forge_queue(&["verify"], &[&s.queue]).status.code(), Some(0));
    let out = verify();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("rewritten after signing"), "{report}");
    restore();

    // Without the key nothing passes: a note signed by another key is
    // refused, and so is a session with no checkpoint at all.
    let other = tempfile::tempdir().unwrap();
    let (_, other_vkey) = keygen(other.path());
    let out = forge_queue(&["verify", "--key", &other_vkey], &[&s.queue]);
    assert_eq!(out.status.code(), Some(1));
    fs::remove_file(checkpoint_of(&s.queue)).unwrap();
    let out = verify();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("no checkpoint signed by the key"),
        "{report}"
    );
}
