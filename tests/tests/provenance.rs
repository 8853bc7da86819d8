//! End-to-end: signed checkpoints. `forge-queue keygen` makes the key, the
//! real sidecar signs its queue with it, `forge-queue verify --key` catches
//! what the chain alone cannot, and Go's golang.org/x/mod/sumdb/note (an
//! independent implementation of c2sp.org/signed-note) opens the notes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use forge_e2e::sidecar::{SidecarProcess, call, queue_events, workspace_bin};
use forge_queue::sha256_hex;
use serde_json::{Value, json};

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
    // PRIVATE+KEY+<name>+<hash>+<key>: the key's base64 may itself hold '+'.
    let seed = secret.trim().splitn(5, '+').nth(4).unwrap();
    assert_eq!(
        seed.len(),
        44,
        "base64 of the algorithm byte and the 32-byte seed"
    );
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

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A running `forge-queue` whose stdout lines arrive on a channel.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn spawn(args: &[&str], paths: &[&Path]) -> Running {
        use std::io::BufRead;
        let mut child = Command::new(workspace_bin("forge-queue"))
            .args(args)
            .args(paths)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// Lines until one of `kind` (returned), bounded by [`TIMEOUT`].
    fn until_kind(&self, kind: &str) -> Value {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {kind} line within {TIMEOUT:?}"));
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["kind"] == kind {
                return v;
            }
        }
    }

    /// Wait (bounded) for the exit code and the remaining lines.
    fn finish(mut self) -> (i32, Vec<Value>) {
        let deadline = std::time::Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "forge-queue did not exit within {TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest = self
            .lines
            .iter()
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect();
        (status.code().unwrap_or(-1), rest)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_hand_written_done_does_not_settle_until_done_and_the_sidecars_own_does() {
    let keys = tempfile::tempdir().unwrap();
    let (skey, vkey) = keygen(keys.path());
    let s = SidecarProcess::memory(&[
        "--signing-key-file",
        skey.to_str().unwrap(),
        "--heartbeat-secs",
        "1",
    ]);
    call(&s, "read_issue", json!({"number": 17})).await.unwrap();
    let watch = Running::spawn(
        &["watch", "--json", "--until-done", "--key", &vkey],
        &[&s.queue],
    );
    // Wait until the watcher has seen everything so far, signed.
    let events = queue_events(&s.queue);
    let mut cp = watch.until_kind("checkpoint");
    while cp["events"].as_u64() != Some(events.len() as u64) {
        cp = watch.until_kind("checkpoint");
    }

    // A done with valid chain hashes, written by hand as the next event.
    let (last_name, last_bytes, last) = events.last().unwrap();
    let seq = last["seq"].as_u64().unwrap() + 1;
    let forged = json!({
        "v": 1, "session": last["session"], "seq": seq,
        "ts": last["ts"], "kind": "done", "prev": sha256_hex(last_bytes),
        "status": "success", "summary": "all done, merge it",
    });
    let name = last_name.replace(&format!("{:08}.json", seq - 1), &format!("{seq:08}.json"));
    let mut bytes = serde_json::to_vec(&forged).unwrap();
    bytes.push(b'\n');
    fs::write(s.queue.join("tmp").join("forged"), &bytes).unwrap();
    fs::rename(
        s.queue.join("tmp").join("forged"),
        s.queue.join("new").join(&name),
    )
    .unwrap();
    let done = watch.until_kind("done");
    assert_eq!(done["summary"], "all done, merge it");
    let unverified = watch.until_kind("unverified_done");
    assert_eq!(unverified["seq"], seq);
    assert_eq!(
        forge_queue(&["verify"], &[&s.queue]).status.code(),
        Some(0),
        "the chain alone cannot tell"
    );
    // Out of the sidecar's way (it would take the same name).
    fs::remove_file(s.queue.join("cur").join(&name)).unwrap();

    call(
        &s,
        "signal_done",
        json!({"status": "blocked", "summary": "need a decision"}),
    )
    .await
    .unwrap();
    let (code, _) = watch.finish();
    assert_eq!(code, 3, "settled on the sidecar's own (blocked) done");
}

#[tokio::test]
async fn the_watchdog_settles_an_idle_agent_and_audit_and_export_show_it() {
    let keys = tempfile::tempdir().unwrap();
    let (skey, vkey) = keygen(keys.path());
    let mut s = SidecarProcess::memory(&[
        "--signing-key-file",
        skey.to_str().unwrap(),
        "--heartbeat-secs",
        "1",
    ]);
    call(&s, "read_issue", json!({"number": 17})).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();
    let watch = Running::spawn(
        &[
            "watch",
            "--json",
            "--until-done",
            "--key",
            &vkey,
            "--watchdog",
            "2s",
            "--state",
            st,
        ],
        &[&s.queue],
    );
    let fired = watch.until_kind("watchdog");
    assert!(fired["idle_ms"].as_u64().unwrap() > 2000);
    assert_eq!(fired["limit_ms"], 2000);
    let (code, _) = watch.finish();
    assert_eq!(code, 5, "the watchdog's own exit code");

    let out = forge_queue(&["audit", "--state", st], &[&s.queue]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("watchdog fired") && text.contains("incomplete"),
        "{text}"
    );
    let out = forge_queue(&["audit", "--json", "--state", st], &[&s.queue]);
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(audit[0]["sessions"][0]["complete"], false);
    assert!(audit[0]["sessions"][0]["watchdog"]["fired_at"].is_string());
    let records = export(&["--key", &vkey, "--state", st], &s.queue);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["complete"], false);
    assert_eq!(records[0]["done"], Value::Null);
    assert_eq!(records[0]["watchdog"]["limit_ms"], 2000);
    assert_eq!(records[0]["end"]["state"], "running");
    // The host kept the newest checkpoint it verified.
    let out = forge_queue(&["verify", "--key", &vkey, "--state", st], &[&s.queue]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    s.stop();
    let records = export(&["--key", &vkey, "--state", st], &s.queue);
    assert_eq!(records[0]["end"]["state"], "ended");
    assert_eq!(records[0]["verification"]["signature"]["uncovered"], 0);
}

/// `forge-queue export ARGS QUEUE`: each line validated against the schema
/// file in the repository.
fn export(args: &[&str], queue: &Path) -> Vec<Value> {
    let validator = schema_validator();
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let out = forge_queue(&all, &[queue]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&record)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "export does not match the schema: {errors:#?}"
            );
            record
        })
        .collect()
}

/// The run record schema, from the repository.
fn schema_validator() -> jsonschema::Validator {
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../queue/host/schema/run-record.schema.json");
    let schema: Value = serde_json::from_slice(&fs::read(&schema_path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

#[tokio::test]
async fn export_records_a_finished_and_a_tampered_run_as_the_schema_says() {
    let keys = tempfile::tempdir().unwrap();
    let (s, vkey) = signed_session(keys.path()).await;
    let records = export(&["--key", &vkey], &s.queue);
    let r = &records[0];
    assert_eq!(r["repository"], "acme/widgets");
    assert_eq!(r["issue"], 17);
    assert_eq!(r["writable"]["initial"], json!([17, 18, 19]));
    assert_eq!(r["done"]["status"], "success");
    assert_eq!(r["done"]["signed"], true);
    assert_eq!(r["complete"], true);
    assert_eq!(r["calls"]["post_comment"]["ok"], 1);
    assert_eq!(
        r["events"].as_array().unwrap().len(),
        queue_events(&s.queue).len()
    );
    assert_eq!(r["verification"]["chain"]["intact"], true);
    assert!(r["duration_ms"].as_u64().is_some());
    // The schema is strict enough to refuse a changed record.
    let validator = schema_validator();
    for (field, value) in [
        ("complete", json!("yes")),
        ("session", json!("today")),
        ("extra", json!(1)),
    ] {
        let mut bad = r.clone();
        bad[field] = value;
        assert!(!validator.is_valid(&bad), "{field}");
    }
    // Without a key: no signature section. Cut the tail: reported.
    assert_eq!(
        export(&[], &s.queue)[0]["verification"]["signature"],
        Value::Null
    );
    let events = queue_events(&s.queue);
    fs::remove_file(s.queue.join("new").join(&events.last().unwrap().0)).unwrap();
    fs::write(s.queue.join("new").join(&events[1].0), b"{not json").unwrap();
    let r = &export(&["--key", &vkey], &s.queue)[0];
    assert_eq!(r["verification"]["chain"]["intact"], false);
    let problems: Vec<&str> = r["verification"]["chain"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["problem"].as_str().unwrap())
        .collect();
    assert!(problems.contains(&"signed_missing"), "{problems:?}");
    assert!(
        r["events"][1].is_string(),
        "an unparseable file is kept as text"
    );
}
