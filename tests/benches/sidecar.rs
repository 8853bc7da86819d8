//! Benchmark of `forge-sidecar` (not a test: nothing here is asserted about
//! time). It measures, in one run on this machine, side by side:
//!
//! 1. **Added latency**: `read_issue` through the sidecar socket → the fake
//!    Gitea on 127.0.0.1, versus the same `GET /repos/acme/widgets/issues/17`
//!    sent directly to the fake Gitea; sequential calls on one keep-alive
//!    connection each, interleaved in blocks, with the queue on tmpfs and on
//!    the disk filesystem (the fsync cost). Also the bare queue append.
//! 2. **Floor**: `scope` on the sidecar socket versus two in-process servers
//!    on a Unix socket: a bare hyper HTTP/1.1 server answering a fixed JSON
//!    body, and a minimal jsonrpsee `ping` server; unpinned, and with client
//!    and server on one CPU.
//! 3. **Throughput**: audited `read_issue` calls/s against the in-memory
//!    forge with 1, 8 and 64 connections (queue on tmpfs), with the bare
//!    ping server at the same concurrency as the physical limit.
//! 4. **Footprint**: RSS idle, after 10,000 and 20,000 calls and after the
//!    throughput runs; cold start (exec → socket accepting, → first answer);
//!    stripped release binary sizes.
//! 5. **Done latency**: `signal_done` call time, the event file in `new/` on
//!    return, and → the line printed by `forge-queue watch --json`.
//! 6. **MCP**: a `read_issue` tool call over stdio → `forge-sidecar mcp` →
//!    sidecar → memory forge; the bridge's cold start and RSS.
//! 7. **Limits**: the sidecar's peak RSS while 200 callers read at once the
//!    comments of an issue holding 100 comments of 65 KB (fake Gitea), and
//!    the queue's growth under a flood of refused calls (1 MB param names
//!    from 4 connections), each beside its documented bound.
//! 8. **Signed checkpoints**: signing and opening one checkpoint note,
//!    publishing one (sign, write, fsync, rename) on tmpfs and disk, and
//!    `read_issue` latency on a sidecar signing a checkpoint every second
//!    versus one without a key (interleaved blocks).
//!
//! Every client (sidecar, direct Gitea, ping servers) is the same: one hyper
//! HTTP/1.1 client connection per caller (`hyper::client::conn::http1`) on a
//! current-thread tokio runtime in this process.
//!
//! Run it with `tests/benches/run.sh` (= `tests/build-shipped.sh --release
//! && cargo bench -p forge-e2e --bench sidecar`): the bench runs the release
//! binaries as the image has them, from `target/shipped/release/`, which
//! `cargo bench` does not build.
//!
//! 9. **Read guard**: what cleaning and caps add to a `read_issue`, in
//!    process: [`ReadGuard::issue`] on issue #17 as the Gitea client reads
//!    it from the fake, on a 4 KB non-ASCII body, and on one with hidden
//!    characters to strip.
//!
//! 10. **Start-up with history**: exec → socket accepting and → first
//!     `scope` answered with 100,000 events of the same run in the queue
//!     (tmpfs): the first start, which has no run tally yet and reads
//!     every event, and the later starts, which read the run's tally.
//!
//! Environment:
//! - `SIDECAR_BENCH_FAST=1`: smaller counts (a smoke run of a few seconds);
//! - `SIDECAR_BENCH_DISK_DIR`: where the disk queues go (default `/var/tmp`);
//! - `SIDECAR_BENCH_TMPFS_DIR`: where the tmpfs queues go (default `/dev/shm`);
//! - `SIDECAR_BENCH_DISK_SECS`: time bound of the disk series (default 30);
//! - `SIDECAR_BENCH_ONLY=append,guard,added,floor,pinned,cold,history,done,mcp,peer,limits,signed`: only
//!   these phases;
//! - `SIDECAR_BENCH_BIN`: another `forge-sidecar` build to run (e.g. one
//!   with symbols, for `perf`);
//! - `SIDECAR_BENCH_SIDECAR_ENV="K=V;K=V"`: extra environment for every
//!   sidecar started (e.g. `FORGE_LOG=warn`);
//! - `SIDECAR_BENCH_LOAD=METHOD:CONNS:SECS[:gitea]`: instead of the
//!   benchmark, a steady load on one sidecar (memory forge, or the fake
//!   Gitea) whose pid is printed, to attach `perf record -p PID` or
//!   `perf stat -p PID` to; prints calls/s, latency, and the sidecar's CPU
//!   time and context switches per call.
//!
//! The table is printed to stdout; the figures are also written as JSON to
//! `target/sidecar-bench.json` and the table as Markdown to
//! `target/sidecar-bench.md`.

use std::convert::Infallible;
use std::fs;
use std::future::Future;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use forge_e2e::fake_gitea::{ASSIGNED_ISSUE, FakeGitea, OWNER, REPO};
use forge_e2e::sidecar::{gitea_env, workspace_bin};
use forge_protocol::event::{EventBody, Op, Outcome, Peer};
use forge_queue::QueueWriter;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1 as client_http1;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// Bound on any single wait for a process or a line (start, answer, exit).
const WAIT: Duration = Duration::from_secs(10);
/// The fixed answer of the bare ping server.
const PONG: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":"pong"}"#;

fn main() {
    let opts = Opts::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut report = Report::default();
    let started = Instant::now();

    if let Ok(spec) = std::env::var("SIDECAR_BENCH_LOAD") {
        load_only(&rt, &opts, &spec);
        return;
    }
    machine(&opts, &mut report);
    let bins = Bins::find();
    bins.describe(&mut report);

    let phase = |name: &str, report: &mut Report, run: &mut dyn FnMut(&mut Report)| {
        if opts.wants(name) {
            let t = Instant::now();
            run(report);
            let secs = t.elapsed().as_secs_f64();
            println!("  (phase {name}: {secs:.1} s)");
            report.note(&format!("phase_{name}_secs"), secs);
        }
    };
    phase("append", &mut report, &mut |r| queue_append(&opts, r));
    phase("guard", &mut report, &mut |r| read_guard(&opts, r));
    phase("added", &mut report, &mut |r| {
        added_latency(&rt, &opts, &bins, r)
    });
    phase("floor", &mut report, &mut |r| {
        floor_footprint_throughput(&rt, &opts, &bins, r)
    });
    phase("pinned", &mut report, &mut |r| {
        pinned_floor(&rt, &opts, &bins, r)
    });
    phase("cold", &mut report, &mut |r| {
        cold_start(&rt, &opts, &bins, r)
    });
    phase("history", &mut report, &mut |r| {
        history_start(&rt, &opts, &bins, r)
    });
    phase("done", &mut report, &mut |r| {
        done_latency(&rt, &opts, &bins, r)
    });
    phase("mcp", &mut report, &mut |r| mcp(&rt, &opts, &bins, r));
    phase("peer", &mut report, &mut |r| peer(&opts, &bins, r));
    phase("limits", &mut report, &mut |r| limits(&rt, &opts, &bins, r));
    phase("signed", &mut report, &mut |r| signed(&rt, &opts, &bins, r));

    report.note("bench_wall_secs", started.elapsed().as_secs_f64());
    report.note(
        "loadavg_after",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
    );
    report.print_and_write(&bins.target_dir);
}

// ---------------------------------------------------------------- options

struct Opts {
    /// Sequential calls per latency series.
    seq_calls: usize,
    /// Calls per block when two series are interleaved.
    block: usize,
    /// Time bound of a series whose calls fsync on the disk.
    disk_max: Duration,
    /// Warm-up before each throughput window.
    warm: Duration,
    /// Each throughput window.
    window: Duration,
    /// Process starts per cold-start figure.
    starts: usize,
    /// Sessions per done-latency figure (tmpfs; half of it on disk).
    sessions: usize,
    /// Sequential MCP tool calls.
    mcp_calls: usize,
    tmpfs: PathBuf,
    disk: PathBuf,
    /// Phases to run (all when `None`).
    only: Option<Vec<String>>,
}

impl Opts {
    fn from_env() -> Opts {
        let fast = std::env::var_os("SIDECAR_BENCH_FAST").is_some();
        let path = |var: &str, default: &str| {
            std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        let disk_secs = std::env::var("SIDECAR_BENCH_DISK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if fast { 3 } else { 30 });
        Opts {
            seq_calls: if fast { 1_000 } else { 10_000 },
            block: if fast { 250 } else { 1_000 },
            disk_max: Duration::from_secs(disk_secs),
            warm: Duration::from_millis(if fast { 100 } else { 300 }),
            window: Duration::from_millis(if fast { 500 } else { 2_000 }),
            starts: if fast { 5 } else { 20 },
            sessions: if fast { 4 } else { 20 },
            mcp_calls: if fast { 500 } else { 5_000 },
            tmpfs: path("SIDECAR_BENCH_TMPFS_DIR", "/dev/shm"),
            disk: path("SIDECAR_BENCH_DISK_DIR", "/var/tmp"),
            only: std::env::var("SIDECAR_BENCH_ONLY")
                .ok()
                .map(|s| s.split(',').map(|p| p.trim().to_string()).collect()),
        }
    }

    fn wants(&self, phase: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|p| p == phase))
    }
}

// ---------------------------------------------------------------- machine

fn machine(opts: &Opts, report: &mut Report) {
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
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let tmpfs_fs = fs_type(&opts.tmpfs);
    let disk_fs = fs_type(&opts.disk);
    println!("machine: {cpus} CPUs, {model}, kernel {kernel}");
    println!("tmpfs queues: {} ({tmpfs_fs})", opts.tmpfs.display());
    println!("disk queues:  {} ({disk_fs})", opts.disk.display());
    if tmpfs_fs != "tmpfs" {
        println!("WARNING: {} is not a tmpfs", opts.tmpfs.display());
    }
    let idle = idle_share(Duration::from_millis(500));
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "before the run: {:.0}% of the CPU time idle over 0.5 s; loadavg {}",
        idle * 100.0,
        load.trim()
    );
    if idle < 0.9 {
        println!(
            "WARNING: the machine is busy (another build or benchmark?); the figures will be noisy"
        );
    }
    report.note("idle_share_before", idle);
    report.note("loadavg_before", load.trim());
    report.note("cpus", cpus);
    report.note("cpu_model", model);
    report.note("kernel", kernel);
    report.note(
        "tmpfs_dir",
        format!("{} ({tmpfs_fs})", opts.tmpfs.display()),
    );
    report.note("disk_dir", format!("{} ({disk_fs})", opts.disk.display()));
}

/// The share of CPU time the whole machine spent idle over `span`.
fn idle_share(span: Duration) -> f64 {
    let sample = || -> (u64, u64) {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
        (idle, cpu.iter().take(8).sum())
    };
    let (i0, t0) = sample();
    std::thread::sleep(span);
    let (i1, t1) = sample();
    if t1 > t0 {
        (i1 - i0) as f64 / (t1 - t0) as f64
    } else {
        1.0
    }
}

/// The filesystem type of the mount holding `path` (longest mount prefix).
fn fs_type(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, at, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at).then(|| (at.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}

struct Bins {
    sidecar: PathBuf,
    queue: Option<PathBuf>,
    /// The minimal jsonrpsee server process (`examples/rpc_ping.rs`), the
    /// baseline of idle RSS and cold start; built by `tests/benches/run.sh`.
    rpc_ping: Option<PathBuf>,
    target_dir: PathBuf,
}

impl Bins {
    fn find() -> Bins {
        let built = workspace_bin("forge-sidecar");
        let queue = built.with_file_name("forge-queue");
        let profile_dir = built.parent().expect("bin dir").to_path_buf();
        // Another build of the sidecar (e.g. with symbols, for perf).
        let sidecar = std::env::var_os("SIDECAR_BENCH_BIN").map_or(built, PathBuf::from);
        // target/shipped/<profile>/ → target/
        let target_dir = profile_dir
            .parent()
            .and_then(Path::parent)
            .map_or(profile_dir.clone(), Path::to_path_buf);
        // `cargo build --profile bench` puts it under target/release/.
        let rpc_ping = target_dir.join("release").join("examples").join("rpc_ping");
        if !rpc_ping.exists() {
            println!(
                "({} missing: the jsonrpsee baselines of RSS and cold start are skipped; \
                 tests/benches/run.sh builds it)",
                rpc_ping.display()
            );
        }
        Bins {
            queue: queue.exists().then_some(queue),
            rpc_ping: rpc_ping.exists().then_some(rpc_ping),
            target_dir,
            sidecar,
        }
    }

    fn describe(&self, report: &mut Report) {
        let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let stripped = |p: &Path| {
            Command::new("file")
                .arg(p)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains(", stripped"))
        };
        let age = fs::metadata(&self.sidecar)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| d.as_secs());
        println!(
            "binaries: {} (built {age} s ago){}",
            self.sidecar.display(),
            if self.queue.is_none() {
                "; forge-queue missing"
            } else {
                ""
            }
        );
        let mib = size(&self.sidecar) as f64 / MIB;
        report.row(
            "4 footprint",
            "forge-sidecar release binary",
            format!(
                "{mib:.2} MiB ({} B{})",
                size(&self.sidecar),
                match stripped(&self.sidecar) {
                    Some(true) => ", stripped",
                    Some(false) => ", NOT stripped",
                    None => "",
                }
            ),
            "—",
            None,
            "≤ 10 MiB",
            Some(mib <= 10.0),
        );
        report.figure("sidecar_binary_bytes", size(&self.sidecar));
        if let Some(q) = &self.queue {
            report.row(
                "4 footprint",
                "forge-queue release binary",
                format!("{:.2} MiB", size(q) as f64 / MIB),
                "—",
                None,
                "",
                None,
            );
            report.figure("queue_binary_bytes", size(q));
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

// ------------------------------------------------------------- statistics

/// Latency samples in nanoseconds.
#[derive(Default, Clone)]
struct Samples(Vec<u64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_nanos() as u64);
    }

    fn extend(&mut self, other: &Samples) {
        self.0.extend_from_slice(&other.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn stats(&self) -> Stats {
        let mut v = self.0.clone();
        v.sort_unstable();
        let pct = |p: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1] as f64 / 1_000.0
        };
        Stats {
            n: v.len(),
            p50: pct(0.50),
            p99: pct(0.99),
            max: v.last().map_or(f64::NAN, |&m| m as f64 / 1_000.0),
            mean: if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<u64>() as f64 / v.len() as f64 / 1_000.0
            },
        }
    }
}

/// Summary of a series, in microseconds.
#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    fn show(&self) -> String {
        format!("p50 {} / p99 {} (n={})", us(self.p50), us(self.p99), self.n)
    }

    fn json(&self) -> Value {
        json!({ "n": self.n, "p50_us": self.p50, "p99_us": self.p99, "max_us": self.max, "mean_us": self.mean })
    }
}

/// Microseconds, shown as µs or ms.
fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1_000.0)
    } else if v >= 1_000.0 {
        format!("{:.2} ms", v / 1_000.0)
    } else {
        format!("{v:.1} µs")
    }
}

// ----------------------------------------------------------------- report

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    figures: Map<String, Value>,
    notes: Map<String, Value>,
}

struct Row {
    section: &'static str,
    figure: String,
    value: String,
    baseline: String,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        section: &'static str,
        figure: impl Into<String>,
        value: impl Into<String>,
        baseline: impl Into<String>,
        ratio: Option<f64>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        let row = Row {
            section,
            figure: figure.into(),
            value: value.into(),
            baseline: baseline.into(),
            ratio,
            target: target.into(),
            met,
        };
        println!(
            "  {:<52} {:<40} {}{}",
            row.figure,
            row.value,
            row.ratio.map_or(String::new(), |r| format!("×{r:.2} ")),
            row.met.map_or("", |m| if m { "(met)" } else { "(MISSED)" })
        );
        self.rows.push(row);
    }

    fn figure(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.into(), value.into());
    }

    fn stats(&mut self, key: &str, s: &Stats) {
        self.figure(key, s.json());
    }

    fn note(&mut self, key: &str, value: impl Into<Value>) {
        self.notes.insert(key.into(), value.into());
    }

    fn print_and_write(&self, target_dir: &Path) {
        let mut md = String::new();
        md.push_str("| section | figure | value | baseline | ratio | target | met |\n");
        md.push_str("|---|---|---|---|---|---|---|\n");
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|r| r.section);
        for r in rows {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.section,
                r.figure,
                r.value,
                r.baseline,
                r.ratio.map_or("—".into(), |x| format!("{x:.2}")),
                if r.target.is_empty() {
                    "—"
                } else {
                    &r.target
                },
                r.met.map_or("—", |m| if m { "yes" } else { "**no**" }),
            ));
        }
        println!("\n{md}");
        let json = json!({ "machine": self.notes, "figures": self.figures });
        let json_path = target_dir.join("sidecar-bench.json");
        let md_path = target_dir.join("sidecar-bench.md");
        let written = fs::write(
            &json_path,
            serde_json::to_string_pretty(&json).expect("JSON"),
        )
        .and_then(|()| fs::write(&md_path, &md));
        match written {
            Ok(()) => println!(
                "figures written to {} and {}",
                json_path.display(),
                md_path.display()
            ),
            Err(e) => println!("could not write the figures: {e}"),
        }
    }
}

fn section(title: &str) {
    println!("\n== {title}");
}

// ----------------------------------------------------------------- client

/// One HTTP/1.1 keep-alive connection (the same client for every server).
struct Http1 {
    send: client_http1::SendRequest<Full<Bytes>>,
}

impl Http1 {
    async fn over<T>(io: T) -> Result<Http1, String>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = client_http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Http1 { send })
    }

    async fn unix(path: &Path) -> Result<Http1, String> {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| format!("connect {}: {e}", path.display()))?;
        Http1::over(stream).await
    }

    async fn tcp(addr: std::net::SocketAddr) -> Result<Http1, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Http1::over(stream).await
    }

    async fn call(&mut self, req: &Req) -> Result<(u16, Bytes), String> {
        self.send.ready().await.map_err(|e| format!("ready: {e}"))?;
        let resp = self
            .send
            .send_request(req.build())
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// `call`, then check the answer.
    async fn checked(&mut self, req: &Req) -> Result<Bytes, String> {
        let (status, body) = self.call(req).await?;
        if req.expect.ok(status, &body) {
            Ok(body)
        } else {
            Err(format!(
                "unexpected answer to {} {}: HTTP {status} {}",
                req.method,
                req.path,
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ))
        }
    }
}

/// What a good answer looks like.
#[derive(Clone, Copy)]
enum Expect {
    /// HTTP 200.
    Ok200,
    /// HTTP 200 with a JSON-RPC `result` (not an `error`).
    RpcResult,
}

impl Expect {
    fn ok(self, status: u16, body: &[u8]) -> bool {
        status == 200
            && match self {
                Expect::Ok200 => true,
                Expect::RpcResult => body[..body.len().min(64)]
                    .windows(9)
                    .any(|w| w == b"\"result\":"),
            }
    }
}

/// A prepared request, rebuilt cheaply for every call.
#[derive(Clone)]
struct Req {
    method: hyper::Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    expect: Expect,
}

impl Req {
    /// A JSON-RPC call `POST /`.
    fn rpc(method: &str, params: Option<Value>) -> Req {
        let mut call = json!({ "jsonrpc": "2.0", "id": 1, "method": method });
        if let Some(p) = params {
            call["params"] = p;
        }
        let mut headers = HeaderMap::new();
        headers.insert(hyper::header::HOST, HeaderValue::from_static("localhost"));
        headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Req {
            method: hyper::Method::POST,
            path: "/".into(),
            headers,
            body: Bytes::from(serde_json::to_vec(&call).expect("JSON")),
            expect: Expect::RpcResult,
        }
    }

    fn read_issue() -> Req {
        Req::rpc("read_issue", Some(json!({ "number": ASSIGNED_ISSUE })))
    }

    /// The Gitea request the sidecar makes for `read_issue`, sent directly.
    fn gitea_issue(gitea: &FakeGitea) -> Req {
        let mut headers = HeaderMap::new();
        let header = |s: String| HeaderValue::from_str(&s).expect("header value");
        headers.insert(hyper::header::HOST, header(gitea.addr().to_string()));
        headers.insert(
            hyper::header::AUTHORIZATION,
            header(format!("token {}", gitea.token())),
        );
        headers.insert(
            hyper::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            HeaderName::from_static("user-agent"),
            HeaderValue::from_static("forge-sidecar-bench"),
        );
        Req {
            method: hyper::Method::GET,
            path: format!("/api/v1/repos/{OWNER}/{REPO}/issues/{ASSIGNED_ISSUE}"),
            headers,
            body: Bytes::new(),
            expect: Expect::Ok200,
        }
    }

    fn build(&self) -> hyper::Request<Full<Bytes>> {
        let mut req = hyper::Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.parse().expect("uri");
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// `n` sequential calls (stopping early after `max`), appended to `out`.
async fn sequential(
    conn: &mut Http1,
    req: &Req,
    n: usize,
    max: Duration,
    out: &mut Samples,
) -> Result<(), String> {
    let deadline = Instant::now() + max;
    for _ in 0..n {
        let t = Instant::now();
        conn.checked(req).await?;
        out.push(t.elapsed());
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(())
}

/// Two series measured in alternating blocks, so drift hits both alike.
/// The second series stops early once `b_max` of its own time is spent.
#[allow(clippy::too_many_arguments)]
async fn interleaved(
    a: &mut Http1,
    a_req: &Req,
    b: &mut Http1,
    b_req: &Req,
    n: usize,
    block: usize,
    b_max: Duration,
    between_blocks: impl Fn(),
) -> Result<(Samples, Samples), String> {
    let (mut sa, mut sb) = (Samples::default(), Samples::default());
    let b_deadline = Instant::now() + b_max;
    while sa.len() < n || sb.len() < n {
        if sa.len() < n {
            sequential(a, a_req, block.min(n - sa.len()), WAIT * 6, &mut sa).await?;
        }
        let left = b_deadline.saturating_duration_since(Instant::now());
        if sb.len() < n && !left.is_zero() {
            sequential(b, b_req, block.min(n - sb.len()), left, &mut sb).await?;
        } else if sa.len() >= n {
            break;
        }
        between_blocks();
    }
    Ok((sa, sb))
}

/// Result of one throughput run.
struct Throughput {
    per_sec: f64,
    lat: Stats,
    /// CPU time of the server process per call, µs (if it is a process).
    server_cpu_us: Option<f64>,
    /// CPU time of this process (clients, and in-process servers) per call, µs.
    bench_cpu_us: f64,
    /// Context switches of the server process per call.
    server_switches: Option<f64>,
}

/// `conns` connections calling `req` back to back; calls completed inside
/// the window (after `warm`) are counted.
async fn throughput<F, Fut>(
    connect: F,
    req: &Req,
    conns: usize,
    warm: Duration,
    window: Duration,
    server_pid: Option<u32>,
) -> Result<Throughput, String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Http1, String>>,
{
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        clients.push(connect().await?);
    }
    let from = Instant::now() + warm;
    let to = from + window;
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in clients {
        let req = req.clone();
        tasks.spawn(async move {
            let mut lat = Samples::default();
            loop {
                let t = Instant::now();
                if t >= to {
                    break;
                }
                c.checked(&req).await?;
                let done = Instant::now();
                if done >= from && done < to {
                    lat.push(done - t);
                }
            }
            Ok::<Samples, String>(lat)
        });
    }
    tokio::time::sleep_until(from.into()).await;
    let (srv0, own0) = (server_pid.map(cpu_ticks), cpu_ticks(std::process::id()));
    let sw0 = server_pid.map(ctx_switches);
    tokio::time::sleep_until(to.into()).await;
    let (srv1, own1) = (server_pid.map(cpu_ticks), cpu_ticks(std::process::id()));
    let sw1 = server_pid.map(ctx_switches);
    let mut all = Samples::default();
    while let Some(joined) = tasks.join_next().await {
        all.extend(&joined.map_err(|e| e.to_string())??);
    }
    let calls = all.len().max(1) as f64;
    let tick_us = 1e6 / clock_ticks_per_sec();
    Ok(Throughput {
        per_sec: all.len() as f64 / window.as_secs_f64(),
        lat: all.stats(),
        server_cpu_us: srv0
            .zip(srv1)
            .map(|(a, b)| (b - a) as f64 * tick_us / calls),
        bench_cpu_us: (own1 - own0) as f64 * tick_us / calls,
        server_switches: sw0
            .zip(sw1)
            .map(|(a, b)| b.saturating_sub(a) as f64 / calls),
    })
}

// ------------------------------------------------------------- /proc data

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the comm: state is field 3, utime 14, stime 15.
    let get = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Context switches (voluntary + involuntary) summed over the live threads
/// of a process.
fn ctx_switches(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `Vm*` line of /proc/PID/status, in KiB.
fn vm_kib(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a process, KiB: all of it, and the anonymous part
/// (what is not file pages shared with every process running the binary).
#[derive(Clone, Copy)]
struct Rss {
    total: u64,
    anon: u64,
    /// Proportional set size: shared pages divided among the processes
    /// mapping them (what a second process of the same binary adds is its
    /// anonymous part plus its share of the file pages).
    pss: u64,
}

impl Rss {
    fn of(pid: u32) -> Rss {
        let pss = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Rss {
            total: vm_kib(pid, "VmRSS"),
            anon: vm_kib(pid, "RssAnon"),
            pss,
        }
    }

    fn show(&self) -> String {
        format!(
            "{} (anon {}, PSS {})",
            mib(self.total),
            mib(self.anon),
            mib(self.pss)
        )
    }

    fn json(&self) -> Value {
        json!({ "vm_rss": self.total, "rss_anon": self.anon, "pss": self.pss })
    }
}

fn mib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

// -------------------------------------------------------------- processes

/// A child process that is always stopped: SIGTERM (bounded), then SIGKILL.
struct ChildGuard {
    child: Option<Child>,
    name: &'static str,
}

impl ChildGuard {
    fn new(child: Child, name: &'static str) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            name,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Wait up to `limit` for the process to exit by itself.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGTERM and wait (bounded); SIGKILL if it does not stop.
    fn terminate(&mut self) -> Option<ExitStatus> {
        self.child.as_ref()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        if let Some(status) = self.wait_exit(WAIT) {
            return Some(status);
        }
        println!("  ({} did not stop on SIGTERM; killed)", self.name);
        self.kill();
        None
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills `pid` with SIGKILL if not disarmed (dropped) within `limit`:
/// bounds blocking reads on a child's pipe.
struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn new(pid: u32, limit: Duration, what: &'static str) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: {what} (pid {pid}) took longer than {limit:?}; killing it");
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        });
        Watchdog {
            disarm: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running minimal jsonrpsee server process (`examples/rpc_ping.rs`) on
/// a socket in a temporary directory, with the time from exec to its socket
/// accepting (measured as for the sidecar's cold start).
struct RpcPing {
    proc: ChildGuard,
    socket: PathBuf,
    exec_to_accepting: Duration,
    _dir: TempDir,
}

impl RpcPing {
    fn start(bin: &Path, root: &Path) -> RpcPing {
        let dir = tempfile::tempdir_in(root).expect("tempdir");
        let socket = dir.path().join("ping.sock");
        let t0 = Instant::now();
        let child = Command::new(bin)
            .arg(&socket)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rpc_ping");
        let mut proc = ChildGuard::new(child, "rpc_ping");
        let deadline = t0 + WAIT;
        loop {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                break;
            }
            if let Some(status) = proc.exited() {
                panic!("rpc_ping exited at start ({status})");
            }
            assert!(Instant::now() < deadline, "rpc_ping did not start");
            std::thread::yield_now();
        }
        RpcPing {
            exec_to_accepting: t0.elapsed(),
            proc,
            socket,
            _dir: dir,
        }
    }
}

/// A running `forge-sidecar serve` with its socket, queue and log in a
/// temporary directory; stopped (SIGTERM, then SIGKILL) when dropped.
struct Sidecar {
    proc: ChildGuard,
    dir: TempDir,
    socket: PathBuf,
    queue: PathBuf,
    log: PathBuf,
}

impl Sidecar {
    /// `serve ARGS` with `env` (nothing else), its directory under `root`;
    /// returns once the socket accepts.
    fn start(bin: &Path, root: &Path, args: &[&str], env: &[(String, String)]) -> Sidecar {
        let dir = tempfile::tempdir_in(root).expect("tempdir");
        let socket = dir.path().join("run").join("forge.sock");
        let queue = dir.path().join("queue");
        let log = dir.path().join("sidecar.log");
        let child = Command::new(bin)
            .arg("serve")
            .args(args)
            .env_clear()
            .env("FORGE_SOCKET", &socket)
            .env("FORGE_QUEUE_DIR", &queue)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .envs(extra_env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn forge-sidecar");
        let mut sidecar = Sidecar {
            proc: ChildGuard::new(child, "forge-sidecar"),
            dir,
            socket,
            queue,
            log,
        };
        let deadline = Instant::now() + WAIT;
        while std::os::unix::net::UnixStream::connect(&sidecar.socket).is_err() {
            if let Some(status) = sidecar.proc.exited() {
                panic!(
                    "forge-sidecar exited at start ({status}):\n{}",
                    sidecar.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "forge-sidecar did not start:\n{}",
                sidecar.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        sidecar
    }

    /// On the in-memory forge, logging at the default level (info).
    fn memory(bin: &Path, root: &Path) -> Sidecar {
        Sidecar::start(
            bin,
            root,
            &["--forge", "memory"],
            &[("FORGE_LOG".into(), "info".into())],
        )
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn log(&self) -> String {
        tail(&fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn events(&self) -> usize {
        fs::read_dir(self.queue.join("new")).map_or(0, |d| d.count())
    }

    /// SIGTERM; the sidecar must exit cleanly.
    fn stop(&mut self) {
        let status = self.proc.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "forge-sidecar stopped with {status:?}:\n{}",
            self.log()
        );
    }
}

/// `SIDECAR_BENCH_SIDECAR_ENV="K=V;K=V"`: extra environment for every
/// sidecar started (after the bench's own, so it wins), e.g. `FORGE_LOG=warn`.
fn extra_env() -> Vec<(String, String)> {
    std::env::var("SIDECAR_BENCH_SIDECAR_ENV")
        .unwrap_or_default()
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

/// Pin every thread of `pid` to `cpus` (a taskset list), if taskset exists.
fn pin(pid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ------------------------------------------------------- in-process pings

#[derive(Clone, Copy)]
enum PingKind {
    /// hyper HTTP/1.1 answering a fixed JSON body.
    Hyper,
    /// jsonrpsee (http only) with one method `ping`.
    Jsonrpsee,
}

/// A ping server on a Unix socket, on its own thread with a multi-thread
/// tokio runtime (as the sidecar's). Dropping it stops it.
struct PingServer {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl PingServer {
    fn start(kind: PingKind, root: &Path) -> PingServer {
        let dir = tempfile::tempdir_in(root).expect("tempdir");
        let socket = dir.path().join("ping.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind ping socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ping-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .expect("ping runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::UnixListener::from_std(listener).expect("tokio listener");
                    match kind {
                        PingKind::Hyper => serve_hyper_ping(listener, stop_rx).await,
                        PingKind::Jsonrpsee => serve_jsonrpsee_ping(listener, stop_rx).await,
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("ping thread");
        PingServer {
            socket,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn req(kind: PingKind) -> Req {
        match kind {
            PingKind::Hyper | PingKind::Jsonrpsee => Req::rpc("ping", None),
        }
    }
}

impl Drop for PingServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_hyper_ping(listener: tokio::net::UnixListener, mut stop: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: hyper::Request<Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut resp = hyper::Response::new(Full::new(Bytes::from_static(PONG)));
                        resp.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

async fn serve_jsonrpsee_ping(listener: tokio::net::UnixListener, mut stop: oneshot::Receiver<()>) {
    use jsonrpsee::server::{Server, ServerConfig, serve_with_graceful_shutdown, stop_channel};
    let mut module = jsonrpsee::RpcModule::new(());
    module
        .register_method("ping", |_, _, _| "pong")
        .expect("register ping");
    let (stop_handle, server_handle) = stop_channel();
    let builder = Server::builder()
        .set_config(ServerConfig::builder().http_only().build())
        .to_service_builder();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = builder.clone().build(module.clone(), stop_handle.clone());
                tokio::spawn(serve_with_graceful_shutdown(stream, service, stop_handle.clone().shutdown()));
            }
        }
    }
    let _ = server_handle.stop();
}

// ------------------------------------------------------------------ phases

/// `SIDECAR_BENCH_LOAD=METHOD:CONNS:SECS[:gitea]` (e.g. `scope:1:10`): only a
/// steady load on a sidecar (memory forge, or the fake Gitea; queue on
/// tmpfs), for attaching a profiler to
/// the pid it prints (`perf record -p PID`, `perf stat -p PID`).
fn load_only(rt: &Runtime, opts: &Opts, spec: &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    let method = parts.first().copied().unwrap_or("read_issue");
    let conns = parts.get(1).and_then(|c| c.parse().ok()).unwrap_or(1);
    let secs = parts.get(2).and_then(|c| c.parse().ok()).unwrap_or(10);
    let req = match method {
        "read_issue" => Req::read_issue(),
        other => Req::rpc(other, None),
    };
    let bins = Bins::find();
    let gitea = (parts.get(3) == Some(&"gitea")).then(FakeGitea::start);
    let token_dir = tempfile::tempdir_in(&opts.tmpfs).expect("tempdir");
    let mut sidecar = match &gitea {
        None => Sidecar::memory(&bins.sidecar, &opts.tmpfs),
        Some(gitea) => {
            let token_file = token_dir.path().join("token");
            forge_e2e::sidecar::write_token(&token_file, gitea.token());
            let mut env = gitea_env(gitea, &token_file);
            env.push(("FORGE_LOG".into(), "info".into()));
            Sidecar::start(&bins.sidecar, &opts.tmpfs, &[], &env)
        }
    };
    println!(
        "sidecar pid {}; {method} on {conns} connection(s) for {secs} s against the {} forge, starting in 2 s",
        sidecar.pid(),
        if gitea.is_some() {
            "fake Gitea"
        } else {
            "memory"
        }
    );
    let result = rt.block_on(throughput(
        || Http1::unix(&sidecar.socket),
        &req,
        conns,
        Duration::from_secs(2),
        Duration::from_secs(secs),
        Some(sidecar.pid()),
    ));
    match result {
        Ok(t) => println!(
            "{:.0} calls/s, latency {}, sidecar CPU {:.1} µs/call, {:.2} context switches/call, bench CPU {:.1} µs/call",
            t.per_sec,
            t.lat.show(),
            t.server_cpu_us.unwrap_or(f64::NAN),
            t.server_switches.unwrap_or(f64::NAN),
            t.bench_cpu_us
        ),
        Err(e) => println!("load failed: {e}\n{}", sidecar.log()),
    }
    sidecar.stop();
}

/// The audit append alone (in process): the per-event cost of the queue.
fn queue_append(opts: &Opts, report: &mut Report) {
    section("queue append alone (forge-queue QueueWriter::append, in process)");
    let run = |root: &Path, n: usize, max: Duration| -> Samples {
        let dir = tempfile::tempdir_in(root).expect("tempdir");
        let writer = QueueWriter::open(dir.path()).expect("queue");
        let deadline = Instant::now() + max;
        let mut s = Samples::default();
        for i in 0..n as u64 {
            let body = EventBody::Op(Op {
                op_id: i,
                op: "read_issue".into(),
                target: Some(ASSIGNED_ISSUE),
                outcome: Outcome::Ok,
                summary: format!("read issue #{ASSIGNED_ISSUE}"),
                error: None,
                duration_ms: 0,
                peer: Some(Peer {
                    pid: Some(1),
                    uid: 0,
                    gid: 0,
                }),
                foreign_refs: None,
                mentions: None,
                coalesced: None,
                read: None,
                resolution: None,
                previous_body: None,
            });
            let t = Instant::now();
            writer.append(body).expect("append");
            s.push(t.elapsed());
            if Instant::now() >= deadline {
                break;
            }
        }
        s
    };
    let tmpfs = run(&opts.tmpfs, opts.seq_calls / 2, WAIT).stats();
    let disk = run(&opts.disk, opts.seq_calls / 2, Duration::from_secs(3)).stats();
    report.row(
        "1 added latency",
        "queue append alone, tmpfs",
        tmpfs.show(),
        "—",
        None,
        "",
        None,
    );
    report.row(
        "1 added latency",
        "queue append alone, disk",
        disk.show(),
        "—",
        None,
        "",
        None,
    );
    report.stats("append_tmpfs", &tmpfs);
    report.stats("append_disk", &disk);
}

/// Phase 9, what the read guard adds to `read_issue` (in process): the
/// cleaning of hidden characters and the per-field caps, on issue #17 as
/// the Gitea client reads it from the fake, and on two larger bodies.
fn read_guard(opts: &Opts, report: &mut Report) {
    use forge_sidecar::config::Secret;
    use forge_sidecar::forge::Forge;
    use forge_sidecar::forge::gitea::GiteaForge;
    use forge_sidecar::read_guard::{ReadConfig, ReadGuard};
    section("read guard: cleaning and caps on read_issue (ReadGuard::issue, in process)");
    let gitea = FakeGitea::start();
    let forge = GiteaForge::new(
        &gitea.api_base(),
        OWNER,
        REPO,
        &Secret::new(gitea.token()),
        Duration::from_secs(5),
    );
    let ordinary = forge
        .read_issue(forge_protocol::IssueNumber::new(ASSIGNED_ISSUE).expect("a number"))
        .expect("read #17");
    let mut long = ordinary.clone();
    long.body = "Le café coûte 3 € — naïve résumé ✓ 🙂\n".repeat(100);
    let mut hidden = long.clone();
    hidden.body = format!("{}{}", long.body, "x\u{200B}".repeat(10));
    let guard = ReadGuard::new(ReadConfig::default(), OWNER);
    let n = opts.seq_calls.max(2000) * 5;
    for (key, label, issue) in [
        (
            "guard_ordinary",
            "issue #17 as read from the fake",
            &ordinary,
        ),
        (
            "guard_4k_non_ascii",
            "4 KB non-ASCII body, nothing hidden",
            &long,
        ),
        (
            "guard_4k_hidden",
            "4 KB body with 10 hidden characters (stripped)",
            &hidden,
        ),
    ] {
        let mut copies: Vec<_> = (0..n).map(|_| issue.clone()).collect();
        let mut s = Samples::default();
        for copy in &mut copies {
            let t = Instant::now();
            std::hint::black_box(guard.issue(&forge, copy));
            s.push(t.elapsed());
        }
        let stats = s.stats();
        let ordinary = key == "guard_ordinary";
        report.row(
            "9 read guard",
            format!("ReadGuard::issue, {label}"),
            stats.show(),
            "—",
            None,
            if ordinary { "≤ 20 µs p50 added" } else { "" },
            ordinary.then_some(stats.p50 <= 20.0),
        );
        report.stats(key, &stats);
    }
}

/// 8. What signed checkpoints cost: in process, and on the call path.
fn signed(rt: &Runtime, opts: &Opts, bins: &Bins, report: &mut Report) {
    use forge_queue::checkpoint::{Checkpoint, CheckpointSigner};
    use forge_queue::note::SigningKey;
    section("signed checkpoints: sign, open and publish one (in process)");
    let key = SigningKey::generate("bench").expect("key");
    let checkpoint = Checkpoint {
        repository: format!("{OWNER}/{REPO}"),
        issue: ASSIGNED_ISSUE,
        run: None,
        session: "20261125T120000.000Z-0a1b2c".into(),
        events: 1234,
        last: "3a".repeat(32),
        time: "2026-11-25T12:00:05.123Z".into(),
    };
    let n = opts.seq_calls;
    let (mut sign, mut open) = (Samples::default(), Samples::default());
    let verifier = key.verifier();
    for _ in 0..n {
        let t = Instant::now();
        let note = checkpoint.sign(&key).expect("sign");
        sign.push(t.elapsed());
        let t = Instant::now();
        Checkpoint::open(note.as_bytes(), &verifier).expect("open");
        open.push(t.elapsed());
    }
    let publish = |root: &Path, n: usize, max: Duration| -> Samples {
        let dir = tempfile::tempdir_in(root).expect("tempdir");
        let writer = QueueWriter::open(dir.path())
            .expect("queue")
            .with_checkpoints(CheckpointSigner {
                key: key.clone(),
                repository: format!("{OWNER}/{REPO}"),
                issue: ASSIGNED_ISSUE,
                run: None,
            });
        writer
            .append(EventBody::Intent(forge_protocol::event::Intent {
                op_id: 1,
                op: "post_comment".into(),
                target: Some(ASSIGNED_ISSUE),
                write: None,
            }))
            .expect("append");
        let deadline = Instant::now() + max;
        let mut s = Samples::default();
        for _ in 0..n {
            let t = Instant::now();
            writer.publish_checkpoint().expect("publish");
            s.push(t.elapsed());
            if Instant::now() >= deadline {
                break;
            }
        }
        s
    };
    let tmpfs = publish(&opts.tmpfs, n / 2, WAIT).stats();
    let disk = publish(&opts.disk, n / 2, Duration::from_secs(3)).stats();
    for (figure, stats, key) in [
        (
            "sign one checkpoint (Ed25519)",
            sign.stats(),
            "checkpoint_sign",
        ),
        (
            "open one checkpoint (parse + verify)",
            open.stats(),
            "checkpoint_open",
        ),
        (
            "publish one checkpoint, tmpfs (sign, write, fsync, rename)",
            tmpfs,
            "checkpoint_publish_tmpfs",
        ),
        (
            "publish one checkpoint, disk",
            disk,
            "checkpoint_publish_disk",
        ),
    ] {
        report.row("8 signed", figure, stats.show(), "—", None, "", None);
        report.stats(key, &stats);
    }

    section(
        "read_issue latency: signing a checkpoint every second vs no key (memory forge, tmpfs)",
    );
    let keys = tempfile::tempdir_in(&opts.tmpfs).expect("tempdir");
    let key_file = keys.path().join("bench.skey");
    fs::write(&key_file, format!("{}\n", key.expose_encoded())).expect("key file");
    // The sidecar refuses a key every user can read.
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).expect("chmod");
    let env = |signed: bool| {
        let mut env = vec![
            ("FORGE_LOG".to_string(), "info".to_string()),
            ("FORGE_HEARTBEAT_SECS".to_string(), "1".to_string()),
        ];
        if signed {
            env.push((
                "FORGE_SIGNING_KEY_FILE".into(),
                key_file.display().to_string(),
            ));
        }
        env
    };
    let mut plain = Sidecar::start(
        &bins.sidecar,
        &opts.tmpfs,
        &["--forge", "memory"],
        &env(false),
    );
    let mut signing = Sidecar::start(
        &bins.sidecar,
        &opts.tmpfs,
        &["--forge", "memory"],
        &env(true),
    );
    let req = Req::read_issue();
    let (p, s) = rt
        .block_on(async {
            let mut a = Http1::unix(&plain.socket).await?;
            let mut b = Http1::unix(&signing.socket).await?;
            let mut warm = Samples::default();
            sequential(&mut a, &req, 500, WAIT, &mut warm).await?;
            sequential(&mut b, &req, 500, WAIT, &mut warm).await?;
            interleaved(&mut a, &req, &mut b, &req, n, opts.block, WAIT * 6, || {}).await
        })
        .unwrap_or_else(|e| panic!("{e}\nsidecar log:\n{}", signing.log()));
    let checkpoints = signing.queue.join("checkpoint");
    let signed_files = fs::read_dir(&checkpoints).map_or(0, |d| d.count());
    plain.stop();
    signing.stop();
    let (p, s) = (p.stats(), s.stats());
    report.row(
        "8 signed",
        "read_issue, no signing key",
        p.show(),
        "—",
        None,
        "",
        None,
    );
    report.row(
        "8 signed",
        "read_issue, signing a checkpoint every second",
        s.show(),
        format!("no key p50 {}", us(p.p50)),
        Some(s.p50 / p.p50),
        "report",
        None,
    );
    report.figure("signed_checkpoint_files", signed_files);
    report.stats("read_issue_unsigned", &p);
    report.stats("read_issue_signed", &s);
}

/// 1. read_issue through the sidecar → fake Gitea vs the same GET direct.
fn added_latency(rt: &Runtime, opts: &Opts, bins: &Bins, report: &mut Report) {
    for (label, root, b_max) in [
        ("tmpfs", &opts.tmpfs, WAIT * 6),
        ("disk", &opts.disk, opts.disk_max),
    ] {
        section(&format!(
            "added latency: read_issue via sidecar → fake Gitea vs direct GET (queue on {label})"
        ));
        let gitea = FakeGitea::start();
        let token_dir = tempfile::tempdir_in(root).expect("tempdir");
        let token_file = token_dir.path().join("token");
        forge_e2e::sidecar::write_token(&token_file, gitea.token());
        let mut env = gitea_env(&gitea, &token_file);
        env.push(("FORGE_LOG".into(), "info".into()));
        let mut sidecar = Sidecar::start(&bins.sidecar, root, &[], &env);
        let direct_req = Req::gitea_issue(&gitea);
        let side_req = Req::read_issue();
        let (direct, side) = rt
            .block_on(async {
                let mut direct = Http1::tcp(gitea.addr()).await?;
                let mut side = Http1::unix(&sidecar.socket).await?;
                // Check the answers once, in full.
                let body = side.checked(&side_req).await?;
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                if v["result"]["number"] != json!(ASSIGNED_ISSUE) {
                    return Err(format!("read_issue answered {v}"));
                }
                let body = direct.checked(&direct_req).await?;
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                if v["number"] != json!(ASSIGNED_ISSUE) {
                    return Err(format!("direct GET answered {v}"));
                }
                let mut warm = Samples::default();
                sequential(&mut direct, &direct_req, 500, WAIT, &mut warm).await?;
                sequential(&mut side, &side_req, 500, Duration::from_secs(2), &mut warm).await?;
                gitea.clear_requests();
                interleaved(
                    &mut direct,
                    &direct_req,
                    &mut side,
                    &side_req,
                    opts.seq_calls,
                    opts.block,
                    b_max,
                    || gitea.clear_requests(),
                )
                .await
            })
            .unwrap_or_else(|e| panic!("{e}\nsidecar log:\n{}", sidecar.log()));
        let events = sidecar.events();
        sidecar.stop();
        let (d, s) = (direct.stats(), side.stats());
        let ratio = s.p50 / d.p50;
        report.row(
            "1 added latency",
            format!("direct GET to fake Gitea ({label} run)"),
            d.show(),
            "—",
            None,
            "",
            None,
        );
        report.row(
            "1 added latency",
            format!("read_issue via sidecar, queue on {label}"),
            s.show(),
            format!("direct p50 {}", us(d.p50)),
            Some(ratio),
            if label == "tmpfs" {
                "p50 ratio ≤ 1.5"
            } else {
                "report"
            },
            (label == "tmpfs").then_some(ratio <= 1.5),
        );
        report.row(
            "1 added latency",
            format!("  added per call (p50 difference), {label}"),
            us(s.p50 - d.p50),
            "",
            None,
            if label == "tmpfs" { "≤ 100 µs" } else { "" },
            (label == "tmpfs").then_some(s.p50 - d.p50 <= 100.0),
        );
        report.stats(&format!("direct_gitea_{label}"), &d);
        report.stats(&format!("sidecar_gitea_read_issue_{label}"), &s);
        report.figure(&format!("sidecar_gitea_ratio_{label}"), ratio);
        report.figure(&format!("sidecar_gitea_events_{label}"), events);
    }
}

/// 2, 3 and 4 (memory): one memory sidecar on tmpfs for the floor, the
/// footprint and the throughput; ping servers in process.
fn floor_footprint_throughput(rt: &Runtime, opts: &Opts, bins: &Bins, report: &mut Report) {
    section("floor: scope on the sidecar vs bare ping servers on a Unix socket (unpinned)");
    let hyper_ping = PingServer::start(PingKind::Hyper, &opts.tmpfs);
    let rpc_ping = PingServer::start(PingKind::Jsonrpsee, &opts.tmpfs);
    let mut sidecar = Sidecar::memory(&bins.sidecar, &opts.tmpfs);
    let pid = sidecar.pid();
    // The baseline: a minimal jsonrpsee server process, answered once.
    let minimal = bins
        .rpc_ping
        .as_ref()
        .map(|b| RpcPing::start(b, &opts.tmpfs));
    if let Some(m) = &minimal {
        rt.block_on(async {
            let mut c = Http1::unix(&m.socket).await?;
            c.checked(&Req::rpc("ping", None)).await.map(drop)
        })
        .expect("rpc_ping answers");
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss_idle = Rss::of(pid);
    let rss_minimal = minimal.map(|mut m| {
        let rss = Rss::of(m.proc.pid());
        m.proc.kill();
        rss
    });
    let scope = Req::rpc("scope", None);
    let read = Req::read_issue();
    let ping_h = PingServer::req(PingKind::Hyper);
    let ping_j = PingServer::req(PingKind::Jsonrpsee);
    let n = opts.seq_calls;
    let result = rt.block_on(async {
        let mut c_h = Http1::unix(&hyper_ping.socket).await?;
        let mut c_j = Http1::unix(&rpc_ping.socket).await?;
        let mut c_s = Http1::unix(&sidecar.socket).await?;
        let mut warm = Samples::default();
        sequential(&mut c_h, &ping_h, 500, WAIT, &mut warm).await?;
        sequential(&mut c_j, &ping_j, 500, WAIT, &mut warm).await?;
        // 10,000 read_issue, then RSS; then scope and ping interleaved.
        let mut reads = Samples::default();
        sequential(&mut c_s, &read, n, WAIT * 6, &mut reads).await?;
        let rss_10k = Rss::of(pid);
        let (mut s_h, mut s_j, mut s_s) =
            (Samples::default(), Samples::default(), Samples::default());
        let mut done = 0;
        while done < n {
            let k = opts.block.min(n - done);
            sequential(&mut c_h, &ping_h, k, WAIT, &mut s_h).await?;
            sequential(&mut c_j, &ping_j, k, WAIT, &mut s_j).await?;
            sequential(&mut c_s, &scope, k, WAIT, &mut s_s).await?;
            done += k;
        }
        let rss_20k = Rss::of(pid);
        Ok::<_, String>((reads, rss_10k, s_h, s_j, s_s, rss_20k))
    });
    let (reads, rss_10k, s_h, s_j, s_s, rss_20k) =
        result.unwrap_or_else(|e| panic!("{e}\nsidecar log:\n{}", sidecar.log()));
    let (h, j, s, r) = (s_h.stats(), s_j.stats(), s_s.stats(), reads.stats());
    report.row(
        "2 floor",
        "bare hyper ping, Unix socket (in process)",
        h.show(),
        "—",
        None,
        "",
        None,
    );
    report.row(
        "2 floor",
        "jsonrpsee ping, Unix socket (in process)",
        j.show(),
        format!("hyper p50 {}", us(h.p50)),
        Some(j.p50 / h.p50),
        "",
        None,
    );
    report.row(
        "2 floor",
        "sidecar scope (audited, queue on tmpfs)",
        s.show(),
        format!("jsonrpsee ping p50 {}", us(j.p50)),
        Some(s.p50 / j.p50),
        "p50 ≤ 2× bare ping",
        Some(s.p50 / j.p50 <= 2.0),
    );
    report.row(
        "2 floor",
        "  same, vs the bare hyper ping",
        format!("{:.2}×", s.p50 / h.p50),
        format!("hyper p50 {}", us(h.p50)),
        Some(s.p50 / h.p50),
        "p50 ≤ 2× bare ping",
        Some(s.p50 / h.p50 <= 2.0),
    );
    report.row(
        "2 floor",
        "sidecar read_issue, memory forge (audited, tmpfs)",
        r.show(),
        format!("scope p50 {}", us(s.p50)),
        Some(r.p50 / s.p50),
        "",
        None,
    );
    report.stats("ping_hyper", &h);
    report.stats("ping_jsonrpsee", &j);
    report.stats("sidecar_scope_tmpfs", &s);
    report.stats("sidecar_memory_read_issue_tmpfs", &r);
    report.figure("scope_vs_jsonrpsee_ping", s.p50 / j.p50);
    report.figure("scope_vs_hyper_ping", s.p50 / h.p50);

    section("throughput: audited read_issue/s, memory forge, queue on tmpfs");
    let mut tput_rows = Vec::new();
    for conns in [1usize, 8, 64] {
        let side = rt
            .block_on(throughput(
                || Http1::unix(&sidecar.socket),
                &read,
                conns,
                opts.warm,
                opts.window,
                Some(pid),
            ))
            .unwrap_or_else(|e| panic!("{e}\nsidecar log:\n{}", sidecar.log()));
        let ping = rt
            .block_on(throughput(
                || Http1::unix(&hyper_ping.socket),
                &ping_h,
                conns,
                opts.warm,
                opts.window,
                None,
            ))
            .expect("ping throughput");
        report.row(
            "3 throughput",
            format!("read_issue/s, {conns} connection(s)"),
            format!(
                "{:.0}/s (p50 {}, p99 {}; sidecar CPU {:.0} µs and {:.1} context switches per call, bench CPU {:.0} µs/call)",
                side.per_sec,
                us(side.lat.p50),
                us(side.lat.p99),
                side.server_cpu_us.unwrap_or(f64::NAN),
                side.server_switches.unwrap_or(f64::NAN),
                side.bench_cpu_us
            ),
            format!("bare hyper ping {:.0}/s", ping.per_sec),
            Some(side.per_sec / ping.per_sec),
            "≥ 25,000/s",
            Some(side.per_sec >= 25_000.0),
        );
        report.figure(
            &format!("throughput_read_issue_{conns}"),
            json!({ "per_sec": side.per_sec, "latency": side.lat.json(),
                    "sidecar_cpu_us_per_call": side.server_cpu_us, "bench_cpu_us_per_call": side.bench_cpu_us,
                    "sidecar_context_switches_per_call": side.server_switches }),
        );
        report.figure(
            &format!("throughput_ping_{conns}"),
            json!({ "per_sec": ping.per_sec, "latency": ping.lat.json(), "bench_cpu_us_per_call": ping.bench_cpu_us }),
        );
        tput_rows.push(side.per_sec);
    }
    let rss_after_load = Rss::of(pid);
    let hwm = vm_kib(pid, "VmHWM");
    let events = sidecar.events();
    sidecar.stop();

    section("footprint (memory sidecar)");
    report.row(
        "4 footprint",
        "RSS idle after start (VmRSS; anonymous part; PSS)",
        rss_idle.show(),
        rss_minimal
            .as_ref()
            .map_or("(rpc_ping not built)".into(), |m| {
                format!("minimal jsonrpsee process {}", mib(m.total))
            }),
        rss_minimal
            .as_ref()
            .map(|m| rss_idle.total as f64 / m.total as f64),
        "≤ 8 MiB",
        Some(rss_idle.total as f64 <= 8.0 * 1024.0),
    );
    report.row(
        "4 footprint",
        "RSS after 10,000 read_issue",
        rss_10k.show(),
        format!("idle {}", mib(rss_idle.total)),
        Some(rss_10k.total as f64 / rss_idle.total as f64),
        "no growth",
        None,
    );
    report.row(
        "4 footprint",
        "RSS after 20,000 calls (+10k scope)",
        rss_20k.show(),
        format!("after 10k {}", mib(rss_10k.total)),
        Some(rss_20k.total as f64 / rss_10k.total as f64),
        "no growth (10k → 20k)",
        Some(rss_20k.total <= rss_10k.total + 256),
    );
    report.row(
        "4 footprint",
        "RSS after the throughput runs (64 connections)",
        format!("{} (peak VmHWM {})", rss_after_load.show(), mib(hwm)),
        format!("idle {}", mib(rss_idle.total)),
        Some(rss_after_load.total as f64 / rss_idle.total as f64),
        "",
        None,
    );
    report.figure(
        "rss_kib",
        json!({ "idle": rss_idle.json(), "minimal_jsonrpsee_idle": rss_minimal.as_ref().map(Rss::json),
                "after_10k": rss_10k.json(), "after_20k": rss_20k.json(),
                "after_throughput": rss_after_load.json(), "hwm": hwm, "events_in_queue": events }),
    );
}

/// 2 (pinned): the floor with client and server on one CPU.
fn pinned_floor(rt: &Runtime, opts: &Opts, bins: &Bins, report: &mut Report) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let me = std::process::id();
    if cpus < 2 || !pin(me, "0") {
        println!("(pinned floor skipped: needs 2+ CPUs and taskset)");
        return;
    }
    section("floor pinned: bench process and sidecar both on CPU 0");
    // Threads created from now on inherit the pin.
    let hyper_ping = PingServer::start(PingKind::Hyper, &opts.tmpfs);
    let rpc_ping = PingServer::start(PingKind::Jsonrpsee, &opts.tmpfs);
    let mut sidecar = Sidecar::memory(&bins.sidecar, &opts.tmpfs);
    let pinned = pin(sidecar.pid(), "0");
    let n = opts.seq_calls / 2;
    let scope = Req::rpc("scope", None);
    let read = Req::read_issue();
    let ping = Req::rpc("ping", None);
    let result = rt.block_on(async {
        let mut c_h = Http1::unix(&hyper_ping.socket).await?;
        let mut c_j = Http1::unix(&rpc_ping.socket).await?;
        let mut c_s = Http1::unix(&sidecar.socket).await?;
        let (mut h, mut j, mut s, mut r) = (
            Samples::default(),
            Samples::default(),
            Samples::default(),
            Samples::default(),
        );
        let mut warm = Samples::default();
        sequential(&mut c_s, &scope, 300, WAIT, &mut warm).await?;
        let mut done = 0;
        while done < n {
            let k = opts.block.min(n - done);
            sequential(&mut c_h, &ping, k, WAIT, &mut h).await?;
            sequential(&mut c_j, &ping, k, WAIT, &mut j).await?;
            sequential(&mut c_s, &scope, k, WAIT, &mut s).await?;
            sequential(&mut c_s, &read, k, WAIT, &mut r).await?;
            done += k;
        }
        Ok::<_, String>((h.stats(), j.stats(), s.stats(), r.stats()))
    });
    drop((hyper_ping, rpc_ping));
    let all = (0..cpus)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",");
    pin(me, &all);
    let (h, j, s, r) = result.unwrap_or_else(|e| panic!("{e}\nsidecar log:\n{}", sidecar.log()));
    sidecar.stop();
    if !pinned {
        println!("(could not pin the sidecar; figures below are half pinned)");
    }
    report.row(
        "2 floor",
        "pinned 1 CPU: bare hyper ping",
        h.show(),
        "",
        None,
        "",
        None,
    );
    report.row(
        "2 floor",
        "pinned 1 CPU: jsonrpsee ping",
        j.show(),
        format!("hyper p50 {}", us(h.p50)),
        Some(j.p50 / h.p50),
        "",
        None,
    );
    report.row(
        "2 floor",
        "pinned 1 CPU: sidecar scope",
        s.show(),
        format!("jsonrpsee ping p50 {}", us(j.p50)),
        Some(s.p50 / j.p50),
        "p50 ≤ 2× bare ping",
        Some(s.p50 / j.p50 <= 2.0),
    );
    report.row(
        "2 floor",
        "pinned 1 CPU: sidecar read_issue (memory)",
        r.show(),
        format!("scope p50 {}", us(s.p50)),
        Some(r.p50 / s.p50),
        "",
        None,
    );
    report.stats("pinned_ping_hyper", &h);
    report.stats("pinned_ping_jsonrpsee", &j);
    report.stats("pinned_sidecar_scope", &s);
    report.stats("pinned_sidecar_memory_read_issue", &r);
}

/// 4. Cold start: exec → socket accepting, → first `scope` answered.
fn cold_start(rt: &Runtime, opts: &Opts, bins: &Bins, report: &mut Report) {
    section("cold start: exec → connect OK → first answer (memory forge, tmpfs queue)");
    let (mut connect, mut answer, mut stop) =
        (Samples::default(), Samples::default(), Samples::default());
    // The baseline, started as often, each start just before the sidecar's.
    let mut minimal = Samples::default();
    for _ in 0..opts.starts {
        if let Some(bin) = &bins.rpc_ping {
            let mut m = RpcPing::start(bin, &opts.tmpfs);
            minimal.push(m.exec_to_accepting);
            m.proc.kill();
        }
        let dir = tempfile::tempdir_in(&opts.tmpfs).expect("tempdir");
        let (c, a, s) = timed_start(rt, bins, dir.path(), &dir.path().join("queue"), &[]);
        connect.push(c);
        answer.push(a);
        stop.push(s);
    }
    let (c, a, s) = (connect.stats(), answer.stats(), stop.stats());
    let m = (minimal.len() > 0).then(|| minimal.stats());
    report.row(
        "4 footprint",
        "cold start: exec → socket accepting",
        c.show(),
        m.as_ref().map_or("(rpc_ping not built)".into(), |m| {
            format!("minimal jsonrpsee process p50 {}", us(m.p50))
        }),
        m.as_ref().map(|m| c.p50 / m.p50),
        "≤ 5 ms",
        Some(c.p50 <= 5_000.0),
    );
    report.row(
        "4 footprint",
        "cold start: exec → first scope answered",
        a.show(),
        "",
        None,
        "",
        None,
    );
    report.row(
        "4 footprint",
        "graceful stop: SIGTERM → exit (incl. kill(1) spawn)",
        s.show(),
        "",
        None,
        "",
        None,
    );
    report.stats("cold_start_connect", &c);
    if let Some(m) = &m {
        report.stats("cold_start_minimal_jsonrpsee", m);
    }
    report.stats("cold_start_first_answer", &a);
    report.stats("stop_sigterm", &s);
}

/// Start `forge-sidecar serve --forge memory ARGS` on `queue`, time exec →
/// socket accepting and → first `scope` answered, then stop it (SIGTERM)
/// and time the stop.
fn timed_start(
    rt: &Runtime,
    bins: &Bins,
    dir: &Path,
    queue: &Path,
    args: &[&str],
) -> (Duration, Duration, Duration) {
    let socket = dir.join("run").join("forge.sock");
    let log = dir.join("sidecar.log");
    let t0 = Instant::now();
    let child = Command::new(&bins.sidecar)
        .args(["serve", "--forge", "memory"])
        .args(args)
        .env_clear()
        .env("FORGE_SOCKET", &socket)
        .env("FORGE_QUEUE_DIR", queue)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn forge-sidecar");
    let mut guard = ChildGuard::new(child, "forge-sidecar");
    let deadline = t0 + WAIT;
    let stream = loop {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(_) => {
                if let Some(status) = guard.exited() {
                    panic!(
                        "forge-sidecar exited at start ({status}):\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                assert!(Instant::now() < deadline, "forge-sidecar did not start");
                std::thread::yield_now();
            }
        }
    };
    let connect = t0.elapsed();
    rt.block_on(async {
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stream = tokio::net::UnixStream::from_std(stream).map_err(|e| e.to_string())?;
        let mut c = Http1::over(stream).await?;
        c.checked(&Req::rpc("scope", None)).await.map(drop)
    })
    .expect("first call");
    let answer = t0.elapsed();
    let t = Instant::now();
    let status = guard.terminate();
    let stop = t.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "forge-sidecar stopped badly: {status:?}\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    (connect, answer, stop)
}

/// 10. Start-up with 100,000 events of the same run in the queue (tmpfs):
///     the first start of the run on it (no tally: every event read), then
///     starts from the run's tally.
fn history_start(rt: &Runtime, opts: &Opts, bins: &Bins, report: &mut Report) {
    const EVENTS: u64 = 100_000;
    section("start-up with 100,000 events of the run in the queue (memory forge, tmpfs queue)");
    let dir = tempfile::tempdir_in(&opts.tmpfs).expect("tempdir");
    let queue = dir.path().join("queue");
    let written = forge_e2e::history::write_run(&queue, "bench-run", 3, EVENTS - 8);
    assert_eq!(written, EVENTS);
    let args = ["--run-id", "bench-run"];
    let tally = forge_queue::tally::path(&queue, Some("bench-run"));
    let (mut scan_connect, mut scan_answer) = (Samples::default(), Samples::default());
    for _ in 0..3 {
        // No tally: the start reads every event (as the first start of a
        // sidecar with tallies on a queue written before them).
        let _ = fs::remove_file(&tally);
        let (c, a, _) = timed_start(rt, bins, dir.path(), &queue, &args);
        scan_connect.push(c);
        scan_answer.push(a);
    }
    let (mut connect, mut answer) = (Samples::default(), Samples::default());
    for _ in 0..opts.starts {
        let (c, a, _) = timed_start(rt, bins, dir.path(), &queue, &args);
        connect.push(c);
        answer.push(a);
    }
    let (sc, sa, c, a) = (
        scan_connect.stats(),
        scan_answer.stats(),
        connect.stats(),
        answer.stats(),
    );
    report.row(
        "10 history",
        "start with 100,000 events of the run: exec → socket accepting (run tally)",
        c.show(),
        "",
        None,
        "≤ 20 ms",
        Some(c.p50 <= 20_000.0),
    );
    report.row(
        "10 history",
        "start with 100,000 events of the run: exec → first scope answered (run tally)",
        a.show(),
        "",
        None,
        "≤ 20 ms",
        Some(a.p50 <= 20_000.0),
    );
    report.row(
        "10 history",
        "start with 100,000 events, no tally yet (every event read): exec → first scope answered",
        sa.show(),
        format!("socket accepting {}", us(sc.p50)),
        None,
        "report",
        None,
    );
    report.stats("history_start_connect", &c);
    report.stats("history_start_first_answer", &a);
    report.stats("history_scan_start_connect", &sc);
    report.stats("history_scan_start_first_answer", &sa);
}

/// 5. `signal_done` → event in `new/` on return → line printed by watch.
fn done_latency(rt: &Runtime, opts: &Opts, bins: &Bins, report: &mut Report) {
    for (label, root, sessions) in [
        ("tmpfs", &opts.tmpfs, opts.sessions),
        ("disk", &opts.disk, opts.sessions / 2),
    ] {
        section(&format!(
            "done latency: signal_done → new/ → forge-queue watch (queue on {label})"
        ));
        let (mut call, mut printed) = (Samples::default(), Samples::default());
        let (mut visible, mut before_return) = (0, 0);
        for _ in 0..sessions {
            let mut sidecar = Sidecar::memory(&bins.sidecar, root);
            let watch = bins.queue.as_ref().map(|q| Watch::start(q, &sidecar.queue));
            let req = Req::rpc(
                "signal_done",
                Some(json!({ "status": "success", "summary": "benchmark session" })),
            );
            let (t0, t1, body) = rt
                .block_on(async {
                    let mut conn = Http1::unix(&sidecar.socket).await?;
                    let t0 = Instant::now();
                    let body = conn.checked(&req).await?;
                    Ok::<_, String>((t0, Instant::now(), body))
                })
                .unwrap_or_else(|e| panic!("{e}\nsidecar log:\n{}", sidecar.log()));
            // Check first, measure after: the file must be there on return.
            let v: Value = serde_json::from_slice(&body).expect("JSON");
            let name = v["result"]["event"].as_str().expect("event name");
            if sidecar.queue.join("new").join(name).exists() {
                visible += 1;
            }
            call.push(t1 - t0);
            if let Some(mut w) = watch {
                let at = w.wait_kind("done").expect("watch printed the done event");
                printed.push(at.saturating_duration_since(t0));
                if at < t1 {
                    before_return += 1;
                }
                w.finish();
            }
            sidecar.stop();
        }
        let (c, p) = (call.stats(), printed.stats());
        report.row(
            "5 done",
            format!("signal_done call → returned ({label}; one per session)"),
            c.show(),
            "",
            None,
            "",
            None,
        );
        report.row(
            "5 done",
            format!("  event file in new/ when the call returned ({label})"),
            format!("{visible}/{sessions}"),
            "",
            None,
            "all",
            Some(visible == sessions),
        );
        report.stats(&format!("done_call_{label}"), &c);
        if printed.len() > 0 {
            report.row(
                "5 done",
                format!("  call sent → done line printed by forge-queue watch --json ({label})"),
                p.show(),
                format!("call returned p50 {}", us(c.p50)),
                Some(p.p50 / c.p50),
                "",
                None,
            );
            report.row(
                "5 done",
                format!("  printed before the call returned ({label})"),
                format!("{before_return}/{}", printed.len()),
                "",
                None,
                "",
                None,
            );
            report.stats(&format!("done_printed_after_send_{label}"), &p);
            report.figure(
                &format!("done_printed_before_return_{label}"),
                before_return,
            );
        }
    }
}

/// Peak memory under many large reads, and queue growth under a flood of
/// refused calls, beside their documented bounds.
fn limits(rt: &Runtime, opts: &Opts, bins: &Bins, report: &mut Report) {
    use forge_protocol::event::MAX_OP_EVENT_BYTES;
    use forge_sidecar::flood::{AUDIT_BURST, AUDIT_RATE_PER_SEC};
    let fast = opts.seq_calls < 10_000;

    section("limits: peak RSS, parallel read_comments of 100 comments of 65 KB (fake Gitea)");
    let gitea = FakeGitea::start();
    let token_dir = tempfile::tempdir_in(&opts.tmpfs).expect("tempdir");
    let token_file = token_dir.path().join("token");
    forge_e2e::sidecar::write_token(&token_file, gitea.token());
    let mut env = gitea_env(&gitea, &token_file);
    env.push(("FORGE_LOG".into(), "warn".into()));
    env.push(("FORGE_HTTP_TIMEOUT_SECS".into(), "120".into()));
    let mut sidecar = Sidecar::start(&bins.sidecar, &opts.tmpfs, &[], &env);
    let pid = sidecar.pid();
    let comment = Req::rpc(
        "post_comment",
        Some(json!({ "number": ASSIGNED_ISSUE, "body": "x".repeat(65_000) })),
    );
    let callers = if fast { 50 } else { 200 };
    let read = Req::rpc("read_comments", Some(json!({ "number": ASSIGNED_ISSUE })));
    let socket = sidecar.socket.clone();
    let (before, took, bytes) = rt
        .block_on(async {
            let mut conn = Http1::unix(&socket).await?;
            for _ in 0..100 {
                conn.checked(&comment).await?;
            }
            let before = Rss::of(pid);
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..callers {
                let (socket, read) = (socket.clone(), read.clone());
                tasks.push(tokio::spawn(async move {
                    let mut conn = Http1::unix(&socket).await?;
                    conn.checked(&read).await.map(|b| b.len())
                }));
            }
            let mut bytes = 0;
            for t in tasks {
                bytes += t.await.map_err(|e| e.to_string())??;
            }
            Ok::<_, String>((before, t.elapsed(), bytes))
        })
        .unwrap_or_else(|e| panic!("{e}\nsidecar log:\n{}", sidecar.log()));
    let peak = vm_kib(pid, "VmHWM");
    sidecar.stop();
    report.row(
        "7 limits",
        format!("peak RSS (VmHWM), {callers} parallel read_comments of ~6.6 MB each"),
        mib(peak),
        format!("before the reads {}", before.show()),
        None,
        "≤ 64 MiB",
        Some(peak <= 64 * 1024),
    );
    report.row(
        "7 limits",
        "  time for all of them; answer bytes",
        format!(
            "{:.1} s; {:.0} MiB",
            took.as_secs_f64(),
            bytes as f64 / (1 << 20) as f64
        ),
        "",
        None,
        "",
        None,
    );
    report.figure("limits_peak_rss_kib", peak);
    report.figure("limits_read_comments_callers", callers);

    section("limits: queue growth under a flood of refused calls (1 MB param names)");
    let mut sidecar = Sidecar::memory(&bins.sidecar, &opts.tmpfs);
    let span = Duration::from_secs(if fast { 3 } else { 10 });
    let key = "k".repeat(1_000_000);
    let refused = Req::rpc("scope", Some(json!({ key: 1 })));
    let socket = sidecar.socket.clone();
    let calls = rt
        .block_on(async {
            let deadline = Instant::now() + span;
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let (socket, refused) = (socket.clone(), refused.clone());
                tasks.push(tokio::spawn(async move {
                    let mut conn = Http1::unix(&socket).await?;
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        conn.call(&refused).await?;
                        n += 1;
                    }
                    Ok::<_, String>(n)
                }));
            }
            let mut calls = 0;
            for t in tasks {
                calls += t.await.map_err(|e| e.to_string())??;
            }
            Ok::<_, String>(calls)
        })
        .unwrap_or_else(|e| panic!("{e}\nsidecar log:\n{}", sidecar.log()));
    sidecar.stop();
    let (mut events, mut bytes) = (0u64, 0u64);
    for entry in fs::read_dir(sidecar.queue.join("new"))
        .expect("new/")
        .flatten()
    {
        events += 1;
        bytes += entry.metadata().map_or(0, |m| m.len());
    }
    let minutes = span.as_secs_f64() / 60.0;
    let per_min = bytes as f64 / minutes;
    let bound_first_minute =
        (AUDIT_BURST as u64 + 60 * (AUDIT_RATE_PER_SEC as u64 + 3)) * MAX_OP_EVENT_BYTES as u64;
    report.row(
        "7 limits",
        format!(
            "queue growth, {calls} refused calls in {} s ({:.0}/s)",
            span.as_secs(),
            calls as f64 / span.as_secs_f64()
        ),
        format!(
            "{:.0} KiB/min ({events} events, {} KiB in all)",
            per_min / 1024.0,
            bytes / 1024
        ),
        "",
        None,
        format!("≤ {} KiB/min", bound_first_minute / 1024),
        Some(per_min <= bound_first_minute as f64),
    );
    report.figure("limits_flood_calls", calls);
    report.figure("limits_flood_events", events);
    report.figure("limits_flood_bytes_per_min", per_min);
}

/// `forge-queue watch DIR --json --no-ack --until-done`, lines timestamped
/// as they arrive.
struct Watch {
    proc: ChildGuard,
    lines: mpsc::Receiver<(Instant, String)>,
    reader: Option<JoinHandle<()>>,
}

impl Watch {
    fn start(bin: &Path, queue: &Path) -> Watch {
        let mut child = Command::new(bin)
            .arg("watch")
            .arg(queue)
            .args(["--json", "--no-ack", "--until-done"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn forge-queue watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match out.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send((Instant::now(), line.clone())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut watch = Watch {
            proc: ChildGuard::new(child, "forge-queue watch"),
            lines: rx,
            reader: Some(reader),
        };
        // Live once it has printed the session_start already in new/.
        watch
            .wait_kind("session_start")
            .expect("watch printed session_start");
        watch
    }

    /// When the first line with `"kind": kind` was read.
    fn wait_kind(&mut self, kind: &str) -> Option<Instant> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, line) = self.lines.recv_timeout(left).ok()?;
            let v: Value = serde_json::from_str(&line).ok()?;
            if v["kind"] == kind {
                return Some(at);
            }
        }
    }

    fn finish(mut self) {
        // --until-done: it exits by itself after the done event.
        if self.proc.wait_exit(WAIT).is_none() {
            self.proc.kill();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// 6. MCP bridge: tool call latency, cold start, RSS.
fn mcp(rt: &Runtime, opts: &Opts, bins: &Bins, report: &mut Report) {
    section("MCP: read_issue tool call over stdio → forge-sidecar mcp → sidecar (memory, tmpfs)");
    let mut sidecar = Sidecar::memory(&bins.sidecar, &opts.tmpfs);
    let bridge_log = sidecar.dir.path().join("mcp.log");
    let start_bridge = || -> ChildGuard {
        let child = Command::new(&bins.sidecar)
            .arg("mcp")
            .arg("--socket")
            .arg(&sidecar.socket)
            .env_clear()
            .env("FORGE_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&bridge_log).expect("log"))
            .spawn()
            .expect("spawn forge-sidecar mcp");
        ChildGuard::new(child, "forge-sidecar mcp")
    };
    let probe = start_bridge();
    std::thread::sleep(Duration::from_millis(100));
    let mut probe = probe;
    if let Some(status) = probe.exited() {
        println!(
            "(forge-sidecar mcp not available: exited {status}; MCP figures skipped)\n{}",
            tail(&fs::read_to_string(&bridge_log).unwrap_or_default())
        );
        sidecar.stop();
        return;
    }
    probe.kill();

    // Cold start: spawn → initialize answered.
    let mut cold = Samples::default();
    for _ in 0..opts.starts {
        let t0 = Instant::now();
        let mut bridge = start_bridge();
        let dog = Watchdog::new(bridge.pid(), WAIT, "forge-sidecar mcp");
        let mut session = McpSession::new(&mut bridge);
        session.initialize().expect("initialize");
        cold.push(t0.elapsed());
        drop(session);
        drop(dog);
        // Closing stdin ends the MCP session.
        drop(bridge.child().stdin.take());
        if bridge.wait_exit(WAIT).is_none() {
            bridge.kill();
        }
    }

    // The baseline: the same read on the socket of the same sidecar.
    let mut socket = Samples::default();
    let read = Req::read_issue();
    rt.block_on(async {
        let mut c = Http1::unix(&sidecar.socket).await?;
        sequential(&mut c, &read, 200, WAIT, &mut Samples::default()).await?;
        sequential(&mut c, &read, opts.mcp_calls, WAIT * 3, &mut socket).await
    })
    .unwrap_or_else(|e| panic!("{e}\nsidecar log:\n{}", sidecar.log()));

    // Calls on one bridge.
    let mut bridge = start_bridge();
    let dog = Watchdog::new(bridge.pid(), WAIT * 12, "forge-sidecar mcp");
    let mut session = McpSession::new(&mut bridge);
    session.initialize().expect("initialize");
    session.notify_initialized().expect("initialized");
    let first = session.tool_call(1, "read_issue", 17).expect("tools/call");
    let v: Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!(
        v["result"]["isError"],
        json!(false),
        "read_issue over MCP: {v}"
    );
    drop(session);
    let rss_idle = Rss::of(bridge.pid());
    let pid = bridge.pid();
    let mut session = McpSession::new(&mut bridge);
    let mut calls = Samples::default();
    let (mut cpu0, mut sw0) = (0, 0);
    for id in 0..(200 + opts.mcp_calls) as u64 {
        if id == 200 {
            (cpu0, sw0) = (cpu_ticks(pid), ctx_switches(pid));
        }
        let t = Instant::now();
        session
            .tool_call(id + 2, "read_issue", 17)
            .expect("tools/call");
        if id >= 200 {
            calls.push(t.elapsed());
        }
    }
    let n = opts.mcp_calls.max(1) as f64;
    let cpu_us = (cpu_ticks(pid) - cpu0) as f64 * 1e6 / clock_ticks_per_sec() / n;
    let switches = ctx_switches(pid).saturating_sub(sw0) as f64 / n;
    drop(session);
    let rss_after = Rss::of(pid);
    let hwm = vm_kib(pid, "VmHWM");
    drop(dog);
    drop(bridge.child().stdin.take());
    if bridge.wait_exit(WAIT).is_none() {
        bridge.kill();
    }
    sidecar.stop();

    let (c, k) = (calls.stats(), cold.stats());
    let base = socket.stats();
    report.row(
        "6 mcp",
        "read_issue tool call: stdio → bridge → sidecar → memory",
        c.show(),
        format!("socket read_issue p50 {}", us(base.p50)),
        Some(c.p50 / base.p50),
        "report",
        None,
    );
    report.row(
        "6 mcp",
        "  added by the bridge (p50 difference)",
        format!(
            "{} (bridge CPU {cpu_us:.0} µs and {switches:.1} context switches per call)",
            us(c.p50 - base.p50)
        ),
        "",
        None,
        "",
        None,
    );
    report.figure(
        "mcp_bridge_per_call",
        json!({ "cpu_us": cpu_us, "context_switches": switches }),
    );
    report.row(
        "6 mcp",
        "bridge cold start: spawn → initialize answered",
        k.show(),
        "",
        None,
        "report",
        None,
    );
    report.row(
        "6 mcp",
        "bridge RSS: after initialize / after calls",
        format!(
            "{} / {} (peak {})",
            rss_idle.show(),
            rss_after.show(),
            mib(hwm)
        ),
        "",
        None,
        "report",
        None,
    );
    report.stats("mcp_read_issue", &c);
    report.stats("mcp_cold_start", &k);
    report.figure(
        "mcp_rss_kib",
        json!({ "idle": rss_idle.json(), "after_calls": rss_after.json(), "hwm": hwm }),
    );
}

/// Phase 10, the MCP peer: `read_issue` over stdio against the same fake
/// Gitea, through `forge-sidecar mcp` → `forge-sidecar serve` (queue on
/// tmpfs, `FORGE_LOG=info`), and through the gitea-mcp server (Python,
/// FastMCP; its `get_issue` also lists the issue's comments, two GETs per
/// call) installed by `tests/gitea-mcp/install.sh`. The two sides alternate
/// call by call; RSS is read after 3,000 calls on each side.
fn peer(opts: &Opts, bins: &Bins, report: &mut Report) {
    section(
        "MCP vs peer: read_issue over stdio → fake Gitea; forge-sidecar mcp + serve vs gitea-mcp",
    );
    let peer_bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("gitea-mcp/venv/bin/gitea-mcp");
    if !peer_bin.exists() {
        println!(
            "({} missing: run tests/gitea-mcp/install.sh; peer figures skipped)",
            peer_bin.display()
        );
        return;
    }
    let gitea = FakeGitea::start();
    let token_dir = tempfile::tempdir_in(&opts.tmpfs).expect("tempdir");
    let token_file = token_dir.path().join("token");
    forge_e2e::sidecar::write_token(&token_file, gitea.token());
    let mut env = gitea_env(&gitea, &token_file);
    env.push(("FORGE_LOG".into(), "info".into()));
    let mut sidecar = Sidecar::start(&bins.sidecar, &opts.tmpfs, &[], &env);
    let bridge_log = sidecar.dir.path().join("mcp.log");
    let child = Command::new(&bins.sidecar)
        .arg("mcp")
        .arg("--socket")
        .arg(&sidecar.socket)
        .env_clear()
        .env("FORGE_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&bridge_log).expect("log"))
        .spawn()
        .expect("spawn forge-sidecar mcp");
    let mut bridge = ChildGuard::new(child, "forge-sidecar mcp");
    let peer_log = token_dir.path().join("gitea-mcp.log");
    let child = Command::new(&peer_bin)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", token_dir.path())
        .env("GITEA_URL", format!("http://{}", gitea.addr()))
        .env("GITEA_TOKEN", gitea.token())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&peer_log).expect("log"))
        .spawn()
        .expect("spawn gitea-mcp");
    let mut peer = ChildGuard::new(child, "gitea-mcp");
    let (bridge_pid, peer_pid, daemon_pid) = (bridge.pid(), peer.pid(), sidecar.pid());
    let total = if opts.seq_calls < 10_000 { 500 } else { 3_000 };
    let warm = total / 15;
    let block = 200;
    let dog = Watchdog::new(peer_pid, WAIT * 30, "gitea-mcp");
    let dog2 = Watchdog::new(bridge_pid, WAIT * 30, "forge-sidecar mcp");
    let ours_args = format!("{{\"number\":{ASSIGNED_ISSUE}}}");
    let peer_args =
        format!("{{\"owner\":\"{OWNER}\",\"repo\":\"{REPO}\",\"issue_number\":{ASSIGNED_ISSUE}}}");
    let result = (|| -> Result<(Samples, Samples), String> {
        let mut ours = McpSession::new(&mut bridge);
        let mut theirs = McpSession::new(&mut peer);
        ours.initialize()?;
        ours.notify_initialized()?;
        theirs.initialize()?;
        theirs.notify_initialized()?;
        // Check each answer once, in full.
        for (session, tool, args, what) in [
            (&mut ours, "read_issue", &ours_args, "forge-sidecar mcp"),
            (&mut theirs, "get_issue", &peer_args, "gitea-mcp"),
        ] {
            let line = session.call(1, tool, args)?;
            let v: Value = serde_json::from_str(&line).map_err(|e| format!("{what}: {e}"))?;
            if v["result"]["isError"] != json!(false) {
                return Err(format!("{what} {tool} answered {v}"));
            }
            // The issue, as structured content or as the JSON text of the first content item.
            let result = &v["result"];
            let issue = if result["structuredContent"].is_object() {
                result["structuredContent"].clone()
            } else {
                serde_json::from_str(result["content"][0]["text"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null)
            };
            if issue["number"] != json!(ASSIGNED_ISSUE) {
                return Err(format!(
                    "{what} {tool}: no issue #{ASSIGNED_ISSUE} in {line}"
                ));
            }
        }
        let (mut a, mut b) = (Samples::default(), Samples::default());
        for i in 0..total {
            let id = i as u64 + 2;
            let t = Instant::now();
            ours.call(id, "read_issue", &ours_args)?;
            let d = t.elapsed();
            let t = Instant::now();
            theirs.call(id, "get_issue", &peer_args)?;
            let e = t.elapsed();
            if i >= warm {
                a.push(d);
                b.push(e);
            }
            if i % block == 0 {
                gitea.clear_requests();
            }
        }
        Ok((a, b))
    })();
    let (ours, theirs) = result.unwrap_or_else(|e| {
        panic!(
            "{e}\nsidecar log:\n{}\nbridge log:\n{}\ngitea-mcp log:\n{}",
            sidecar.log(),
            tail(&fs::read_to_string(&bridge_log).unwrap_or_default()),
            tail(&fs::read_to_string(&peer_log).unwrap_or_default())
        )
    });
    let (rss_bridge, rss_daemon, rss_peer) =
        (Rss::of(bridge_pid), Rss::of(daemon_pid), Rss::of(peer_pid));
    drop((dog, dog2));
    for p in [&mut bridge, &mut peer] {
        drop(p.child().stdin.take());
        if p.wait_exit(WAIT).is_none() {
            p.kill();
        }
    }
    sidecar.stop();
    let (o, t) = (ours.stats(), theirs.stats());
    let ratio = o.p50 / t.p50;
    report.row(
        "10 peer",
        "MCP read_issue → fake Gitea: forge-sidecar mcp → serve",
        o.show(),
        format!("gitea-mcp get_issue p50 {}", us(t.p50)),
        Some(ratio),
        "p50 ≤ 0.15× the peer",
        Some(ratio <= 0.15),
    );
    report.row(
        "10 peer",
        "  gitea-mcp get_issue → the same fake Gitea (issue + comments: 2 GETs)",
        t.show(),
        "",
        None,
        "",
        None,
    );
    let calls = total + 1;
    report.row(
        "10 peer",
        format!("daemon RSS after {calls} calls (Gitea forge)"),
        rss_daemon.show(),
        "",
        None,
        "≤ 10 MiB",
        Some(rss_daemon.total as f64 <= 10.0 * 1024.0),
    );
    let pair = rss_bridge.total + rss_daemon.total;
    report.row(
        "10 peer",
        format!("bridge + daemon RSS after {calls} calls"),
        format!(
            "{} (bridge {}; PSS together {})",
            mib(pair),
            rss_bridge.show(),
            mib(rss_bridge.pss + rss_daemon.pss)
        ),
        format!("gitea-mcp {}", rss_peer.show()),
        Some(pair as f64 / rss_peer.total as f64),
        "≤ 12 MiB",
        Some(pair as f64 <= 12.0 * 1024.0),
    );
    report.stats("peer_ours_mcp_read_issue_gitea", &o);
    report.stats("peer_gitea_mcp_get_issue", &t);
    report.figure("peer_ratio_p50", ratio);
    report.figure(
        "peer_rss_kib",
        json!({ "bridge": rss_bridge.json(), "daemon": rss_daemon.json(), "gitea_mcp": rss_peer.json(), "calls": calls }),
    );
}

/// Plain JSON-RPC lines on a bridge's stdin/stdout (no MCP library).
struct McpSession<'a> {
    stdin: &'a mut std::process::ChildStdin,
    stdout: BufReader<&'a mut std::process::ChildStdout>,
    line: String,
}

impl<'a> McpSession<'a> {
    fn new(bridge: &'a mut ChildGuard) -> McpSession<'a> {
        let child = bridge.child();
        McpSession {
            stdin: child.stdin.as_mut().expect("stdin"),
            stdout: BufReader::new(child.stdout.as_mut().expect("stdout")),
            line: String::new(),
        }
    }

    fn send(&mut self, msg: &str) -> Result<(), String> {
        self.stdin
            .write_all(msg.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("write to the bridge: {e}"))
    }

    /// Read lines until the answer to `id`.
    fn answer(&mut self, id: u64) -> Result<String, String> {
        // Compact (serde, pydantic) or spaced (Python's json) separators.
        let ends = [
            format!("\"id\":{id},"),
            format!("\"id\":{id}}}"),
            format!("\"id\": {id},"),
            format!("\"id\": {id}}}"),
        ];
        loop {
            self.line.clear();
            let n = self
                .stdout
                .read_line(&mut self.line)
                .map_err(|e| format!("read from the bridge: {e}"))?;
            if n == 0 {
                return Err("the bridge closed stdout".into());
            }
            if ends.iter().any(|e| self.line.contains(e.as_str())) {
                return Ok(self.line.clone());
            }
        }
    }

    fn initialize(&mut self) -> Result<String, String> {
        self.send(concat!(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","#,
            r#""capabilities":{},"clientInfo":{"name":"sidecar-bench","version":"0"}}}"#,
            "\n"
        ))?;
        self.answer(0)
    }

    fn notify_initialized(&mut self) -> Result<(), String> {
        self.send("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
    }

    fn tool_call(&mut self, id: u64, tool: &str, number: u64) -> Result<String, String> {
        self.call(id, tool, &format!("{{\"number\":{number}}}"))
    }

    /// `tools/call` of `tool` with `arguments` (a JSON object); its answer line.
    fn call(&mut self, id: u64, tool: &str, arguments: &str) -> Result<String, String> {
        self.send(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"{tool}\",\"arguments\":{arguments}}}}}\n"
        ))?;
        self.answer(id)
    }
}

/// The last lines of a log, for panic messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
