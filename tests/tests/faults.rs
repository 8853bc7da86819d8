//! End-to-end: forge faults.
//! The real sidecar process, the real Gitea client, a misbehaving fake Gitea.

use std::time::Duration;

use forge_e2e::fake_gitea::{FakeGitea, Fault, FaultFilter};
use forge_e2e::sidecar::SidecarProcess;
use forge_sidecar::client::SocketClient;
use serde_json::{Value, json};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

async fn call(s: &SidecarProcess, method: &str, params: Value) -> Result<Value, Value> {
    SocketClient::new(&s.socket, CALL_TIMEOUT)
        .call(method, Some(params))
        .await
        .expect("sidecar reachable")
}

fn last_op(s: &SidecarProcess) -> Value {
    s.events()
        .into_iter()
        .map(|(_, _, v)| v)
        .rfind(|v| v["kind"] == "op")
        .expect("an op event")
}

#[tokio::test]
async fn a_slow_forge_times_out_and_others_are_still_served() {
    let gitea = FakeGitea::start();
    let s = SidecarProcess::against(&gitea, &[("FORGE_HTTP_TIMEOUT_SECS", "2")]);
    gitea.set_fault_for(
        FaultFilter::reads().path_contains("/issues/3"),
        Fault::Delay(Duration::from_secs(20)),
    );
    let socket = s.socket.clone();
    let slow = tokio::spawn(async move {
        SocketClient::new(&socket, CALL_TIMEOUT)
            .call("read_issue", Some(json!({"number": 3})))
            .await
    });
    // Another caller is answered while the slow read is pending.
    let other = call(&s, "read_issue", json!({"number": 4})).await.unwrap();
    assert_eq!(other["number"], 4);
    assert!(
        !slow.is_finished(),
        "the slow read should still be waiting on the forge"
    );
    let e = slow.await.unwrap().unwrap().unwrap_err();
    assert_eq!(e["code"], -32004, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within the timeout"),
        "{e}"
    );
}

#[tokio::test]
async fn a_dropped_write_is_read_back_and_not_retried() {
    let gitea = FakeGitea::start();
    let s = SidecarProcess::against(&gitea, &[]);
    // The connection drops before the fake stores anything.
    gitea.set_fault_for(FaultFilter::writes(), Fault::DropConnection);
    let e = call(&s, "post_comment", json!({"number": 17, "body": "hello"}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], -32004, "{e}");
    assert_eq!(e["data"]["write"], "not_applied", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("reading the target back shows it is not there"),
        "{e}"
    );
    assert_eq!(
        gitea.writes().len(),
        1,
        "a write must never be retried blindly"
    );
    let events = s.events();
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, _, v)| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[1..], ["intent", "op"]);
    assert_eq!(last_op(&s)["outcome"], "error");

    // The same fault on a read is retried and then reported.
    gitea.set_fault_for(FaultFilter::reads(), Fault::DropConnection);
    gitea.clear_requests();
    let e = call(&s, "read_issue", json!({"number": 17}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], -32004);
    assert_eq!(gitea.requests().len(), 3, "reads are tried three times");
}

#[tokio::test]
async fn bad_responses_are_clear_errors_not_crashes() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    for (fault, needle) in [
        (Fault::MalformedJson, "not the expected JSON"),
        (Fault::WrongShape, "not the expected JSON"),
        (
            Fault::Oversized(64 * 1024 * 1024),
            "larger than the 16777216-byte limit",
        ),
    ] {
        gitea.set_fault(fault.clone());
        for method in ["read_issue", "read_comments"] {
            let e = call(&s, method, json!({"number": 17})).await.unwrap_err();
            assert_eq!(e["code"], -32003, "{fault:?} {method}: {e}");
            assert!(
                e["message"].as_str().unwrap().contains(needle),
                "{fault:?} {method}: {e}"
            );
        }
    }
    gitea.clear_fault();
    assert_eq!(
        call(&s, "read_issue", json!({"number": 17})).await.unwrap()["number"],
        17,
        "still serving"
    );
    s.stop();
}

#[tokio::test]
async fn forge_refusals_carry_the_forges_reason() {
    let gitea = FakeGitea::start();
    let s = SidecarProcess::against(&gitea, &[]);
    for status in [401u16, 403, 422, 423] {
        gitea.set_fault(Fault::Status(status));
        let e = call(&s, "post_comment", json!({"number": 17, "body": "x"}))
            .await
            .unwrap_err();
        assert_eq!(
            (e["code"].as_i64(), e["data"]["status"].as_u64()),
            (Some(-32003), Some(u64::from(status))),
            "{e}"
        );
        assert!(!e["data"]["message"].as_str().unwrap().is_empty(), "{e}");
    }
    gitea.set_fault(Fault::EmptyErrorBody(403));
    let e = call(&s, "update_description", json!({"number": 17, "body": "x"}))
        .await
        .unwrap_err();
    assert!(
        e["message"].as_str().unwrap().contains("permission denied"),
        "an empty body still explains: {e}"
    );
    gitea.set_fault(Fault::Status(404));
    assert_eq!(
        call(&s, "read_issue", json!({"number": 17}))
            .await
            .unwrap_err()["code"],
        -32002
    );
    gitea.set_fault_for(
        FaultFilter::reads().times(1),
        Fault::StatusRetryAfter(429, "1".into()),
    );
    assert_eq!(
        call(&s, "read_issue", json!({"number": 17})).await.unwrap()["number"],
        17,
        "429 is retried"
    );
    gitea.set_fault(Fault::Status(503));
    let e = call(&s, "read_issue", json!({"number": 17}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], -32004, "{e}");
}

#[tokio::test]
async fn an_unreachable_forge_is_forge_unavailable() {
    let gitea = FakeGitea::start();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    forge_e2e::sidecar::write_token(&token, gitea.token());
    let mut env = forge_e2e::sidecar::gitea_env(&gitea, &token);
    for (k, v) in env.iter_mut() {
        if k == "FORGE_GITEA_API" {
            *v = format!("http://127.0.0.1:{closed_port}/api/v1");
        }
    }
    let mut s = SidecarProcess::start_in(dir, &[], &env);
    for (method, params) in [
        ("read_issue", json!({"number": 17})),
        ("post_comment", json!({"number": 17, "body": "x"})),
    ] {
        let e = call(&s, method, params).await.unwrap_err();
        assert_eq!(e["code"], -32004, "{method}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains("connect"),
            "{method}: {e}"
        );
    }
    s.stop();
}

#[tokio::test]
async fn a_slow_forge_serves_parallel_reads_at_once() {
    // Forge calls are bounded by the bytes they hold, not by a fixed count:
    // sixteen ordinary reads against a forge that takes a second each are
    // all at the forge together and finish in about a second, not sixteen.
    let gitea = FakeGitea::start();
    let s = SidecarProcess::against(&gitea, &[]);
    gitea.clear_requests();
    gitea.set_fault_for(FaultFilter::reads(), Fault::Delay(Duration::from_secs(1)));
    let started = std::time::Instant::now();
    let reads: Vec<_> = (1..=16u64)
        .map(|n| {
            let socket = s.socket.clone();
            tokio::spawn(async move {
                SocketClient::new(&socket, CALL_TIMEOUT)
                    .call("read_issue", Some(json!({"number": n})))
                    .await
            })
        })
        .collect();
    for (i, read) in reads.into_iter().enumerate() {
        let issue = read.await.unwrap().unwrap().unwrap();
        assert_eq!(issue["number"], i as u64 + 1, "{issue}");
    }
    let took = started.elapsed();
    assert_eq!(gitea.requests().len(), 16, "one request each, no retry");
    assert!(
        took <= Duration::from_secs(3),
        "16 parallel reads against a 1 s forge took {took:?}: forge calls are being serialised"
    );
}
