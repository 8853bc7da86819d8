//! The fake behaves as documented, seen through a plain HTTP client (ureq).
//! One behaviour per test; every request has a client timeout, and no test
//! sleeps or asserts a timing.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn client() -> ureq::Agent {
    agent(Duration::from_secs(10))
}

fn url(fake: &FakeGitea, path: &str) -> String {
    format!("{}{path}", fake.api_base())
}

fn auth(fake: &FakeGitea) -> String {
    format!("token {}", fake.token())
}

/// A raw answer: status, Content-Type and body text.
struct Answer {
    status: u16,
    content_type: Option<String>,
    headers: ureq::http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
}

fn answer(mut resp: ureq::http::Response<ureq::Body>) -> Answer {
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let headers = resp.headers().clone();
    Answer {
        status: resp.status().as_u16(),
        content_type,
        headers,
        text: resp.body_mut().read_to_string().expect("a readable body"),
    }
}

fn get(fake: &FakeGitea, path: &str) -> Answer {
    answer(
        client()
            .get(url(fake, path))
            .header("Authorization", auth(fake))
            .call()
            .expect("the request completes"),
    )
}

fn post(fake: &FakeGitea, path: &str, body: Value) -> Answer {
    answer(
        client()
            .post(url(fake, path))
            .header("Authorization", auth(fake))
            .send_json(body)
            .expect("the request completes"),
    )
}

fn patch(fake: &FakeGitea, path: &str, body: Value) -> Answer {
    answer(
        client()
            .patch(url(fake, path))
            .header("Authorization", auth(fake))
            .send_json(body)
            .expect("the request completes"),
    )
}

const ISSUES: &str = "/repos/acme/widgets/issues";

fn is_offset_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.ends_with("+08:00") && chrono::DateTime::parse_from_rfc3339(s).is_ok() && !s.contains('.')
    })
}

#[test]
fn plain_issue_has_gitea_shape() {
    let fake = FakeGitea::start();
    let got = get(&fake, &format!("{ISSUES}/1"));
    assert_eq!(got.status, 200);
    assert_eq!(
        got.content_type.as_deref(),
        Some("application/json;charset=utf-8")
    );
    let issue = got.json();
    assert_eq!(issue["number"], 1);
    assert_eq!(issue["state"], "open");
    assert!(issue["pull_request"].is_null());
    assert!(issue["assignees"].is_null());
    assert!(issue["milestone"].is_null());
    assert!(issue["closed_at"].is_null());
    assert_eq!(issue["labels"], json!([]));
    assert_eq!(issue["url"], format!("{}{ISSUES}/1", fake.api_base()));
    assert_eq!(
        issue["html_url"],
        format!("{}/acme/widgets/issues/1", fake.web_base())
    );
    assert!(
        is_offset_time(&issue["created_at"]),
        "{}",
        issue["created_at"]
    );
    assert_eq!(issue["user"]["login"], "alice");
    fake.assert_contract_clean();
}

#[test]
fn empty_and_closed_issues() {
    let fake = FakeGitea::start();
    assert_eq!(get(&fake, &format!("{ISSUES}/3")).json()["body"], "");
    let closed = get(&fake, &format!("{ISSUES}/5")).json();
    assert_eq!(closed["state"], "closed");
    assert!(is_offset_time(&closed["closed_at"]));
    let assigned = get(&fake, &format!("{ISSUES}/17")).json();
    assert_eq!(assigned["assignees"][0]["login"], BOT_LOGIN);
    assert_eq!(assigned["assignee"]["login"], BOT_LOGIN);
    assert_eq!(assigned["comments"], 3);
}

#[test]
fn pr_number_reads_as_an_issue_with_pull_request_set() {
    let fake = FakeGitea::start();
    let issue = get(&fake, &format!("{ISSUES}/18")).json();
    assert_eq!(issue["body"], "");
    let meta = &issue["pull_request"];
    assert_eq!(meta["merged"], false);
    assert_eq!(meta["draft"], false);
    assert!(meta["merged_at"].is_null());
    assert_eq!(
        meta["html_url"],
        format!("{}/acme/widgets/pulls/18", fake.web_base())
    );
    let merged = get(&fake, &format!("{ISSUES}/19")).json();
    assert_eq!(merged["pull_request"]["merged"], true);
    assert!(is_offset_time(&merged["pull_request"]["merged_at"]));
}

#[test]
fn pull_request_endpoint() {
    let fake = FakeGitea::start();
    let got = get(&fake, "/repos/acme/widgets/pulls/18");
    assert_eq!(got.status, 200);
    let pr = got.json();
    assert_eq!(pr["number"], 18);
    assert_eq!(pr["url"], pr["html_url"]);
    assert_eq!(pr["head"]["ref"], "fix/empty-input");
    assert_eq!(pr["base"]["label"], "main");
    assert_eq!(pr["base"]["repo"]["full_name"], "acme/widgets");
    assert_eq!(pr["assignees"], json!([]));
    assert_ne!(pr["id"], get(&fake, &format!("{ISSUES}/18")).json()["id"]);
    let plain = get(&fake, "/repos/acme/widgets/pulls/17");
    assert_eq!(plain.status, 404);
    assert_eq!(plain.json()["message"], "not found");
}

#[test]
fn missing_issue_is_404_but_its_comments_are_500() {
    let fake = FakeGitea::start();
    let issue = get(&fake, &format!("{ISSUES}/9999"));
    assert_eq!(issue.status, 404);
    assert!(issue.json()["errors"].is_null());
    let comments = get(&fake, &format!("{ISSUES}/9999/comments"));
    assert_eq!(comments.status, 500);
    assert_eq!(comments.json()["message"], "");
    let post = post(
        &fake,
        &format!("{ISSUES}/9999/comments"),
        json!({"body": "hi"}),
    );
    assert_eq!(post.status, 500);
    fake.assert_contract_clean();
}

#[test]
fn comments_are_listed_oldest_first_with_a_total() {
    let fake = FakeGitea::start();
    let got = get(&fake, &format!("{ISSUES}/17/comments"));
    assert_eq!(got.status, 200);
    assert_eq!(got.headers.get("x-total-count").unwrap(), "3");
    let ids: Vec<u64> = got
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [5001, 5002, 5003]);
    let on_pr = get(&fake, &format!("{ISSUES}/18/comments")).json();
    assert_eq!(on_pr[0]["issue_url"], "");
    assert_eq!(
        on_pr[0]["pull_request_url"],
        format!("{}/acme/widgets/pulls/18", fake.web_base())
    );
}

#[test]
fn since_filters_on_updated_time_inclusively() {
    let fake = FakeGitea::start();
    let third = fake.comments(17)[2].clone();
    let since = render::ts(&third.updated_at)
        .replace(':', "%3A")
        .replace('+', "%2B");
    let got = get(&fake, &format!("{ISSUES}/17/comments?since={since}"));
    assert_eq!(got.status, 200);
    let ids: Vec<u64> = got
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    // 5002 was edited after 5003 was posted; 5003 itself is included.
    assert_eq!(ids, [5002, 5003]);
    fake.assert_contract_clean();
}

#[test]
fn posted_comment_is_201_and_listed_afterwards() {
    let fake = FakeGitea::start();
    let got = post(
        &fake,
        &format!("{ISSUES}/17/comments"),
        json!({"body": "On it."}),
    );
    assert_eq!(got.status, 201);
    let created = got.json();
    assert_eq!(created["body"], "On it.");
    assert_eq!(created["user"]["login"], BOT_LOGIN);
    assert_eq!(
        created["issue_url"],
        format!("{}/acme/widgets/issues/17", fake.web_base())
    );
    assert_eq!(created["pull_request_url"], "");
    assert!(is_offset_time(&created["created_at"]));
    let list = get(&fake, &format!("{ISSUES}/17/comments")).json();
    assert_eq!(
        list.as_array().unwrap().last().unwrap()["id"],
        created["id"]
    );
    assert_eq!(fake.comments(17).last().unwrap().body, "On it.");
    fake.assert_contract_clean();
}

#[test]
fn empty_comment_is_422_body_required() {
    let fake = FakeGitea::start();
    let got = post(&fake, &format!("{ISSUES}/17/comments"), json!({"body": ""}));
    assert_eq!(got.status, 422);
    assert_eq!(got.json()["message"], "[Body]: Required");
    assert_eq!(fake.comments(17).len(), 3);
    // `""` is valid per the spec (no minLength): only Gitea refuses it.
    fake.assert_contract_clean();
}

#[test]
fn write_without_json_content_type_is_422() {
    let fake = FakeGitea::start();
    let got = answer(
        client()
            .post(url(&fake, &format!("{ISSUES}/17/comments")))
            .header("Authorization", auth(&fake))
            .content_type("text/plain")
            .send(r#"{"body":"x"}"#)
            .unwrap(),
    );
    assert_eq!(got.status, 422);
    assert_eq!(fake.comments(17).len(), 3);
    let violations = fake.contract_violations();
    assert!(violations[0].contains("Content-Type"), "{violations:?}");
}

#[test]
fn patch_issue_is_201_and_changes_state() {
    let fake = FakeGitea::start();
    let got = patch(
        &fake,
        &format!("{ISSUES}/17"),
        json!({"body": "New text", "title": ""}),
    );
    assert_eq!(got.status, 201);
    assert_eq!(got.json()["body"], "New text");
    let issue = fake.issue(17).unwrap();
    assert_eq!(issue.body, "New text");
    assert_eq!(
        issue.title, "Widgets crash on empty input",
        "an empty title is ignored"
    );
    let closed = patch(&fake, &format!("{ISSUES}/17"), json!({"state": "closed"}));
    assert_eq!(closed.status, 201);
    assert!(is_offset_time(&closed.json()["closed_at"]));
    assert_eq!(
        patch(&fake, &format!("{ISSUES}/17"), json!({"state": "shut"})).status,
        412
    );
    let on_pr = patch(&fake, &format!("{ISSUES}/18"), json!({"body": "PR text"}));
    assert_eq!(on_pr.status, 201);
    assert_eq!(fake.issue(18).unwrap().body, "PR text");
    assert_eq!(
        patch(&fake, &format!("{ISSUES}/9999"), json!({})).status,
        404
    );
    fake.assert_contract_clean();
}

#[test]
fn patch_pull_is_201_and_refuses_plain_issues_and_merged_state() {
    let fake = FakeGitea::start();
    let got = patch(
        &fake,
        "/repos/acme/widgets/pulls/18",
        json!({"body": "Fixes #17"}),
    );
    assert_eq!(got.status, 201);
    assert_eq!(got.json()["body"], "Fixes #17");
    assert_eq!(got.json()["head"]["ref"], "fix/empty-input");
    assert_eq!(fake.issue(18).unwrap().body, "Fixes #17");
    assert_eq!(
        patch(&fake, "/repos/acme/widgets/pulls/17", json!({})).status,
        404
    );
    let merged = patch(
        &fake,
        "/repos/acme/widgets/pulls/19",
        json!({"state": "open"}),
    );
    assert_eq!(merged.status, 412);
    fake.assert_contract_clean();
}

#[test]
fn authentication_rules() {
    let fake = FakeGitea::start();
    let path = url(&fake, "/user");
    let call = |value: Option<&str>| {
        let mut req = client().get(&path);
        if let Some(v) = value {
            req = req.header("Authorization", v);
        }
        answer(req.call().unwrap())
    };
    let missing = call(None);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["message"], "token is required");
    let wrong = call(Some("token nope"));
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.json()["message"],
        "invalid username, password or token"
    );
    assert_eq!(call(Some(&format!("Token {TOKEN}"))).status, 401);
    assert_eq!(call(Some(&format!("Bearer {TOKEN}"))).status, 200);
    let me = call(Some(&format!("token {TOKEN}")));
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["login"], BOT_LOGIN);
}

#[test]
fn repository_and_unknown_repository() {
    let fake = FakeGitea::start();
    let repo = get(&fake, "/repos/acme/widgets").json();
    assert_eq!(repo["full_name"], "acme/widgets");
    assert_eq!(
        repo["permissions"],
        json!({"admin": false, "push": true, "pull": true})
    );
    assert_eq!(repo["default_branch"], "main");
    let other = get(&fake, "/repos/acme/gadgets");
    assert_eq!(other.status, 404);
    assert_eq!(other.json()["message"], "not found");
    // In the spec but not implemented by the fake: a plain 404, no violation.
    assert_eq!(get(&fake, "/repos/acme/widgets/pulls").status, 404);
    fake.assert_contract_clean();
}

#[test]
fn contract_violations_are_recorded_and_answered_422() {
    let fake = FakeGitea::start();
    let null_body = post(
        &fake,
        &format!("{ISSUES}/17/comments"),
        json!({"body": null}),
    );
    assert_eq!(null_body.status, 422);
    let unknown = get(&fake, "/repos/acme/widgets/nonsense");
    assert_eq!(unknown.status, 404);
    let bad_index = get(&fake, &format!("{ISSUES}/seventeen"));
    assert_eq!(bad_index.status, 422);
    let violations = fake.contract_violations();
    assert_eq!(violations.len(), 3, "{violations:#?}");
    assert!(violations[0].starts_with("POST /api/v1/repos/acme/widgets/issues/17/comments: "));
    assert!(violations[0].contains("CreateIssueCommentOption"));
    assert!(violations[1].starts_with("GET /api/v1/repos/acme/widgets/nonsense: "));
    assert!(violations[2].contains("`index`"));
    assert_eq!(fake.comments(17).len(), 3);
}

#[test]
fn requests_are_recorded() {
    let fake = FakeGitea::start();
    get(
        &fake,
        &format!("{ISSUES}/17/comments?since=2024-01-01T00%3A00%3A00Z"),
    );
    post(
        &fake,
        &format!("{ISSUES}/17/comments"),
        json!({"body": "hello"}),
    );
    let all = fake.requests();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].method, "GET");
    assert_eq!(all[0].path, "/api/v1/repos/acme/widgets/issues/17/comments");
    assert_eq!(
        all[0].query.as_deref(),
        Some("since=2024-01-01T00%3A00%3A00Z")
    );
    assert_eq!(all[0].authorization.as_deref(), Some(auth(&fake).as_str()));
    assert!(
        all[0]
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("ureq"))
    );
    let writes = fake.writes();
    assert_eq!(writes.len(), 1);
    assert!(
        writes[0]
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(writes[0].body_json(), Some(json!({"body": "hello"})));
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[test]
fn fault_status_applies_until_cleared() {
    let fake = FakeGitea::start();
    fake.set_fault(Fault::Status(503));
    let got = get(&fake, &format!("{ISSUES}/17"));
    assert_eq!(got.status, 503);
    assert_eq!(got.json()["message"], "Service Unavailable");
    assert_eq!(
        post(
            &fake,
            &format!("{ISSUES}/17/comments"),
            json!({"body": "x"})
        )
        .status,
        503
    );
    assert_eq!(get(&fake, "/user").status, 503);
    fake.clear_fault();
    assert_eq!(get(&fake, &format!("{ISSUES}/17")).status, 200);
}

#[test]
fn fault_status_times_then_recovers() {
    let fake = FakeGitea::start();
    fake.set_fault(Fault::StatusTimes(502, 2));
    let statuses: Vec<u16> = (0..3)
        .map(|_| get(&fake, &format!("{ISSUES}/17")).status)
        .collect();
    assert_eq!(statuses, [502, 502, 200]);
    fake.set_fault(Fault::status_once(500));
    let first = get(&fake, &format!("{ISSUES}/17"));
    assert_eq!(
        (first.status, first.json()["message"].clone()),
        (500, json!(""))
    );
    assert_eq!(get(&fake, &format!("{ISSUES}/17")).status, 200);
}

#[test]
fn fault_retry_after_once() {
    let fake = FakeGitea::start();
    fake.set_fault_for(
        FaultFilter::all().times(1),
        Fault::StatusRetryAfter(429, "7".into()),
    );
    let limited = get(&fake, "/user");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers.get("retry-after").unwrap(), "7");
    assert_eq!(get(&fake, "/user").status, 200);
}

#[test]
fn fault_filter_for_writes_only() {
    let fake = FakeGitea::start();
    fake.set_fault_for(FaultFilter::writes(), Fault::Status(500));
    assert_eq!(get(&fake, &format!("{ISSUES}/17")).status, 200);
    let got = post(
        &fake,
        &format!("{ISSUES}/17/comments"),
        json!({"body": "x"}),
    );
    assert_eq!(got.status, 500);
    assert_eq!(fake.comments(17).len(), 3, "a faulted write is not applied");
    fake.set_fault_for(
        FaultFilter::method("get").path_contains("/comments"),
        Fault::Status(504),
    );
    assert_eq!(get(&fake, &format!("{ISSUES}/17")).status, 200);
    assert_eq!(get(&fake, &format!("{ISSUES}/17/comments")).status, 504);
    assert_eq!(
        fake.requests().len(),
        4,
        "faulted requests are recorded too"
    );
}

#[test]
fn fault_delay_outlasts_a_client_timeout() {
    let fake = FakeGitea::start();
    fake.set_fault(Fault::Delay(Duration::from_secs(30)));
    let err = agent(Duration::from_millis(200))
        .get(url(&fake, &format!("{ISSUES}/17")))
        .header("Authorization", auth(&fake))
        .call()
        .expect_err("the client gives up first");
    assert!(matches!(err, ureq::Error::Timeout(_)), "{err:?}");
    // A delay shorter than the timeout only slows the answer down.
    fake.set_fault(Fault::Delay(Duration::from_millis(1)));
    assert_eq!(get(&fake, &format!("{ISSUES}/17")).status, 200);
}

#[test]
fn fault_drop_connection_gives_no_response() {
    let fake = FakeGitea::start();
    fake.set_fault(Fault::DropConnection);
    let result = client()
        .post(url(&fake, &format!("{ISSUES}/17/comments")))
        .header("Authorization", auth(&fake))
        .send_json(json!({"body": "lost"}));
    assert!(
        result.is_err(),
        "expected a transport error, got a response"
    );
    assert_eq!(
        fake.writes().len(),
        1,
        "the request was read before the drop"
    );
    assert_eq!(fake.comments(17).len(), 3);
    fake.clear_fault();
    assert_eq!(get(&fake, &format!("{ISSUES}/17")).status, 200);
}

#[test]
fn fault_malformed_json() {
    let fake = FakeGitea::start();
    fake.set_fault(Fault::MalformedJson);
    let got = get(&fake, &format!("{ISSUES}/17"));
    assert_eq!(got.status, 200);
    assert!(serde_json::from_str::<Value>(&got.text).is_err());
    let write = post(
        &fake,
        &format!("{ISSUES}/17/comments"),
        json!({"body": "x"}),
    );
    assert_eq!(write.status, 201);
    assert!(serde_json::from_str::<Value>(&write.text).is_err());
}

#[test]
fn fault_wrong_shape() {
    let fake = FakeGitea::start();
    fake.set_fault(Fault::WrongShape);
    assert!(get(&fake, &format!("{ISSUES}/17")).json().is_array());
    assert_eq!(
        get(&fake, &format!("{ISSUES}/17/comments")).json(),
        json!({"unexpected": true})
    );
}

#[test]
fn fault_oversized_streams_exactly_that_many_bytes() {
    let fake = FakeGitea::start();
    let size = 1_000_000;
    fake.set_fault(Fault::Oversized(size));
    let request = || {
        client()
            .get(url(&fake, &format!("{ISSUES}/17")))
            .header("Authorization", auth(&fake))
            .call()
            .unwrap()
    };
    let mut capped = request();
    assert_eq!(capped.status(), 200);
    assert!(capped.headers().get("content-length").is_none());
    assert!(
        capped
            .body_mut()
            .with_config()
            .limit(1024)
            .read_to_vec()
            .is_err()
    );
    let mut full = request();
    let bytes = full
        .body_mut()
        .with_config()
        .limit(2 * size as u64)
        .read_to_vec()
        .unwrap();
    assert_eq!(bytes.len(), size);
    let text: String = serde_json::from_slice(&bytes).expect("one JSON string");
    assert_eq!(text.len(), size - 2);
}

#[test]
fn fault_redirect_points_at_the_moved_owner() {
    let fake = FakeGitea::start();
    fake.set_fault(Fault::Redirect(301));
    let got = post(
        &fake,
        &format!("{ISSUES}/17/comments"),
        json!({"body": "x"}),
    );
    assert_eq!(got.status, 301);
    let location = got.headers.get("location").unwrap().to_str().unwrap();
    assert_eq!(
        location,
        "/api/v1/repos/acme-moved/widgets/issues/17/comments"
    );
    assert_eq!(fake.comments(17).len(), 3);
    assert_eq!(
        get(&fake, "/user").status,
        200,
        "only repository paths move"
    );
    fake.clear_fault();
    assert_eq!(
        get(&fake, &format!("/repos/{MOVED_OWNER}/widgets/issues/17")).status,
        404
    );
}

#[test]
fn fault_empty_error_body() {
    let fake = FakeGitea::start();
    fake.set_fault(Fault::EmptyErrorBody(403));
    let got = patch(&fake, &format!("{ISSUES}/17"), json!({"body": "x"}));
    assert_eq!(got.status, 403);
    assert_eq!(got.text, "");
    assert!(got.content_type.is_none());
}

#[test]
fn dropping_the_handle_stops_the_server() {
    let fake = FakeGitea::start();
    let addr = fake.addr();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    drop(fake);
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err());
}

#[tokio::test]
async fn works_from_an_async_test() {
    let fake = FakeGitea::start();
    let (path, token) = (url(&fake, "/user"), auth(&fake));
    let status = tokio::task::spawn_blocking(move || {
        client()
            .get(path)
            .header("Authorization", token)
            .call()
            .map(|r| r.status().as_u16())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status, 200);
    drop(fake); // must not panic inside a runtime
}

#[test]
fn collaborator_check_answers_by_status_alone() {
    let fake = FakeGitea::start();
    let base = "/repos/acme/widgets/collaborators";
    let yes = get(&fake, &format!("{base}/alice"));
    assert_eq!((yes.status, yes.text.as_str()), (204, ""));
    assert_eq!(yes.content_type, None);
    fake.add_comment(ASSIGNED_ISSUE, "mallory", "hello");
    assert_eq!(get(&fake, &format!("{base}/mallory")).status, 404);
    let unknown = get(&fake, &format!("{base}/nobody-at-all"));
    assert_eq!(unknown.status, 422);
    assert!(
        unknown.json()["message"]
            .as_str()
            .unwrap()
            .contains("user does not exist")
    );
    fake.set_collaborator("mallory", true);
    assert_eq!(get(&fake, &format!("{base}/Mallory")).status, 204);
    fake.set_collaborator("alice", false);
    assert_eq!(get(&fake, &format!("{base}/alice")).status, 404);
    fake.assert_contract_clean();
}
