//! End to end: what a written text makes the forge do. The real sidecar
//! process and Gitea client against the fake Gitea; every text of the
//! corpus (`tests/corpus/text_check.json`, and `text_check_oracle.json`
//! with the cases judged by the forge's own reference code) goes through
//! the socket as a comment, as a description, and as a pull request's
//! title, body and commit message; only the harmless ones reach the forge.

use std::time::Duration;

use forge_e2e::fake_gitea::FakeGitea;
use forge_e2e::sidecar::{SidecarProcess, agent_text, call_err, call_ok, client};
use forge_sidecar::client::SocketClient;
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CORPUS: &str = include_str!("../corpus/text_check.json");
const ORACLE_CORPUS: &str = include_str!("../corpus/text_check_oracle.json");
/// The branch the pull request tests push and open from.
const BRANCH: &str = "agent/text-corpus";
const WRITES: [(&str, u64); 2] = [("post_comment", 17), ("update_description", 18)];

async fn call(s: &SidecarProcess, method: &str, params: Value) -> Result<Value, Value> {
    SocketClient::new(&s.socket, CALL_TIMEOUT)
        .call(method, Some(params))
        .await
        .expect("sidecar reachable")
}

fn corpus(section: &str) -> Vec<Value> {
    [CORPUS, ORACLE_CORPUS]
        .iter()
        .flat_map(|file| {
            let all: Value = serde_json::from_str(file).expect("the corpus is JSON");
            all[section].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

fn ops(s: &SidecarProcess) -> Vec<Value> {
    s.events()
        .into_iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["kind"] == "op")
        .collect()
}

/// The bodies the fake Gitea received in writes.
fn written_bodies(gitea: &FakeGitea) -> Vec<String> {
    gitea
        .writes()
        .iter()
        .filter_map(|w| w.body_json())
        .filter_map(|b| b["body"].as_str().map(|t| agent_text(t).to_string()))
        .collect()
}

#[tokio::test]
async fn the_corpus_gets_its_verdicts_for_comments_and_descriptions() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[("FORGE_MAX_WRITES", "1000")]);
    let mut refused = 0;
    for section in ["refused", "over_refused"] {
        for entry in corpus(section) {
            let (name, body) = (&entry["name"], &entry["text"]);
            for (method, number) in WRITES {
                let e = call(&s, method, json!({"number": number, "body": body}))
                    .await
                    .expect_err(&format!("{section} '{name}' was accepted by {method}"));
                assert_eq!(e["code"], -32001, "{name} ({method}): {e}");
                assert_eq!(e["data"]["referenced"], entry["referenced"], "{name}: {e}");
                assert_eq!(e["data"]["number"], number, "{name}: {e}");
                let message = e["message"].as_str().unwrap();
                assert!(
                    message.contains("outside the assigned scope") && message.contains("instead"),
                    "{name}: {message}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        gitea.writes().is_empty(),
        "a refused text reached the forge: {:?}",
        written_bodies(&gitea)
    );
    let harmless = corpus("harmless");
    let mut refused_harmless = Vec::new();
    for entry in &harmless {
        for (method, number) in WRITES {
            if let Err(e) = call(&s, method, json!({"number": number, "body": entry["text"]})).await
            {
                refused_harmless.push(format!("{} ({method}): {e}", entry["name"]));
            }
        }
    }
    assert!(
        refused_harmless.is_empty(),
        "{} of {} harmless writes refused:\n{}",
        refused_harmless.len(),
        harmless.len() * 2,
        refused_harmless.join("\n")
    );
    // Every harmless text reached the forge unchanged, and nothing else
    // did. A text the corpus holds twice may be written once: the same call
    // again can return the earlier write instead of writing anew.
    let distinct =
        |texts: Vec<String>| -> std::collections::BTreeSet<String> { texts.into_iter().collect() };
    assert_eq!(
        distinct(written_bodies(&gitea)),
        distinct(
            harmless
                .iter()
                .map(|e| e["text"].as_str().unwrap().to_string())
                .collect()
        ),
        "exactly the harmless texts, unchanged"
    );
    eprintln!(
        "text corpus: {refused} refused writes as expected, {} harmless writes accepted, 0 refused",
        harmless.len() * 2
    );

    // The audit: every refusal counted as denied (over the audit rate,
    // refusals are coalesced into counts), every allowed write on its own
    // event with what it reached. Stopped first: the last counts are written
    // at the end of the session.
    s.stop();
    let ops = ops(&s);
    let is_write = |name: &str| name == "post_comment" || name == "update_description";
    let mut denied = 0;
    let mut allowed = 0;
    for op in &ops {
        if let Some(by_op) = op["coalesced"].as_object() {
            if op["outcome"] == "denied" {
                denied += by_op
                    .iter()
                    .filter(|(name, _)| is_write(name))
                    .map(|(_, n)| n.as_u64().unwrap())
                    .sum::<u64>() as usize;
            }
        } else if is_write(op["op"].as_str().unwrap()) {
            if op["outcome"] == "denied" {
                assert!(op.get("foreign_refs").is_none(), "{op}");
                denied += 1;
            } else {
                assert_eq!(op["outcome"], "ok", "{op}");
                // A repeated call sent nothing: the earlier write's op lists them.
                assert!(
                    op["resolution"]["status"] == "repeated"
                        || (op["foreign_refs"].is_array() && op["mentions"].is_array()),
                    "{op}"
                );
                allowed += 1;
            }
        }
    }
    assert_eq!((denied, allowed), (refused, harmless.len() * 2));
}

#[tokio::test]
async fn configured_keywords_are_refused_and_shown() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(
        &gitea,
        &[
            ("FORGE_CLOSE_KEYWORDS", "schliesst"),
            ("FORGE_REOPEN_KEYWORDS", "Öffnet, reactivates"),
        ],
    );
    for (body, keyword) in [
        ("Schliesst #500", "schliesst"),
        ("fixes #500", "fixes"),
        ("> öffnet #500", "öffnet"),
    ] {
        for (method, number) in WRITES {
            let e = call(&s, method, json!({"number": number, "body": body}))
                .await
                .unwrap_err();
            assert_eq!(e["code"], -32001, "{body}: {e}");
            assert_eq!(e["data"]["keyword"], keyword, "{e}");
        }
    }
    assert!(gitea.writes().is_empty());
    let scope = call(&s, "scope", json!({})).await.unwrap();
    let close = scope["text"]["close_keywords"].as_array().unwrap();
    assert!(
        close.contains(&json!("schliesst")) && close.contains(&json!("fixes")),
        "{scope}"
    );
    assert_eq!(
        scope["text"]["reopen_keywords"],
        json!(["reopen", "reopens", "reopened", "öffnet", "reactivates"])
    );
    assert_eq!(
        (
            &scope["text"]["max_foreign_refs"],
            &scope["text"]["max_mentions"]
        ),
        (&json!(10), &json!(5))
    );
    let start = s.events().into_iter().map(|(_, _, v)| v).next().unwrap();
    assert_eq!(start["kind"], "session_start");
    assert_eq!(start["text"], scope["text"]);
    s.stop();
}

#[tokio::test]
async fn references_and_mentions_are_limited_and_audited() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    let eleven: String = (501..512).map(|n| format!("#{n} ")).collect();
    let six = "@a @b @c @d @e @org/team";
    for (method, number) in WRITES {
        let e = call(&s, method, json!({"number": number, "body": eleven}))
            .await
            .unwrap_err();
        assert_eq!(
            (e["code"].clone(), e["data"]["limit"].clone()),
            (json!(-32005), json!("max_foreign_refs")),
            "{e}"
        );
        let e = call(&s, method, json!({"number": number, "body": six}))
            .await
            .unwrap_err();
        assert_eq!(
            (e["code"].clone(), e["data"]["limit"].clone()),
            (json!(-32005), json!("max_mentions")),
            "{e}"
        );
        assert_eq!(ops(&s).last().unwrap()["outcome"], "denied");
    }
    assert!(gitea.writes().is_empty());
    s.stop();

    let mut s = SidecarProcess::against(
        &gitea,
        &[
            ("FORGE_MAX_FOREIGN_REFS", "11"),
            ("FORGE_MAX_MENTIONS", "6"),
        ],
    );
    let body = format!("{eleven}\n\nCloses #17, see other/Repo#3? no: {six}");
    let e = call(&s, "post_comment", json!({"number": 17, "body": body}))
        .await
        .unwrap_err();
    assert_eq!(
        e["data"]["limit"], "max_foreign_refs",
        "12 with other/repo#3: {e}"
    );
    let body = format!("{eleven}\n\nCloses #17. Thanks {six}");
    call(&s, "post_comment", json!({"number": 17, "body": body}))
        .await
        .unwrap();
    let op = ops(&s).pop().unwrap();
    assert_eq!(op["outcome"], "ok");
    assert_eq!(op["summary"], "posted comment to #17 (Closes #17)");
    let refs: Vec<String> = (501..512).map(|n| format!("#{n}")).collect();
    assert_eq!(op["foreign_refs"], json!(refs));
    assert_eq!(op["mentions"], json!(["a", "b", "c", "d", "e", "org/team"]));
    assert_eq!(written_bodies(&gitea), [body]);
    s.stop();
}

#[tokio::test]
async fn the_corpus_gets_its_verdicts_in_pull_requests() {
    let gitea = FakeGitea::start();
    // #17 and the assigned PR #18 writable, as for the corpus's verdicts;
    // pull requests opened from a branch of their own.
    let mut s = SidecarProcess::against(&gitea, &[("FORGE_BRANCH", BRANCH)]);
    let c = client(&s);
    let pr_posts = || {
        gitea
            .writes()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/pulls"))
            .count()
    };
    let mut refused = 0;
    for section in ["refused", "over_refused"] {
        for entry in corpus(section) {
            let (name, text) = (&entry["name"], &entry["text"]);
            gitea.push_branch(BRANCH, &["Render empty input"]);
            for (part, params) in [
                ("title", json!({"title": text, "body": "Closes #17"})),
                ("body", json!({"title": "Fix", "body": text})),
            ] {
                let e = call_err(&c, "open_pr", params).await;
                assert_eq!(e["code"], -32001, "{name} as the {part}: {e}");
                assert_eq!(e["data"]["referenced"], entry["referenced"], "{name}: {e}");
                refused += 1;
            }
            gitea.push_branch(BRANCH, &["Render empty input", text.as_str().unwrap()]);
            let e = call_err(&c, "open_pr", json!({"title": "Fix", "body": "Closes #17"})).await;
            assert_eq!(e["code"], -32001, "{name} as a commit message: {e}");
            assert_eq!(e["data"]["referenced"], entry["referenced"], "{name}: {e}");
            assert!(
                e["message"].as_str().unwrap().contains("reword commit "),
                "{name}: {e}"
            );
            refused += 1;
        }
    }
    assert_eq!(pr_posts(), 0, "a refused text reached the forge");

    // Harmless: all of them as the branch's commit messages, then as the
    // title and body. The first pull request opens; after it the texts
    // still pass the checker and meet the one-PR limit instead.
    let harmless = corpus("harmless");
    let messages: Vec<&str> = harmless
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    gitea.push_branch(BRANCH, &messages);
    call_ok(
        &c,
        "open_pr",
        json!({"title": "Fix", "body": harmless[0]["text"]}),
    )
    .await;
    for entry in &harmless {
        let e = call_err(
            &c,
            "open_pr",
            json!({"title": entry["text"], "body": entry["text"]}),
        )
        .await;
        assert_eq!(
            (&e["code"], &e["data"]["limit"]),
            (&json!(-32005), &json!("max_prs")),
            "{}: {e}",
            entry["name"]
        );
    }
    assert_eq!(pr_posts(), 1);
    eprintln!(
        "pull request corpus: {refused} refused titles, bodies and commit messages; {} harmless accepted",
        harmless.len()
    );
    s.stop();
}

#[tokio::test]
async fn the_audit_names_the_reason_and_every_reference_form() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    let e = call(
        &s,
        "post_comment",
        json!({"number": 17, "body": "Fixes #000500"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e["data"]["referenced"], "#500", "{e}");
    let op = ops(&s).pop().unwrap();
    assert_eq!(
        (&op["outcome"], &op["summary"]),
        (
            &json!("denied"),
            &json!("denied comment to #17: 'Fixes #000500' would close #500")
        )
    );
    call(
        &s,
        "post_comment",
        json!({"number": 17, "body": "See #0000501 and [x](http://'@/acme/widgets/issues/502), <http://h//!503)/b/issues/1>"}),
    )
    .await
    .unwrap();
    let op = ops(&s).pop().unwrap();
    assert_eq!(op["outcome"], "ok", "{op}");
    let refs = op["foreign_refs"].as_array().unwrap();
    for r in ["#501", "#502", "#503"] {
        assert!(refs.contains(&json!(r)), "{r} in {op}");
    }
    s.stop();
    // The host's audit shows the reader the same reason the agent got.
    let audit = std::process::Command::new(forge_e2e::sidecar::workspace_bin("forge-queue"))
        .arg("audit")
        .arg(&s.queue)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&audit.stdout);
    assert!(
        table.contains("denied write: post_comment #17")
            && table.contains("'Fixes #000500' is a close reference to #500")
            && table.contains("the forge would close #500"),
        "{table}\n{}",
        String::from_utf8_lossy(&audit.stderr)
    );
}
