//! A real `forge-sidecar serve` process on a temporary socket and queue
//! directory, for end-to-end tests: start, call, read the queue, stop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use forge_sidecar::client::SocketClient;
use serde_json::Value;
use tempfile::TempDir;

use crate::fake_gitea::FakeGitea;

/// How long a test's call may wait for the sidecar's answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A socket client for `s`.
pub fn client(s: &SidecarProcess) -> SocketClient {
    SocketClient::new(&s.socket, CALL_TIMEOUT)
}

/// Call `method` on `s`: its result, or its JSON-RPC error; panics if the
/// sidecar is unreachable.
pub async fn call(s: &SidecarProcess, method: &str, params: Value) -> Result<Value, Value> {
    client(s)
        .call(method, Some(params))
        .await
        .expect("sidecar reachable")
}

/// Call `method` and return its result; panics, naming the call, on a
/// JSON-RPC error or an unreachable sidecar.
pub async fn call_ok(c: &SocketClient, method: &str, params: Value) -> Value {
    match c
        .call(method, Some(params.clone()))
        .await
        .expect("sidecar reachable")
    {
        Ok(v) => v,
        Err(e) => panic!("{method} {params} failed: {e}"),
    }
}

/// Call `method` and return its JSON-RPC error; panics, naming the call,
/// if it succeeds or the sidecar is unreachable.
pub async fn call_err(c: &SocketClient, method: &str, params: Value) -> Value {
    match c
        .call(method, Some(params.clone()))
        .await
        .expect("sidecar reachable")
    {
        Ok(v) => panic!("{method} {params} succeeded unexpectedly: {v}"),
        Err(e) => e,
    }
}

/// How long a sidecar may take to start or stop.
pub const START_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Path of a shipped binary, built as the image builds it (each package on
/// its own, by `tests/build-shipped.sh`, which `tests/run.sh` runs) and
/// linked into `target/shipped/<profile>/`. The profile is the test's own,
/// or `FORGE_E2E_PROFILE` (`release`: the image's binaries under debug-built
/// tests). Panics, saying what to run, if the binary is missing or older
/// than a source file it is built from.
pub fn workspace_bin(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps/; binaries one level up.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let target = dir.parent().expect("target dir");
    let profile = match std::env::var("FORGE_E2E_PROFILE") {
        Ok(p) if !p.is_empty() => p,
        _ => dir
            .file_name()
            .expect("profile")
            .to_string_lossy()
            .into_owned(),
    };
    let bin = target.join("shipped").join(&profile).join(name);
    let build = if profile == "release" {
        "tests/build-shipped.sh --release"
    } else {
        "tests/build-shipped.sh"
    };
    let built = fs::metadata(&bin).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "{} is missing: run `{build}` first (tests/run.sh does)",
            bin.display()
        );
    };
    if let Some(newer) = newest_source(name).filter(|(t, _)| *t > built) {
        panic!(
            "{} is older than {}: run `{build}` first (tests/run.sh does)",
            bin.display(),
            newer.1.display()
        );
    }
    bin
}

/// The newest source file (`.rs` or `Cargo.toml`) of the crates binary
/// `name` is built from, with its modification time.
fn newest_source(name: &str) -> Option<(std::time::SystemTime, PathBuf)> {
    let crates: &[&str] = match name {
        "forge-sidecar" => &["sidecar", "protocol", "queue/core"],
        "forge-queue" => &["queue/host", "queue/core", "protocol"],
        other => panic!("{other} is not a binary the workspace ships"),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stack: Vec<PathBuf> = crates.iter().map(|c| root.join(c)).collect();
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let file_name = entry.file_name();
            if meta.is_dir() {
                // The fuzz crate and build output are not part of the binary.
                if file_name != "target" && file_name != "fuzz" {
                    stack.push(path);
                }
            } else if (path.extension().is_some_and(|e| e == "rs") || file_name == "Cargo.toml")
                && let Ok(t) = meta.modified()
                && newest.as_ref().is_none_or(|(n, _)| t > *n)
            {
                newest = Some((t, path));
            }
        }
    }
    newest
}

/// A running sidecar process and its directories.
pub struct SidecarProcess {
    child: Option<Child>,
    /// The temporary directory holding socket, queue and logs.
    pub dir: TempDir,
    /// The socket path.
    pub socket: PathBuf,
    /// The queue directory.
    pub queue: PathBuf,
    stderr: PathBuf,
}

/// The environment for a sidecar against `gitea`, assigned #17 with PR #18.
pub fn gitea_env(gitea: &FakeGitea, token_file: &Path) -> Vec<(String, String)> {
    [
        ("FORGE_GITEA_API", gitea.api_base()),
        ("FORGE_OWNER", crate::fake_gitea::OWNER.to_string()),
        ("FORGE_REPO", crate::fake_gitea::REPO.to_string()),
        (
            "FORGE_ISSUE_NUMBER",
            crate::fake_gitea::ASSIGNED_ISSUE.to_string(),
        ),
        (
            "FORGE_PR_NUMBER",
            crate::fake_gitea::ASSIGNED_PR.to_string(),
        ),
        ("FORGE_TOKEN_FILE", token_file.display().to_string()),
        ("FORGE_HTTP_TIMEOUT_SECS", "5".to_string()),
        ("FORGE_LOG", "debug".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl SidecarProcess {
    /// Start a sidecar against `gitea` (token in a file), with extra env.
    pub fn against(gitea: &FakeGitea, extra: &[(&str, &str)]) -> SidecarProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        fs::write(&token_file, gitea.token()).expect("write token");
        let mut env = gitea_env(gitea, &token_file);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        SidecarProcess::start_in(dir, &[], &env)
    }

    /// Start a sidecar on the in-memory forge.
    pub fn memory(extra_args: &[&str]) -> SidecarProcess {
        let mut args = vec!["--forge", "memory"];
        args.extend_from_slice(extra_args);
        SidecarProcess::start_in(tempfile::tempdir().expect("tempdir"), &args, &[])
    }

    /// Start `forge-sidecar serve ARGS` with `env` in `dir`; waits until
    /// `/health` answers (bounded).
    pub fn start_in(dir: TempDir, args: &[&str], env: &[(String, String)]) -> SidecarProcess {
        let queue = dir.path().join("queue");
        SidecarProcess::start_at(dir, queue, args, env)
    }

    /// Like [`SidecarProcess::start_in`], with the queue at `queue` (e.g. one
    /// shared by several runs).
    pub fn start_at(
        dir: TempDir,
        queue: PathBuf,
        args: &[&str],
        env: &[(String, String)],
    ) -> SidecarProcess {
        let socket = dir.path().join("run").join("forge.sock");
        SidecarProcess::start_on(dir, socket, queue, args, env)
    }

    /// The in-memory forge on `socket` and `queue` (e.g. a socket that
    /// another process was already told about).
    pub fn memory_on(socket: &Path, queue: &Path) -> SidecarProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        SidecarProcess::start_on(
            dir,
            socket.to_path_buf(),
            queue.to_path_buf(),
            &["--forge", "memory"],
            &[],
        )
    }

    /// Start with every path given; `dir` holds the log.
    pub fn start_on(
        dir: TempDir,
        socket: PathBuf,
        queue: PathBuf,
        args: &[&str],
        env: &[(String, String)],
    ) -> SidecarProcess {
        SidecarProcess::start_limited(dir, socket, queue, args, env, None)
    }

    /// Like [`SidecarProcess::start_on`]; with `nofile`, the process starts
    /// with that descriptor limit, soft and hard (`ulimit -n`).
    pub fn start_limited(
        dir: TempDir,
        socket: PathBuf,
        queue: PathBuf,
        args: &[&str],
        env: &[(String, String)],
        nofile: Option<u64>,
    ) -> SidecarProcess {
        let stderr = dir.path().join("sidecar.log");
        let bin = workspace_bin("forge-sidecar");
        let mut command = match nofile {
            None => Command::new(&bin),
            Some(limit) => {
                // exec keeps the pid, so signals still reach the sidecar.
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(&bin);
                sh
            }
        };
        let child = command
            .arg("serve")
            .args(args)
            .env_clear()
            .env("FORGE_SOCKET", &socket)
            .env("FORGE_QUEUE_DIR", &queue)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("log file"))
            .spawn()
            .expect("spawn forge-sidecar");
        let mut sidecar = SidecarProcess {
            child: Some(child),
            dir,
            socket,
            queue,
            stderr,
        };
        sidecar.wait_ready();
        sidecar
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_STOP_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!("forge-sidecar exited at start ({status}):\n{}", self.log());
            }
            if health_ok(&self.socket) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "forge-sidecar did not start in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the sidecar logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Send `signal` (e.g. "TERM", "KILL") and wait for the exit (bounded).
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + START_STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "forge-sidecar did not stop after SIG{signal}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM and wait; asserts a clean exit.
    pub fn stop(&mut self) {
        let status = self.signal_and_wait("TERM");
        assert!(
            status.success(),
            "forge-sidecar exited with {status}:\n{}",
            self.log()
        );
    }

    /// The events in `new/` and `cur/`, in order, as (file name, raw bytes, JSON).
    pub fn events(&self) -> Vec<(String, Vec<u8>, Value)> {
        queue_events(&self.queue)
    }

    /// Names of files in `tmp/`.
    pub fn tmp_files(&self) -> Vec<String> {
        list(&self.queue.join("tmp"))
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True when `GET /health` on `socket` answers 200: the sidecar has written
/// `session_start` and is accepting (a bare connect succeeds earlier, while
/// it is still starting).
fn health_ok(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(_) => vec![],
    };
    names.sort();
    names
}

/// The events of a queue directory (`new/` and `cur/` together), in order.
pub fn queue_events(queue: &Path) -> Vec<(String, Vec<u8>, Value)> {
    let mut all: Vec<(String, PathBuf)> = ["new", "cur"]
        .iter()
        .flat_map(|sub| {
            list(&queue.join(sub))
                .into_iter()
                .map(move |n| (n.clone(), queue.join(sub).join(n)))
        })
        .collect();
    all.sort();
    all.into_iter()
        .map(|(name, path)| {
            let bytes = fs::read(&path).expect("read event");
            let value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, bytes, value)
        })
        .collect()
}
