//! Benchmark of the host side (not a test; run it with
//! `cargo bench -p forge-queue-host --bench queue`).
//!
//! 1. Latency: an event renamed into `new/` -> its line read from the
//!    stdout of `forge-queue watch --json` (p50/p99/max), and the same for
//!    the in-process `Watcher` handler.
//! 2. Drain: a 100,000-event backlog in one directory through
//!    `forge-queue watch --json --until-done` (printed, acked), events/s,
//!    on tmpfs and on the disk filesystem.
//! 3. Breadth: 1,000 directories watched by one `forge-queue watch`, idle
//!    (sidecars alive: heartbeats replaced every 5 s), CPU% and RSS.
//!
//! Environment: `QUEUE_BENCH_FAST=1` shrinks every size (smoke run);
//! `QUEUE_BENCH_DISK_DIR` picks the disk location (default: the system
//! temporary directory).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use forge_protocol::DoneStatus;
use forge_protocol::event::{
    Done, EVENT_VERSION, Event, EventBody, Limits, Op, Outcome, SessionStart,
};
use forge_queue::writer::rfc3339_ms;
use forge_queue::{EventName, Heartbeat, sha256_hex};
use forge_queue_host::watch::{Delivery, WatchOptions, Watcher};

mod common;
use common::{clock_ticks_per_sec, cpu_ticks, rss_kib};

fn main() {
    let fast = std::env::var_os("QUEUE_BENCH_FAST").is_some();
    machine();
    let tmpfs = tmpfs_root();
    let disk = std::env::var_os("QUEUE_BENCH_DISK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    println!("tmpfs location: {}", tmpfs.display());
    println!("disk location:  {} ({})", disk.display(), fs_type(&disk));
    println!();

    let samples = if fast { 200 } else { 2000 };
    latency_cli(&tmpfs, samples);
    latency_library(&tmpfs, samples);
    latency_cli(&disk, samples / 2);

    let backlog = if fast { 10_000 } else { 100_000 };
    drain(&tmpfs, backlog);
    drain(&disk, backlog);

    let (dirs, window) = if fast { (100, 3) } else { (1000, 20) };
    breadth(&tmpfs, dirs, Duration::from_secs(window));
}

fn machine() {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("machine: nproc {cpus}, CPU {model}");
}

fn tmpfs_root() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn fs_type(p: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(p)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Writes a chained session by hand (no fsync), so producing 100,000
/// events does not take minutes on disk; the bytes are what the real
/// writer produces.
struct Producer {
    dir: PathBuf,
    session: String,
    seq: u64,
    prev: Option<String>,
}

impl Producer {
    fn new(dir: &Path) -> Producer {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        Producer {
            dir: dir.to_path_buf(),
            session: format!("{stamp}-000000"),
            seq: 0,
            prev: None,
        }
    }

    /// Stage the next event in `tmp/`; returns (staged path, final path, seq).
    fn stage(&mut self, body: EventBody) -> (PathBuf, PathBuf, u64) {
        let event = Event {
            v: EVENT_VERSION,
            session: self.session.clone(),
            seq: self.seq,
            ts: rfc3339_ms(Utc::now()),
            prev: self.prev.take(),
            body,
        };
        let mut bytes = serde_json::to_vec(&event).unwrap();
        bytes.push(b'\n');
        self.prev = Some(sha256_hex(&bytes));
        let name = EventName::format(&self.session, self.seq);
        let staged = self.dir.join("tmp").join(&name);
        fs::write(&staged, &bytes).unwrap();
        let seq = self.seq;
        self.seq += 1;
        (staged, self.dir.join("new").join(name), seq)
    }

    fn publish(&mut self, body: EventBody) {
        let (staged, dest, _) = self.stage(body);
        fs::rename(staged, dest).unwrap();
    }

    fn heartbeat(&self) {
        let beat = Heartbeat {
            pid: std::process::id(),
            session: self.session.clone(),
            ts: rfc3339_ms(Utc::now()),
        };
        let tmp = self.dir.join("tmp").join("heartbeat");
        fs::write(&tmp, serde_json::to_vec(&beat).unwrap()).unwrap();
        fs::rename(tmp, self.dir.join("heartbeat")).unwrap();
    }
}

fn start() -> EventBody {
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
            heartbeat_secs: 5,
        },
        text: Default::default(),
        pid: std::process::id(),
        run: None,
    })
}

fn read_op(i: u64) -> EventBody {
    EventBody::Op(Op {
        op_id: i,
        op: "read_comments".into(),
        target: Some(17),
        outcome: Outcome::Ok,
        summary: format!("read the comments of #17 ({i})"),
        error: None,
        duration_ms: 12,
        peer: None,
        foreign_refs: None,
        mentions: None,
        coalesced: None,
        read: None,
        resolution: None,
        previous_body: None,
    })
}

fn done() -> EventBody {
    EventBody::Done(Done {
        status: DoneStatus::Success,
        summary: "benchmark finished".into(),
        warnings: vec![],
    })
}

fn watch_cmd(args: &[&str], dirs: &[PathBuf]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_forge-queue"))
        .arg("watch")
        .args(args)
        .args(dirs)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Reads JSON lines on a thread; sends (seq, arrival) for event lines.
fn line_reader(child: &mut Child) -> mpsc::Receiver<(u64, Instant)> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            // Event lines only (a liveness notice has no seq).
            let Some(seq) = v["seq"].as_u64() else {
                continue;
            };
            if tx.send((seq, at)).is_err() {
                break;
            }
        }
    });
    rx
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n={})",
        ms(p(0.50)),
        ms(p(0.99)),
        ms(p(1.0)),
        v.len()
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const TIMEOUT: Duration = Duration::from_secs(60);

/// Rename into new/ -> line on the watcher's stdout.
fn latency_cli(root: &Path, samples: u64) {
    let tmp = tempfile::tempdir_in(root).unwrap();
    let dir = tmp.path().to_path_buf();
    let mut producer = Producer::new(&dir);
    producer.heartbeat();
    let mut child = watch_cmd(&["--json"], std::slice::from_ref(&dir));
    let lines = line_reader(&mut child);
    // Warm-up: the first event also waits for the watcher to start.
    producer.publish(start());
    lines.recv_timeout(TIMEOUT).expect("watcher started");
    let mut latencies = Vec::new();
    for i in 0..samples {
        let (staged, dest, seq) = producer.stage(read_op(i));
        let t0 = Instant::now();
        fs::rename(staged, dest).unwrap();
        let (got, at) = lines.recv_timeout(TIMEOUT).expect("line");
        assert_eq!(got, seq);
        latencies.push(at - t0);
        // Idle between events: this measures wake-up latency, not a queue.
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "latency rename -> `forge-queue watch --json` line on {} ({}): {}",
        root.display(),
        fs_type(root),
        percentiles(latencies)
    );
}

/// Rename into new/ -> in-process handler call.
fn latency_library(root: &Path, samples: u64) {
    let tmp = tempfile::tempdir_in(root).unwrap();
    let dir = tmp.path().to_path_buf();
    let mut producer = Producer::new(&dir);
    producer.heartbeat();
    let mut watcher = Watcher::new([&dir], WatchOptions::default()).unwrap();
    let stop = watcher.stop_handle();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        watcher
            .run(|d: &Delivery| {
                if let Delivery::Event(e) = d {
                    tx.send((e.event.seq, Instant::now())).map_err(|_| ())?;
                }
                Ok::<(), ()>(())
            })
            .unwrap();
    });
    producer.publish(start());
    rx.recv_timeout(TIMEOUT).expect("watcher started");
    let mut latencies = Vec::new();
    for i in 0..samples {
        let (staged, dest, seq) = producer.stage(read_op(i));
        let t0 = Instant::now();
        fs::rename(staged, dest).unwrap();
        let (got, at) = rx.recv_timeout(TIMEOUT).expect("delivery");
        assert_eq!(got, seq);
        latencies.push(at - t0);
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.stop();
    thread.join().unwrap();
    println!(
        "latency rename -> Watcher handler (in-process) on {}: {}",
        root.display(),
        percentiles(latencies)
    );
}

/// A backlog of `n` events (session_start, reads, done) drained by
/// `watch --json --until-done`, each printed, flushed and acked.
fn drain(root: &Path, n: u64) {
    let tmp = tempfile::tempdir_in(root).unwrap();
    let dir = tmp.path().to_path_buf();
    let mut producer = Producer::new(&dir);
    producer.publish(start());
    for i in 1..n - 1 {
        producer.publish(read_op(i));
    }
    producer.publish(done());
    producer.heartbeat();
    sync_all();
    let t0 = Instant::now();
    let mut child = watch_cmd(&["--json", "--until-done"], std::slice::from_ref(&dir));
    // A consumer that only counts lines: the figure is the watcher's rate.
    let count = count_lines(child.stdout.take().unwrap());
    let status = child.wait().unwrap();
    let elapsed = t0.elapsed();
    assert!(status.success(), "{status}");
    assert_eq!(count, n);
    assert_eq!(fs::read_dir(dir.join("cur")).unwrap().count() as u64, n);
    println!(
        "drain {n} events on {} ({}): {:.2} s, {:.0} events/s (printed, flushed, acked)",
        root.display(),
        fs_type(root),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

fn count_lines(mut stdout: impl Read) -> u64 {
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 0u64;
    loop {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => return lines,
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
        }
    }
}

fn sync_all() {
    let _ = Command::new("sync").status();
}

/// `dirs` live-but-idle directories: CPU and RSS of one watcher over `window`.
fn breadth(root: &Path, dirs: usize, window: Duration) {
    let tmp = tempfile::tempdir_in(root).unwrap();
    let producers: Vec<Producer> = (0..dirs)
        .map(|i| {
            let dir = tmp.path().join(format!("q{i:04}"));
            let mut p = Producer::new(&dir);
            p.publish(start());
            p.heartbeat();
            p
        })
        .collect();
    let paths: Vec<PathBuf> = producers.iter().map(|p| p.dir.clone()).collect();
    let mut child = watch_cmd(&["--json"], &paths);
    let pid = child.id();
    let lines = line_reader(&mut child);
    let t0 = Instant::now();
    for _ in 0..dirs {
        lines.recv_timeout(TIMEOUT).expect("initial delivery");
    }
    let startup = t0.elapsed();
    // The sidecars are alive: each replaces its heartbeat every 5 s.
    let producers = Arc::new(Mutex::new(producers));
    let beating = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let beat_thread = {
        let (producers, beating) = (producers.clone(), beating.clone());
        std::thread::spawn(move || {
            while beating.load(std::sync::atomic::Ordering::SeqCst) {
                let round = Instant::now();
                for p in producers.lock().unwrap().iter() {
                    p.heartbeat();
                }
                // Sleep the rest of the 5 s in short steps, to stop promptly.
                while round.elapsed() < Duration::from_secs(5)
                    && beating.load(std::sync::atomic::Ordering::SeqCst)
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1)); // let the start-up settle
    let (cpu0, w0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(window);
    let (cpu1, elapsed) = (cpu_ticks(pid), w0.elapsed());
    let rss = rss_kib(pid);
    let extra_lines = lines.try_iter().count();
    beating.store(false, std::sync::atomic::Ordering::SeqCst);
    beat_thread.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let cpu_secs = (cpu1 - cpu0) as f64 / clock_ticks_per_sec();
    println!(
        "breadth {dirs} dirs on {}: start-up (initial scan of all) {:.2} s; idle over {:.0} s with heartbeats every 5 s: CPU {:.3}% of one core ({:.3} s), RSS {} KiB, unexpected lines {}",
        root.display(),
        startup.as_secs_f64(),
        elapsed.as_secs_f64(),
        100.0 * cpu_secs / elapsed.as_secs_f64(),
        cpu_secs,
        rss,
        extra_lines
    );
}
