//! The `forge-sidecar` binary: parses the command line and runs a subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use forge_sidecar::client::SocketClient;
use forge_sidecar::config::{Config, ConfigArgs, ForgeConfig, Secret, TokenSource};
use forge_sidecar::forge::Forge;
use forge_sidecar::forge::gitea::GiteaForge;
use forge_sidecar::forge::memory::MemoryForge;
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
    /// Serve the JSON-RPC API on the Unix socket until SIGTERM/SIGINT.
    #[command(after_help = forge_sidecar::config::ENV_HELP)]
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Validate the configuration and the forge (token, repository, issue); exit 0 if usable.
    #[command(after_help = forge_sidecar::config::ENV_HELP)]
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
    let cli = Cli::parse();
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
        Command::Serve { config } => {
            let Some(config) = validated(&config, &tokens) else {
                return ExitCode::from(2);
            };
            runtime.block_on(serve(config))
        }
        Command::Check { config } => {
            let Some(config) = validated(&config, &tokens) else {
                return ExitCode::from(2);
            };
            runtime.block_on(check(config))
        }
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
            if let Err(e) = init_tracing() {
                eprintln!("forge-sidecar: {e}");
                return ExitCode::from(2);
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

fn init_tracing() -> Result<(), String> {
    let filter = std::env::var("FORGE_LOG").unwrap_or_else(|_| "info".into());
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

async fn serve(config: Config) -> ExitCode {
    if let Err(e) = init_tracing() {
        eprintln!("forge-sidecar: {e}");
        return ExitCode::from(2);
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
    let forge = forge_for(&config);
    let server = match Server::start(config, forge).await {
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

async fn health(socket: &std::path::Path, timeout: Duration) -> ExitCode {
    match SocketClient::new(socket, timeout).get("/health").await {
        Ok((200, _)) => {
            println!("ok: forge-sidecar is serving on {}", socket.display());
            ExitCode::SUCCESS
        }
        Ok((status, _)) => {
            println!(
                "failed: forge-sidecar on {} answered HTTP {status}",
                socket.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            println!("failed: {e}");
            ExitCode::from(1)
        }
    }
}

async fn check(config: Config) -> ExitCode {
    let forge = forge_for(&config);
    let issue = config.issue;
    let verdict = tokio::task::spawn_blocking(move || forge.preflight(issue)).await;
    let writable: Vec<String> = config.writable().iter().map(ToString::to_string).collect();
    match verdict {
        Ok(Ok(user)) => {
            let signing = match &config.signing_key {
                Some(key) => format!("; checkpoints signed by {}", key.verifier().label()),
                None => String::new(),
            };
            println!(
                "ok: forge {} reachable as '{user}', {}/{} and issue {} readable; writable: {}{signing}",
                config.forge_label(),
                config.owner,
                config.repo,
                config.issue,
                writable.join(", ")
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("failed: {}", e.message());
            ExitCode::from(1)
        }
        Err(e) => {
            println!("failed: the check could not run ({e})");
            ExitCode::from(1)
        }
    }
}

async fn call(
    socket: &std::path::Path,
    method: &str,
    params: Option<&str>,
    timeout: Duration,
) -> ExitCode {
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
            println!("{}", pretty(&result));
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            println!("{}", pretty(&serde_json::json!({ "error": error })));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("forge-sidecar call: {e}");
            ExitCode::from(2)
        }
    }
}
