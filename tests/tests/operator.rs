//! An operator's first hour: `serve` probes the forge before it serves (a
//! refused configuration exits 3 with `check`'s sentence, an unreachable
//! forge is one WARN line and `/health` says so), `check --help` lists only
//! what `check` uses, `rpc.discover` and `forge-sidecar openrpc` describe
//! the API (validated against the OpenRPC meta-schema), shell completions
//! and man pages come from the command line definition, every printing
//! subcommand of both binaries stops quietly when its reader goes away, and
//! the demo names the pull request it opens.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use forge_e2e::fake_gitea::FakeGitea;
use forge_e2e::sidecar::{SidecarProcess, gitea_env, workspace_bin};
use forge_protocol::Method;
use serde_json::{Value, json};

/// Bound on every wait here.
const WAIT: Duration = Duration::from_secs(30);

/// Wait for `child` to exit (bounded): its status and how long it took.
fn wait_exit(child: &mut Child, what: &str) -> (ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return (status, started.elapsed());
        }
        if started.elapsed() > WAIT {
            let _ = child.kill();
            panic!("{what} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `forge-sidecar serve` with `env` (and nothing else of ours): exit status,
/// stderr, and the socket path it was given.
fn serve_until_exit(dir: &Path, env: &[(String, String)]) -> (ExitStatus, String, PathBuf) {
    let socket = dir.join("run").join("forge.sock");
    let log = dir.join("serve.log");
    let started = Instant::now();
    let mut child = Command::new(workspace_bin("forge-sidecar"))
        .arg("serve")
        .env_clear()
        .env("FORGE_SOCKET", &socket)
        .env("FORGE_QUEUE_DIR", dir.join("queue"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn serve");
    let (status, _) = wait_exit(&mut child, "serve with a refused configuration");
    eprintln!("serve exited after {:?}", started.elapsed());
    (status, fs::read_to_string(&log).expect("log"), socket)
}

/// The environment for `gitea` with the token file at `token_file`,
/// changed by `changes`, at the default log level.
fn env_with(
    gitea: &FakeGitea,
    token_file: &Path,
    changes: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = gitea_env(gitea, token_file)
        .into_iter()
        .filter(|(k, _)| k != "FORGE_LOG" && !changes.iter().any(|(c, _)| c == k))
        .collect();
    env.extend(changes.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[test]
fn serve_with_a_wrong_token_exits_3_naming_the_token_file() {
    let gitea = FakeGitea::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("forge-token");
    forge_e2e::sidecar::write_token(&token_file, "not-the-token");
    let (status, log, socket) = serve_until_exit(dir.path(), &env_with(&gitea, &token_file, &[]));
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(
        log.contains("the forge refused the configuration")
            && log.contains("did not accept the token")
            && log.contains(&format!("the token was read from {}", token_file.display())),
        "{log}"
    );
    assert!(
        !log.contains("not-the-token"),
        "the token is never logged: {log}"
    );
    assert!(!socket.exists(), "nothing was served");
    assert!(!dir.path().join("queue").exists(), "no queue was opened");
    // `check` says the same sentence.
    let out = Command::new(workspace_bin("forge-sidecar"))
        .arg("check")
        .env_clear()
        .envs(env_with(&gitea, &token_file, &[]))
        .output()
        .expect("check");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("did not accept the token")
            && said.contains(&format!("the token was read from {}", token_file.display())),
        "{said}"
    );
}

#[test]
fn serve_with_a_missing_repository_or_issue_exits_3() {
    let gitea = FakeGitea::start();
    for (change, expected) in [
        (
            ("FORGE_REPO", "no-such-repo"),
            "check FORGE_OWNER (--owner) and FORGE_REPO (--repo)",
        ),
        (("FORGE_ISSUE_NUMBER", "9999"), "issue #9999 does not exist"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        forge_e2e::sidecar::write_token(&token_file, gitea.token());
        let env = env_with(&gitea, &token_file, &[change]);
        let (status, log, _) = serve_until_exit(dir.path(), &env);
        assert_eq!(status.code(), Some(3), "{change:?}: {log}");
        assert!(log.contains(expected), "{change:?}: {log}");
    }
}

#[test]
fn serve_with_an_unreachable_forge_warns_once_and_serves() {
    let gitea = FakeGitea::start();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let api = format!("http://{}/api/v1", closed.local_addr().expect("addr"));
    drop(closed);
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    forge_e2e::sidecar::write_token(&token_file, gitea.token());
    let env = env_with(&gitea, &token_file, &[("FORGE_GITEA_API", &api)]);
    let mut s = SidecarProcess::start_in(dir, &[], &env);
    let health = Command::new(workspace_bin("forge-sidecar"))
        .args(["health", "--socket"])
        .arg(&s.socket)
        .output()
        .expect("health");
    let said = String::from_utf8_lossy(&health.stdout);
    assert!(health.status.success(), "{said}");
    assert!(
        said.starts_with("ok: forge-sidecar is serving on")
            && said.contains("forge: unreachable ("),
        "{said}"
    );
    s.stop();
    let log = s.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains("the forge did not answer at start")
            && warnings[0].contains("serving anyway"),
        "{log}"
    );
}

#[test]
fn no_probe_starts_offline_and_health_says_the_forge_is_not_contacted() {
    let gitea = FakeGitea::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    forge_e2e::sidecar::write_token(&token_file, "not-the-token");
    let env = env_with(&gitea, &token_file, &[]);
    let mut s = SidecarProcess::start_in(dir, &["--no-probe"], &env);
    let health = Command::new(workspace_bin("forge-sidecar"))
        .args(["health", "--socket"])
        .arg(&s.socket)
        .output()
        .expect("health");
    let said = String::from_utf8_lossy(&health.stdout);
    assert!(said.contains("forge: not contacted yet"), "{said}");
    assert!(gitea.requests().is_empty(), "no probe was sent");
    s.stop();
}

#[test]
fn a_healthy_forge_is_reported_reachable() {
    let gitea = FakeGitea::start();
    let mut s = SidecarProcess::against(&gitea, &[]);
    let health = Command::new(workspace_bin("forge-sidecar"))
        .args(["health", "--socket"])
        .arg(&s.socket)
        .output()
        .expect("health");
    let said = String::from_utf8_lossy(&health.stdout);
    assert!(said.contains("; forge: reachable; learned "), "{said}");
    s.stop();
}

/// The long option names a `--help` text lists.
fn options_of(help: &str) -> Vec<String> {
    help.split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches([',', '.']).to_string())
        .collect()
}

#[test]
fn check_help_lists_only_its_own_options() {
    let help = |sub: &str| {
        let out = Command::new(workspace_bin("forge-sidecar"))
            .args([sub, "--help"])
            .output()
            .expect("help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let check = options_of(&help("check"));
    let serve = options_of(&help("serve"));
    for serving in [
        "--socket",
        "--socket-mode",
        "--queue-dir",
        "--heartbeat-secs",
        "--max-request-bytes",
        "--run-id",
        "--no-probe",
    ] {
        assert!(!check.iter().any(|o| o == serving), "check lists {serving}");
        assert!(serve.iter().any(|o| o == serving), "serve lacks {serving}");
    }
    assert!(check.iter().any(|o| o == "--token-file"), "{check:?}");
    // Per run, not per session: the help says what the budget is shared by.
    let serve_help = help("serve");
    assert!(!serve_help.contains("per session"), "{serve_help}");
    assert!(
        serve_help.contains("Forge writes allowed per run"),
        "{serve_help}"
    );
    assert!(
        serve_help.contains("Pull requests open_pr may open per run"),
        "{serve_help}"
    );
}

#[test]
fn check_exits_2_on_a_configuration_error() {
    let out = Command::new(workspace_bin("forge-sidecar"))
        .args(["check", "--forge", "memory", "--max-writes", "lots"])
        .env_clear()
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(2));
}

/// The path of the OpenRPC meta-schema check (tests/mcp-ts/openrpc.mjs).
fn openrpc_check() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-ts");
    assert!(
        dir.join("node_modules/@open-rpc/meta-schema/package.json")
            .exists(),
        "the OpenRPC meta-schema is not installed: run tests/mcp-ts/install.sh (tests/run.sh does)"
    );
    dir.join("openrpc.mjs")
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_discover_describes_every_method_and_fits_the_openrpc_meta_schema() {
    let s = SidecarProcess::memory(&[]);
    let discovered = forge_e2e::sidecar::call(&s, "rpc.discover", json!([]))
        .await
        .expect("rpc.discover answers");
    let names: Vec<&str> = discovered["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    let all: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(names, all);
    assert_eq!(discovered["openrpc"], "1.3.2");
    // The same document from the command line.
    let out = Command::new(workspace_bin("forge-sidecar"))
        .arg("openrpc")
        .output()
        .expect("openrpc");
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed, discovered);
    // A wrong call of it is refused like any other.
    let refused = forge_e2e::sidecar::call(&s, "rpc.discover", json!({"x": 1}))
        .await
        .expect_err("params refused");
    assert_eq!(refused["code"], -32602, "{refused}");
    // Checked against the meta-schema by an independent validator.
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = dir.path().join("openrpc.json");
    fs::write(&doc, &out.stdout).expect("write");
    let node = Command::new("node")
        .arg(openrpc_check())
        .arg(&doc)
        .output()
        .expect("run node (Node.js is needed for the tests)");
    assert!(
        node.status.success(),
        "{}{}",
        String::from_utf8_lossy(&node.stdout),
        String::from_utf8_lossy(&node.stderr)
    );
    // And the check can fail: a method without its result does not fit.
    let mut broken = printed.clone();
    broken["methods"][0]
        .as_object_mut()
        .expect("method")
        .remove("result");
    fs::write(&doc, broken.to_string()).expect("write");
    let node = Command::new("node")
        .arg(openrpc_check())
        .arg(&doc)
        .output()
        .expect("node");
    assert!(!node.status.success(), "a broken document passed");
}

/// Run `bin ARGS` with stdout a pipe whose reader is already gone: the
/// exit status and stderr. Every write to stdout then fails with EPIPE.
fn with_reader_gone(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(bin)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let (status, _) = wait_exit(&mut child, &format!("{} {args:?}", bin.display()));
    let mut err = String::new();
    stderr.read_to_string(&mut err).expect("read stderr");
    (status, err)
}

/// Run `bin ARGS | head -1` in a shell: the status of `bin` and its stderr.
fn into_head(bin: &Path, args: &[&str]) -> (i32, String) {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    // The plain pipeline as an operator types it.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' {} | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}",
            bin.display(),
            quoted.join(" ")
        ))
        .stderr(Stdio::piped())
        .output()
        .expect("bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_printing_subcommand_stops_quietly_when_its_reader_goes() {
    let sidecar_bin = workspace_bin("forge-sidecar");
    let queue_bin = workspace_bin("forge-queue");
    let mut s = SidecarProcess::memory(&[]);
    // A queue with a whole session, and keys, for forge-queue.
    forge_e2e::sidecar::call(
        &s,
        "signal_done",
        json!({"status": "success", "summary": "ok"}),
    )
    .await
    .expect("done");
    let socket = s.socket.display().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    fs::create_dir(&keys).expect("keys dir");
    let keys = keys.display().to_string();
    let queue = s.queue.display().to_string();
    let man_dir = dir.path().join("man");
    fs::create_dir(&man_dir).expect("man dir");
    let man_dir = man_dir.display().to_string();
    let sidecar_runs: Vec<(Vec<&str>, i32)> = vec![
        (vec!["--help"], 0),
        (vec!["--version"], 0),
        (vec!["check", "--forge", "memory"], 0),
        (vec!["health", "--socket", &socket], 0),
        (vec!["call", "--socket", &socket, "scope"], 0),
        (vec!["call", "--socket", &socket, "read_issue", "[17]"], 0),
        (
            vec!["call", "--socket", &socket, "read_issue", "[99999]"],
            1,
        ),
        (vec!["openrpc"], 0),
        (vec!["completions", "bash"], 0),
        (vec!["completions", "zsh"], 0),
        (vec!["completions", "fish"], 0),
        (vec!["man"], 0),
        (vec!["man", "--out-dir", &man_dir], 0),
    ];
    for (args, code) in &sidecar_runs {
        let (status, err) = with_reader_gone(&sidecar_bin, args, &[]);
        assert!(!err.contains("panicked"), "forge-sidecar {args:?}: {err}");
        assert_eq!(err, "", "forge-sidecar {args:?} said something");
        assert_eq!(status.code(), Some(*code), "forge-sidecar {args:?}: {err}");
        let (code_in_shell, err) = into_head(&sidecar_bin, args);
        assert!(
            !err.contains("panicked"),
            "forge-sidecar {args:?} | head -1: {err}"
        );
        assert_eq!(
            code_in_shell, *code,
            "forge-sidecar {args:?} | head -1: {err}"
        );
    }
    s.stop();
    // watch's exit code is its verdict: a consumer gone is no success (2).
    let queue_runs: Vec<(Vec<&str>, i32)> = vec![
        (vec!["--help"], 0),
        (vec!["--version"], 0),
        (vec!["audit", &queue], 0),
        (vec!["audit", "--json", &queue], 0),
        (vec!["verify", &queue], 0),
        (vec!["export", &queue], 0),
        (vec!["watch", "--no-ack", "--until-done", &queue], 2),
        (vec!["completions", "bash"], 0),
        (vec!["completions", "zsh"], 0),
        (vec!["completions", "fish"], 0),
        (vec!["man"], 0),
        (vec!["man", "--out-dir", &man_dir], 0),
    ];
    for (args, code) in &queue_runs {
        let (status, err) = with_reader_gone(&queue_bin, args, &[]);
        assert!(!err.contains("panicked"), "forge-queue {args:?}: {err}");
        assert_eq!(err, "", "forge-queue {args:?} said something");
        assert_eq!(status.code(), Some(*code), "forge-queue {args:?}: {err}");
        let (in_shell, err) = into_head(&queue_bin, args);
        assert!(
            !err.contains("panicked"),
            "forge-queue {args:?} | head -1: {err}"
        );
        assert_eq!(err, "", "forge-queue {args:?} | head -1 said something");
        // Under `head -1` the first line may fit before head exits.
        assert!(
            in_shell == 0 || in_shell == *code,
            "forge-queue {args:?} | head -1: {in_shell}"
        );
    }
    // keygen prints the verifier key (and says on stderr what it wrote).
    let (status, err) = with_reader_gone(&queue_bin, &["keygen", "host", "--dir", &keys], &[]);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    for (bin, subcommands) in [
        (
            "forge-sidecar",
            &["serve", "check", "health", "call", "mcp", "openrpc"][..],
        ),
        (
            "forge-queue",
            &["watch", "audit", "verify", "keygen", "export", "ship"][..],
        ),
    ] {
        let run = |args: &[&str]| {
            let out = Command::new(workspace_bin(bin))
                .args(args)
                .output()
                .expect("run");
            assert!(out.status.success(), "{bin} {args:?}");
            String::from_utf8(out.stdout).expect("UTF-8")
        };
        for shell in ["bash", "zsh", "fish"] {
            let script = run(&["completions", shell]);
            for sub in subcommands {
                assert!(script.contains(sub), "{bin} {shell} completion lacks {sub}");
            }
        }
        let page = run(&["man"]);
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        assert!(page.contains(&bin.replace('-', "\\-")), "{page}");
        let dir = tempfile::tempdir().expect("tempdir");
        run(&["man", "--out-dir", dir.path().to_str().expect("path")]);
        for sub in subcommands {
            let page = dir.path().join(format!("{bin}-{sub}.1"));
            assert!(page.exists(), "{} missing", page.display());
        }
        assert!(dir.path().join(format!("{bin}.1")).exists());
    }
}

#[test]
fn the_demo_names_the_pull_request_it_opens() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = workspace_bin("forge-sidecar")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let out = Command::new("bash")
        .arg(root.join("sidecar/demo.sh"))
        .env("FORGE_DEMO_BIN", &bin_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run the demo");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The number open_pr answered with, and the one the done summary names.
    let opened = said
        .split("$ forge-sidecar call open_pr")
        .nth(2)
        .and_then(|after| after.split("\"number\": ").nth(1))
        .and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next())
        .expect("the demo's open_pr result");
    assert!(
        said.contains(&format!("Export fixed in PR #{opened}")),
        "the summary does not name #{opened}:\n{said}"
    );
}
