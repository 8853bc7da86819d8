//! End to end: the MCP bridge (`forge-sidecar mcp`) over real stdio pipes,
//! against a real `forge-sidecar serve` on the in-memory forge.
//!
//! The main session is driven by rmcp's client (its client role, not the
//! bridge's server code path); the no-sidecar test speaks raw JSON-RPC lines
//! so the wire names (`serverInfo`, `isError`, `structuredContent`) are
//! checked independently of rmcp; a third drives the bridge with the official
//! TypeScript SDK and Ajv in strict mode (`tests/mcp-ts/check.mjs`, installed
//! by `tests/mcp-ts/install.sh`). The queue is read back afterwards: the
//! calls made through MCP are audited exactly like calls made on the socket.
//!

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use forge_e2e::sidecar::{SidecarProcess, workspace_bin};
use forge_protocol::Method;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(30);

fn sidecar_bin() -> PathBuf {
    workspace_bin("forge-sidecar")
}

/// Wait for `child` to exit, at most `limit` (then kill it and fail).
fn wait_child(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The events of the queue, in order.
fn queue_events(queue: &Path) -> Vec<Value> {
    forge_e2e::sidecar::queue_events(queue)
        .into_iter()
        .map(|(_, _, v)| v)
        .collect()
}

/// `forge-sidecar mcp --socket SOCKET` as an rmcp client session.
async fn rmcp_bridge(
    socket: &Path,
    log: &Path,
    version: ProtocolVersion,
) -> (RunningService<RoleClient, ClientConfig>, u32) {
    let mut cmd = tokio::process::Command::new(sidecar_bin());
    cmd.arg("mcp").arg("--socket").arg(socket);
    cmd.env("FORGE_LOG", "debug");
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(fs::File::create(log).expect("bridge log"))
        .spawn()
        .expect("spawn forge-sidecar mcp");
    let pid = transport.id().expect("bridge pid");
    let mut hello = ClientConfig::default();
    hello.protocol_version = version;
    let client = tokio::time::timeout(WAIT, hello.serve(transport))
        .await
        .expect("initialize answered in time")
        .expect("initialize succeeds");
    (client, pid)
}

async fn call_tool(
    client: &RunningService<RoleClient, ClientConfig>,
    name: &'static str,
    args: Value,
) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    let request = CallToolRequestParams::new(name).with_arguments(args);
    tokio::time::timeout(WAIT, client.call_tool(request))
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("{name}: protocol error instead of a tool result: {e}"))
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

/// The `op` events for `op` on `target`.
fn ops<'a>(events: &'a [Value], op: &str, target: u64) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "op" && e["op"] == op && e["target"] == target)
        .collect()
}

/// An `op` event without what differs from call to call.
fn comparable(op: &Value) -> Value {
    let mut op = op.clone();
    for key in ["seq", "ts", "prev", "op_id", "duration_ms", "peer"] {
        op.as_object_mut().expect("event object").remove(key);
    }
    op
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_session_is_forwarded_and_audited_like_the_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let queue = dir.path().join("q");
    let mut sidecar = SidecarProcess::memory_on(&socket, &queue);

    // Claude Code and Codex still initialize with 2025-06-18 / 2025-11-25,
    // the versions that require structured content to be an object.
    let (client, bridge_pid) = rmcp_bridge(
        &socket,
        &dir.path().join("bridge.log"),
        ProtocolVersion::V_2025_06_18,
    )
    .await;
    let server = client.peer_info().expect("initialize result");
    let server_info = server.server_info.as_ref().expect("serverInfo");
    assert_eq!(server_info.name, "forge-sidecar");
    assert!(!server_info.version.is_empty());
    assert!(server.capabilities.tools.is_some());

    // tools/list: one tool per method, each with object schemas from the protocol types.
    let tools = tokio::time::timeout(WAIT, client.list_all_tools())
        .await
        .expect("tools/list in time")
        .expect("tools/list");
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, Method::ALL.iter().map(|m| m.name()).collect());
    for tool in &tools {
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            tool.name
        );
        assert_eq!(
            tool.output_schema.as_ref().and_then(|s| s.get("type")),
            Some(&json!("object")),
            "{}",
            tool.name
        );
        assert!(tool.description.as_deref().is_some_and(|d| d.len() > 80));
        let hints = tool.annotations.as_ref().expect("annotations");
        let writes = matches!(
            tool.name.as_ref(),
            "post_comment" | "update_description" | "open_pr"
        );
        assert_eq!(
            hints.read_only_hint,
            Some(!writes && tool.name != "signal_done")
        );
        if writes {
            assert_eq!(hints.destructive_hint, Some(true));
            assert_eq!(hints.idempotent_hint, Some(false));
        }
    }
    let post = tools.iter().find(|t| t.name == "post_comment").unwrap();
    assert_eq!(post.input_schema["required"], json!(["number", "body"]));
    assert_eq!(post.input_schema["properties"]["number"]["minimum"], 1);

    // A read anywhere in the repository.
    let issue = call_tool(&client, "read_issue", json!({"number": 17})).await;
    assert_eq!(issue.is_error, Some(false), "{}", text(&issue));
    let structured = issue
        .structured_content
        .as_ref()
        .expect("structured content");
    assert_eq!(structured["number"], 17);
    let from_text: Value = serde_json::from_str(&text(&issue)).expect("text is JSON");
    assert_eq!(&from_text, structured);

    // The comment list arrives wrapped in an object.
    let comments = call_tool(&client, "read_comments", json!({"number": 17})).await;
    assert!(comments.structured_content.as_ref().unwrap()["comments"].is_array());

    // An allowed write.
    let body = "Found it: the export loop stops one row early.";
    let posted = call_tool(&client, "post_comment", json!({"number": 17, "body": body})).await;
    assert_eq!(posted.is_error, Some(false), "{}", text(&posted));
    assert_eq!(posted.structured_content.as_ref().unwrap()["body"], body);

    // An out-of-scope write: a tool error naming the writable scope.
    let denied = call_tool(
        &client,
        "post_comment",
        json!({"number": 500, "body": "hi"}),
    )
    .await;
    assert_eq!(denied.is_error, Some(true));
    let reason = text(&denied);
    assert!(reason.contains("scope_denied"), "{reason}");
    assert!(reason.contains("#500"), "{reason}");
    assert!(reason.contains("writable: #17, #18, #19"), "{reason}");

    // The same denied write straight on the socket, for comparison.
    let direct = Command::new(sidecar_bin())
        .args([
            "call",
            "post_comment",
            r#"{"number": 500, "body": "hi"}"#,
            "--socket",
        ])
        .arg(&socket)
        .output()
        .expect("forge-sidecar call");
    assert_eq!(direct.status.code(), Some(1), "a JSON-RPC error");

    let done = call_tool(
        &client,
        "signal_done",
        json!({"status": "success", "summary": "Export fixed in PR #18."}),
    )
    .await;
    assert_eq!(done.is_error, Some(false), "{}", text(&done));
    let event_file = done.structured_content.as_ref().unwrap()["event"]
        .as_str()
        .expect("done event name")
        .to_string();
    let again = call_tool(
        &client,
        "signal_done",
        json!({"status": "failure", "summary": "second"}),
    )
    .await;
    assert_eq!(again.is_error, Some(true));
    assert!(
        text(&again).starts_with("already_done:"),
        "{}",
        text(&again)
    );

    tokio::time::timeout(WAIT, client.cancel())
        .await
        .expect("bridge closed in time")
        .expect("close");
    sidecar.stop();

    // The queue: every MCP call audited, with the bridge as the peer.
    let events = queue_events(&queue);
    let by_bridge = |e: &Value| e["peer"]["pid"] == bridge_pid;
    let read = ops(&events, "read_issue", 17);
    assert_eq!(read.len(), 1);
    assert_eq!(read[0]["outcome"], "ok");
    assert!(by_bridge(read[0]));
    let allowed = ops(&events, "post_comment", 17);
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["outcome"], "ok");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "intent" && e["target"] == 17)
    );

    let denied_ops = ops(&events, "post_comment", 500);
    assert_eq!(denied_ops.len(), 2, "one through MCP, one direct");
    let via_mcp: Vec<_> = denied_ops.iter().filter(|e| by_bridge(e)).collect();
    assert_eq!(via_mcp.len(), 1, "{denied_ops:#?}");
    assert_eq!(via_mcp[0]["outcome"], "denied");
    assert_eq!(via_mcp[0]["error"]["name"], "scope_denied");
    assert_eq!(
        comparable(denied_ops[0]),
        comparable(denied_ops[1]),
        "a denial through MCP is audited exactly like one on the socket"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "intent" && e["target"] == 500),
        "nothing was about to be sent for #500"
    );

    let dones: Vec<_> = events.iter().filter(|e| e["kind"] == "done").collect();
    assert_eq!(dones.len(), 1);
    assert_eq!(dones[0]["status"], "success");
    assert_eq!(dones[0]["summary"], "Export fixed in PR #18.");
    assert!(queue.join("new").join(&event_file).exists(), "{event_file}");
    let signals: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "op" && e["op"] == "signal_done")
        .collect();
    assert_eq!(signals.len(), 2, "{signals:#?}");
    assert_eq!(signals[0]["outcome"], "ok");
    assert_eq!(signals[1]["error"]["name"], "already_done");
    assert!(signals.iter().all(|e| by_bridge(e)));
    let end = events.last().expect("events");
    assert_eq!(end["kind"], "session_end");
    assert_eq!(end["done"], true);
}

/// A bare MCP client speaking JSON-RPC lines over a child's stdin/stdout.
struct RawClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    next_id: u64,
}

impl RawClient {
    fn spawn(socket: &Path, log: &Path) -> RawClient {
        let mut child = Command::new(sidecar_bin())
            .arg("mcp")
            .env("FORGE_SOCKET", socket)
            .env("FORGE_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(log).expect("bridge log"))
            .spawn()
            .expect("spawn forge-sidecar mcp");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        RawClient {
            stdin: child.stdin.take(),
            child,
            lines,
            next_id: 1,
        }
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{message}").expect("write to the bridge");
        stdin.flush().expect("flush");
    }

    /// Send a request and return its response (skipping anything else).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method} within {WAIT:?}"));
            let message: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carries only JSON-RPC: {e}: {line}"));
            if message["id"] == id {
                return message;
            }
        }
    }

    fn initialize(&mut self) -> Value {
        let hello = json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw-lines", "version": "0"}
        });
        let response = self.request("initialize", hello);
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        response
    }

    fn call(&mut self, name: &str, arguments: Value) -> Value {
        let response = self.request("tools/call", json!({"name": name, "arguments": arguments}));
        assert!(
            response.get("error").is_none(),
            "protocol error: {response}"
        );
        response["result"].clone()
    }

    /// Close stdin (the MCP end of session) and wait for the exit.
    fn close(mut self) -> ExitStatus {
        drop(self.stdin.take());
        wait_child(&mut self.child, WAIT, "forge-sidecar mcp")
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn result_text(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect()
}

#[test]
fn bridge_without_sidecar_initializes_reports_unreachable_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let queue = dir.path().join("q");
    // Socket from FORGE_SOCKET, as an agent's MCP config may set it.
    let mut client = RawClient::spawn(&socket, &dir.path().join("bridge.log"));

    let init = client.initialize();
    assert_eq!(
        init["result"]["serverInfo"]["name"], "forge-sidecar",
        "{init}"
    );
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    let listed = client.request("tools/list", json!({}));
    assert_eq!(
        listed["result"]["tools"].as_array().map(Vec::len),
        Some(Method::ALL.len())
    );
    // Asked by clients on every start (Codex): answered, empty, nothing logged.
    for (method, key) in [
        ("resources/list", "resources"),
        ("resources/templates/list", "resourceTemplates"),
        ("prompts/list", "prompts"),
    ] {
        let listed = client.request(method, json!({}));
        assert_eq!(listed["result"][key], json!([]), "{method}: {listed}");
    }
    let log = fs::read_to_string(dir.path().join("bridge.log")).expect("bridge log");
    assert!(!log.contains("WARN"), "{log}");
    // Arguments that are no object: invalid params, saying so.
    let bad = client.request(
        "tools/call",
        json!({"name": "read_issue", "arguments": [17]}),
    );
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let message = bad["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("`arguments` must be an object") && message.contains("got an array"),
        "{message}"
    );

    let down = client.call("read_issue", json!({"number": 17}));
    assert_eq!(down["isError"], true, "{down}");
    let reason = result_text(&down);
    let expected = format!("the forge sidecar is unreachable at {}", socket.display());
    assert!(reason.contains(&expected), "{reason}");

    // The sidecar comes up: the same bridge reaches it, no restart needed.
    let mut sidecar = SidecarProcess::memory_on(&socket, &queue);
    let up = client.call("read_issue", json!({"number": 17}));
    assert_eq!(up["isError"], false, "{up}");
    assert_eq!(up["structuredContent"]["number"], 17, "{up}");

    // ... and goes away and comes back (a new session on the same socket).
    sidecar.stop();
    let gone = client.call("scope", json!({}));
    assert_eq!(gone["isError"], true, "{gone}");
    assert!(result_text(&gone).contains("unreachable"), "{gone}");
    let mut sidecar = SidecarProcess::memory_on(&socket, &queue);
    let back = client.call("scope", json!({}));
    assert_eq!(back["isError"], false, "{back}");
    assert_eq!(back["structuredContent"]["writable"], json!([17, 18, 19]));

    let status = client.close();
    assert!(status.success(), "bridge exited with {status}");
    sidecar.stop();
}

/// A closing keyword hidden in Markdown is refused through the bridge just
/// as on the socket, for both write tools, and nothing reaches the forge.
#[tokio::test(flavor = "multi_thread")]
async fn hidden_closing_keywords_are_refused_through_mcp() {
    let gitea = forge_e2e::fake_gitea::FakeGitea::start();
    let mut sidecar = SidecarProcess::against(&gitea, &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, _) = rmcp_bridge(
        &sidecar.socket,
        &dir.path().join("bridge.log"),
        ProtocolVersion::V_2025_06_18,
    )
    .await;
    for (tool, number) in [("post_comment", 17), ("update_description", 18)] {
        for body in [
            ">closes #5",
            "Fixes the crash.\n\n*see*closes #5",
            "|fixes #5|",
            "`ok`resolves #5",
            "closes [x](http://host/acme/widgets/issues/5)",
        ] {
            let result = call_tool(&client, tool, json!({"number": number, "body": body})).await;
            assert_eq!(
                result.is_error,
                Some(true),
                "{tool} {body:?}: {}",
                text(&result)
            );
            let reason = text(&result);
            assert!(reason.starts_with("scope_denied:"), "{reason}");
            assert!(
                reason.contains("#5") && reason.contains("instead"),
                "{reason}"
            );
            assert!(reason.contains("keyword '"), "{reason}");
        }
    }
    let allowed = call_tool(
        &client,
        "post_comment",
        json!({"number": 17, "body": "Closes #17; see #5"}),
    )
    .await;
    assert_eq!(allowed.is_error, Some(false), "{}", text(&allowed));
    tokio::time::timeout(WAIT, client.cancel())
        .await
        .expect("bridge closed in time")
        .expect("close");
    let writes = gitea.writes();
    assert_eq!(
        writes.len(),
        1,
        "only the allowed comment reached the forge"
    );
    assert_eq!(writes[0].body_json().unwrap()["body"], "Closes #17; see #5");
    let events = queue_events(&sidecar.queue);
    let denied = events
        .iter()
        .filter(|e| e["kind"] == "op" && e["outcome"] == "denied")
        .count();
    assert_eq!(denied, 10);
    assert_eq!(
        ops(&events, "post_comment", 17).last().unwrap()["foreign_refs"],
        json!(["#5"])
    );
    sidecar.stop();
}

#[test]
fn typescript_sdk_client_compiles_the_schemas_strictly_and_calls_tools() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-ts");
    assert!(
        script
            .join("node_modules/@modelcontextprotocol/sdk/package.json")
            .exists(),
        "the TypeScript MCP SDK is not installed: run tests/mcp-ts/install.sh (tests/run.sh does)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let queue = dir.path().join("q");
    let mut sidecar = SidecarProcess::memory_on(&socket, &queue);

    let mut node = Command::new("node")
        .arg(script.join("check.mjs"))
        .arg(sidecar_bin())
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.path().join("out")).expect("out"))
        .stderr(fs::File::create(dir.path().join("err")).expect("err"))
        .spawn()
        .expect("run node (Node.js is needed for the tests)");
    let status = wait_child(&mut node, WAIT, "node check.mjs");
    let out = fs::read_to_string(dir.path().join("out")).expect("stdout");
    let err = fs::read_to_string(dir.path().join("err")).expect("stderr");
    assert!(status.success(), "{status}\n{out}\n{err}");
    let tools = Method::ALL.len();
    for line in [
        "connected: forge-sidecar".to_string(),
        format!(
            "tools: {tools}; schemas compiled with Ajv strict (draft-07, 2020-12): {}",
            2 * tools
        ),
        "read_issue #17: structuredContent matches the outputSchema".to_string(),
        "post_comment #500: isError, scope_denied".to_string(),
        "ok".to_string(),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in\n{out}\n{err}"
        );
    }
    sidecar.stop();

    // The SDK's calls reached the sidecar and were audited like any other.
    let events = queue_events(&queue);
    assert_eq!(ops(&events, "read_issue", 17)[0]["outcome"], "ok");
    let denied = ops(&events, "post_comment", 500);
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["outcome"], "denied");
    assert_eq!(denied[0]["error"]["name"], "scope_denied");
}

/// The whole PR loop through the bridge, against the fake Gitea with no PR
/// assigned: read the issue, open the PR, update it, read its review,
/// signal done.
#[tokio::test(flavor = "multi_thread")]
async fn the_pr_loop_works_through_the_bridge() {
    use forge_e2e::fake_gitea::{AGENT_BRANCH, FakeGitea};
    let gitea = FakeGitea::start();
    let sidecar = SidecarProcess::against(
        &gitea,
        &[("FORGE_PR_NUMBER", ""), ("FORGE_BRANCH", AGENT_BRANCH)],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, _) = rmcp_bridge(
        &sidecar.socket,
        &dir.path().join("bridge.log"),
        ProtocolVersion::V_2025_11_25,
    )
    .await;
    let structured = |r: &CallToolResult| r.structured_content.clone().expect("structured");

    let issue = call_tool(&client, "read_issue", json!({"number": 17})).await;
    assert_eq!(issue.is_error, Some(false), "{}", text(&issue));
    let opened = call_tool(
        &client,
        "open_pr",
        json!({"title": "Render an empty widget", "body": "Closes #17"}),
    )
    .await;
    assert_eq!(opened.is_error, Some(false), "{}", text(&opened));
    let number = structured(&opened)["number"].as_u64().unwrap();
    let updated = call_tool(
        &client,
        "update_description",
        json!({"number": number, "body": "Closes #17.\n\nAlso handles whitespace."}),
    )
    .await;
    assert_eq!(updated.is_error, Some(false), "{}", text(&updated));

    gitea.add_review(
        number,
        "alice",
        "REQUEST_CHANGES",
        "One more case.",
        &[("src/render.rs", 12, "And tabs?")],
    );
    let reviews = call_tool(&client, "read_reviews", json!({"number": number})).await;
    assert_eq!(reviews.is_error, Some(false), "{}", text(&reviews));
    let list = structured(&reviews)["reviews"].clone();
    assert_eq!(list[0]["state"], "request_changes", "{list}");
    assert_eq!(list[0]["comments"][0]["body"], "And tabs?");

    let again = call_tool(&client, "open_pr", json!({"title": "Again", "body": "b"})).await;
    assert_eq!(again.is_error, Some(true));
    assert!(
        text(&again).starts_with("limit_exceeded:"),
        "{}",
        text(&again)
    );

    let done = call_tool(
        &client,
        "signal_done",
        json!({"status": "success", "summary": "PR opened and updated."}),
    )
    .await;
    assert_eq!(done.is_error, Some(false), "{}", text(&done));
    assert_eq!(structured(&done)["warnings"], json!([]));
    let events = sidecar.events();
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|(_, _, v)| v["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"scope_grown") && kinds.contains(&"done"),
        "{kinds:?}"
    );
    assert!(
        gitea.contract_violations().is_empty(),
        "{:?}",
        gitea.contract_violations()
    );
    client.cancel().await.expect("close the session");
}

/// At default settings (no FORGE_LOG) the bridge writes nothing to stderr in
/// a normal session, client mistakes included: an MCP client shows every
/// stderr line to its user as an error.
#[tokio::test(flavor = "multi_thread")]
async fn the_bridge_is_silent_on_stderr_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let queue = dir.path().join("q");
    let mut sidecar = SidecarProcess::memory_on(&socket, &queue);
    let log = dir.path().join("bridge.log");
    let mut cmd = tokio::process::Command::new(sidecar_bin());
    cmd.arg("mcp").arg("--socket").arg(&socket);
    cmd.env_remove("FORGE_LOG");
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(fs::File::create(&log).expect("bridge log"))
        .spawn()
        .expect("spawn forge-sidecar mcp");
    let client = tokio::time::timeout(WAIT, ClientConfig::default().serve(transport))
        .await
        .expect("initialize answered in time")
        .expect("initialize succeeds");
    let tools = tokio::time::timeout(WAIT, client.list_all_tools())
        .await
        .expect("tools listed in time")
        .expect("tools listed");
    assert_eq!(tools.len(), Method::ALL.len());
    let scope = call_tool(&client, "scope", json!({})).await;
    assert_eq!(scope.is_error, Some(false), "{}", text(&scope));
    let issue = call_tool(&client, "read_issue", json!({"number": 17})).await;
    assert_eq!(issue.is_error, Some(false), "{}", text(&issue));
    // The client's own mistakes: answered, and not logged as the server's.
    let bad = call_tool(&client, "read_issue", json!({"number": "seventeen"})).await;
    assert_eq!(bad.is_error, Some(true), "{}", text(&bad));
    let denied = call_tool(&client, "post_comment", json!({"number": 500, "body": "x"})).await;
    assert_eq!(denied.is_error, Some(true), "{}", text(&denied));
    let unknown = tokio::time::timeout(
        WAIT,
        client.call_tool(CallToolRequestParams::new("no_such_tool")),
    )
    .await
    .expect("answered in time");
    assert!(unknown.is_err(), "{unknown:?}");
    tokio::time::timeout(WAIT, client.cancel())
        .await
        .expect("bridge closed in time")
        .expect("close");
    sidecar.stop();
    let stderr = fs::read_to_string(&log).expect("bridge log");
    assert_eq!(stderr, "", "the bridge wrote to stderr");
}
