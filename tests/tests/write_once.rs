//! End-to-end: every write happens once. The real sidecar and Gitea client
//! against a fake Gitea that applies a write and then loses its answer (a
//! 5xx, a timeout, a dropped connection), or a sidecar killed between
//! `intent` and `op`: the write is found by its marker, answered as a
//! success, never sent twice, and `forge-queue audit` shows how each
//! unknown outcome was resolved. Also: a write that did not apply is given
//! back and retried once; description modes through the socket and `call`.

use std::path::Path;
use std::time::{Duration, Instant};

use forge_e2e::fake_gitea::{AGENT_BRANCH, FakeGitea, Fault, FaultFilter};
use forge_e2e::sidecar::{
    SidecarProcess, call_err as err, call_ok as ok, client, gitea_env, workspace_bin,
};
use serde_json::{Value, json};

/// How long a test waits for the sidecar to reach a state.
const WAIT: Duration = Duration::from_secs(20);

/// The ways a forge can apply a write and lose its answer.
fn lost_answers() -> Vec<(&'static str, Fault)> {
    vec![
        ("5xx after apply", Fault::AppliedThenStatus(500)),
        // The client gives up after FORGE_HTTP_TIMEOUT_SECS (2 s).
        ("timeout after apply", Fault::Delay(Duration::from_secs(30))),
        ("dropped connection after apply", Fault::AppliedThenDrop),
    ]
}

fn sidecar(gitea: &FakeGitea, extra: &[(&str, &str)]) -> SidecarProcess {
    let mut env = vec![
        ("FORGE_HTTP_TIMEOUT_SECS", "2"),
        ("FORGE_BRANCH", AGENT_BRANCH),
        ("FORGE_PR_NUMBER", ""),
    ];
    env.extend_from_slice(extra);
    SidecarProcess::against(gitea, &env)
}

/// A new sidecar process on the queue of an earlier one (the same run).
fn restart(gitea: &FakeGitea, queue: &Path, extra: &[(&str, &str)]) -> SidecarProcess {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    forge_e2e::sidecar::write_token(&token_file, gitea.token());
    let mut env = gitea_env(gitea, &token_file);
    for (k, v) in [("FORGE_BRANCH", AGENT_BRANCH), ("FORGE_PR_NUMBER", "")]
        .iter()
        .chain(extra)
    {
        env.push((k.to_string(), v.to_string()));
    }
    SidecarProcess::start_at(dir, queue.to_path_buf(), &[], &env)
}

fn ops(s: &SidecarProcess) -> Vec<Value> {
    s.events()
        .into_iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["kind"] == "op")
        .collect()
}

fn comments_with(gitea: &FakeGitea, number: u64, text: &str) -> usize {
    gitea
        .comments(number)
        .iter()
        .filter(|c| c.body.contains(text))
        .count()
}

/// `forge-queue audit --json DIR`, checked to show no write of unknown
/// outcome in any session; returns the human table too.
fn audit_has_no_unknown_outcome(queue: &Path) -> String {
    let run = |json: bool| {
        let mut cmd = std::process::Command::new(workspace_bin("forge-queue"));
        cmd.arg("audit");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.arg(queue).output().expect("run forge-queue audit");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let audit: Value = serde_json::from_str(&run(true)).expect("audit JSON");
    for session in audit[0]["sessions"].as_array().expect("sessions") {
        assert_eq!(
            session["unknown_writes"],
            json!([]),
            "an unresolved outcome: {session}"
        );
        for r in session["resolved_writes"].as_array().unwrap_or(&vec![]) {
            assert_ne!(r["status"], "unknown", "{r}");
        }
    }
    let table = run(false);
    assert!(!table.contains("outcome unknown"), "{table}");
    table
}

/// Poll `cond` until it holds (bounded).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_comment_whose_answer_is_lost_is_found_once_and_returned_as_success() {
    for (name, fault) in lost_answers() {
        let gitea = FakeGitea::start();
        let s = sidecar(&gitea, &[]);
        let c = client(&s);
        let left = ok(&c, "scope", json!({})).await["writes_left"].clone();
        gitea.set_fault_for(
            FaultFilter::method("POST")
                .path_contains("/issues/17/comments")
                .times(1),
            fault,
        );
        let text = format!("Progress: {name}.");
        let comment = ok(&c, "post_comment", json!({"number": 17, "body": text})).await;
        assert!(
            comment["body"].as_str().unwrap().starts_with(&text),
            "{name}"
        );
        assert_eq!(comments_with(&gitea, 17, &text), 1, "{name}");
        // The agent's natural retry returns the same comment, posts nothing.
        let again = ok(&c, "post_comment", json!({"number": 17, "body": text})).await;
        assert_eq!(again["id"], comment["id"], "{name}");
        assert_eq!(comments_with(&gitea, 17, &text), 1, "{name}");
        let posts = gitea.writes().iter().filter(|r| r.method == "POST").count();
        assert_eq!(posts, 1, "{name}: one POST in all");
        // One write spent: the lost one; the repeat is free.
        let scope = ok(&c, "scope", json!({})).await;
        assert_eq!(
            scope["writes_left"].as_u64().unwrap() + 1,
            left.as_u64().unwrap(),
            "{name}"
        );
        let all = ops(&s);
        let resolved: Vec<&Value> = all.iter().filter(|o| o["resolution"].is_object()).collect();
        assert_eq!(resolved.len(), 2, "{name}: {all:?}");
        assert_eq!(resolved[0]["outcome"], "ok");
        assert_eq!(
            resolved[0]["resolution"],
            json!({"status": "applied", "how": "read back after a lost answer", "forge_id": comment["id"]}),
            "{name}"
        );
        assert_eq!(resolved[1]["resolution"]["status"], "repeated", "{name}");
        let table = audit_has_no_unknown_outcome(&s.queue);
        assert!(
            table.contains("resolved: post_comment #17") && table.contains("applied"),
            "{name}: {table}"
        );
        gitea.assert_contract_clean();
    }
}

#[tokio::test]
async fn a_write_that_did_not_apply_is_given_back_and_retried_without_a_duplicate() {
    let gitea = FakeGitea::start();
    let s = sidecar(&gitea, &[]);
    let c = client(&s);
    let left = ok(&c, "scope", json!({})).await["writes_left"]
        .as_u64()
        .unwrap();
    // The fake answers 500 and stores nothing.
    gitea.set_fault_for(
        FaultFilter::method("POST")
            .path_contains("/comments")
            .times(1),
        Fault::Status(500),
    );
    let e = err(
        &c,
        "post_comment",
        json!({"number": 17, "body": "Hello once."}),
    )
    .await;
    assert_eq!(e["code"], -32004, "{e}");
    assert_eq!(e["data"]["write"], "not_applied", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("send it again"),
        "{e}"
    );
    assert_eq!(comments_with(&gitea, 17, "Hello once."), 0);
    let scope = ok(&c, "scope", json!({})).await;
    assert_eq!(scope["writes_left"], left, "the unit is given back");
    ok(
        &c,
        "post_comment",
        json!({"number": 17, "body": "Hello once."}),
    )
    .await;
    assert_eq!(comments_with(&gitea, 17, "Hello once."), 1);
    let resolved: Vec<Value> = ops(&s)
        .into_iter()
        .filter(|o| o["resolution"].is_object())
        .collect();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0]["resolution"]["status"], "not_applied");
    audit_has_no_unknown_outcome(&s.queue);

    // Reading back fails too: the outcome stays unknown, the unit spent,
    // and the agent is told to check first.
    gitea.set_fault_for(
        FaultFilter::all().path_contains("/issues/17/comments"),
        Fault::Status(503),
    );
    let e = err(&c, "post_comment", json!({"number": 17, "body": "Maybe."})).await;
    assert_eq!(e["data"]["write"], "unknown", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("before retrying"),
        "{e}"
    );
    gitea.clear_fault();
    let scope = ok(&c, "scope", json!({})).await;
    assert_eq!(scope["writes_left"].as_u64().unwrap(), left - 2);
}

#[tokio::test]
async fn a_description_whose_answer_is_lost_is_found_and_keeps_the_previous_body() {
    for (name, fault) in lost_answers() {
        let gitea = FakeGitea::start();
        let s = sidecar(&gitea, &[]);
        let c = client(&s);
        let human = gitea.issue(17).unwrap().body;
        gitea.set_fault_for(
            FaultFilter::method("PATCH")
                .path_contains("/issues/17")
                .times(1),
            fault,
        );
        let updated = ok(
            &c,
            "update_description",
            json!({"number": 17, "body": "Agent status: on it.", "mode": "append"}),
        )
        .await;
        assert_eq!(updated["number"], 17, "{name}");
        let body = gitea.issue(17).unwrap().body;
        assert!(body.starts_with(human.trim_end()), "{name}: {body}");
        assert_eq!(body.matches("Agent status: on it.").count(), 1, "{name}");
        let patches = gitea
            .writes()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count();
        assert_eq!(patches, 1, "{name}");
        let op = ops(&s)
            .into_iter()
            .rfind(|o| o["op"] == "update_description")
            .unwrap();
        assert_eq!(op["resolution"]["status"], "applied", "{name}: {op}");
        assert_eq!(op["previous_body"]["body"], human, "{name}");
        audit_has_no_unknown_outcome(&s.queue);
    }
}

#[tokio::test]
async fn an_opened_pr_whose_answer_is_lost_keeps_the_allowance_and_joins_the_scope() {
    for (name, fault) in lost_answers() {
        let gitea = FakeGitea::start();
        let s = sidecar(&gitea, &[("FORGE_BASE_BRANCHES", "release/2.0")]);
        let c = client(&s);
        gitea.set_fault_for(
            FaultFilter::method("POST").path_contains("/pulls").times(1),
            fault,
        );
        let pr = ok(
            &c,
            "open_pr",
            json!({"title": "Handle empty input", "body": "Closes #17"}),
        )
        .await;
        let number = pr["number"].as_u64().unwrap();
        assert_eq!(gitea.pulls_from(AGENT_BRANCH).len(), 1, "{name}");
        let scope = ok(&c, "scope", json!({})).await;
        assert_eq!(scope["writable"], json!([17, number]), "{name}");
        assert_eq!(scope["prs_left"], 0, "{name}");
        // No second PR into another base: the allowance stays spent.
        let e = err(
            &c,
            "open_pr",
            json!({"title": "Again", "body": "Closes #17", "base": "release/2.0"}),
        )
        .await;
        assert_eq!(e["code"], -32005, "{name}: {e}");
        assert_eq!(gitea.pulls_from(AGENT_BRANCH).len(), 1, "{name}");
        let op = ops(&s).into_iter().find(|o| o["op"] == "open_pr").unwrap();
        assert_eq!(op["resolution"]["status"], "applied", "{name}: {op}");
        assert_eq!(op["resolution"]["forge_id"], number, "{name}");
        let grown: Vec<Value> = s
            .events()
            .into_iter()
            .map(|(_, _, v)| v)
            .filter(|v| v["kind"] == "scope_grown")
            .collect();
        assert_eq!(grown.len(), 1, "{name}");
        assert_eq!(grown[0]["reason"], "opened", "{name}");
        audit_has_no_unknown_outcome(&s.queue);
    }
}

#[tokio::test]
async fn an_open_pr_that_did_not_apply_gives_the_allowance_back_once_and_only_once() {
    let gitea = FakeGitea::start();
    let s = sidecar(&gitea, &[]);
    let c = client(&s);
    gitea.set_fault_for(
        FaultFilter::method("POST").path_contains("/pulls").times(1),
        Fault::Status(502),
    );
    let body = json!({"title": "Handle empty input", "body": "Closes #17"});
    let e = err(&c, "open_pr", body.clone()).await;
    assert_eq!(e["data"]["write"], "not_applied", "{e}");
    assert_eq!(ok(&c, "scope", json!({})).await["prs_left"], 1);
    assert!(gitea.pulls_from(AGENT_BRANCH).is_empty());
    let pr = ok(&c, "open_pr", body).await;
    assert_eq!(gitea.pulls_from(AGENT_BRANCH).len(), 1);
    assert_eq!(ok(&c, "scope", json!({})).await["prs_left"], 0);
    assert!(pr["body"].as_str().unwrap().starts_with("Closes #17"));
}

/// Start a write that the fake applies and then holds (its answer waits
/// 60 s, the client 30 s), kill the sidecar once the forge has it, and
/// start the run again: the write is resolved before the socket serves.
async fn killed_mid_write(
    method: &str,
    params: Value,
    fault_on: FaultFilter,
) -> (FakeGitea, SidecarProcess, SidecarProcess) {
    let gitea = FakeGitea::start();
    let mut first = sidecar(&gitea, &[("FORGE_HTTP_TIMEOUT_SECS", "30")]);
    gitea.set_fault_for(fault_on.times(1), Fault::Delay(Duration::from_secs(60)));
    let c = client(&first);
    let method_owned = method.to_string();
    let pending = tokio::spawn(async move { c.call(&method_owned, Some(params)).await });
    wait_until("the forge to receive the write", || {
        !gitea.writes().is_empty()
    });
    wait_until("the intent", || {
        first.events().iter().any(|(_, _, v)| v["kind"] == "intent")
    });
    first.signal_and_wait("KILL");
    let _ = pending.await;
    assert!(
        !first
            .events()
            .iter()
            .any(|(_, _, v)| v["kind"] == "op" && v["op"] == method),
        "the kill came before the op"
    );
    gitea.clear_fault();
    let second = restart(&gitea, &first.queue, &[]);
    (gitea, first, second)
}

fn resolved_at_start(s: &SidecarProcess) -> Value {
    let session = s
        .events()
        .last()
        .map(|(_, _, v)| v["session"].clone())
        .unwrap();
    s.events()
        .into_iter()
        .map(|(_, _, v)| v)
        .find(|v| v["session"] == session && v["kind"] == "op")
        .expect("an op for the earlier write")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_killed_between_intent_and_op_is_resolved_at_the_next_start() {
    let (gitea, _first, second) = killed_mid_write(
        "post_comment",
        json!({"number": 17, "body": "Killed mid-write."}),
        FaultFilter::method("POST").path_contains("/comments"),
    )
    .await;
    let op = resolved_at_start(&second);
    assert_eq!(op["resolution"]["status"], "applied", "{op}");
    assert_eq!(op["resolution"]["how"], "read back at start", "{op}");
    assert_eq!(op["resolution"]["intent"]["op_id"], 1, "{op}");
    assert_eq!(comments_with(&gitea, 17, "Killed mid-write."), 1);
    // The agent's retry in the new session returns the comment.
    let c = client(&second);
    let again = ok(
        &c,
        "post_comment",
        json!({"number": 17, "body": "Killed mid-write."}),
    )
    .await;
    assert_eq!(op["resolution"]["forge_id"], again["id"]);
    assert_eq!(comments_with(&gitea, 17, "Killed mid-write."), 1);
    let table = audit_has_no_unknown_outcome(&second.queue);
    assert!(table.contains("read back at start"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_killed_between_intent_and_op_is_resolved_at_the_next_start() {
    let (gitea, _first, second) = killed_mid_write(
        "update_description",
        json!({"number": 17, "body": "Rewritten.", "mode": "section"}),
        FaultFilter::method("PATCH").path_contains("/issues/17"),
    )
    .await;
    let op = resolved_at_start(&second);
    assert_eq!(op["resolution"]["status"], "applied", "{op}");
    assert_eq!(
        gitea.issue(17).unwrap().body.matches("Rewritten.").count(),
        1
    );
    audit_has_no_unknown_outcome(&second.queue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_killed_between_intent_and_op_is_resolved_at_the_next_start_and_joins_the_scope() {
    let (gitea, _first, second) = killed_mid_write(
        "open_pr",
        json!({"title": "Handle empty input", "body": "Closes #17"}),
        FaultFilter::method("POST").path_contains("/pulls"),
    )
    .await;
    let pulls = gitea.pulls_from(AGENT_BRANCH);
    assert_eq!(pulls.len(), 1);
    let number = pulls[0].number;
    let op = resolved_at_start(&second);
    assert_eq!(op["resolution"]["status"], "applied", "{op}");
    assert_eq!(op["resolution"]["forge_id"], number, "{op}");
    let c = client(&second);
    let scope = ok(&c, "scope", json!({})).await;
    assert_eq!(scope["writable"], json!([17, number]));
    assert_eq!(scope["prs_left"], 0, "the run's PR allowance stays spent");
    audit_has_no_unknown_outcome(&second.queue);
}

#[tokio::test]
async fn description_modes_through_the_socket_and_call_and_the_modes_setting() {
    let gitea = FakeGitea::start();
    let s = sidecar(&gitea, &[("FORGE_DESCRIPTION_MODES", "append,section")]);
    let c = client(&s);
    let human = gitea.issue(17).unwrap().body;
    for mode in [json!(null), json!("replace")] {
        let mut params = json!({"number": 17, "body": "Wipe."});
        if !mode.is_null() {
            params["mode"] = mode;
        }
        let e = err(&c, "update_description", params).await;
        assert_eq!(e["code"], -32001, "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("allowed: append, section"),
            "{e}"
        );
    }
    assert_eq!(gitea.issue(17).unwrap().body, human, "nothing was wiped");
    // `forge-sidecar call` passes the mode through.
    for (mode, text) in [
        ("section", "Status: started."),
        ("section", "Status: done."),
    ] {
        let out = std::process::Command::new(workspace_bin("forge-sidecar"))
            .args(["call", "--socket"])
            .arg(&s.socket)
            .arg("update_description")
            .arg(json!({"number": 17, "body": text, "mode": mode}).to_string())
            .output()
            .expect("run forge-sidecar call");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let body = gitea.issue(17).unwrap().body;
    assert!(body.starts_with(human.trim_end()), "{body}");
    assert!(body.contains("Status: done.") && !body.contains("Status: started."));
    // An agent text claiming a marker is refused.
    let e = err(
        &c,
        "post_comment",
        json!({"number": 17, "body": "<!-- forge-sidecar:write x/1 -->"}),
    )
    .await;
    assert_eq!(e["code"], -32602, "{e}");
    let op = ops(&s)
        .into_iter()
        .rfind(|o| o["op"] == "update_description")
        .unwrap();
    assert!(
        op["previous_body"]["body"]
            .as_str()
            .unwrap()
            .contains("Status: started."),
        "{op}"
    );
}
