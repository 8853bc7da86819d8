//! End-to-end: queue directories shipped into a real NATS JetStream server
//! (`forge-queue ship`) and read back (`watch|audit|verify --nats`).
//! `tests/nats/install.sh` installs `nats-server`; each test starts its own
//! on a free port with a temporary store.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use forge_e2e::nats_server::{NatsServer, wait_exit};
use forge_e2e::sidecar::{SidecarProcess, call, workspace_bin};
use forge_protocol::DoneStatus;
use forge_protocol::event::{
    Done, EventBody, Intent, Limits, OutcomeCounts, SessionEnd, SessionStart,
};
use forge_queue::QueueWriter;
use forge_queue_host::nats::subject;
use forge_queue_host::render;
use forge_queue_host::watch::{WatchOptions, Watcher};
use serde_json::{Value, json};

/// Bound on every command the tests run.
const TIMEOUT: Duration = Duration::from_secs(120);

fn forge_queue() -> Command {
    Command::new(workspace_bin("forge-queue"))
}

/// Run `cmd` to completion (bounded), capturing its output.
fn run(cmd: &mut Command) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn forge-queue");
    let status = wait_exit(&mut child, TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!(
            "{cmd:?} did not finish in {TIMEOUT:?}:\n{}",
            fs::read_to_string(&err).unwrap_or_default()
        )
    });
    Output {
        status,
        stdout: fs::read(&out).unwrap(),
        stderr: fs::read(&err).unwrap(),
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ship_once(server: &NatsServer, dirs: &[&Path]) -> Output {
    let out = run(forge_queue()
        .args(["ship", "--once", "--nats", &server.url()])
        .args(dirs));
    assert!(out.status.success(), "ship: {}", stderr(&out));
    out
}

/// `watch --nats --until-done` with a durable consumer; its lines.
fn consume(server: &NatsServer, durable: &str, extra: &[&str]) -> Output {
    run(forge_queue()
        .args(["watch", "--nats", &server.url(), "--durable", durable])
        .args(["--until-done"])
        .args(extra))
}

/// (session, seq) of each event line of `watch --json` output, skipping
/// liveness notices.
fn event_keys(json_lines: &str) -> Vec<(String, u64)> {
    json_lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["seq"].is_u64())
        .map(|v| {
            (
                v["session"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Each session's seqs are 0..n, each exactly once, in order.
fn assert_each_once_in_order(keys: &[(String, u64)], sessions: &[(String, u64)]) {
    for (session, n) in sessions {
        let seqs: Vec<u64> = keys
            .iter()
            .filter(|(s, _)| s == session)
            .map(|(_, q)| *q)
            .collect();
        if seqs != (0..*n).collect::<Vec<_>>() {
            let first_wrong = seqs
                .iter()
                .enumerate()
                .find(|(i, q)| *i as u64 != **q)
                .map(|(i, q)| format!("position {i} holds seq {q}"));
            panic!(
                "session {session}: {} events seen for {n}; {}",
                seqs.len(),
                first_wrong.unwrap_or_else(|| "the last ones are missing".into())
            );
        }
    }
    assert_eq!(
        keys.len() as u64,
        sessions.iter().map(|(_, n)| n).sum::<u64>()
    );
}

fn files(dir: &Path, place: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join(place))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A directory for a queue: on tmpfs where there is one (as `/run` is),
/// so writing a large backlog is not a test of the disk's fsync.
fn queue_dir() -> tempfile::TempDir {
    match Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm).unwrap(),
        _ => tempfile::tempdir().unwrap(),
    }
}

/// A session of `n` events written with the queue's own writer:
/// `session_start`, intents, `done`, `session_end`. Returns its id.
fn backlog(dir: &Path, n: u64) -> String {
    assert!(n >= 3);
    let w = QueueWriter::open(dir).unwrap();
    let mut bodies = vec![EventBody::SessionStart(SessionStart {
        version: "test".into(),
        forge: "memory".into(),
        api_base: None,
        owner: "acme".into(),
        repo: "web.site".into(),
        issue: 17,
        writable: vec![17],
        limits: Limits {
            max_request_bytes: 1 << 20,
            max_body_bytes: 1 << 16,
            max_writes: 100,
            http_timeout_secs: 5,
            heartbeat_secs: 3600,
        },
        pid: 1,
        run: None,
        text: Default::default(),
    })];
    bodies.extend((1..n - 2).map(|i| {
        EventBody::Intent(Intent {
            op_id: i,
            op: "post_comment".into(),
            target: Some(17),
            write: None,
        })
    }));
    bodies.push(EventBody::Done(Done {
        status: DoneStatus::Success,
        summary: "finished".into(),
        warnings: vec![],
    }));
    bodies.push(EventBody::SessionEnd(SessionEnd {
        reason: "SIGTERM".into(),
        counts: OutcomeCounts::default(),
        done: true,
    }));
    let mut it = bodies.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<EventBody> = it.by_ref().take(2000).collect();
        for r in w.append_batch(chunk) {
            r.unwrap();
        }
    }
    w.session().to_string()
}

/// Wait (bounded) until `cond` holds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Panic with its log if `child` exited.
fn running(child: &mut Child, log: &Path) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "exited early ({status}):\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
    }
}

fn spawn_ship(server: &NatsServer, dirs: &[&Path], log: &Path, extra: &[&str]) -> Child {
    forge_queue()
        .args(["ship", "--nats", &server.url()])
        .args(extra)
        .args(dirs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn ship")
}

#[tokio::test]
async fn a_shipped_sidecar_session_reads_the_same_from_the_stream() {
    let server = NatsServer::start();
    let mut s = SidecarProcess::memory(&[]);
    call(&s, "read_issue", json!({"number": 17})).await.unwrap();
    call(
        &s,
        "post_comment",
        json!({"number": 17, "body": "on it\n\u{1b}[2J"}),
    )
    .await
    .unwrap();
    call(&s, "post_comment", json!({"number": 500, "body": "x"}))
        .await
        .unwrap_err();
    call(
        &s,
        "signal_done",
        json!({"status": "blocked", "summary": "need a decision"}),
    )
    .await
    .unwrap();
    s.stop();
    let queue = s.queue.clone();

    // What the directory watcher prints, before anything is consumed: the
    // CLI (which stops at done) and the library over the whole session.
    let mut dir_lines: Vec<[String; 2]> = Vec::new();
    let mut lib = Watcher::new(
        [&queue],
        WatchOptions {
            ack: false,
            notify: false,
            ..WatchOptions::default()
        },
    )
    .unwrap();
    lib.poll(|d| {
        dir_lines.push([render::human_line(d), render::json_line(d)]);
        Ok::<_, ()>(())
    })
    .unwrap();
    let human: Vec<String> = dir_lines.iter().map(|l| l[0].clone()).collect();
    let json_lines: Vec<String> = dir_lines.iter().map(|l| l[1].clone()).collect();
    let cli_dir = run(forge_queue()
        .args(["watch", "--no-ack", "--until-done"])
        .arg(&queue));
    assert_eq!(cli_dir.status.code(), Some(3), "{}", stderr(&cli_dir));
    let cli_dir_lines: Vec<String> = stdout(&cli_dir).lines().map(String::from).collect();
    assert_eq!(cli_dir_lines[..], human[..cli_dir_lines.len()]);
    let dir_audit = run(forge_queue().arg("audit").arg(&queue));

    ship_once(&server, &[&queue]);
    assert!(files(&queue, "new").is_empty(), "everything acked locally");

    let stream_human = consume(&server, "human", &[]);
    assert_eq!(
        stream_human.status.code(),
        Some(3),
        "{}",
        stderr(&stream_human)
    );
    assert_eq!(stdout(&stream_human).lines().collect::<Vec<_>>(), human);
    let stream_json = consume(&server, "json", &["--json"]);
    assert_eq!(
        stream_json.status.code(),
        Some(3),
        "{}",
        stderr(&stream_json)
    );
    assert_eq!(stdout(&stream_json).lines().collect::<Vec<_>>(), json_lines);
    // Escaped like the directory's: no terminal escape got through.
    assert!(!stdout(&stream_human).contains('\u{1b}'));

    let session = serde_json::from_str::<Value>(&json_lines[0]).unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();
    let url = server.url();
    let verify = run(forge_queue().args(["verify", "--nats", &url, "--session", &session]));
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    assert_eq!(
        stdout(&verify).trim(),
        format!(
            "stream FORGE session {session}: intact (1 sessions, {} events)",
            json_lines.len()
        )
    );
    // The same audit as the directory's, below the heading.
    let audit = run(forge_queue().args(["audit", "--nats", &url, "--session", &session]));
    assert!(audit.status.success(), "{}", stderr(&audit));
    let below_heading = |o: &Output| stdout(o).lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(below_heading(&audit), below_heading(&dir_audit));
}

#[test]
fn a_backlog_survives_a_server_restart_each_event_once_in_order() {
    let mut server = NatsServer::start();
    let (a, b) = (queue_dir(), queue_dir());
    let sessions = vec![
        (backlog(a.path(), 6_000), 6_000),
        (backlog(b.path(), 4_000), 4_000),
    ];
    let log = a.path().join("ship.log");
    let mut ship = spawn_ship(&server, &[a.path(), b.path()], &log, &["--once"]);
    wait_for("the stream created", || {
        running(&mut ship, &log);
        !files(a.path(), "cur").is_empty()
    });
    // A consumer runs from here on, across the restart.
    let consumed = a.path().join("consumed");
    let consumer_log = a.path().join("consumer.log");
    let mut consumer = forge_queue()
        .args(["watch", "--json", "--nats", &server.url()])
        .args(["--durable", "live"])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&consumed).unwrap())
        .stderr(fs::File::create(&consumer_log).unwrap())
        .spawn()
        .unwrap();
    wait_for("a first part shipped", || {
        running(&mut ship, &log);
        files(a.path(), "cur").len() >= 1_000
    });
    server.stop();
    let stranded = files(a.path(), "new").len() + files(b.path(), "new").len();
    assert!(stranded > 0, "events wait in new/ while the server is down");
    assert!(
        ship.try_wait().unwrap().is_none(),
        "the shipper waits, not exits"
    );
    server.restart();
    let status = wait_exit(&mut ship, TIMEOUT).expect("ship finishes after the restart");
    assert!(status.success(), "{}", fs::read_to_string(&log).unwrap());
    assert!(files(a.path(), "new").is_empty() && files(b.path(), "new").is_empty());

    let total: u64 = sessions.iter().map(|(_, n)| n).sum();
    wait_for("the live consumer to print every event", || {
        running(&mut consumer, &consumer_log);
        // One line per event (no liveness notices here); checked below.
        let printed = fs::read(&consumed).unwrap();
        printed.iter().filter(|&&b| b == b'\n').count() as u64 >= total
    });
    consumer.kill().unwrap();
    consumer.wait().unwrap();
    let live = fs::read_to_string(&consumed).unwrap();
    assert_each_once_in_order(&event_keys(&live), &sessions);
    // And one that starts afterwards reads the same.
    let out = consume(&server, "orchestrator", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_each_once_in_order(&event_keys(&stdout(&out)), &sessions);
    let verify = run(forge_queue().args(["verify", "--nats", &server.url()]));
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
}

#[test]
fn a_shipper_killed_between_publish_and_local_ack_duplicates_nothing() {
    let server = NatsServer::start();
    let q = queue_dir();
    let session = backlog(q.path(), 3_000);
    let log = q.path().join("ship.log");
    let mut ship = spawn_ship(&server, &[q.path()], &log, &[]);
    wait_for("part shipped", || {
        running(&mut ship, &log);
        files(q.path(), "cur").len() >= 500
    });
    ship.kill().unwrap();
    ship.wait().unwrap();
    // The exact state a kill after the server's ack and before the rename
    // leaves: published, still in new/. Make it certain for 200 events.
    let cur = files(q.path(), "cur");
    for path in &cur[cur.len() - 200..] {
        fs::rename(path, q.path().join("new").join(path.file_name().unwrap())).unwrap();
    }
    let out = ship_once(&server, &[q.path()]);
    let summary = stderr(&out);
    let dropped: u64 = summary
        .split(" already in the stream")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {summary}"));
    assert!(dropped >= 200, "{summary}");

    let out = consume(&server, "once", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_each_once_in_order(&event_keys(&stdout(&out)), &[(session, 3_000)]);
}

#[test]
fn a_restarted_consumer_resumes_where_it_acked() {
    let server = NatsServer::start();
    let q = queue_dir();
    let session = backlog(q.path(), 1_000);
    ship_once(&server, &[q.path()]);

    // The first consumer is killed after printing 300 lines. Its unacked
    // messages would come back only after the (long) ack wait.
    let mut first = forge_queue()
        .args(["watch", "--json", "--nats", &server.url(), "--durable", "r"])
        .args(["--batch", "50", "--ack-wait-secs", "3600"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(first.stdout.take().unwrap());
    let mut seen = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while seen.len() < 300 {
        assert!(Instant::now() < deadline, "first consumer too slow");
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0);
        seen.extend(event_keys(&line));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // And whatever else it printed before the kill.
    let mut tail = String::new();
    std::io::Read::read_to_string(&mut reader, &mut tail).unwrap();
    seen.extend(event_keys(&tail));
    let printed = seen.len() as u64;

    let second = consume(&server, "r", &["--json", "--ack-wait-secs", "3600"]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let rest = event_keys(&stdout(&second));
    let resumed_at = rest[0].1;
    assert!(
        resumed_at <= printed && resumed_at + 50 >= printed,
        "resumed at {resumed_at}, after {printed} printed"
    );
    // Nothing lost, in order; only the unacked tail may repeat.
    let mut all: Vec<(String, u64)> = seen[..resumed_at as usize].to_vec();
    all.extend(rest);
    assert_each_once_in_order(&all, &[(session, 1_000)]);
}

#[tokio::test]
async fn verify_reports_an_event_published_by_hand_with_altered_bytes() {
    let server = NatsServer::start();
    let q = queue_dir();
    let session = backlog(q.path(), 5);
    // Before the shipper, someone publishes seq 2 with one byte changed and
    // the message id the shipper will use: the real one is then dropped as
    // a duplicate.
    let victim = q
        .path()
        .join("new")
        .join(format!("{session}-00000002.json"));
    let mut forged = fs::read(&victim).unwrap();
    let at = forged
        .windows(12)
        .position(|w| w == b"post_comment")
        .unwrap();
    forged[at + 11] = b'T';
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "FORGE".into(),
        subjects: vec!["forge.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{session}-2").as_str());
    headers.insert(subject::SESSION, session.as_str());
    headers.insert(subject::SEQ, "2");
    headers.insert(subject::KIND, "intent");
    let subject = subject::subject("forge", None, Some(&session), "intent");
    js.publish_with_headers(subject, headers, forged.into())
        .await
        .unwrap()
        .await
        .unwrap();

    let out = ship_once(&server, &[q.path()]);
    assert!(
        stderr(&out).contains("(1 already in the stream)"),
        "{}",
        stderr(&out)
    );
    let verify =
        run(forge_queue().args(["verify", "--nats", &server.url(), "--session", &session]));
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    let report = stdout(&verify);
    assert!(
        report.contains(&format!(
            "{session}-00000003.json: prev is not the SHA-256 of #"
        )),
        "{report}"
    );
    // The directory itself is intact: the stream is what was tampered with.
    let dir = run(forge_queue().arg("verify").arg(q.path()));
    assert_eq!(dir.status.code(), Some(0), "{}", stdout(&dir));
}

#[test]
fn a_stale_sidecar_is_published_and_settles_its_session() {
    let server = NatsServer::start();
    let q = queue_dir();
    let w = QueueWriter::open(q.path()).unwrap();
    w.append(EventBody::SessionStart(SessionStart {
        version: "test".into(),
        forge: "memory".into(),
        api_base: None,
        owner: "acme".into(),
        repo: "widgets".into(),
        issue: 17,
        writable: vec![17],
        limits: Limits {
            max_request_bytes: 1 << 20,
            max_body_bytes: 1 << 16,
            max_writes: 100,
            http_timeout_secs: 5,
            heartbeat_secs: 1,
        },
        pid: 1,
        run: None,
        text: Default::default(),
    }))
    .unwrap();
    let session = w.session().to_string();
    // The sidecar's last heartbeat, long ago: it is gone.
    fs::write(
        q.path().join("heartbeat"),
        json!({"pid": 1, "session": session, "ts": "2026-01-01T00:00:00.000Z"}).to_string(),
    )
    .unwrap();
    ship_once(&server, &[q.path()]);
    let out = consume(&server, "liveness", &["--json"]);
    assert_eq!(out.status.code(), Some(4), "no done: {}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["kind"], "session_start");
    assert_eq!(lines[1]["kind"], "stale");
    assert_eq!(lines[1]["session"], session.as_str());
    assert_eq!(lines[1]["heartbeat_ts"], "2026-01-01T00:00:00.000Z");
    assert_eq!(lines[1]["dir"], q.path().display().to_string());
    // Shipped under the session's subject, kind stale.
    let audit = run(forge_queue().args(["audit", "--nats", &server.url(), "--session", &session]));
    assert!(
        stdout(&audit).contains("no fresh heartbeat (last 2026-01-01T00:00:00.000Z)"),
        "{}",
        stdout(&audit)
    );
}

/// A runtime for the tests that talk to the stream directly.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Messages the stream `FORGE` holds.
fn stream_messages(server: &NatsServer) -> u64 {
    block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream("FORGE").await.unwrap();
        stream.info().await.unwrap().state.messages
    })
}

#[test]
fn a_pipelined_ship_stores_each_event_once_in_order_through_a_restart() {
    let mut server = NatsServer::start();
    let (a, b) = (queue_dir(), queue_dir());
    // Two sessions one after the other in one directory, a third in another.
    let sessions = vec![
        (backlog(a.path(), 3_000), 3_000),
        (backlog(a.path(), 4_000), 4_000),
        (backlog(b.path(), 5_000), 5_000),
    ];
    let total: u64 = sessions.iter().map(|(_, n)| n).sum();
    let log = a.path().join("ship.log");
    let mut ship = spawn_ship(
        &server,
        &[a.path(), b.path()],
        &log,
        &[
            "--once",
            "--max-in-flight",
            "512",
            "--ack-timeout-secs",
            "2",
        ],
    );
    wait_for("a first part shipped", || {
        running(&mut ship, &log);
        files(a.path(), "cur").len() + files(b.path(), "cur").len() >= 2_000
    });
    // Whatever is in flight now is cut off mid-way.
    server.stop();
    assert!(
        ship.try_wait().unwrap().is_none(),
        "the shipper waits, not exits"
    );
    let stranded = files(a.path(), "new").len() + files(b.path(), "new").len();
    assert!(stranded > 0, "events wait in new/ while the server is down");
    server.restart();
    let status = wait_exit(&mut ship, TIMEOUT).expect("ship finishes after the restart");
    let shipped = fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{shipped}");
    assert!(files(a.path(), "new").is_empty() && files(b.path(), "new").is_empty());
    assert_eq!(
        files(a.path(), "cur").len() + files(b.path(), "cur").len(),
        total as usize
    );
    // Exactly once in the stream itself: no event stored twice.
    assert_eq!(stream_messages(&server), total, "{shipped}");
    // In order per session, read back in stream order.
    let out = consume(&server, "after-restart", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_each_once_in_order(&event_keys(&stdout(&out)), &sessions);
    let verify = run(forge_queue().args(["verify", "--nats", &server.url()]));
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
}

#[test]
fn watch_nats_waits_for_a_stream_that_does_not_exist_yet() {
    let server = NatsServer::start();
    let q = queue_dir();
    let log = q.path().join("watch.log");
    let mut watch = forge_queue()
        .args(["watch", "--json", "--until-done", "--nats", &server.url()])
        .args(["--durable", "early"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for("the watcher to say it waits for the stream", || {
        running(&mut watch, &log);
        fs::read_to_string(&log)
            .unwrap()
            .contains("stream FORGE does not exist yet; waiting for it")
    });
    let session = backlog(q.path(), 5);
    ship_once(&server, &[q.path()]);
    let status = wait_exit(&mut watch, TIMEOUT).expect("watch ends once the session is done");
    let mut lines = String::new();
    std::io::Read::read_to_string(&mut watch.stdout.take().unwrap(), &mut lines).unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    assert_each_once_in_order(&event_keys(&lines), &[(session, 5)]);
}

mod signed {
    //! The stream carries the signed checkpoints: `verify --nats --key`
    //! and `watch --nats --key` give the directory's verdicts.

    use super::*;
    use forge_protocol::event::Event;
    use forge_queue::checkpoint::CheckpointSigner;
    use forge_queue::note::SigningKey;

    fn start(heartbeat_secs: u64) -> EventBody {
        EventBody::SessionStart(SessionStart {
            version: "test".into(),
            forge: "memory".into(),
            api_base: None,
            owner: "acme".into(),
            repo: "widgets".into(),
            issue: 17,
            writable: vec![17],
            limits: Limits {
                max_request_bytes: 1 << 20,
                max_body_bytes: 1 << 16,
                max_writes: 100,
                http_timeout_secs: 5,
                heartbeat_secs,
            },
            pid: 1,
            run: Some("run-1".into()),
            text: Default::default(),
        })
    }

    fn intent(i: u64) -> EventBody {
        EventBody::Intent(Intent {
            op_id: i,
            op: "post_comment".into(),
            target: Some(17),
            write: None,
        })
    }

    fn done(status: DoneStatus) -> EventBody {
        EventBody::Done(Done {
            status,
            summary: "finished".into(),
            warnings: vec![],
        })
    }

    fn end(done: bool) -> EventBody {
        EventBody::SessionEnd(SessionEnd {
            reason: "SIGTERM".into(),
            counts: OutcomeCounts::default(),
            done,
        })
    }

    /// A writer that signs checkpoints with `key`, as the sidecar does.
    /// A session of `bodies` written to `dir` and signed with `key`; its
    /// writer and its id.
    fn signed_session<const N: usize>(
        dir: &Path,
        key: &SigningKey,
        bodies: [EventBody; N],
    ) -> (QueueWriter, String) {
        let w = writer(dir, key);
        for body in bodies {
            w.append(body).unwrap();
        }
        w.publish_checkpoint().unwrap();
        let session = w.session().to_string();
        (w, session)
    }

    fn writer(dir: &Path, key: &SigningKey) -> QueueWriter {
        QueueWriter::open(dir)
            .unwrap()
            .with_checkpoints(CheckpointSigner {
                key: key.clone(),
                repository: "acme/widgets".into(),
                issue: 17,
                run: Some("run-1".into()),
            })
    }

    fn key() -> (SigningKey, String) {
        let key = SigningKey::generate("forge-sidecar.test").unwrap();
        let verifier = key.verifier().to_string();
        (key, verifier)
    }

    fn verify_nats(server: &NatsServer, extra: &[&str]) -> Output {
        run(forge_queue()
            .args(["verify", "--nats", &server.url()])
            .args(extra))
    }

    /// Publish `body` as the next event of `session` (shipped from `dir`)
    /// after `last` (the bytes of its current last event), chained and
    /// labelled like the shipper's: what someone who may publish to the
    /// stream, but has not the key, can do.
    fn forge_next(server: &NatsServer, dir: &Path, session: &str, seq: u64, body: EventBody) {
        let last = event_file(dir, session, seq - 1);
        let event = Event {
            v: 1,
            session: session.into(),
            seq,
            ts: "2026-11-25T12:00:00.000Z".into(),
            prev: Some(forge_queue::sha256_hex(&last)),
            body,
        };
        let bytes = serde_json::to_vec(&event).unwrap();
        let kind = event.body.kind();
        block_on(async {
            let client = async_nats::connect(server.url()).await.unwrap();
            let js = async_nats::jetstream::new(client);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{session}-{seq}").as_str());
            headers.insert(subject::SESSION, session);
            headers.insert(subject::DIR, dir.to_string_lossy().as_ref());
            headers.insert(subject::SEQ, seq.to_string().as_str());
            headers.insert(subject::KIND, kind);
            let scope = subject::Scope {
                owner: "acme".into(),
                repo: "widgets".into(),
                issue: Some(17),
            };
            let subject = subject::subject("forge", Some(&scope), Some(session), kind);
            js.publish_with_headers(subject, headers, bytes.into())
                .await
                .unwrap()
                .await
                .unwrap();
        });
    }

    fn event_file(dir: &Path, session: &str, seq: u64) -> Vec<u8> {
        let name = format!("{session}-{seq:08}.json");
        fs::read(dir.join("cur").join(&name))
            .or_else(|_| fs::read(dir.join("new").join(&name)))
            .unwrap()
    }

    #[test]
    fn verify_nats_with_the_key_catches_a_cut_tail() {
        let server = NatsServer::start();
        let q = queue_dir();
        let (key, vkey) = key();
        let (_w, session) = signed_session(
            q.path(),
            &key,
            [
                start(5),
                intent(1),
                intent(2),
                done(DoneStatus::Success),
                end(true),
            ],
        );
        // The directory's verdict before shipping.
        let dir = run(forge_queue().args(["verify", "--key", &vkey]).arg(q.path()));
        assert_eq!(dir.status.code(), Some(0), "{}", stdout(&dir));
        assert!(stdout(&dir).contains("5 events signed"), "{}", stdout(&dir));

        let shipped = ship_once(&server, &[q.path()]);
        assert!(
            stderr(&shipped).contains("shipped 5 events (0 already in the stream), 1 checkpoints"),
            "{}",
            stderr(&shipped)
        );
        let whole = verify_nats(&server, &["--key", &vkey, "--run", "run-1"]);
        assert_eq!(whole.status.code(), Some(0), "{}", stdout(&whole));
        assert!(
            stdout(&whole).contains(&format!("session {session}: 5 events signed")),
            "{}",
            stdout(&whole)
        );

        // Someone with the stream's admin rights removes done and
        // session_end: the chain alone still looks whole.
        block_on(async {
            let client = async_nats::connect(server.url()).await.unwrap();
            let js = async_nats::jetstream::new(client);
            let stream = js.get_stream("FORGE").await.unwrap();
            for kind in ["done", "session_end"] {
                let scope = subject::Scope {
                    owner: "acme".into(),
                    repo: "widgets".into(),
                    issue: Some(17),
                };
                let subject = subject::subject("forge", Some(&scope), Some(&session), kind);
                let m = stream
                    .get_last_raw_message_by_subject(&subject)
                    .await
                    .unwrap();
                assert!(stream.delete_message(m.sequence).await.unwrap());
            }
        });
        let unsigned = verify_nats(&server, &[]);
        assert_eq!(unsigned.status.code(), Some(0), "{}", stdout(&unsigned));
        let cut = verify_nats(&server, &["--key", &vkey]);
        assert_eq!(cut.status.code(), Some(1), "{}", stdout(&cut));
        assert!(
            stdout(&cut).contains(&format!(
                "checkpoint {session}: a signed checkpoint counts 5 events but seq 3..=4 are missing: the tail was cut after signing"
            )),
            "{}",
            stdout(&cut)
        );
        // A key that did not sign them vouches for nothing.
        let (_, other) = super::signed::key();
        let foreign = verify_nats(&server, &["--key", &other]);
        assert_eq!(foreign.status.code(), Some(1), "{}", stdout(&foreign));
        assert!(
            stdout(&foreign).contains("checkpoint refused"),
            "{}",
            stdout(&foreign)
        );
    }

    #[test]
    fn verify_nats_with_the_key_catches_a_done_forged_after_the_end() {
        let server = NatsServer::start();
        let q = queue_dir();
        let (key, vkey) = key();
        let (_w, session) = signed_session(q.path(), &key, [start(5), intent(1), end(false)]);
        ship_once(&server, &[q.path()]);
        forge_next(&server, q.path(), &session, 3, done(DoneStatus::Success));

        // The chain is intact: only the key tells.
        let unsigned = verify_nats(&server, &[]);
        assert_eq!(unsigned.status.code(), Some(0), "{}", stdout(&unsigned));
        let signed = verify_nats(&server, &["--key", &vkey]);
        assert_eq!(signed.status.code(), Some(1), "{}", stdout(&signed));
        assert!(
            stdout(&signed).contains(&format!(
                "{session}-00000003.json: follows session_end (seq 2)"
            )),
            "{}",
            stdout(&signed)
        );
        // And watch --nats --key does not act on it, as on a directory.
        let out = consume(&server, "trusting", &["--json", "--key", &vkey]);
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        let unverified: Vec<Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["kind"] == "unverified_done")
            .collect();
        assert_eq!(unverified.len(), 1, "{}", stdout(&out));
        assert_eq!(unverified[0]["seq"], 3);
    }

    #[test]
    fn watch_nats_with_the_key_acts_only_on_a_signed_done() {
        let server = NatsServer::start();
        let (key, vkey) = key();

        // An honest session: its done is covered by the checkpoint after it.
        let honest = queue_dir();
        let w = writer(honest.path(), &key);
        for body in [start(5), intent(1), done(DoneStatus::Success)] {
            w.append(body).unwrap();
        }
        w.publish_checkpoint().unwrap();
        w.append(end(true)).unwrap();
        w.publish_checkpoint().unwrap();
        let dir = run(forge_queue()
            .args([
                "watch",
                "--no-ack",
                "--until-done",
                "--json",
                "--key",
                &vkey,
            ])
            .arg(honest.path()));
        assert_eq!(dir.status.code(), Some(0), "{}", stderr(&dir));
        ship_once(&server, &[honest.path()]);
        let out = consume(&server, "honest", &["--json", "--key", &vkey]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let kinds = |o: &Output| -> Vec<String> {
            stdout(o)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].to_string())
                .collect()
        };
        assert!(
            kinds(&out).contains(&"\"checkpoint\"".to_string()),
            "{}",
            stdout(&out)
        );
        assert_eq!(kinds(&out)[..3], kinds(&dir)[..3]);

        // A live session, and a done published by someone without the key,
        // chained to its last event.
        let q = queue_dir();
        let (w, session) = signed_session(q.path(), &key, [start(3600), intent(1)]);
        ship_once(&server, &[q.path()]);
        forge_next(&server, q.path(), &session, 2, done(DoneStatus::Success));
        // The sidecar goes on: its seq 2 is dropped as a duplicate id, and
        // its next checkpoint signs its own seq 2.
        w.append(intent(2)).unwrap();
        w.publish_checkpoint().unwrap();
        let again = ship_once(&server, &[q.path()]);
        assert!(
            stderr(&again).contains("(1 already in the stream)"),
            "{}",
            stderr(&again)
        );

        // Without the key the forged done settles the session as a success.
        let filter = subject::session_filter("forge", &session);
        let blind = consume(&server, "blind", &["--json", "--filter", &filter]);
        assert_eq!(blind.status.code(), Some(0), "{}", stderr(&blind));
        // With it, the done is reported and not acted on.
        let mut watch = forge_queue()
            .args(["watch", "--json", "--nats", &server.url(), "--until-done"])
            .args(["--durable", "keyed", "--filter", &filter, "--key", &vkey])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let verdict = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("an unverified_done line from watch --nats --key");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["kind"] == "unverified_done" {
                break v;
            }
        };
        assert_eq!(verdict["seq"], 2);
        assert!(
            verdict["reason"].as_str().unwrap().contains("signed"),
            "{verdict}"
        );
        assert!(
            watch.try_wait().unwrap().is_none(),
            "not settled by the forged done"
        );
        watch.kill().unwrap();
        watch.wait().unwrap();
    }
}

/// A TCP relay to the server whose connections can be cut at once, bytes
/// in transit dropped, while the server stays up: a network break, as a
/// client sees it.
struct CutRelay {
    port: u16,
    live: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CutRelay {
    fn start(upstream: String) -> CutRelay {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let upstream = upstream.trim_start_matches("nats://").to_string();
        let conns = live.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                {
                    let mut l = conns.lock().unwrap();
                    l.push(client.try_clone().unwrap());
                    l.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CutRelay { port, live }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Break every connection now; new ones are relayed again.
    fn cut(&self) {
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn a_pipelined_ship_keeps_order_through_a_broken_connection() {
    let server = NatsServer::start();
    let relay = CutRelay::start(server.url());
    let q = queue_dir();
    let session = backlog(q.path(), 20_000);
    let log = q.path().join("ship.log");
    let mut ship = forge_queue()
        .args(["ship", "--once", "--nats", &relay.url()])
        .args(["--max-in-flight", "1024", "--ack-timeout-secs", "2"])
        .arg(q.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    for at in [2_000, 6_000, 10_000, 14_000] {
        wait_for("part shipped", || {
            running(&mut ship, &log);
            files(q.path(), "cur").len() >= at
        });
        relay.cut();
    }
    let status = wait_exit(&mut ship, TIMEOUT).expect("ship finishes");
    let shipped = fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{shipped}");
    assert_eq!(stream_messages(&server), 20_000, "{shipped}");
    let out = consume(&server, "after-cuts", &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_each_once_in_order(&event_keys(&stdout(&out)), &[(session, 20_000)]);
}
