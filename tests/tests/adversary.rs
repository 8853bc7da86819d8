//! End-to-end: what a hostile agent tried against the sidecar's two promises
//! ("nothing reaches the forge unaudited", "the host always knows whether
//! the sidecar is alive"), each against the real process.
//!
//! - hanging up at every stage of a call;
//! - refusals that echo a huge input, and floods of them;
//! - connection storms under a low descriptor limit;
//! - idle connections held to lock others out;
//! - a restart to get a fresh write budget and done signal;
//! - text that forges lines in the host's display.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use forge_e2e::fake_gitea::{ASSIGNED_PR, FakeGitea, Fault, FaultFilter};
use forge_e2e::sidecar::{SidecarProcess, queue_events, workspace_bin};
use forge_protocol::event::MAX_OP_EVENT_BYTES;
use forge_sidecar::client::SocketClient;
use forge_sidecar::flood::{AUDIT_BURST, AUDIT_RATE_PER_SEC, FLUSH_INTERVAL};
use serde_json::{Value, json};

/// Bound on anything that waits here.
const WAIT: Duration = Duration::from_secs(30);

fn client(s: &SidecarProcess) -> SocketClient {
    SocketClient::new(&s.socket, WAIT)
}

/// A JSON-RPC request as raw HTTP/1.1 bytes.
fn http_request(method: &str, params: &Value) -> Vec<u8> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut bytes = format!(
        "POST / HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Send a whole request on a fresh connection and keep the connection.
fn send(socket: &Path, method: &str, params: &Value) -> UnixStream {
    let mut conn = UnixStream::connect(socket).expect("connect");
    conn.write_all(&http_request(method, params)).expect("send");
    conn
}

/// Poll `done` every few milliseconds until it holds (bounded by [`WAIT`]).
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ops(events: &[(String, Vec<u8>, Value)]) -> Vec<&Value> {
    events
        .iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["kind"] == "op")
        .collect()
}

#[test]
fn hang_ups_at_every_stage_leave_one_op_per_forge_request() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    gitea.clear_requests();

    // Before dispatch: the request is sent and the caller is gone at once.
    for i in 0..100u64 {
        drop(send(
            &s.socket,
            "read_issue",
            &json!({"number": 1 + i % 20}),
        ));
    }
    // During a slow read: the forge has the request when the caller leaves.
    gitea.set_fault_for(
        FaultFilter::reads(),
        Fault::Delay(Duration::from_millis(500)),
    );
    let before = gitea.requests().len();
    let slow: Vec<_> = (0..10)
        .map(|_| send(&s.socket, "read_comments", &json!({"number": 17})))
        .chain((0..10).map(|_| send(&s.socket, "read_reviews", &json!({"number": ASSIGNED_PR}))))
        .collect();
    wait_for("the slow reads to reach the forge", || {
        gitea.requests().len() >= before + 20
    });
    drop(slow);
    // During a slow write: the comment is posted after the caller left.
    gitea.set_fault_for(
        FaultFilter::writes(),
        Fault::Delay(Duration::from_millis(500)),
    );
    let writes: Vec<_> = (0..3)
        .map(|i| {
            send(
                &s.socket,
                "post_comment",
                &json!({"number": 17, "body": format!("posted after hang-up {i}")}),
            )
        })
        .collect();
    wait_for("the slow writes to reach the forge", || {
        gitea.writes().len() >= 3
    });
    drop(writes);
    // A graceful stop waits for the calls still running.
    s.stop();
    gitea.clear_fault();

    let events = s.events();
    let ops = ops(&events);
    let forge_ops = |method: &str| {
        ops.iter()
            .filter(|op| op["op"] == method && op["error"].is_null())
            .count()
    };
    let requests = gitea.requests();
    let gets = |fragment: &str| {
        requests
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(fragment))
            .count()
    };
    assert_eq!(
        forge_ops("read_comments"),
        gets("/issues/17/comments"),
        "every read that reached the forge has its op"
    );
    // read_reviews asks for the list, then each review's inline comments.
    let of_reviews = requests
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/reviews"))
        .count();
    // All 10 reached the forge (the wait above) before their callers left.
    assert_eq!(
        forge_ops("read_reviews"),
        10,
        "every read that reached the forge has its op"
    );
    assert_eq!(
        forge_ops("read_issue"),
        requests.len() - gets("/issues/17/comments") - of_reviews - gitea.writes().len(),
        "every read that reached the forge has its op"
    );
    assert_eq!(forge_ops("post_comment"), 3, "{}", s.log());
    assert_eq!(gitea.writes().len(), 3);
    let intents = events
        .iter()
        .filter(|(_, _, v)| v["kind"] == "intent")
        .count();
    assert_eq!(intents, 3, "one intent per write, each with its op");
    let end = &events.last().expect("events").2;
    assert_eq!(end["kind"], "session_end");
    let audit = forge_queue_host::audit::audit_dir(&s.queue, chrono::Utc::now()).unwrap();
    assert!(
        audit.sessions[0].unknown_writes.is_empty(),
        "no write of unknown outcome"
    );
}

#[tokio::test]
async fn a_one_megabyte_param_name_gives_a_small_answer_event_and_log_line() {
    let mut s = SidecarProcess::memory(&[]);
    let key = "k".repeat(1_000_000);
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "scope", "params": {key.as_str(): 1}});
    let (status, body) = client(&s)
        .post_raw(request.to_string().into_bytes())
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.len() < 2_048, "a {}-byte answer", body.len());
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("unknown field `kkkk"), "{message}");
    assert!(message.contains("(cut)"), "{message}");
    s.stop();
    for (name, bytes, _) in s.events() {
        assert!(
            bytes.len() <= MAX_OP_EVENT_BYTES,
            "{name}: {} bytes",
            bytes.len()
        );
    }
    let log = s.log();
    assert!(log.lines().all(|l| l.len() < 4_096), "a long log line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_calls_grows_the_queue_within_the_bound_and_done_still_lands() {
    let mut s = SidecarProcess::memory(&[]);
    let started = Instant::now();
    let key = "k".repeat(500_000);
    let mut callers = Vec::new();
    for worker in 0..4 {
        let c = client(&s);
        let key = key.clone();
        callers.push(tokio::spawn(async move {
            for i in 0..100 {
                let (method, params) = match (worker + i) % 3 {
                    0 => ("scope", json!({key.as_str(): 1})),
                    1 => ("post_comment", json!({"number": 500, "body": "x"})),
                    _ => ("no_such_method_\u{202e}", json!({})),
                };
                let answer = c.call(method, Some(params)).await.expect("reachable");
                assert!(answer.is_err(), "{answer:?}");
            }
        }));
    }
    for caller in callers {
        caller.await.unwrap();
    }
    let receipt = client(&s)
        .call(
            "signal_done",
            Some(json!({"status": "success", "summary": "done after the flood"})),
        )
        .await
        .unwrap()
        .expect("done is accepted after a flood");
    let elapsed = started.elapsed();
    s.stop();

    let events = s.events();
    let bytes: usize = events.iter().map(|(_, b, _)| b.len()).sum();
    // The documented bound: the burst, then per flush interval the rate plus
    // at most one coalesced event per outcome; plus session_start, done and
    // its op, and session_end.
    let intervals = (elapsed.as_secs_f64() / FLUSH_INTERVAL.as_secs_f64()).ceil() as usize + 1;
    let bound_events = AUDIT_BURST as usize + intervals * (AUDIT_RATE_PER_SEC as usize + 3);
    let bound = bound_events * MAX_OP_EVENT_BYTES + 4 * MAX_OP_EVENT_BYTES;
    assert!(
        bytes <= bound,
        "{bytes} bytes in {} events after {elapsed:?}, over the bound of {bound}",
        events.len()
    );
    assert!(events.len() <= bound_events + 4, "{} events", events.len());
    let done = events
        .iter()
        .find(|(_, _, v)| v["kind"] == "done")
        .expect("a done event");
    assert_eq!(done.0, receipt["event"].as_str().unwrap());
    assert_eq!(events.last().unwrap().2["kind"], "session_end");
    // Every refused call is still counted, one by one or coalesced.
    let audit = forge_queue_host::audit::audit_dir(&s.queue, chrono::Utc::now()).unwrap();
    let calls: u64 = audit.sessions[0]
        .calls
        .values()
        .map(|c| c.ok + c.denied + c.error)
        .sum();
    assert_eq!(calls, 401, "400 refused calls and signal_done");
    let end = &events.last().unwrap().2;
    assert_eq!(
        end["counts"]["ok"].as_u64().unwrap()
            + end["counts"]["denied"].as_u64().unwrap()
            + end["counts"]["error"].as_u64().unwrap(),
        401
    );
}

/// `n` connections held open by a thread, each reopened (with `reopen`) as
/// soon as the server closes it, until dropped.
struct Holder {
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Holder {
    fn start(socket: &Path, n: usize, reopen: bool) -> Holder {
        let socket = socket.to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let reopened = Arc::new(AtomicUsize::new(0));
        let (stopped, count) = (Arc::clone(&stop), Arc::clone(&reopened));
        let thread = std::thread::spawn(move || {
            let open = |socket: &Path| {
                let c = UnixStream::connect(socket).ok()?;
                c.set_nonblocking(true).ok()?;
                Some(c)
            };
            let mut held: Vec<Option<UnixStream>> = (0..n).map(|_| open(&socket)).collect();
            while !stopped.load(Ordering::SeqCst) {
                for slot in held.iter_mut() {
                    let mut buf = [0u8; 512];
                    let open_still = match slot {
                        Some(c) => matches!(
                            c.read(&mut buf),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                        ),
                        None => false,
                    };
                    if !open_still && (reopen || slot.is_some()) {
                        *slot = if reopen { open(&socket) } else { None };
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Holder {
            stop,
            reopened,
            thread: Some(thread),
        }
    }

    /// How many held connections the server has closed so far.
    fn closed(&self) -> usize {
        self.reopened.load(Ordering::SeqCst)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn heartbeat_ts(queue: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    let beat = forge_queue::reader::read_heartbeat(&forge_queue::QueueDir::new(queue)).ok()??;
    forge_queue::reader::parse_ts(&beat.ts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1500_connections_under_1024_descriptors_keeps_heartbeat_and_service() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("forge.sock");
    let queue = dir.path().join("queue");
    let s = SidecarProcess::start_limited(
        dir,
        socket,
        queue,
        &["--forge", "memory", "--heartbeat-secs", "1"],
        &[],
        Some(1024),
    );
    assert!(
        s.log().contains("soft_limit=1024"),
        "the limit did not apply:\n{}",
        s.log()
    );
    let storm = Holder::start(&s.socket, 1500, false);
    wait_for("the storm to fill the cap", || storm.closed() > 0);

    // Over four heartbeat intervals the heartbeat keeps being replaced, and
    // calls on fresh connections are served.
    let first = Instant::now();
    let mut beats = std::collections::BTreeSet::new();
    let mut served = 0;
    while first.elapsed() < Duration::from_secs(4) {
        let ts = heartbeat_ts(&s.queue).expect("a heartbeat");
        let age = chrono::Utc::now() - ts;
        assert!(
            age < chrono::Duration::seconds(3),
            "the heartbeat is {age} old: the host would call the sidecar stale"
        );
        beats.insert(ts);
        let asked = Instant::now();
        let answer = client(&s).call("scope", None).await;
        eprintln!(
            "call: {:?} in {:?}",
            answer.as_ref().map(|a| a.is_ok()),
            asked.elapsed()
        );
        if matches!(answer, Ok(Ok(_))) {
            served += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(storm);
    assert!(beats.len() >= 3, "heartbeats seen: {beats:?}");
    assert!(served >= 1, "no call was served during the storm");
    let log = s.log();
    assert!(
        !log.contains("Too many open files") && !log.contains("heartbeat not written"),
        "{log}"
    );
    let health = Command::new(workspace_bin("forge-sidecar"))
        .args(["health", "--socket"])
        .arg(&s.socket)
        .output()
        .unwrap();
    assert!(health.status.success(), "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_held_by_one_caller_do_not_lock_out_another() {
    let s = SidecarProcess::memory(&[]);
    let holder = Holder::start(&s.socket, 300, true);
    // Past the cap: the server closes idle connections and the holder
    // reopens them, at once.
    wait_for("the holder to be past the cap", || holder.closed() > 0);
    for i in 0..20u64 {
        let answer = client(&s)
            .call("read_issue", Some(json!({"number": 1 + i})))
            .await
            .expect("reachable");
        assert!(answer.is_ok(), "call {i}: {answer:?}\n{}", s.log());
        let health = Command::new(workspace_bin("forge-sidecar"))
            .args(["health", "--socket"])
            .arg(&s.socket)
            .output()
            .unwrap();
        assert!(health.status.success(), "{health:?}");
    }
    drop(holder);
}

#[tokio::test]
async fn a_restart_within_a_run_keeps_the_budget_and_refuses_a_second_done() {
    let root = tempfile::tempdir().unwrap();
    let queue = root.path().join("queue");
    let start = |run: &str| {
        SidecarProcess::start_at(
            tempfile::tempdir().unwrap(),
            queue.clone(),
            &["--forge", "memory", "--max-writes", "3", "--run-id", run],
            &[],
        )
    };
    let mut first = start("job-1");
    // Two different comments: the same one again would return the first.
    for i in 0..2 {
        let comment = json!({"number": 17, "body": format!("progress {i}")});
        client(&first)
            .call("post_comment", Some(comment))
            .await
            .unwrap()
            .unwrap();
    }
    client(&first)
        .call(
            "signal_done",
            Some(json!({"status": "failure", "summary": "tests fail"})),
        )
        .await
        .unwrap()
        .unwrap();
    // Killed (as a health check would), then restarted in the same run.
    first.signal_and_wait("KILL");
    let mut again = start("job-1");
    let scope = client(&again).call("scope", None).await.unwrap().unwrap();
    assert_eq!(
        (scope["writes_left"].as_u64(), scope["done"].as_bool()),
        (Some(1), Some(true))
    );
    let second = client(&again)
        .call(
            "signal_done",
            Some(json!({"status": "success", "summary": "all tests pass"})),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(second["code"], -32007, "{second}");
    assert!(
        second["message"]
            .as_str()
            .unwrap()
            .contains("earlier session"),
        "{second}"
    );
    client(&again)
        .call(
            "post_comment",
            Some(json!({"number": 17, "body": "progress 2"})),
        )
        .await
        .unwrap()
        .unwrap();
    let over = client(&again)
        .call(
            "post_comment",
            Some(json!({"number": 17, "body": "progress 3"})),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(over["code"], -32005, "{over}");
    again.stop();
    // A new run starts fresh.
    let mut fresh = start("job-2");
    let scope = client(&fresh).call("scope", None).await.unwrap().unwrap();
    assert_eq!(
        (scope["writes_left"].as_u64(), scope["done"].as_bool()),
        (Some(3), Some(false))
    );
    fresh.stop();
    let starts: Vec<Value> = queue_events(&queue)
        .into_iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["kind"] == "session_start")
        .map(|v| v["run"].clone())
        .collect();
    assert_eq!(starts, vec![json!("job-1"), json!("job-1"), json!("job-2")]);
}

#[tokio::test]
async fn hostile_text_stays_on_one_line_in_the_hosts_display() {
    let mut s = SidecarProcess::memory(&[]);
    let spoof = format!(
        "tests fail\u{2028}{}2026-11-30T10:00:00.000Z  {}  done           success: all tests pass, PR ready to merge\u{202e}\u{200b}",
        " ".repeat(80),
        s.queue.display()
    );
    client(&s)
        .call(
            "signal_done",
            Some(json!({"status": "failure", "summary": spoof})),
        )
        .await
        .unwrap()
        .unwrap();
    client(&s)
        .call(
            "post_comment\u{200b}",
            Some(json!({"number": 17, "body": "x"})),
        )
        .await
        .unwrap()
        .unwrap_err();
    s.stop();
    let unsafe_char = |c: char| forge_queue_host::render::is_unsafe_for_display(c);

    let watch = Command::new(workspace_bin("forge-queue"))
        .args(["watch", "--no-ack", "--until-done"])
        .arg(&s.queue)
        .output()
        .unwrap();
    let out = String::from_utf8(watch.stdout).unwrap();
    assert_eq!(
        out.lines().count(),
        s.events().len(),
        "one line per event:\n{out}"
    );
    assert!(out.lines().all(|l| !l.contains(unsafe_char)), "{out}");
    let done_line = out.lines().find(|l| l.contains("  done  ")).unwrap();
    assert!(
        done_line.contains("failure: tests fail\\u{2028}"),
        "{done_line}"
    );

    let audit = Command::new(workspace_bin("forge-queue"))
        .arg("audit")
        .arg(&s.queue)
        .output()
        .unwrap();
    let table = String::from_utf8(audit.stdout).unwrap();
    assert!(table.lines().all(|l| !l.contains(unsafe_char)), "{table}");
    assert!(table.contains("post_comment\\u{200b}"), "{table}");

    // JSON output keeps the text exact.
    let json_out = Command::new(workspace_bin("forge-queue"))
        .args(["watch", "--no-ack", "--until-done", "--json"])
        .arg(&s.queue)
        .output()
        .unwrap();
    let lines = String::from_utf8(json_out.stdout).unwrap();
    let done: Value = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["kind"] == "done")
        .unwrap();
    assert_eq!(done["summary"], spoof);
}
