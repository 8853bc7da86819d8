//! End-to-end: the real `forge-sidecar serve` on a temporary socket and queue
//! directory, with the real Gitea client against the fake Gitea.

use std::time::Duration;

use forge_e2e::fake_gitea::{
    ASSIGNED_ISSUE, ASSIGNED_PR, FakeGitea, Fault, FaultFilter, OUT_OF_SCOPE_ISSUE, TOKEN,
};
use forge_e2e::sidecar::{
    SidecarProcess, agent_text, call_err as err, call_ok as ok, client, workspace_bin,
};
use forge_queue::sha256_hex;
use forge_sidecar::client::SocketClient;
use serde_json::{Value, json};

async fn raw(c: &SocketClient, body: &str) -> (u16, Value) {
    let (status, bytes) = c
        .post_raw(body.to_string())
        .await
        .expect("sidecar reachable");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn ops(s: &SidecarProcess) -> Vec<Value> {
    s.events()
        .into_iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["kind"] == "op")
        .collect()
}

#[tokio::test]
async fn every_method_returns_its_documented_shape() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    let c = client(&s);

    let issue = ok(&c, "read_issue", json!({"number": ASSIGNED_ISSUE})).await;
    for field in [
        "number",
        "title",
        "body",
        "state",
        "user",
        "labels",
        "assignees",
        "is_pull_request",
        "url",
        "created_at",
        "updated_at",
    ] {
        assert!(issue.get(field).is_some(), "issue lacks {field}: {issue}");
    }
    assert_eq!(issue["is_pull_request"], false);
    assert_eq!(issue["labels"], json!(["bug"]));
    // Reads work anywhere in the repository, and an empty body is "".
    assert_eq!(ok(&c, "read_issue", json!([3])).await["body"], "");
    assert_eq!(
        ok(&c, "read_issue", json!({"number": OUT_OF_SCOPE_ISSUE})).await["number"],
        500
    );
    assert_eq!(
        ok(&c, "read_issue", json!({"number": ASSIGNED_PR})).await["is_pull_request"],
        true
    );

    let pr = ok(&c, "read_pr", json!({"number": 19})).await;
    for field in [
        "number",
        "title",
        "body",
        "state",
        "merged",
        "draft",
        "head",
        "base",
        "user",
        "url",
        "created_at",
        "updated_at",
    ] {
        assert!(pr.get(field).is_some(), "PR lacks {field}: {pr}");
    }
    assert_eq!(
        (pr["merged"].as_bool(), pr["base"].as_str()),
        (Some(true), Some("main"))
    );

    let page = ok(&c, "read_comments", json!({"number": ASSIGNED_ISSUE})).await;
    assert_eq!(
        (page["total"].as_u64(), page["remaining"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["notices"], json!([]));
    let comments = page["comments"].as_array().expect("a comment list");
    assert_eq!(comments.len(), 3);
    assert!(
        comments
            .windows(2)
            .all(|w| w[0]["id"].as_u64() < w[1]["id"].as_u64()),
        "oldest first"
    );

    let created = ok(
        &c,
        "post_comment",
        json!({"number": ASSIGNED_ISSUE, "body": "Working on it."}),
    )
    .await;
    assert_eq!(
        agent_text(created["body"].as_str().unwrap()),
        "Working on it."
    );
    assert_eq!(gitea.comments(ASSIGNED_ISSUE).len(), 4);

    let updated = ok(&c, "update_description", json!([ASSIGNED_PR, "Fixes #17."])).await;
    assert_eq!(
        (updated["number"].as_u64(), updated["head"].is_string()),
        (Some(18), true),
        "a PR comes back as a PullRequest"
    );
    let updated = ok(
        &c,
        "update_description",
        json!({"number": ASSIGNED_ISSUE, "body": "New text"}),
    )
    .await;
    assert_eq!(
        (
            updated["body"].as_str().map(agent_text),
            updated["is_pull_request"].as_bool()
        ),
        (Some("New text"), Some(false))
    );

    let scope = ok(&c, "scope", json!({})).await;
    assert_eq!(
        scope,
        json!({"owner": "acme", "repo": "widgets", "issue": 17, "writable": [17, 18], "writes_left": 97, "branch": null, "prs_left": 1, "done": false,
        "text": {
            "close_keywords": ["close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved"],
            "reopen_keywords": ["reopen", "reopens", "reopened"],
            "max_foreign_refs": 10,
            "max_mentions": 5
        }})
    );

    // Each allowed write reached the forge exactly once.
    let writes: Vec<String> = gitea
        .writes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        [
            "POST /api/v1/repos/acme/widgets/issues/17/comments",
            "PATCH /api/v1/repos/acme/widgets/issues/18",
            "PATCH /api/v1/repos/acme/widgets/issues/17",
        ]
    );
    for r in gitea.requests() {
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("token {TOKEN}").as_str())
        );
        assert!(
            r.user_agent
                .as_deref()
                .unwrap_or_default()
                .starts_with("forge-sidecar/")
        );
    }
    gitea.assert_contract_clean();
    s.stop();
}

#[tokio::test]
async fn out_of_scope_writes_are_refused_on_every_entry_path() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    let c = client(&s);

    let e = err(
        &c,
        "post_comment",
        json!({"number": OUT_OF_SCOPE_ISSUE, "body": "hi"}),
    )
    .await;
    assert_eq!(e["code"], -32001);
    assert_eq!(
        e["message"].as_str().unwrap().split(';').next().unwrap(),
        "write to #500 denied: outside the assigned scope (writable: #17, #18)"
    );
    assert_eq!(
        e["data"],
        json!({"error": "scope_denied", "number": 500, "writable": [17, 18]})
    );

    let e = err(&c, "update_description", json!([19, "take over"])).await;
    assert_eq!(e["code"], -32001);

    let (status, batch) = raw(
        &c,
        r#"[{"jsonrpc":"2.0","id":1,"method":"read_issue","params":[500]},
            {"jsonrpc":"2.0","id":2,"method":"post_comment","params":{"number":500,"body":"x"}},
            {"jsonrpc":"2.0","id":3,"method":"post_comment","params":[20,"x"]}]"#,
    )
    .await;
    assert_eq!(status, 200);
    let by_id = |id: u64| {
        batch
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(1)["result"]["number"], 500);
    assert_eq!(by_id(2)["error"]["code"], -32001);
    assert_eq!(by_id(3)["error"]["code"], -32001);

    assert!(
        gitea.writes().is_empty(),
        "a denied write reached the forge: {:?}",
        gitea.writes()
    );
    let denied: Vec<Value> = ops(&s)
        .into_iter()
        .filter(|o| o["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 4);
    assert_eq!(denied[0]["summary"], "denied comment to #500: out of scope");
    assert_eq!(
        denied[1]["summary"],
        "denied description update of #19: out of scope"
    );
    assert!(
        s.events().iter().all(|(_, _, v)| v["kind"] != "intent"),
        "no intent for a denied write"
    );
    s.stop();
}

#[tokio::test]
async fn malformed_requests_get_standard_errors() {
    let s = SidecarProcess::memory(&[]);
    let c = client(&s);
    let (_, r) = raw(&c, "{not json").await;
    assert_eq!(r["error"]["code"], -32700);
    let (_, r) = raw(&c, r#"{"jsonrpc":"2.0","id":1}"#).await;
    assert_eq!(r["error"]["code"], -32600);
    let (_, r) = raw(&c, "[]").await;
    assert_eq!(r["error"]["code"], -32600);

    let e = err(&c, "delete_repo", json!({})).await;
    assert_eq!(e["code"], -32601);
    assert!(
        e["message"].as_str().unwrap().contains("read_issue"),
        "lists the methods: {e}"
    );

    for (params, needle) in [
        (json!({"number": 17, "owner": "x"}), "unknown field `owner`"),
        (json!({"number": -1}), "positive integer"),
        (json!({"number": "17"}), "positive integer"),
        (json!({}), "missing field `number`"),
        (json!([17, 18]), "takes 1 positional"),
    ] {
        let e = err(&c, "read_issue", params.clone()).await;
        assert_eq!(e["code"], -32602, "{params}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{params}: {e}"
        );
    }
    let e = err(&c, "post_comment", json!({"number": 17, "body": ""})).await;
    assert!(e["message"].as_str().unwrap().contains("empty"), "{e}");
    let e = err(
        &c,
        "signal_done",
        json!({"status": "maybe", "summary": "x"}),
    )
    .await;
    assert_eq!(e["code"], -32602);
}

#[tokio::test]
async fn the_queue_tells_the_whole_session_in_a_chain() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    let c = client(&s);
    ok(&c, "read_pr", json!({"number": 18})).await;
    ok(
        &c,
        "post_comment",
        json!({"number": 17, "body": "done soon"}),
    )
    .await;
    err(&c, "post_comment", json!({"number": 500, "body": "x"})).await;
    let receipt = ok(
        &c,
        "signal_done",
        json!({"status": "success", "summary": "Fixed in #18."}),
    )
    .await;
    let again = err(
        &c,
        "signal_done",
        json!({"status": "failure", "summary": "again"}),
    )
    .await;
    assert_eq!(again["code"], -32007);
    s.stop();

    let events = s.events();
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, _, v)| v["kind"].as_str().unwrap())
        .collect();
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
            "op",
            "session_end"
        ]
    );
    assert_eq!(events[5].0, receipt["event"].as_str().unwrap());
    let summaries: Vec<&str> = events
        .iter()
        .filter_map(|(_, _, v)| v["summary"].as_str())
        .collect();
    assert_eq!(
        summaries,
        [
            "read PR #18",
            "posted comment to #17",
            "denied comment to #500: out of scope",
            "Fixed in #18.",
            "signalled done: success",
            "denied signal_done: already done"
        ]
    );
    assert_eq!(
        events[2].2["op_id"], events[3].2["op_id"],
        "intent and op share op_id"
    );
    let start = &events[0].2;
    assert_eq!(
        (
            start["owner"].as_str(),
            start["issue"].as_u64(),
            start["forge"].as_str()
        ),
        (Some("acme"), Some(17), Some("gitea"))
    );
    assert_eq!(start["writable"], json!([17, 18]));
    let end = &events.last().unwrap().2;
    assert_eq!(
        (end["reason"].as_str(), end["done"].as_bool()),
        (Some("SIGTERM"), Some(true))
    );
    assert_eq!(end["counts"], json!({"ok": 3, "denied": 2, "error": 0}));
    for (i, (name, _, v)) in events.iter().enumerate() {
        assert_eq!(v["seq"], i as u64, "{name}");
        assert!(name.ends_with(&format!("-{i:08}.json")), "{name}");
        let prev = if i == 0 {
            Value::Null
        } else {
            Value::String(sha256_hex(&events[i - 1].1))
        };
        assert_eq!(v["prev"], prev, "{name}");
        if v["kind"] == "op" {
            assert!(
                v["peer"]["uid"].is_u64() && v["peer"]["pid"].is_i64(),
                "peer recorded: {v}"
            );
        }
    }
    assert!(s.tmp_files().is_empty(), "tmp/ left: {:?}", s.tmp_files());
    assert!(!s.socket.exists(), "socket removed at stop");
}

#[tokio::test]
async fn the_token_appears_nowhere() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    let c = client(&s);
    let mut responses = vec![];
    responses.push(ok(&c, "read_issue", json!({"number": 17})).await);
    responses.push(err(&c, "post_comment", json!({"number": 500, "body": "x"})).await);
    gitea.set_fault(Fault::Status(401));
    responses.push(err(&c, "read_issue", json!({"number": 17})).await);
    responses.push(err(&c, "post_comment", json!({"number": 17, "body": "x"})).await);
    gitea.set_fault(Fault::Redirect(301));
    responses.push(err(&c, "post_comment", json!({"number": 17, "body": "x"})).await);
    gitea.clear_fault();
    s.stop();
    assert_eq!(responses[2]["code"], -32003);
    let log = s.log();
    assert!(log.contains("read issue #17"), "debug log captured");
    for (what, text) in [
        ("responses", serde_json::to_string(&responses).unwrap()),
        ("log", log),
        (
            "events",
            s.events()
                .iter()
                .map(|(_, b, _)| String::from_utf8_lossy(b).into_owned())
                .collect(),
        ),
    ] {
        assert!(!text.contains(TOKEN), "the token leaked into {what}");
    }
}

#[tokio::test]
async fn forge_quirks_are_reported_as_what_they_mean() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    let c = client(&s);
    let e = err(&c, "read_pr", json!({"number": 17})).await;
    assert_eq!(e["code"], -32002);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("is an issue, not a pull request"),
        "{e}"
    );
    // Gitea answers 500 for the comments of a missing issue.
    let e = err(&c, "read_comments", json!({"number": 9999})).await;
    assert_eq!(e["code"], -32002, "{e}");
    let e = err(&c, "read_issue", json!({"number": 9999})).await;
    assert_eq!(e["code"], -32002);

    // Reads are retried through transient failures.
    gitea.set_fault_for(FaultFilter::reads().times(2), Fault::Status(503));
    assert_eq!(
        ok(&c, "read_issue", json!({"number": 17})).await["number"],
        17
    );
    // Writes are never retried: one POST, an error that says what to do.
    gitea.clear_requests();
    gitea.set_fault_for(FaultFilter::writes(), Fault::Status(503));
    let e = err(&c, "post_comment", json!({"number": 17, "body": "x"})).await;
    assert_eq!(e["code"], -32004);
    assert_eq!(gitea.writes().len(), 1);
    // A redirect on a write is not followed.
    gitea.clear_requests();
    gitea.set_fault_for(FaultFilter::writes(), Fault::Redirect(301));
    // Another text: the same one would first be looked for on the forge.
    let e = err(&c, "post_comment", json!({"number": 17, "body": "y"})).await;
    assert_eq!(
        (e["code"].as_i64(), e["data"]["status"].as_u64()),
        (Some(-32003), Some(301))
    );
    assert!(
        e["message"].as_str().unwrap().contains("not followed"),
        "{e}"
    );
    assert_eq!(gitea.requests().len(), 1, "the redirect was followed");
    gitea.clear_fault();
    s.stop();
}

#[tokio::test]
async fn socket_health_mode_and_a_single_server_per_path() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = SidecarProcess::memory(&[]);
    let (status, body) = client(&s).get("/health").await.unwrap();
    // `ok`, then the forge's last known state (the memory forge is not probed
    // over the network, but answers the probe).
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200);
    assert!(body.starts_with("ok\nforge: reachable; learned "), "{body}");
    let mode = std::fs::metadata(&s.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let second = std::process::Command::new(workspace_bin("forge-sidecar"))
        .args(["serve", "--forge", "memory", "--queue-dir"])
        .arg(s.dir.path().join("other-queue"))
        .arg("--socket")
        .arg(&s.socket)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already listening"),
        "{:?}",
        second
    );
    assert!(
        !s.dir.path().join("other-queue").exists(),
        "refused before touching a queue"
    );
    s.stop();
}

#[test]
fn bad_configuration_is_one_line_per_setting_and_exit_2() {
    for (env, needles) in [
        (
            // Three settings missing: all three reported in one run.
            vec![("FORGE_GITEA_API", "http://127.0.0.1:9/api/v1")],
            vec![
                "FORGE_OWNER",
                "FORGE_REPO",
                "FORGE_ISSUE_NUMBER",
                "FORGE_TOKEN_FILE",
            ],
        ),
        (
            vec![("FORGE_KIND", "memory"), ("FORGE_MAX_WRITES", "-1")],
            vec!["FORGE_MAX_WRITES"],
        ),
        (
            // A bad value is reported beside an unrelated missing one.
            vec![
                ("FORGE_OWNER", "acme"),
                ("FORGE_REPO", "w"),
                ("FORGE_ISSUE_NUMBER", "1"),
                ("FORGE_HEARTBEAT_SECS", "soon"),
            ],
            vec![
                "FORGE_GITEA_API",
                "FORGE_TOKEN_FILE",
                "FORGE_HEARTBEAT_SECS",
            ],
        ),
        (
            vec![
                ("FORGE_OWNER", "acme"),
                ("FORGE_REPO", "w"),
                ("FORGE_ISSUE_NUMBER", "1"),
                ("FORGE_GITEA_API", "http://h/api/v1"),
            ],
            vec!["FORGE_TOKEN_FILE"],
        ),
    ] {
        let out = std::process::Command::new(workspace_bin("forge-sidecar"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        let lines: Vec<&str> = stderr.trim_end().lines().collect();
        assert_eq!(lines.len(), needles.len(), "{env:?}: {stderr}");
        for (line, needle) in lines.iter().zip(&needles) {
            assert!(
                line.starts_with("forge-sidecar: configuration error: ") && line.contains(needle),
                "{env:?}: expected {needle} in {line:?}"
            );
        }
    }
}

#[test]
fn help_lists_every_environment_variable() {
    for sub in ["serve", "check"] {
        let out = std::process::Command::new(workspace_bin("forge-sidecar"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{help}");
        for var in [
            "FORGE_KIND",
            "FORGE_GITEA_API",
            "FORGE_OWNER",
            "FORGE_REPO",
            "FORGE_ISSUE_NUMBER",
            "FORGE_PR_NUMBER",
            "FORGE_TOKEN_FILE",
            "FORGE_TOKEN",
            "FORGE_SOCKET",
            "FORGE_SOCKET_MODE",
            "FORGE_QUEUE_DIR",
            "FORGE_LOG",
            "FORGE_MAX_REQUEST_BYTES",
            "FORGE_MAX_BODY_BYTES",
            "FORGE_MAX_WRITES",
            "FORGE_HTTP_TIMEOUT_SECS",
            "FORGE_HEARTBEAT_SECS",
        ] {
            // check's help leaves out what only serving uses (and FORGE_LOG:
            // check logs nothing).
            let serving = [
                "FORGE_SOCKET",
                "FORGE_SOCKET_MODE",
                "FORGE_QUEUE_DIR",
                "FORGE_LOG",
                "FORGE_MAX_REQUEST_BYTES",
                "FORGE_HEARTBEAT_SECS",
            ];
            if sub == "check" && serving.contains(&var) {
                continue;
            }
            assert!(help.contains(var), "{sub} --help does not mention {var}");
        }
    }
}

/// A plain web server on 127.0.0.1 that answers every request with an HTML
/// page (HTTP 200), as a site that is not a Gitea API would; its URL.
fn plain_web_server() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let page = "<html><body>Welcome</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn check_tells_each_problem_apart_naming_the_url_and_the_fix() {
    let gitea = FakeGitea::start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/api/v1", l.local_addr().unwrap())
    };
    let web = plain_web_server();
    let run = |api: &str, token_value: &str, repo: &str, issue: &str| {
        forge_e2e::sidecar::write_token(&token, token_value);
        let mut env = forge_e2e::sidecar::gitea_env(&gitea, &token);
        env.retain(|(k, _)| {
            !["FORGE_ISSUE_NUMBER", "FORGE_REPO", "FORGE_GITEA_API"].contains(&k.as_str())
        });
        let out = std::process::Command::new(workspace_bin("forge-sidecar"))
            .arg("check")
            .env_clear()
            .envs(env)
            .env("FORGE_GITEA_API", api)
            .env("FORGE_REPO", repo)
            .env("FORGE_ISSUE_NUMBER", issue)
            .env("FORGE_HTTP_TIMEOUT_SECS", "5")
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(line.trim_end().lines().count(), 1, "one line: {line}");
        (out.status.code(), line)
    };
    let api = gitea.api_base();
    let (code, line) = run(&api, TOKEN, "widgets", "17");
    assert_eq!(code, Some(0), "{line}");
    assert!(
        line.starts_with("ok: ") && line.contains(&api) && line.contains("writable: #17, #18"),
        "{line}"
    );
    let verdicts = [
        (
            run(&closed_port, TOKEN, "widgets", "17"),
            vec![closed_port.as_str(), "cannot reach", "FORGE_GITEA_API"],
        ),
        (
            run(&web, TOKEN, "widgets", "17"),
            vec![web.as_str(), "is not a Gitea API base", "/api/v1"],
        ),
        (
            run(&api, "wrong-token", "widgets", "17"),
            vec![api.as_str(), "did not accept the token", "FORGE_TOKEN_FILE"],
        ),
        (
            run(&api, TOKEN, "gadgets", "17"),
            vec![
                api.as_str(),
                "repository acme/gadgets not found",
                "FORGE_REPO",
            ],
        ),
        (
            run(&api, TOKEN, "widgets", "9999"),
            vec![
                api.as_str(),
                "issue #9999 does not exist",
                "FORGE_ISSUE_NUMBER",
            ],
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for ((code, line), needles) in verdicts {
        assert_eq!(code, Some(1), "{line}");
        assert!(line.starts_with("failed: "), "{line}");
        for needle in needles {
            assert!(line.contains(needle), "expected {needle:?} in {line}");
        }
        assert!(
            !line.contains("wrong-token") && !line.contains(TOKEN),
            "{line}"
        );
        assert!(
            !line.contains("try again later"),
            "a configuration problem is not transient: {line}"
        );
        seen.insert(line);
    }
    assert_eq!(seen.len(), 5, "five different verdicts");
}

#[tokio::test]
async fn token_from_the_environment_works() {
    let gitea = FakeGitea::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = forge_e2e::sidecar::gitea_env(&gitea, std::path::Path::new("/unused"));
    env.retain(|(k, _)| k != "FORGE_TOKEN_FILE");
    env.push(("FORGE_TOKEN".into(), TOKEN.into()));
    let mut s = SidecarProcess::start_in(dir, &[], &env);
    assert_eq!(
        ok(&client(&s), "read_issue", json!({"number": 17})).await["number"],
        17
    );
    s.stop();
}

#[tokio::test]
async fn oversized_requests_and_batches_are_limit_exceeded_and_audited() {
    let s = SidecarProcess::memory(&["--max-request-bytes", "4096", "--max-body-bytes", "1024"]);
    let c = client(&s);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"post_comment","params":{{"number":17,"body":"{}"}}}}"#,
        "x".repeat(5000)
    );
    let (status, r) = raw(&c, &big).await;
    assert_eq!(
        (status, r["error"]["code"].as_i64()),
        (413, Some(-32005)),
        "{r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4096-byte limit"),
        "{r}"
    );

    let body = err(
        &c,
        "post_comment",
        json!({"number": 17, "body": "y".repeat(2000)}),
    )
    .await;
    assert_eq!(body["code"], -32005);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("over the 1024-byte limit"),
        "{body}"
    );

    let entry = r#"{"jsonrpc":"2.0","id":1,"method":"scope"}"#;
    let batch = format!("[{}]", vec![entry; 65].join(","));
    let (_, r) = raw(&c, &batch).await;
    assert_eq!(r["error"]["code"], -32005, "{r}");
    let (_, r) = raw(&c, &format!("[{}]", vec![entry; 64].join(","))).await;
    assert_eq!(r.as_array().map(Vec::len), Some(64));

    let refused: Vec<String> = ops(&s)
        .iter()
        .filter(|o| o["error"]["name"] == "limit_exceeded")
        .map(|o| o["summary"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused[0].starts_with("refused (oversized request)"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn write_budget_is_enforced_and_reported() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[("FORGE_MAX_WRITES", "2")]);
    let c = client(&s);
    ok(&c, "post_comment", json!({"number": 17, "body": "one"})).await;
    ok(&c, "post_comment", json!({"number": 18, "body": "two"})).await;
    let e = err(&c, "post_comment", json!({"number": 17, "body": "three"})).await;
    assert_eq!(e["code"], -32005);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("the run's budget of 2 forge writes, shared by its sessions, is used up"),
        "{e}"
    );
    assert_eq!(ok(&c, "scope", json!([])).await["writes_left"], 0);
    assert_eq!(gitea.writes().len(), 2);
    s.stop();
}
