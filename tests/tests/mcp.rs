//! End to end: the MCP bridge (`forge-sidecar mcp`) over real stdio pipes,
//! against a real `forge-sidecar serve` on the in-memory forge.
//!
//! The main session is driven by rmcp's client (its client role, not the
//! bridge's server code path); the no-sidecar test speaks raw JSON-RPC lines
//! so the wire names (`serverInfo`, `isError`, `structuredContent`) are
//! checked independently of rmcp. The queue is read back afterwards: the
//! calls made through MCP are audited exactly like calls made on the socket.
//!
//! The binaries are built by the test itself (`cargo build --workspace
//! --bins`, a no-op when fresh): a dependency's binaries are never built for
//! another package's tests, so `CARGO_BIN_EXE_*` is not available here.
//!
//! `bench_bridge` (ignored by default) measures cold start, call latency and
//! memory: `cargo test --release -p forge-e2e --test mcp -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(30);
/// Bound on building the binaries (a cold debug build of the workspace).
const BUILD_WAIT: Duration = Duration::from_secs(900);

/// The seven tools, one per sidecar method.
const TOOLS: [&str; 7] = [
    "read_issue",
    "read_pr",
    "read_comments",
    "post_comment",
    "update_description",
    "signal_done",
    "scope",
];

/// Path of the `forge-sidecar` binary of this build profile, built if needed.
///
/// Test executables live in `target/<profile>/deps/`, binaries one level up.
/// `FORGE_SIDECAR_BIN` overrides (e.g. to test an installed binary).
fn sidecar_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("FORGE_SIDECAR_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable in target/<profile>/deps");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "--workspace", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // Cargo gives the test process this package's variables; build
        // scripts that watch them (ring watches CARGO_MANIFEST_DIR) would
        // otherwise rebuild on every switch between this and a plain build.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || name.starts_with("CARGO_BIN_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref())
            {
                build.env_remove(name.as_ref());
            }
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let mut child = build.spawn().expect("run cargo build");
        let status = wait_child(&mut child, BUILD_WAIT, "cargo build --workspace --bins");
        assert!(status.success(), "cargo build --workspace --bins failed");
        let bin = profile_dir.join("forge-sidecar");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
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

/// A `forge-sidecar serve --forge memory` process (acme/widgets, assigned
/// #17 with PRs #18 and #19; #500 unrelated).
struct Sidecar {
    child: Option<Child>,
    log: PathBuf,
}

impl Sidecar {
    /// Start on `socket` and `queue`; returns once the socket accepts.
    fn start(socket: &Path, queue: &Path) -> Sidecar {
        let log = queue.with_extension("log");
        let child = Command::new(sidecar_bin())
            .args(["serve", "--forge", "memory", "--socket"])
            .arg(socket)
            .arg("--queue-dir")
            .arg(queue)
            .env_remove("FORGE_TOKEN")
            .env("FORGE_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("sidecar log"))
            .spawn()
            .expect("spawn forge-sidecar serve");
        let mut sidecar = Sidecar {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + WAIT;
        while UnixStream::connect(socket).is_err() {
            let child = sidecar.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("sidecar exited at start ({status}):\n{}", sidecar.log());
            }
            assert!(
                Instant::now() < deadline,
                "sidecar not listening after {WAIT:?}:\n{}",
                sidecar.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        sidecar
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (graceful: writes `session_end`) and wait for a clean exit.
    fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -TERM failed");
        let status = wait_child(&mut child, WAIT, "forge-sidecar serve");
        assert!(
            status.success(),
            "sidecar exited with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The events in `<queue>/new/`, in order (each file is one JSON event).
fn queue_events(queue: &Path) -> Vec<Value> {
    let mut names: Vec<PathBuf> = fs::read_dir(queue.join("new"))
        .expect("queue new/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_slice(&fs::read(p).expect("read event")).expect("event JSON"))
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
    let sidecar = Sidecar::start(&socket, &queue);

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

    // tools/list: the seven methods, each with an object schema from the protocol types.
    let tools = tokio::time::timeout(WAIT, client.list_all_tools())
        .await
        .expect("tools/list in time")
        .expect("tools/list");
    let names: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, BTreeSet::from(TOOLS));
    for tool in &tools {
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            tool.name
        );
        assert!(tool.description.as_deref().is_some_and(|d| d.len() > 80));
        let hints = tool.annotations.as_ref().expect("annotations");
        let writes = matches!(tool.name.as_ref(), "post_comment" | "update_description");
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
    assert_eq!(listed["result"]["tools"].as_array().map(Vec::len), Some(7));

    let down = client.call("read_issue", json!({"number": 17}));
    assert_eq!(down["isError"], true, "{down}");
    let reason = result_text(&down);
    let expected = format!("the forge sidecar is unreachable at {}", socket.display());
    assert!(reason.contains(&expected), "{reason}");

    // The sidecar comes up: the same bridge reaches it, no restart needed.
    let sidecar = Sidecar::start(&socket, &queue);
    let up = client.call("read_issue", json!({"number": 17}));
    assert_eq!(up["isError"], false, "{up}");
    assert_eq!(up["structuredContent"]["number"], 17, "{up}");

    // ... and goes away and comes back (a new session on the same socket).
    sidecar.stop();
    let gone = client.call("scope", json!({}));
    assert_eq!(gone["isError"], true, "{gone}");
    assert!(result_text(&gone).contains("unreachable"), "{gone}");
    let sidecar = Sidecar::start(&socket, &queue);
    let back = client.call("scope", json!({}));
    assert_eq!(back["isError"], false, "{back}");
    assert_eq!(back["structuredContent"]["writable"], json!([17, 18, 19]));

    let status = client.close();
    assert!(status.success(), "bridge exited with {status}");
    sidecar.stop();
}

/// One JSON-RPC call on the socket over a kept-alive HTTP/1.1 connection
/// (no client library: for the bench's baseline only).
fn socket_call(conn: &mut BufReader<UnixStream>, body: &str) -> Value {
    let request = format!(
        "POST / HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes()).expect("send");
    let mut length = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).expect("header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("content-length");
        }
    }
    let mut buf = vec![0; length];
    conn.read_exact(&mut buf).expect("body");
    serde_json::from_slice(&buf).expect("JSON body")
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bridge cold start (spawn → initialize answered), `read_issue` latency
/// through stdio → bridge → socket → sidecar → memory forge against the same
/// call straight on the socket, and the bridge's memory. Run twice: with the
/// queue on the temporary directory's disk (every call fsyncs its audit
/// event), and on tmpfs (`/dev/shm`), where the bridge's own cost shows.
#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench_bridge() {
    let mut roots = vec![std::env::temp_dir()];
    if Path::new("/dev/shm").is_dir() {
        roots.push(PathBuf::from("/dev/shm"));
    }
    for (i, root) in roots.iter().enumerate() {
        bench_in(root, i == 0);
    }
}

fn bench_in(root: &Path, cold_start: bool) {
    let dir = tempfile::tempdir_in(root).expect("tempdir");
    let socket = dir.path().join("s.sock");
    let queue = dir.path().join("q");
    let sidecar = Sidecar::start(&socket, &queue);
    let log = dir.path().join("bridge.log");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;

    if cold_start {
        let mut cold = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let mut client = RawClient::spawn(&socket, &log);
            let init = client.initialize();
            cold.push(started.elapsed());
            assert!(init.get("result").is_some());
            assert!(client.close().success());
        }
        println!(
            "bridge cold start (spawn -> initialize answered), 20 runs: p50 {:.2} ms, p95 {:.2} ms",
            ms(percentile(&mut cold, 0.5)),
            ms(percentile(&mut cold, 0.95))
        );
    }

    let mut client = RawClient::spawn(&socket, &log);
    client.initialize();
    let n = 500;
    let mut via_mcp = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let result = client.call("read_issue", json!({"number": 17}));
        via_mcp.push(started.elapsed());
        assert_eq!(result["isError"], false);
    }
    let (rss, hwm) = rss_kib(client.child.id());

    let mut conn = BufReader::new(UnixStream::connect(&socket).expect("connect"));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"read_issue","params":{"number":17}}"#;
    let mut direct = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = socket_call(&mut conn, body);
        direct.push(started.elapsed());
        assert_eq!(response["result"]["number"], 17);
    }
    drop(conn);
    assert!(client.close().success());
    sidecar.stop();

    println!("queue on {}:", root.display());
    println!(
        "  read_issue via MCP (stdio -> bridge -> socket -> sidecar -> memory forge), {n} calls: \
         p50 {:.3} ms, p95 {:.3} ms",
        ms(percentile(&mut via_mcp, 0.5)),
        ms(percentile(&mut via_mcp, 0.95))
    );
    println!(
        "  read_issue straight on the socket (keep-alive), {n} calls: p50 {:.3} ms, p95 {:.3} ms",
        ms(percentile(&mut direct, 0.5)),
        ms(percentile(&mut direct, 0.95))
    );
    println!(
        "  bridge memory after {n} calls: RSS {:.1} MiB, peak {:.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}
