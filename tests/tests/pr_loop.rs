//! The PR loop end to end: the real `forge-sidecar serve` against the fake
//! Gitea, with no PR assigned at start. The agent opens its PR, the PR
//! joins the writable set on record, reviews are read page by page, and
//! text Gitea acts on (PR title and body, commit messages) is checked.

use forge_e2e::fake_gitea::{AGENT_BRANCH, ASSIGNED_PR, BOT_LOGIN, FakeGitea};
use forge_e2e::sidecar::{SidecarProcess, call_err as err, call_ok as ok, client, workspace_bin};
use serde_json::{Value, json};

/// A sidecar with no PR assigned, pushing to `branch`.
fn agent_sidecar(gitea: &FakeGitea, branch: &str, extra: &[(&str, &str)]) -> SidecarProcess {
    let mut env = vec![("FORGE_PR_NUMBER", ""), ("FORGE_BRANCH", branch)];
    env.extend_from_slice(extra);
    SidecarProcess::against(gitea, &env)
}

fn of_kind(s: &SidecarProcess, kind: &str) -> Vec<Value> {
    s.events()
        .into_iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["kind"] == kind)
        .collect()
}

fn pr_posts(gitea: &FakeGitea) -> usize {
    gitea
        .writes()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pulls"))
        .count()
}

/// `forge-queue export QUEUE` (one session), validated against the run
/// record schema in the repository.
fn export(queue: &std::path::Path) -> Value {
    let out = std::process::Command::new(workspace_bin("forge-queue"))
        .arg("export")
        .arg(queue)
        .output()
        .expect("run forge-queue export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout).expect("one JSON record");
    let schema_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../queue/host/schema/run-record.schema.json");
    let schema: Value = serde_json::from_slice(&std::fs::read(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&record)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "export does not match the schema: {errors:#?}"
    );
    record
}

#[tokio::test]
async fn the_agent_opens_its_pr_and_it_joins_the_scope_on_record() {
    let gitea = FakeGitea::start();
    let mut s = agent_sidecar(&gitea, AGENT_BRANCH, &[]);
    let c = client(&s);
    let scope = ok(&c, "scope", json!({})).await;
    assert_eq!(scope["writable"], json!([17]));
    assert_eq!(
        (scope["branch"].as_str(), scope["prs_left"].as_u64()),
        (Some(AGENT_BRANCH), Some(1))
    );

    let pr = ok(
        &c,
        "open_pr",
        json!({"title": "Render an empty widget for empty input", "body": "Closes #17"}),
    )
    .await;
    let number = pr["number"].as_u64().unwrap();
    assert_eq!(number, 501, "the next number of the issue sequence");
    assert_eq!(
        (pr["head"].as_str(), pr["base"].as_str()),
        (Some(AGENT_BRANCH), Some("main"))
    );
    assert_eq!(pr["head_repo"], "acme/widgets");

    // The new PR is writable at once.
    ok(
        &c,
        "post_comment",
        json!({"number": number, "body": "Ready for review."}),
    )
    .await;
    let updated = ok(
        &c,
        "update_description",
        json!({"number": number, "body": "Closes #17.\n\nHandles empty input."}),
    )
    .await;
    assert_eq!(updated["number"], number);
    let scope = ok(&c, "scope", json!({})).await;
    assert_eq!(scope["writable"], json!([17, number]));
    assert_eq!(scope["prs_left"], 0);

    // On record: the growth, and the intent before the POST.
    let grown = of_kind(&s, "scope_grown");
    assert_eq!(grown.len(), 1, "{grown:?}");
    assert_eq!(
        (
            grown[0]["number"].as_u64(),
            grown[0]["branch"].as_str(),
            grown[0]["reason"].as_str()
        ),
        (Some(number), Some(AGENT_BRANCH), Some("opened"))
    );
    let intent = of_kind(&s, "intent")
        .into_iter()
        .find(|i| i["op"] == "open_pr")
        .unwrap();
    assert!(intent["target"].is_null());
    let op = of_kind(&s, "op")
        .into_iter()
        .find(|o| o["op"] == "open_pr")
        .unwrap();
    assert_eq!(
        op["summary"],
        format!("opened PR #{number} from {AGENT_BRANCH} into main")
    );
    assert_eq!(op["target"], number);
    // In order: the intent before the POST, the growth before the op.
    let order: Vec<String> = s
        .events()
        .into_iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["op"] == "open_pr" || v["kind"] == "scope_grown")
        .map(|v| v["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order[..3], ["intent", "scope_grown", "op"], "{order:?}");
    let start = &of_kind(&s, "session_start")[0];
    assert_eq!(
        start["writable"],
        json!([17]),
        "session_start keeps the initial set"
    );

    // A second PR is over the session's limit; nothing is sent.
    let e = err(&c, "open_pr", json!({"title": "Another", "body": "More"})).await;
    assert_eq!(e["data"]["limit"], "max_prs", "{e}");
    assert_eq!(pr_posts(&gitea), 1);
    s.stop();

    // The next session finds the PR at start; a duplicate is refused naming it.
    let s2 = agent_sidecar(&gitea, AGENT_BRANCH, &[("FORGE_MAX_PRS", "2")]);
    let c2 = client(&s2);
    let grown = of_kind(&s2, "scope_grown");
    assert_eq!(grown.len(), 1, "{grown:?}");
    assert_eq!(
        (grown[0]["number"].as_u64(), grown[0]["reason"].as_str()),
        (Some(number), Some("found at start"))
    );
    assert_eq!(
        ok(&c2, "scope", json!({})).await["writable"],
        json!([17, number])
    );
    let e = err(
        &c2,
        "open_pr",
        json!({"title": "Again", "body": "Closes #17"}),
    )
    .await;
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("PR #{number} is already open for this branch"))
            && message.contains("update_description"),
        "{e}"
    );
    assert_eq!(e["data"]["existing"], number);
    assert!(
        gitea.contract_violations().is_empty(),
        "{:?}",
        gitea.contract_violations()
    );
}

#[tokio::test]
async fn only_prs_of_the_branch_in_this_repository_become_writable() {
    let gitea = FakeGitea::start();
    let s = agent_sidecar(&gitea, AGENT_BRANCH, &[]);
    let c = client(&s);
    // Opened outside the sidecar after it started: from a fork with the
    // same branch name, from another branch, and from the agent's branch.
    let fork = gitea.add_pull(AGENT_BRANCH, "mallory/widgets", "main", "bob");
    let other = gitea.add_pull("feature/colours", "acme/widgets", "develop", "bob");
    let own = gitea.add_pull(AGENT_BRANCH, "acme/widgets", "main", BOT_LOGIN);

    for n in [fork, other, ASSIGNED_PR] {
        let e = err(&c, "post_comment", json!({"number": n, "body": "mine now"})).await;
        assert_eq!(e["data"]["error"], "scope_denied", "#{n}: {e}");
    }
    ok(
        &c,
        "post_comment",
        json!({"number": own, "body": "Picked this up."}),
    )
    .await;
    let grown = of_kind(&s, "scope_grown");
    assert_eq!(grown.len(), 1, "{grown:?}");
    assert_eq!(
        (grown[0]["number"].as_u64(), grown[0]["reason"].as_str()),
        (Some(own), Some("found on write"))
    );
    assert_eq!(
        ok(&c, "scope", json!({})).await["writable"],
        json!([17, own])
    );
    let posted: Vec<String> = gitea.writes().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        posted,
        [format!("/api/v1/repos/acme/widgets/issues/{own}/comments")]
    );
    assert!(
        gitea.contract_violations().is_empty(),
        "{:?}",
        gitea.contract_violations()
    );
}

#[tokio::test]
async fn closing_keywords_in_the_pr_or_its_commits_are_refused() {
    let gitea = FakeGitea::start();
    let s = agent_sidecar(&gitea, AGENT_BRANCH, &[]);
    let c = client(&s);
    for params in [
        json!({"title": "Closes #500", "body": "Closes #17"}),
        json!({"title": "Fix", "body": "Closes #17, fixes acme/widgets#500"}),
    ] {
        let e = err(&c, "open_pr", params).await;
        assert_eq!(e["data"]["error"], "scope_denied", "{e}");
        assert!(e["message"].as_str().unwrap().contains("#500"), "{e}");
    }
    gitea.push_branch(
        AGENT_BRANCH,
        &["Render empty input", "Fixes #500 while at it"],
    );
    let e = err(&c, "open_pr", json!({"title": "Fix", "body": "Closes #17"})).await;
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("reword commit "), "{e}");
    assert!(message.contains(": 'Fixes #500' would close #500"), "{e}");
    // Hidden from a plain reading, found by the text checker.
    gitea.push_branch(AGENT_BRANCH, &["Render empty input\n\nFi\u{200B}xes #500"]);
    let e = err(&c, "open_pr", json!({"title": "Fix", "body": "Closes #17"})).await;
    assert!(
        e["message"].as_str().unwrap().contains("reword commit "),
        "{e}"
    );
    assert_eq!(e["data"]["found"], "markdown+unicode", "{e}");
    assert_eq!(pr_posts(&gitea), 0, "nothing reached the forge");
    assert_eq!(ok(&c, "scope", json!({})).await["prs_left"], 1);

    // A branch that was never pushed.
    let s2 = agent_sidecar(&gitea, "agent/never-pushed", &[]);
    let e = err(&client(&s2), "open_pr", json!({"title": "t", "body": "b"})).await;
    assert!(
        e["message"].as_str().unwrap().contains("push it first"),
        "{e}"
    );
    assert!(
        gitea.contract_violations().is_empty(),
        "{:?}",
        gitea.contract_violations()
    );
}

#[tokio::test]
async fn signal_done_warns_about_commits_of_the_session_pr() {
    let gitea = FakeGitea::start();
    let s = agent_sidecar(&gitea, AGENT_BRANCH, &[]);
    let c = client(&s);
    let pr = ok(&c, "open_pr", json!({"title": "Fix", "body": "Closes #17"})).await;
    // Pushed with git after the PR was opened: the sidecar never saw it.
    let mut messages = vec!["Render empty input"; 55];
    messages.push("Tidy up\n\nCloses #500");
    gitea.push_branch(AGENT_BRANCH, &messages);
    let receipt = ok(
        &c,
        "signal_done",
        json!({"status": "success", "summary": "Done."}),
    )
    .await;
    let warnings = receipt["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{receipt}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains(&format!("PR #{}", pr["number"]))
            && warning.contains("'Closes #500' would close #500"),
        "{warning}"
    );
    let done = &of_kind(&s, "done")[0];
    assert_eq!(done["warnings"], json!([warning]));

    // The host's run record has the growth and the warning, as its schema says.
    let record = export(&s.queue);
    assert_eq!(record["writable"]["initial"], json!([17]));
    assert_eq!(record["writable"]["growth"][0]["reason"], "opened");
    assert_eq!(record["done"]["warnings"], json!([warning]));
    let pages = gitea
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/commits"))
        .count();
    assert_eq!(pages, 2, "56 commits are two pages of 50");
    assert!(
        gitea.contract_violations().is_empty(),
        "{:?}",
        gitea.contract_violations()
    );
}

#[tokio::test]
async fn read_reviews_returns_every_review_and_inline_comment() {
    let gitea = FakeGitea::start();
    let s = SidecarProcess::against(&gitea, &[]);
    let c = client(&s);
    for k in 0..54 {
        gitea.add_review(ASSIGNED_PR, "bob", "COMMENT", &format!("review {k}"), &[]);
    }
    let inline: Vec<(String, i64, String)> = (1..=60)
        .map(|k| {
            (
                format!("src/f{k}.rs"),
                if k % 2 == 0 { k } else { -k },
                format!("note {k}"),
            )
        })
        .collect();
    let borrowed: Vec<(&str, i64, &str)> = inline
        .iter()
        .map(|(p, l, b)| (p.as_str(), *l, b.as_str()))
        .collect();
    gitea.add_review(
        ASSIGNED_PR,
        "alice",
        "APPROVED",
        "LGTM after the notes.",
        &borrowed,
    );

    let reviews = ok(&c, "read_reviews", json!({"number": ASSIGNED_PR})).await;
    let reviews = reviews.as_array().unwrap();
    assert_eq!(reviews.len(), 56, "1 seeded + 54 + 1, over two pages");
    assert_eq!(reviews[0]["state"], "request_changes");
    assert_eq!(reviews[0]["comments"][0]["path"], "src/render.rs");
    let last = &reviews[55];
    assert_eq!(
        (last["user"].as_str(), last["state"].as_str()),
        (Some("alice"), Some("approved"))
    );
    let comments = last["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 60);
    assert_eq!(
        (comments[0]["line"].clone(), comments[0]["old_line"].clone()),
        (Value::Null, json!(1))
    );
    assert_eq!(
        (comments[1]["line"].clone(), comments[1]["old_line"].clone()),
        (json!(2), Value::Null)
    );
    assert!(comments[1]["diff_hunk"].as_str().unwrap().starts_with("@@"));
    assert_eq!(comments[59]["body"], "note 60");

    let e = err(&c, "read_reviews", json!({"number": 17})).await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not a pull request"),
        "{e}"
    );
    let op = of_kind(&s, "op")
        .into_iter()
        .find(|o| o["op"] == "read_reviews")
        .unwrap();
    assert_eq!(
        op["summary"],
        "read 56 review(s) of PR #18 with 61 inline comment(s)"
    );
    assert!(
        gitea.contract_violations().is_empty(),
        "{:?}",
        gitea.contract_violations()
    );
}

#[tokio::test]
async fn a_restart_within_a_run_keeps_the_opened_pr_and_the_pr_limit() {
    let root = tempfile::tempdir().unwrap();
    let queue = root.path().join("queue");
    let gitea = FakeGitea::start();
    let start = |run: &str| {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, gitea.token()).unwrap();
        let mut env = forge_e2e::sidecar::gitea_env(&gitea, &token);
        for (k, v) in [
            ("FORGE_PR_NUMBER", ""),
            ("FORGE_BRANCH", AGENT_BRANCH),
            ("FORGE_RUN_ID", run),
        ] {
            env.push((k.to_string(), v.to_string()));
        }
        SidecarProcess::start_at(dir, queue.clone(), &[], &env)
    };
    let mut first = start("job-1");
    let pr = ok(
        &client(&first),
        "open_pr",
        json!({"title": "Fix", "body": "Closes #17"}),
    )
    .await;
    first.signal_and_wait("KILL");

    // Restarted in the same run: the PR is found and writable again, and the
    // run's one PR is spent; a new run may open one (here: refused as a duplicate).
    let second = start("job-1");
    let c = client(&second);
    let scope = ok(&c, "scope", json!({})).await;
    assert_eq!(
        (scope["writable"].clone(), scope["prs_left"].as_u64()),
        (json!([17, pr["number"]]), Some(0))
    );
    let e = err(&c, "open_pr", json!({"title": "Fix", "body": "Closes #17"})).await;
    assert_eq!(e["data"]["limit"], "max_prs", "{e}");
    let third = start("job-2");
    let e = err(
        &client(&third),
        "open_pr",
        json!({"title": "Fix", "body": "Closes #17"}),
    )
    .await;
    assert_eq!(e["data"]["existing"], pr["number"], "{e}");
    assert_eq!(
        pr_posts(&gitea),
        2,
        "the first PR and the refused duplicate"
    );
}
