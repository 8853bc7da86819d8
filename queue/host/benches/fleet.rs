//! Benchmark of the fleet side (not a test; run it with
//! `tests/build-shipped.sh --release && cargo bench -p forge-queue-host
//! --bench fleet`). It starts its own `nats-server -js` (install it with
//! `tests/nats/install.sh`) on a free port, its store on the disk.
//!
//! 1. Ship: a 100,000-event backlog in one directory (tmpfs) through
//!    `forge-queue ship --once`: events/s; then `verify --nats` of what
//!    the stream holds.
//! 2. Restart: another 100,000-event backlog, `nats-server` stopped after
//!    30,000 and started again; then a durable `watch --nats --json
//!    --until-done` reads the stream: events lost, duplicated, out of order.
//! 3. Latency: a `read_issue` call to a real `forge-sidecar` (memory forge,
//!    queue on tmpfs; the shipped `target/shipped/release/forge-sidecar`) returning → its `op`
//!    line printed by `forge-queue watch --nats --json`, through a running
//!    `forge-queue ship` (p50/p99/max).
//! 4. Idle: one `forge-queue ship` over 1,000 directories whose sidecars
//!    are alive (heartbeats replaced every 5 s): CPU% and RSS.
//!
//! Environment: `FLEET_BENCH_FAST=1` shrinks every size (smoke run).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use forge_protocol::DoneStatus;
use forge_protocol::event::{
    Done, EventBody, Limits, Op, Outcome, OutcomeCounts, SessionEnd, SessionStart,
};
use forge_queue::QueueWriter;

mod common;
use common::{clock_ticks_per_sec, cpu_ticks, rss_kib};

const TIMEOUT: Duration = Duration::from_secs(300);

fn main() {
    let fast = std::env::var_os("FLEET_BENCH_FAST").is_some();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: nproc {cpus}; nats-server {}", nats_version());
    let backlog = if fast { 10_000 } else { 100_000 };
    ship_backlog(backlog);
    restart_midway(backlog);
    latency(if fast { 200 } else { 2_000 });
    let (dirs, window) = if fast { (100, 5) } else { (1_000, 30) };
    idle(dirs, Duration::from_secs(window));
}

fn nats_bin() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}

fn nats_version() -> String {
    Command::new(nats_bin())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "missing: run tests/nats/install.sh".into())
}

/// A `nats-server -js` on a free port, store on the disk.
struct Server {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = Server {
            child: None,
            port,
            store: tempfile::tempdir_in("/var/tmp").unwrap(),
        };
        s.restart();
        s
    }

    fn restart(&mut self) {
        self.child = Some(
            Command::new(nats_bin())
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-sd",
                ])
                .arg(self.store.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t0.elapsed() < TIMEOUT, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn forge_queue() -> Command {
    Command::new(env!("CARGO_BIN_EXE_forge-queue"))
}

fn tmpfs() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

fn start(heartbeat_secs: u64) -> EventBody {
    EventBody::SessionStart(SessionStart {
        version: "bench".into(),
        forge: "memory".into(),
        api_base: None,
        owner: "acme".into(),
        repo: "widgets".into(),
        issue: 17,
        writable: vec![17],
        limits: Limits {
            max_request_bytes: 1 << 20,
            max_body_bytes: 64 << 10,
            max_writes: 100,
            http_timeout_secs: 30,
            heartbeat_secs,
        },
        pid: std::process::id(),
        run: None,
        text: Default::default(),
    })
}

fn op(i: u64) -> EventBody {
    EventBody::Op(Op {
        op_id: i,
        op: "read_comments".into(),
        target: Some(17),
        outcome: Outcome::Ok,
        summary: format!("read the comments of #17 ({i})"),
        error: None,
        duration_ms: 12,
        peer: None,
        coalesced: None,
        read: None,
        resolution: None,
        previous_body: None,
        foreign_refs: None,
        mentions: None,
    })
}

/// `n` events of one session written by the queue's writer, ending in
/// `done` and `session_end` (so `watch --until-done` can finish).
fn backlog(dir: &Path, n: u64) -> QueueWriter {
    let w = QueueWriter::open(dir).unwrap();
    let mut bodies = vec![start(3600)];
    bodies.extend((1..n - 2).map(op));
    bodies.push(EventBody::Done(Done {
        status: DoneStatus::Success,
        summary: "benchmark finished".into(),
        warnings: Vec::new(),
    }));
    bodies.push(EventBody::SessionEnd(SessionEnd {
        reason: "SIGTERM".into(),
        counts: OutcomeCounts::default(),
        done: true,
    }));
    let mut it = bodies.into_iter().peekable();
    while it.peek().is_some() {
        for r in w.append_batch(it.by_ref().take(5_000).collect()) {
            r.unwrap();
        }
    }
    w
}

fn count(dir: &Path, place: &str) -> usize {
    fs::read_dir(dir.join(place)).map_or(0, |d| d.count())
}

fn ship_backlog(n: u64) {
    let server = Server::start();
    let q = tmpfs();
    backlog(q.path(), n);
    let t0 = Instant::now();
    let out = forge_queue()
        .args(["ship", "--once", "--nats", &server.url()])
        .arg(q.path())
        .output()
        .unwrap();
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t1 = Instant::now();
    let verify = forge_queue()
        .args(["verify", "--nats", &server.url()])
        .output()
        .unwrap();
    println!(
        "ship {n} backlog (queue tmpfs, store disk): {:.2} s, {:.0} events/s; verify --nats {:.2} s: {}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        t1.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&verify.stdout).trim()
    );
}

fn restart_midway(n: u64) {
    let mut server = Server::start();
    let q = tmpfs();
    let session = backlog(q.path(), n).session().to_string();
    let t0 = Instant::now();
    let mut ship = forge_queue()
        .args(["ship", "--once", "--nats", &server.url()])
        .arg(q.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let at = (n * 3 / 10) as usize;
    while count(q.path(), "cur") < at {
        assert!(t0.elapsed() < TIMEOUT);
        std::thread::sleep(Duration::from_millis(5));
    }
    server.stop();
    let stranded = count(q.path(), "new");
    std::thread::sleep(Duration::from_secs(1));
    server.restart();
    let mut stderr = String::new();
    ship.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(ship.wait().unwrap().success(), "{stderr}");
    let took = t0.elapsed();
    let summary = stderr.lines().last().unwrap_or_default().to_string();
    let retries = stderr.lines().filter(|l| l.contains("retrying")).count();
    let out = forge_queue()
        .args(["watch", "--json", "--until-done", "--nats", &server.url()])
        .args(["--durable", "bench"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected = 0u64;
    let (mut lost, mut dup, mut disorder) = (0u64, 0u64, 0u64);
    let _ = &session;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(seq) = v["seq"].as_u64() else {
            continue;
        };
        match seq.cmp(&expected) {
            std::cmp::Ordering::Equal => expected += 1,
            std::cmp::Ordering::Less => dup += 1,
            std::cmp::Ordering::Greater => {
                disorder += 1;
                lost += seq - expected;
                expected = seq + 1;
            }
        }
    }
    lost += n - expected;
    println!(
        "ship {n} backlog, server stopped at {at} ({stranded} waiting in new/) and restarted 1 s later: {:.2} s in all, {retries} publish retries; {}; consumer: {expected} distinct in order, lost {lost}, duplicates {dup}, out of order {disorder}",
        took.as_secs_f64(),
        summary.trim_start_matches("forge-queue: ")
    );
}

/// One JSON-RPC call over the sidecar's socket on a kept-alive connection.
fn rpc(stream: &mut BufReader<UnixStream>, id: u64, method: &str, params: &str) {
    let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
    write!(
        stream.get_mut(),
        "POST / HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut buf = vec![0; length];
    stream.read_exact(&mut buf).unwrap();
    assert!(
        !buf.windows(7).any(|w| w == b"\"error\""),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}

fn latency(samples: u64) {
    // The sidecar as the image has it (built on its own by
    // tests/build-shipped.sh), not a variant another build left in target/.
    // target/release/forge-queue -> target/shipped/release/forge-sidecar
    let target = Path::new(env!("CARGO_BIN_EXE_forge-queue"))
        .ancestors()
        .nth(2)
        .expect("the bench's binary is in target/<profile>/");
    let sidecar_bin = target.join("shipped/release/forge-sidecar");
    if !sidecar_bin.exists() {
        println!("latency: skipped, run tests/build-shipped.sh --release first");
        return;
    }
    let server = Server::start();
    let root = tmpfs();
    let (socket, queue) = (root.path().join("forge.sock"), root.path().join("queue"));
    let mut sidecar = Command::new(&sidecar_bin)
        .args(["serve", "--forge", "memory"])
        .env("FORGE_SOCKET", &socket)
        .env("FORGE_QUEUE_DIR", &queue)
        .env("FORGE_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut conn = loop {
        if let Ok(s) = UnixStream::connect(&socket) {
            break BufReader::new(s);
        }
        assert!(t0.elapsed() < TIMEOUT, "sidecar did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    rpc(&mut conn, 0, "scope", "{}");
    let mut ship = forge_queue()
        .args(["ship", "--nats", &server.url()])
        .arg(&queue)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The shipper creates the stream with the first event (session_start).
    while count(&queue, "cur") == 0 {
        assert!(t0.elapsed() < TIMEOUT, "nothing shipped");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut watch = forge_queue()
        .args([
            "watch",
            "--json",
            "--nats",
            &server.url(),
            "--durable",
            "lat",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["kind"] == "op" && v["op"] == "read_issue" && tx.send(at).is_err() {
                break;
            }
        }
    });
    // Warm-up: the first call also creates the stream and consumer.
    rpc(&mut conn, 1, "read_issue", r#"{"number":17}"#);
    rx.recv_timeout(TIMEOUT).expect("first line");
    let mut lat = Vec::with_capacity(samples as usize);
    for i in 0..samples {
        rpc(&mut conn, i + 2, "read_issue", r#"{"number":17}"#);
        let returned = Instant::now();
        let printed = rx.recv_timeout(TIMEOUT).expect("line printed");
        lat.push(printed.saturating_duration_since(returned));
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "latency read_issue returned -> op line printed by watch --nats (sidecar -> ship -> NATS -> watch): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n={samples})",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    for c in [&mut watch, &mut ship, &mut sidecar] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn idle(dirs: usize, window: Duration) {
    let server = Server::start();
    let root = tmpfs();
    let writers: Vec<QueueWriter> = (0..dirs)
        .map(|i| {
            let w = QueueWriter::open(&root.path().join(format!("q{i:04}"))).unwrap();
            w.append(start(5)).unwrap();
            w.heartbeat().unwrap();
            w
        })
        .collect();
    let paths: Vec<PathBuf> = writers.iter().map(|w| w.root().to_path_buf()).collect();
    let t0 = Instant::now();
    let mut ship = forge_queue()
        .args(["ship", "--nats", &server.url()])
        .args(&paths)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = ship.id();
    while paths.iter().any(|p| count(p, "new") > 0) {
        assert!(t0.elapsed() < TIMEOUT);
        std::thread::sleep(Duration::from_millis(10));
    }
    let startup = t0.elapsed();
    let beating = Arc::new(AtomicBool::new(true));
    let beat = {
        let beating = beating.clone();
        std::thread::spawn(move || {
            while beating.load(Ordering::SeqCst) {
                let round = Instant::now();
                for w in &writers {
                    w.heartbeat().unwrap();
                }
                while round.elapsed() < Duration::from_secs(5) && beating.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let (c0, w0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(window);
    let (c1, elapsed) = (cpu_ticks(pid), w0.elapsed());
    let rss = rss_kib(pid);
    beating.store(false, Ordering::SeqCst);
    beat.join().unwrap();
    let _ = ship.kill();
    let _ = ship.wait();
    let cpu = (c1 - c0) as f64 / clock_ticks_per_sec();
    println!(
        "idle ship over {dirs} dirs (heartbeats every 5 s): start-up (ship every session_start) {:.2} s; over {:.0} s CPU {:.3}% of one core ({cpu:.2} s), RSS {rss} KiB",
        startup.as_secs_f64(),
        elapsed.as_secs_f64(),
        100.0 * cpu / elapsed.as_secs_f64()
    );
}
