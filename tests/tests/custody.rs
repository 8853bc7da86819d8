//! End-to-end: what the sidecar keeps to itself and how it reports its own
//! failure. The token appears in no log line at any level, in any encoding
//! a wire dump could give it; a token file others may read is refused; and
//! a sidecar whose audit writer is gone says so on `/health` and exits.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use forge_e2e::fake_gitea::{ASSIGNED_ISSUE, FakeGitea, TOKEN};
use forge_e2e::sidecar::{SidecarProcess, call_ok as ok, client, gitea_env, workspace_bin};
use serde_json::json;

/// Hex of `bytes`, lower case.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The hex-dump groups of every line (runs of 4 hex digits, `-` for
/// padding), joined in order across lines: a dump split 16 bytes a line
/// becomes one hex string again.
fn hex_reassembled(log: &str) -> String {
    log.lines()
        .flat_map(|line| line.split_whitespace())
        .filter(|w| w.len() == 4 && w.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .map(|w| w.replace('-', "").to_ascii_lowercase())
        .collect()
}

/// Every way the token could appear in `log`: a piece of at least 8 bytes
/// of it in plain text (a dump's text column holds 16 bytes a line), its
/// hex in the reassembled dump, or its base64 at any alignment (whole, or
/// inside a longer encoded header).
fn token_traces(log: &str, token: &str) -> Vec<String> {
    let mut found = Vec::new();
    let t = token.as_bytes();
    for piece in t.windows(8) {
        let piece = String::from_utf8_lossy(piece);
        if log.contains(piece.as_ref()) {
            found.push(format!("plain '{piece}'"));
        }
    }
    let dump = hex_reassembled(log);
    for piece in t.windows(8) {
        if dump.contains(&hex(piece)) {
            found.push(format!("hex of '{}'", String::from_utf8_lossy(piece)));
        }
    }
    for offset in 0..3 {
        let mut padded = vec![b'x'; offset];
        padded.extend_from_slice(t);
        let encoded = base64(&padded);
        // Drop the characters that mix in the padding or the end.
        let inner = &encoded[if offset == 0 { 0 } else { 4 }..encoded.len() - 4];
        if log.contains(inner) {
            found.push(format!("base64 at offset {offset}"));
        }
    }
    found
}

#[test]
fn the_search_finds_a_token_in_every_form_it_looks_for() {
    let token = "fake-token-4b1d2c9e";
    let dump: String = format!("authorization: token {token}\r\n")
        .as_bytes()
        .chunks(16)
        .map(|row| {
            let groups: Vec<String> = row.chunks(2).map(hex).collect();
            format!(
                "2026-12-02T13:00:00Z TRACE ureq_proto::util: {}\n",
                groups.join(" ")
            )
        })
        .collect();
    assert!(
        !token_traces(&dump, token).is_empty(),
        "hex split over lines"
    );
    assert!(
        !token_traces(
            &format!("x {}", base64(format!("token {token}").as_bytes())),
            token
        )
        .is_empty()
    );
    assert!(
        !token_traces("...4b1d2c9e...", token).is_empty(),
        "a piece in plain"
    );
    assert!(token_traces("nothing here", token).is_empty());
}

#[tokio::test]
async fn the_token_appears_in_no_log_line_even_at_trace() {
    let gitea = FakeGitea::start();
    for filter in [
        "trace",
        "ureq=trace,ureq_proto=trace",
        "info,ureq_proto::util=trace",
    ] {
        let mut s = SidecarProcess::against(&gitea, &[("FORGE_LOG", filter)]);
        let c = client(&s);
        ok(&c, "read_issue", json!({"number": ASSIGNED_ISSUE})).await;
        ok(
            &c,
            "post_comment",
            json!({"number": ASSIGNED_ISSUE, "body": "on it"}),
        )
        .await;
        ok(
            &c,
            "signal_done",
            json!({"status": "success", "summary": "done"}),
        )
        .await;
        s.stop();
        let log = s.log();
        // At plain trace everything else still logs: the filter is not
        // simply off.
        assert!(
            filter != "trace" || log.lines().count() > 10,
            "FORGE_LOG={filter} logged too little to mean anything:\n{log}"
        );
        let traces = token_traces(&log, TOKEN);
        assert!(
            traces.is_empty(),
            "FORGE_LOG={filter}: the token is in the log as {traces:?}"
        );
    }
}

#[test]
fn a_token_file_others_may_read_is_refused_by_serve_and_check() {
    let gitea = FakeGitea::start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    forge_e2e::sidecar::write_token(&token, TOKEN);
    let env = gitea_env(&gitea, &token);
    let run = |command: &str| {
        std::process::Command::new(workspace_bin("forge-sidecar"))
            .arg(command)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("FORGE_SOCKET", dir.path().join("forge.sock"))
            .env("FORGE_QUEUE_DIR", dir.path().join("queue"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = run("check");
    assert_eq!(
        out.status.code(),
        Some(0),
        "a private token file is accepted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asked = gitea.requests().len();
    for mode in [0o644, 0o640, 0o604] {
        fs::set_permissions(&token, fs::Permissions::from_mode(mode)).unwrap();
        for command in ["check", "serve"] {
            let out = run(command);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} at {mode:o}: {stderr}"
            );
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line: {stderr}");
            assert!(
                lines[0].contains("FORGE_TOKEN_FILE")
                    && lines[0].contains(&format!("mode {mode:04o}"))
                    && lines[0].contains("chmod 600"),
                "{command}: {stderr}"
            );
            assert!(token_traces(&stderr, TOKEN).is_empty(), "{stderr}");
        }
    }
    assert!(
        !dir.path().join("queue").exists(),
        "serve refused before touching the queue"
    );
    assert_eq!(
        gitea.requests().len(),
        asked,
        "nothing more reached the forge"
    );
}

#[tokio::test]
async fn a_sidecar_whose_audit_writer_ended_says_so_stops_beating_and_exits() {
    let mut s = SidecarProcess::memory(&["--heartbeat-secs", "2"]);
    let c = client(&s);
    ok(&c, "read_issue", json!({"number": 17})).await;
    let (status, body) = c.get("/health").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.starts_with(b"ok\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // The queue directory is replaced under the running session: no event
    // can reach the queue the host watches again.
    // (Moved away, not deleted, so the new directory cannot reuse its inode.)
    fs::rename(&s.queue, s.dir.path().join("queue.old")).unwrap();
    fs::create_dir(&s.queue).unwrap();
    let e =
        forge_e2e::sidecar::call_err(&c, "post_comment", json!({"number": 17, "body": "lost?"}))
            .await;
    assert_eq!(e["code"], -32006, "{e}");
    // For three heartbeat intervals /health answers 503 with the reason
    // and every call is refused; then the process exits with an error.
    let (status, body) = c.get("/health").await.unwrap();
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("removed or replaced") && body.contains("audit_unavailable"),
        "{body}"
    );
    let e = forge_e2e::sidecar::call_err(&c, "read_issue", json!({"number": 17})).await;
    assert_eq!(e["code"], -32006, "{e}");
    let status = s.wait_exit(std::time::Duration::from_secs(30));
    assert!(!status.success(), "exit {status}");
    let log = s.log();
    assert!(log.contains("the audit writer ended"), "{log}");
    assert!(
        log.contains("heartbeat stopped") || !log.contains("heartbeat not written"),
        "{log}"
    );
    assert!(
        !s.queue.join("heartbeat").exists(),
        "no heartbeat reached the new directory: the host sees the sidecar stop"
    );
}
