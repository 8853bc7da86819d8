//! The `forge-sidecar` binary: parses the command line and runs a subcommand.
//!
//! Exit codes of `serve`: 0 stopped by SIGTERM/SIGINT; 1 could not start or
//! stopped with an error; 2 a configuration error (every one printed, one
//! line each); 3 the forge refused the configuration at the start-up probe
//! (token, repository or issue), with `check`'s sentence. `check` exits 0
//! usable, 1 not usable, 2 configuration error. What prints to stdout stops
//! quietly when the reader goes away (`| head -1`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use forge_sidecar::client::SocketClient;
use forge_sidecar::config::{Config, ConfigArgs, ForgeConfig, Secret, TokenSource};
use forge_sidecar::forge::gitea::GiteaForge;
use forge_sidecar::forge::memory::MemoryForge;
use forge_sidecar::forge::{Forge, ForgeError};
use forge_sidecar::forge_health::ForgeState;
use forge_sidecar::server::Server;

/// Scoped, audited forge access for a sandboxed coding agent.
#[derive(Parser)]
#[command(name = "forge-sidecar", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the JSON-RPC API on the Unix socket until SIGTERM/SIGINT, after
    /// probing the forge as `check` does.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Start without asking the forge first (for hosts that must start
        /// offline); a refused token then shows on the first call.
        #[arg(long = "no-probe", env = "FORGE_NO_PROBE")]
        no_probe: bool,
    },
    /// Validate the configuration and the forge (token, repository, issue); exit 0 if usable.
    #[command(after_help = CHECK_HELP)]
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Exit 0 when a sidecar is serving on the socket (for health checks and scripts).
    Health {
        /// Socket path.
        #[arg(long, env = "FORGE_SOCKET", default_value = "/run/forge/forge.sock")]
        socket: PathBuf,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
    /// Call a method on a running sidecar and print the result or error as JSON.
    Call {
        /// Method name, e.g. read_issue.
        method: String,
        /// Params as JSON: an object ({"number": 17}) or an array ([17]).
        params: Option<String>,
        /// Socket path.
        #[arg(long, env = "FORGE_SOCKET", default_value = "/run/forge/forge.sock")]
        socket: PathBuf,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Serve MCP over stdio for the agent, forwarding each tool call to the sidecar socket.
    Mcp {
        /// Socket path of the running sidecar.
        #[arg(long, env = "FORGE_SOCKET", default_value = "/run/forge/forge.sock")]
        socket: PathBuf,
        /// Seconds one tool call may wait for the sidecar's answer.
        #[arg(long, default_value_t = forge_sidecar::mcp::DEFAULT_CALL_TIMEOUT.as_secs())]
        timeout_secs: u64,
    },
    /// Print the API as an OpenRPC document (what `rpc.discover` answers).
    Openrpc,
    /// Print the shell completion script for SHELL (bash, zsh, fish, ...).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one per subcommand into --out-dir.
    Man {
        /// Write forge-sidecar.1 and forge-sidecar-SUBCOMMAND.1 here instead.
        #[arg(long = "out-dir", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Exit code: a configuration error.
const EXIT_CONFIG: u8 = 2;
/// Exit code of `serve`: the forge refused the configuration at start.
const EXIT_REFUSED: u8 = 3;
/// The longest the start-up probe waits for the forge.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings `check` accepts (so one environment serves both) but does not
/// use: they are about serving, and its help leaves them out.
const SERVE_ONLY: [&str; 6] = [
    "socket",
    "socket_mode",
    "queue_dir",
    "max_request_bytes",
    "heartbeat_secs",
    "run_id",
];

/// What `serve --help` says before the environment (`ENV_HELP`).
const SERVE_HELP: &str = "\
Before it accepts calls, serve asks the forge as `check` does. A refused token,
a missing repository or issue, or a server that is not a Gitea API: exit 3 with
check's sentence. No answer (down, DNS, TLS): one WARN line, and serve starts
anyway; /health reports the forge's last known state.

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 could not start or stopped with an
error, 2 configuration error, 3 the forge refused the configuration.";

const CHECK_HELP: &str = concat!(
    "Exit codes: 0 usable, 1 not usable (the sentence says why and what to fix), 2 configuration\n",
    "error. The serving settings (FORGE_SOCKET, FORGE_QUEUE_DIR, ...) are accepted and ignored,\n",
    "so check runs in the same environment as serve.\n\n",
    "Also read from the environment (no flag):\n",
    "  FORGE_TOKEN  the forge token, when FORGE_TOKEN_FILE is not set\n\n",
    "Every flag above can also be given by the environment variable shown beside\n",
    "it; a flag wins over its variable."
);

/// The command line definition, with `check`'s serving settings hidden.
fn cli_command() -> clap::Command {
    Cli::command()
        .mut_subcommand("serve", |serve| {
            serve.after_help(format!(
                "{SERVE_HELP}\n\n{}",
                forge_sidecar::config::ENV_HELP
            ))
        })
        .mut_subcommand("check", |check| {
            SERVE_ONLY
                .iter()
                .fold(check, |c, id| c.mut_arg(*id, |a| a.hide(true)))
        })
}

/// Write `text` and a newline to stdout. A reader that went away (`| head`)
/// ends the output quietly; another failure is said on stderr.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("forge-sidecar: cannot write to stdout: {e}");
    }
}

fn main() -> ExitCode {
    // Take the token out of the environment before any thread starts, so it
    // is not inherited by anything this process spawns.
    let env_token = std::env::var("FORGE_TOKEN").ok().map(Secret::new);
    if env_token.is_some() {
        // SAFETY: single-threaded here: no runtime or other thread exists yet.
        #[allow(unsafe_code)]
        unsafe {
            std::env::remove_var("FORGE_TOKEN")
        };
    }
    let tokens = TokenSource { env_token };
    let cli = match Cli::from_arg_matches(&cli_command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if matches!(cli.command, Command::Serve { .. }) {
        forge_sidecar::fds::bound_heap();
    }
    // One async thread: requests are small and every blocking step (forge
    // HTTP, audit fsync) runs on its own thread, so a second scheduler
    // thread would only add cross-CPU wake-ups (see BENCHMARKS.md).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("forge-sidecar: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Serve { config, no_probe } => {
            let token_from = token_origin(&config);
            let Some(config) = validated(&config, &tokens) else {
                return ExitCode::from(EXIT_CONFIG);
            };
            runtime.block_on(serve(config, (!no_probe).then_some(token_from)))
        }
        Command::Check { config } => {
            let token_from = token_origin(&config);
            let Some(config) = validated(&config, &tokens) else {
                return ExitCode::from(EXIT_CONFIG);
            };
            runtime.block_on(check(config, &token_from))
        }
        Command::Openrpc => {
            let doc = forge_protocol::openrpc::document(env!("CARGO_PKG_VERSION"));
            say(&serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string()));
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli_command(), "forge-sidecar", &mut script);
            say(String::from_utf8_lossy(&script).trim_end());
            ExitCode::SUCCESS
        }
        Command::Man { out_dir } => man(out_dir.as_deref()),
        Command::Health {
            socket,
            timeout_secs,
        } => runtime.block_on(health(&socket, Duration::from_secs(timeout_secs))),
        Command::Call {
            method,
            params,
            socket,
            timeout_secs,
        } => runtime.block_on(call(
            &socket,
            &method,
            params.as_deref(),
            Duration::from_secs(timeout_secs),
        )),
        Command::Mcp {
            socket,
            timeout_secs,
        } => {
            // The client shows every stderr line as an error: by default only
            // the bridge's own warnings, and nothing of rmcp's below error
            // (its warnings are about the client's own mistakes, which the
            // client is answered with).
            if let Err(e) = init_tracing("warn,rmcp=error") {
                eprintln!("forge-sidecar: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            let timeout = Duration::from_secs(timeout_secs);
            match runtime.block_on(forge_sidecar::mcp::run(socket, timeout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The validated configuration, or `None` after printing every problem
/// (one line each, naming the variable and the flag).
fn validated(args: &ConfigArgs, tokens: &TokenSource) -> Option<Config> {
    match args.validate(tokens) {
        Ok(config) => Some(config),
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("forge-sidecar: {e}");
            }
            None
        }
    }
}

/// Log to stderr with FORGE_LOG's filter, or `default` without one; the
/// HTTP client's wire-level targets stay off whatever it says.
fn init_tracing(default: &str) -> Result<(), String> {
    let filter = std::env::var("FORGE_LOG").unwrap_or_else(|_| default.into());
    forge_sidecar::logging::init(&filter)
}

fn forge_for(config: &Config) -> Arc<dyn Forge> {
    match &config.forge {
        ForgeConfig::Gitea { api_base, token } => Arc::new(GiteaForge::new(
            api_base,
            &config.owner,
            &config.repo,
            token,
            config.http_timeout,
        )),
        ForgeConfig::Memory => Arc::new(MemoryForge::seeded(&config.owner, &config.repo)),
    }
}

/// Where the token came from, for a verdict that it was refused.
fn token_origin(args: &ConfigArgs) -> String {
    match &args.token_file {
        Some(path) => format!("the token was read from {}", path.display()),
        None => "the token came from FORGE_TOKEN".into(),
    }
}

/// The operator's sentence for a failed probe; a refused token names where
/// the token came from.
fn verdict(e: &ForgeError, token_from: &str) -> String {
    match e {
        ForgeError::Rejected {
            status: 401 | 403, ..
        } => format!("{} ({token_from})", e.message()),
        e => e.message().to_string(),
    }
}

/// Ask the forge as `check` does, once, waiting at most [`PROBE_TIMEOUT`].
async fn probe(config: &Config) -> Result<String, ForgeError> {
    let forge: Arc<dyn Forge> = match &config.forge {
        ForgeConfig::Gitea { api_base, token } => Arc::new(
            GiteaForge::new(
                api_base,
                &config.owner,
                &config.repo,
                token,
                config.http_timeout.min(PROBE_TIMEOUT),
            )
            .without_retries(),
        ),
        ForgeConfig::Memory => forge_for(config),
    };
    let issue = config.issue;
    tokio::task::spawn_blocking(move || forge.preflight(issue))
        .await
        .unwrap_or_else(|e| {
            Err(ForgeError::Unavailable(format!(
                "the probe could not run ({e})"
            )))
        })
}

/// Serve; with `probe_token_from` (where the token came from), probe the
/// forge first.
async fn serve(config: Config, probe_token_from: Option<String>) -> ExitCode {
    if let Err(e) = init_tracing("info") {
        eprintln!("forge-sidecar: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    supervise_panics();
    // Install the handlers before the socket exists: a stop signal during
    // start-up then means a graceful stop, not the default (abrupt) exit.
    let stop = match stop_signal() {
        Ok(stop) => stop,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let known = match probe_token_from {
        None => ForgeState::Unknown,
        Some(token_from) => match probe(&config).await {
            Ok(user) => {
                tracing::info!(forge = %config.forge_label(), user = %user, "the forge accepts the token");
                ForgeState::Reachable
            }
            Err(ForgeError::Unavailable(why)) => {
                tracing::warn!(
                    "the forge did not answer at start: {why}; serving anyway (calls that need \
                     the forge fail until it answers; /health shows its last known state)"
                );
                ForgeState::Unreachable(why)
            }
            Err(e) => {
                tracing::error!(
                    "the forge refused the configuration: {}; nothing was served (exit {EXIT_REFUSED}; \
                     `forge-sidecar check` runs the same probe)",
                    verdict(&e, &token_from)
                );
                return ExitCode::from(EXIT_REFUSED);
            }
        },
    };
    let forge = forge_for(&config);
    let server = match Server::start_knowing(config, forge, known).await {
        Ok(server) => server,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            return ExitCode::from(1);
        }
    };
    match server.run(stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("stopped with an error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// No thread dies in silence: a panic anywhere is logged (thread, place,
/// message) and ends the process with exit code 70, but in the audit
/// writer, whose end the server notices and answers with a graceful stop
/// and an error exit of its own.
fn supervise_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed").to_string();
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(thread = %name, %place, %message, "a thread panicked");
        if name != "audit-writer" {
            default(info);
            tracing::error!("exiting: a sidecar thread panicked; restart the sidecar");
            std::process::exit(70);
        }
    }));
}

/// Installs SIGTERM and SIGINT handlers; the future resolves on either,
/// with the signal's name.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = String>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM".to_string(),
            _ = int.recv() => "SIGINT".to_string(),
        }
    })
}

async fn health(socket: &Path, timeout: Duration) -> ExitCode {
    match SocketClient::new(socket, timeout).get("/health").await {
        Ok((200, body)) => {
            // The second line of the answer: the forge's last known state.
            let body = String::from_utf8_lossy(&body);
            let forge = body
                .lines()
                .nth(1)
                .map(|l| format!("; {l}"))
                .unwrap_or_default();
            say(&format!(
                "ok: forge-sidecar is serving on {}{forge}",
                socket.display()
            ));
            ExitCode::SUCCESS
        }
        Ok((status, _)) => {
            say(&format!(
                "failed: forge-sidecar on {} answered HTTP {status}",
                socket.display()
            ));
            ExitCode::from(1)
        }
        Err(e) => {
            say(&format!("failed: {e}"));
            ExitCode::from(1)
        }
    }
}

async fn check(config: Config, token_from: &str) -> ExitCode {
    let forge = forge_for(&config);
    let issue = config.issue;
    let outcome = tokio::task::spawn_blocking(move || forge.preflight(issue)).await;
    let writable: Vec<String> = config.writable().iter().map(ToString::to_string).collect();
    match outcome {
        Ok(Ok(user)) => {
            let signing = match &config.signing_key {
                Some(key) => format!("; checkpoints signed by {}", key.verifier().label()),
                None => String::new(),
            };
            say(&format!(
                "ok: forge {} reachable as '{user}', {}/{} and issue {} readable; writable: {}{signing}",
                config.forge_label(),
                config.owner,
                config.repo,
                config.issue,
                writable.join(", ")
            ));
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            say(&format!("failed: {}", verdict(&e, token_from)));
            ExitCode::from(1)
        }
        Err(e) => {
            say(&format!("failed: the check could not run ({e})"));
            ExitCode::from(1)
        }
    }
}

async fn call(socket: &Path, method: &str, params: Option<&str>, timeout: Duration) -> ExitCode {
    let params = match params
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "forge-sidecar call: PARAMS_JSON is not valid JSON ({e}); e.g. '{{\"number\": 17}}'"
            );
            return ExitCode::from(2);
        }
    };
    let client = SocketClient::new(socket, timeout);
    let pretty =
        |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    match client.call(method, params).await {
        Ok(Ok(result)) => {
            say(&pretty(&result));
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            say(&pretty(&serde_json::json!({ "error": error })));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("forge-sidecar call: {e}");
            ExitCode::from(2)
        }
    }
}

/// `man`: the page on stdout, or every page into `out_dir`.
fn man(out_dir: Option<&Path>) -> ExitCode {
    let Some(dir) = out_dir else {
        let mut page = Vec::new();
        if let Err(e) = clap_mangen::Man::new(cli_command()).render(&mut page) {
            eprintln!("forge-sidecar man: cannot render the page: {e}");
            return ExitCode::from(1);
        }
        say(String::from_utf8_lossy(&page).trim_end());
        return ExitCode::SUCCESS;
    };
    match clap_mangen::generate_to(cli_command(), dir) {
        Ok(()) => {
            say(&format!(
                "wrote forge-sidecar.1 and a page per subcommand into {}",
                dir.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "forge-sidecar man: cannot write the pages into {} ({e}); create the folder first",
                dir.display()
            );
            ExitCode::from(1)
        }
    }
}
