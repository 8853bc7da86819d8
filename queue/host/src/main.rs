//! `forge-queue`: the host's view of forge-sidecar queue directories.
//!
//! - `watch DIR...`: print every event in order and ack it (move it to
//!   `cur/`); report stale sidecars, signed checkpoints (`--key`) and the
//!   watchdog (`--watchdog`). Exit codes with `--until-done`: 0 all done
//!   with success, 1 a failure, 4 a directory without done (stale sidecar,
//!   or session ended without done), 5 the watchdog fired, 3 blocked; the
//!   most severe wins in that order. 2: usage or I/O error.
//! - `audit DIR...`: per-session summary (table, or `--json`). 0, or 2.
//! - `verify DIR...`: chain check (and signed checkpoints with `--key`).
//!   0 intact, 1 broken, 2 usage or I/O.
//! - `export DIR`: one JSON record per session. 0, or 2.
//! - `keygen NAME`: a signing key and its verifier key. 0, or 2.
//! - `completions SHELL`, `man [--out-dir DIR]`: shell completions and man
//!   pages from the command line definition. 0, or 2.
//! - `ship DIR... --nats URL`: publish every event to a
//!   JetStream stream, then ack it; `watch`, `audit` and `verify` take
//!   `--nats URL` instead of directories to read the stream.
//!
//! Output to a stdout whose reader went away (`| head -1`) ends quietly:
//! exit 0, but 2 for `watch`, whose exit code is its verdict.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use forge_protocol::DoneStatus;
use forge_protocol::event::EventBody;
use forge_queue::state::{HostState, WatchdogVerdict};
use forge_queue::{note, verify};
use forge_queue_host::trust::{DoneTrust, Verdict};
use forge_queue_host::watch::{Delivery, StopHandle, WatchError, WatchOptions, Watcher};
use forge_queue_host::{audit, render};

#[path = "cli/fleet.rs"]
mod fleet;

/// Exit code: usage or I/O error.
const EXIT_ERROR: u8 = 2;
/// Exit code of `watch --until-done` when a watchdog fired (and nothing
/// more severe happened).
const EXIT_WATCHDOG: u8 = 5;

/// With `watch --state`: what the host keeps of what it saw.
struct Kept {
    states: HashMap<PathBuf, HostState>,
    key: Option<note::VerifierKey>,
    /// Events of the newest checkpoint kept, per (dir, session).
    newest: HashMap<(PathBuf, String), u64>,
}

impl Kept {
    fn open<'a>(
        root: &Path,
        dirs: impl Iterator<Item = &'a Path>,
        key: Option<note::VerifierKey>,
    ) -> anyhow::Result<Kept> {
        let mut states = HashMap::new();
        for dir in dirs {
            let state = HostState::open(root, dir)
                .with_context(|| format!("state for {}", dir.display()))?;
            states.insert(dir.to_path_buf(), state);
        }
        Ok(Kept {
            states,
            key,
            newest: HashMap::new(),
        })
    }

    /// Keep a verified checkpoint that covers more than the one kept; record
    /// a watchdog verdict.
    fn observe(&mut self, d: &Delivery) -> io::Result<()> {
        let Some(state) = self.states.get(d.dir()) else {
            return Ok(());
        };
        match d {
            Delivery::Checkpoint(c) => {
                let key = (c.dir.clone(), c.checkpoint.session.clone());
                let kept = match self.newest.get(&key) {
                    Some(n) => *n,
                    // The first time: what an earlier run kept, if it still
                    // verifies (any other is replaced).
                    None => state
                        .checkpoints()
                        .map_err(io::Error::other)?
                        .get(&c.checkpoint.session)
                        .and_then(|note| {
                            let key = self.key.as_ref()?;
                            forge_queue::checkpoint::Checkpoint::open(note, key).ok()
                        })
                        .map_or(0, |k| k.events),
                };
                if c.checkpoint.events > kept {
                    state
                        .keep_checkpoint(&c.checkpoint.session, &c.note)
                        .map_err(io::Error::other)?;
                    self.newest.insert(key, c.checkpoint.events);
                } else {
                    self.newest.insert(key, kept);
                }
            }
            Delivery::Watchdog(w) => {
                let Some(session) = &w.session else {
                    return Ok(());
                };
                state
                    .record_watchdog(&WatchdogVerdict {
                        session: session.clone(),
                        fired_at: forge_queue::writer::rfc3339_ms(w.at),
                        last_event_ts: w.last_event_ts.clone(),
                        idle_ms: w.idle.as_millis() as u64,
                        limit_ms: w.limit.as_millis() as u64,
                    })
                    .map_err(io::Error::other)?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[derive(Parser)]
#[command(
    name = "forge-queue",
    version,
    about = "Consume, audit and verify forge-sidecar queue directories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every event of each DIR in order, then ack it (move new/ -> cur/).
    ///
    /// Delivery is at-least-once: a crash between printing and the move
    /// prints the event again next time; (session, seq) is the idempotency key.
    /// Stale sidecars (heartbeat older than 3 intervals, no session_end) and
    /// their recovery are reported as lines of kind "stale" / "recovered".
    Watch(WatchArgs),
    /// Summarize each session: calls, refused writes, writes with unknown
    /// outcome, done signal, how it ended, chain status.
    Audit(AuditArgs),
    /// Check every session's hash chain: exit 0 intact, 1 broken.
    Verify(VerifyArgs),
    /// Generate an Ed25519 key pair for signed checkpoints: NAME.skey (the
    /// sidecar's signing key, mode 0600) and NAME.vkey (the verifier key the
    /// host passes to --key); prints the verifier key.
    Keygen(KeygenArgs),
    /// Print one JSON document per session (one per line): repository,
    /// issue, writable set, times, done, calls, refused and unknown writes,
    /// watchdog verdict, every event, and what was verified.
    Export(ExportArgs),
    /// Publish every event of each DIR in order to a NATS JetStream stream,
    /// then ack it (move new/ -> cur/) once the server has acked it.
    ///
    /// Message id <session>-<seq> (a republish after a crash is dropped by
    /// the stream's duplicate window); subject
    /// <prefix>.<owner>.<repo>.<issue>.<session>.<kind>; body = the file's
    /// bytes. Stale/recovered notices are published too. While the server
    /// is unreachable events wait in new/ and publishing is retried.
    Ship(fleet::ShipArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, ...).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one per subcommand into --out-dir.
    Man {
        /// Write forge-queue.1 and forge-queue-SUBCOMMAND.1 here instead.
        #[arg(long = "out-dir", value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ExportArgs {
    /// The queue directory.
    #[arg(required_unless_present = "schema")]
    dir: Option<PathBuf>,
    /// Print the records' JSON Schema (draft 2020-12) instead, and exit.
    #[arg(long, conflicts_with_all = ["dir", "session", "key", "state"])]
    schema: bool,
    /// Only this session.
    #[arg(long)]
    session: Option<String>,
    /// Verify the signed checkpoints with this verifier key (or a file
    /// holding it).
    #[arg(long, value_name = "VKEY")]
    key: Option<String>,
    /// The host's state directory (see watch --state).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

#[derive(Args)]
struct KeygenArgs {
    /// The key's name (no spaces, no '+'), e.g. forge-sidecar.example.
    name: String,
    /// Directory to write the two files to.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

#[derive(Args)]
struct WatchArgs {
    /// Queue directories.
    #[arg(required_unless_present = "url")]
    dirs: Vec<PathBuf>,
    /// One JSON object per line: the event plus "dir".
    #[arg(long)]
    json: bool,
    /// Leave files in new/ (inspect without consuming).
    #[arg(long)]
    no_ack: bool,
    /// Exit once every DIR has delivered its first done event (or has
    /// none coming: stale sidecar, session ended without done, watchdog).
    /// Exit 0 all success, 1 any failure, 4 any without done, 5 any
    /// watchdog, 3 any blocked (the first that applies).
    #[arg(long)]
    until_done: bool,
    /// Verifier key (name+hash+key, or a file holding it): read the signed
    /// checkpoints, print each that covers more events, and with
    /// --until-done act only on a done a checkpoint signed by this key
    /// covers; any other done is reported as unverified.
    #[arg(long, value_name = "VKEY")]
    key: Option<String>,
    /// The run this watch is for (the FORGE_RUN_ID the sidecar was
    /// started with): with --key, a done is acted on only if its checkpoint
    /// is signed for this run; one of a session copied from another run's
    /// queue is reported as unverified.
    #[arg(long, value_name = "RUN", requires = "key")]
    run: Option<String>,
    /// The host's own state directory (never the queue): keeps the newest
    /// verified checkpoint of each session (with --key) and the watchdog's
    /// verdicts, for verify --state and audit --state.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Report a directory whose latest session is alive but has written no
    /// event for this long (e.g. 30m, 90s): "watchdog fired: done without
    /// self-report". Heartbeats do not reset it. With --until-done it
    /// settles the directory (exit 5).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    watchdog: Option<Duration>,
    /// Safety-net rescan interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    rescan_ms: u64,
    /// Do not use inotify; find new events by rescanning only.
    #[arg(long)]
    poll_only: bool,
    /// Consume a JetStream stream (`--nats URL --durable NAME`) instead of
    /// directories; --until-done then settles per session.
    #[command(flatten)]
    nats: fleet::WatchNatsArgs,
}

#[derive(Args)]
struct AuditArgs {
    /// Queue directories.
    #[arg(required_unless_present = "url")]
    dirs: Vec<PathBuf>,
    /// A JSON array with one object per DIR.
    #[arg(long)]
    json: bool,
    /// The host's state directory (see watch --state): shows the watchdog's
    /// verdicts, which make a run incomplete.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Audit a JetStream stream (`--nats URL [--session S]`) instead.
    #[command(flatten)]
    nats: fleet::ReadNatsArgs,
}

#[derive(Args)]
struct VerifyArgs {
    /// Queue directories.
    #[arg(required_unless_present = "url")]
    dirs: Vec<PathBuf>,
    /// A JSON array with one object per DIR.
    #[arg(long)]
    json: bool,
    /// Also check the signed checkpoints against this verifier key (the
    /// key itself, name+hash+key, or a file holding it).
    #[arg(long, value_name = "VKEY")]
    key: Option<String>,
    /// The host's state directory (see watch --state): checkpoints kept
    /// there must not be newer than the queue's.
    #[arg(long, value_name = "DIR", requires = "key")]
    state: Option<PathBuf>,
    /// The run the queue is for (the FORGE_RUN_ID the sidecar was started
    /// with): every session must be signed for it; one of another run (a
    /// session copied from another run's queue) is reported and fails.
    #[arg(long, value_name = "RUN", requires = "key")]
    run: Option<String>,
    /// Verify a JetStream stream (`--nats URL [--session S]`) instead.
    #[command(flatten)]
    nats: fleet::ReadNatsArgs,
}

/// `500ms`, `90s`, `30m`, `2h`; a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{s}' is not a duration such as 30m, 90s or 500ms"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("'{s}': the unit must be ms, s, m or h")),
    };
    if d.is_zero() {
        return Err("must be greater than 0".into());
    }
    Ok(d)
}

/// A verifier key given as the key string or as a file holding it.
fn load_verifier(arg: &str) -> anyhow::Result<note::VerifierKey> {
    if let Ok(key) = note::VerifierKey::parse(arg) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(arg).with_context(|| {
        format!("--key {arg}: neither a verifier key (name+hash+key) nor a readable file")
    })?;
    note::VerifierKey::parse(&text).with_context(|| format!("--key {arg}"))
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors itself.
    let cli = Cli::parse();
    // watch's exit code is its verdict: a consumer that went away is not a
    // success there (it stays 2, silently); elsewhere it is the end of the output.
    let gone_code = match cli.command {
        Command::Watch(_) => EXIT_ERROR,
        _ => 0,
    };
    let result = match cli.command {
        Command::Watch(args) => watch(args),
        Command::Audit(args) => audit_cmd(args),
        Command::Verify(args) => verify_cmd(args),
        Command::Keygen(args) => keygen(args),
        Command::Export(args) => export_cmd(args),
        Command::Ship(args) => fleet::ship(args),
        Command::Completions { shell } => completions(shell),
        Command::Man { out_dir } => man(out_dir.as_deref()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away (`| head -1`): stop quietly.
        Err(e) if reader_gone(&e) => ExitCode::from(gone_code),
        Err(e) => {
            eprintln!("forge-queue: {}", error_chain(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Whether `e` is a write to a stdout whose reader has gone.
fn reader_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let kind = match cause.downcast_ref::<io::Error>() {
            Some(io) => Some(io.kind()),
            // serde_json writes through its own error type.
            None => cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind),
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

/// A watch error with the handler's own I/O error kept as the cause (so a
/// reader gone away is recognised, see [`reader_gone`]).
fn handler_cause(e: WatchError<io::Error>) -> anyhow::Error {
    match e {
        WatchError::Handler(io) => anyhow::Error::from(io).context("handler failed"),
        other => other.into(),
    }
}

/// `completions SHELL`: the script on stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    use clap::CommandFactory as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "forge-queue", &mut script);
    io::stdout().lock().write_all(&script)?;
    Ok(0)
}

/// `man`: the page on stdout, or every page into `out_dir`.
fn man(out_dir: Option<&Path>) -> anyhow::Result<u8> {
    use clap::CommandFactory as _;
    match out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            io::stdout().lock().write_all(&page)?;
        }
        Some(dir) => {
            clap_mangen::generate_to(Cli::command(), dir).with_context(|| {
                format!(
                    "write the man pages into {} (create the folder first)",
                    dir.display()
                )
            })?;
            writeln!(
                io::stdout().lock(),
                "wrote forge-queue.1 and a page per subcommand into {}",
                dir.display()
            )?;
        }
    }
    Ok(0)
}

/// The error and its causes on one line, skipping a cause that the message
/// before it already quotes (the queue errors include their OS error).
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    if args.nats.nats.url.is_some() {
        let dir_only =
            args.no_ack || args.poll_only || args.state.is_some() || args.watchdog.is_some();
        if !args.dirs.is_empty() || dir_only {
            anyhow::bail!(
                "with --nats, give no directories, --no-ack, --poll-only, --state or --watchdog"
            );
        }
        let key = args.key.as_deref().map(load_verifier).transpose()?;
        return fleet::watch(
            &args.nats,
            args.until_done,
            args.json,
            key,
            args.run.clone(),
        );
    }
    let key = args.key.as_deref().map(load_verifier).transpose()?;
    let options = WatchOptions {
        ack: !args.no_ack,
        rescan_interval: Duration::from_millis(args.rescan_ms),
        notify: !args.poll_only,
        checkpoint_key: key.clone(),
        watchdog: args.watchdog,
        ..WatchOptions::default()
    };
    let mut watcher = Watcher::new(&args.dirs, options)?;
    let mut kept = match &args.state {
        Some(root) => Some(Kept::open(root, watcher.dirs(), key.clone())?),
        None => None,
    };
    if !args.poll_only {
        for dir in watcher.unwatched() {
            eprintln!(
                "forge-queue: cannot use inotify on {}; rescanning every {} ms",
                dir.display(),
                args.rescan_ms
            );
        }
    }
    let mut until = args.until_done.then(|| {
        UntilDone::new(
            watcher.dirs(),
            watcher.stop_handle(),
            key.is_some().then(|| DoneTrust::for_run(args.run.clone())),
        )
    });
    let mut stdout = io::stdout().lock();
    let mut newest_printed: HashMap<(PathBuf, String), u64> = HashMap::new();
    let mut deliver = |d: &Delivery| -> io::Result<()> {
        let print = match d {
            // Not an event: a warning for the operator, not output.
            Delivery::Invalid(_) => {
                eprintln!("forge-queue: {}", render::human_line(d));
                false
            }
            // A checkpoint is re-signed every heartbeat: print the ones
            // that cover more.
            Delivery::Checkpoint(c) => {
                let key = (c.dir.clone(), c.checkpoint.session.clone());
                let newer = newest_printed
                    .get(&key)
                    .is_none_or(|n| c.checkpoint.events > *n);
                if newer {
                    newest_printed.insert(key, c.checkpoint.events);
                }
                newer
            }
            _ => true,
        };
        if print {
            let line = if args.json {
                render::json_line(d)
            } else {
                render::human_line(d)
            };
            writeln!(stdout, "{line}")?;
            // Flushed before the watcher acks: printed, then moved.
            stdout.flush()?;
        }
        if let Some(kept) = &mut kept {
            kept.observe(d)?;
        }
        if let Some(until) = &mut until {
            for verdict in until.observe(d) {
                if let Some(line) = render::verdict_line(&verdict, args.json) {
                    writeln!(stdout, "{line}")?;
                    stdout.flush()?;
                }
            }
        }
        Ok(())
    };
    watcher
        .run(&mut deliver)
        .map_err(handler_cause)
        .context("watch")?;
    if args.until_done {
        // Settled: still deliver what is already complete in new/ (the
        // done call's own op, a refused second done, session_end).
        watcher
            .finish(&mut deliver)
            .map_err(handler_cause)
            .context("watch")?;
    }
    Ok(until.map_or(0, |u| u.exit_code()))
}

/// Suggest that the sidecar may not sign when `dir` still has no signed
/// checkpoint [`CHECKPOINT_HINT_HEARTBEATS`] heartbeats from now (a
/// sidecar that signs writes one at every heartbeat with new events).
fn hint_if_no_checkpoint(awaiting: &Arc<Mutex<HashSet<PathBuf>>>, dir: &Path, heartbeat_secs: u64) {
    let dir = dir.to_path_buf();
    awaiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(dir.clone());
    let awaiting = Arc::clone(awaiting);
    let wait = Duration::from_secs(heartbeat_secs * CHECKPOINT_HINT_HEARTBEATS);
    std::thread::spawn(move || {
        std::thread::sleep(wait);
        if awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&dir)
        {
            eprintln!(
                "forge-queue: {}: still no checkpoint signed by the key after {} s ({CHECKPOINT_HINT_HEARTBEATS} heartbeats): does the sidecar have FORGE_SIGNING_KEY_FILE, and is --key its verifier key?",
                dir.display(),
                wait.as_secs()
            );
        }
    });
}

/// How a directory finished, for `--until-done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Done(DoneStatus),
    /// Stale sidecar (provisional: a recovery reopens it).
    Stale,
    /// Session ended without done.
    Abandoned,
    /// Alive, but no event for the watchdog's limit.
    Watchdog,
}

/// `--until-done` bookkeeping: stops the watcher once every directory is
/// settled.
struct UntilDone {
    settled: HashMap<PathBuf, Option<Settled>>,
    stop: StopHandle,
    /// With a key: a done settles only once a signed checkpoint covers it.
    trust: Option<DoneTrust>,
    /// Directories whose done waits for their first signed checkpoint.
    awaiting: Arc<Mutex<HashSet<PathBuf>>>,
    /// Heartbeat interval per directory, from its latest `session_start`.
    heartbeats: HashMap<PathBuf, u64>,
}

/// Heartbeats a done may wait for its first signed checkpoint before the
/// watcher suggests the sidecar may not be signing at all.
const CHECKPOINT_HINT_HEARTBEATS: u64 = 3;

impl UntilDone {
    fn new<'a>(
        dirs: impl Iterator<Item = &'a Path>,
        stop: StopHandle,
        trust: Option<DoneTrust>,
    ) -> UntilDone {
        UntilDone {
            settled: dirs.map(|d| (d.to_path_buf(), None)).collect(),
            stop,
            trust,
            awaiting: Arc::default(),
            heartbeats: HashMap::new(),
        }
    }

    /// Follow a delivery; returns the verdicts on dones (with a key).
    fn observe(&mut self, d: &Delivery) -> Vec<Verdict> {
        let mut verdicts = match &mut self.trust {
            Some(trust) => trust.observe(d),
            None => Vec::new(),
        };
        let Some(slot) = self.settled.get_mut(d.dir()) else {
            return verdicts;
        };
        let open = matches!(slot, None | Some(Settled::Stale));
        let before = *slot;
        if let Delivery::Event(e) = d
            && let EventBody::SessionStart(start) = &e.event.body
        {
            self.heartbeats
                .insert(d.dir().to_path_buf(), start.limits.heartbeat_secs.max(1));
        }
        if let Some(trust) = &self.trust
            && trust.checkpoints_seen(d.dir()) > 0
        {
            self.awaiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(d.dir());
        }
        if let (Some(trust), Delivery::Event(e)) = (&self.trust, d)
            && matches!(e.event.body, EventBody::Done(_))
            && open
            && trust.checkpoints_seen(d.dir()) == 0
        {
            eprintln!(
                "forge-queue: {}: done at seq {} waits for a checkpoint signed by the key",
                d.dir().display(),
                e.event.seq
            );
            let heartbeat = self
                .heartbeats
                .get(d.dir())
                .copied()
                .unwrap_or(forge_queue_host::watch::DEFAULT_HEARTBEAT_SECS);
            hint_if_no_checkpoint(&self.awaiting, d.dir(), heartbeat);
        }
        match d {
            Delivery::Event(e) => match &e.event.body {
                EventBody::Done(done) if open && self.trust.is_none() => {
                    *slot = Some(Settled::Done(done.status))
                }
                // Only if nothing newer is waiting: a later session in the
                // backlog may still signal done.
                EventBody::SessionEnd(end) if open && !end.done && e.backlog == 0 => {
                    *slot = Some(Settled::Abandoned)
                }
                _ => {}
            },
            Delivery::Stale(_) if slot.is_none() => *slot = Some(Settled::Stale),
            Delivery::Recovered(_) if *slot == Some(Settled::Stale) => *slot = None,
            Delivery::Watchdog(_) if slot.is_none() => *slot = Some(Settled::Watchdog),
            _ => {}
        }
        for v in &verdicts {
            if let Verdict::Trusted { dir, status, .. } = v
                && let Some(slot) = self.settled.get_mut(dir)
                && matches!(slot, None | Some(Settled::Stale))
            {
                *slot = Some(Settled::Done(*status));
            }
        }
        // Settled another way: a done still waiting is not acted on.
        let slot = self.settled.get(d.dir()).copied().flatten();
        if before != slot
            && matches!(slot, Some(Settled::Abandoned | Settled::Watchdog))
            && let Some(trust) = &mut self.trust
        {
            verdicts.extend(trust.abandon(d.dir()));
        }
        if self.settled.values().all(Option::is_some) {
            self.stop.stop();
        }
        verdicts
    }

    /// 1 failure > 4 no done (stale/abandoned) > 5 watchdog > 3 blocked >
    /// 0 success.
    fn exit_code(&self) -> u8 {
        let any = |f: fn(&Settled) -> bool| self.settled.values().flatten().any(f);
        for (dir, s) in &self.settled {
            match s {
                Some(Settled::Done(DoneStatus::Success)) => {}
                Some(s) => eprintln!("forge-queue: {}: {}", dir.display(), describe(*s)),
                None => eprintln!("forge-queue: {}: not settled", dir.display()),
            }
            if let Some(pending) = self.trust.as_ref().map(|t| t.pending(dir)) {
                for (session, seq) in pending {
                    eprintln!(
                        "forge-queue: {}: done at seq {seq} of session {session} not acted on: no checkpoint signed by the key covered it",
                        dir.display()
                    );
                }
            }
        }
        if any(|s| *s == Settled::Done(DoneStatus::Failure)) {
            1
        } else if any(|s| matches!(s, Settled::Stale | Settled::Abandoned)) {
            4
        } else if any(|s| *s == Settled::Watchdog) {
            EXIT_WATCHDOG
        } else if any(|s| *s == Settled::Done(DoneStatus::Blocked)) {
            3
        } else {
            0
        }
    }
}

fn describe(s: Settled) -> &'static str {
    match s {
        Settled::Done(status) => status.as_str(),
        Settled::Stale => "no done: sidecar stale",
        Settled::Abandoned => "no done: session ended without done (abandoned)",
        Settled::Watchdog => "watchdog fired: done without self-report",
    }
}

fn audit_cmd(args: AuditArgs) -> anyhow::Result<u8> {
    if args.nats.nats.url.is_some() {
        if !args.dirs.is_empty() || args.state.is_some() {
            anyhow::bail!("with --nats, give no directories or --state");
        }
        return fleet::audit(&args.nats, args.json);
    }
    let now = chrono::Utc::now();
    let audits = args
        .dirs
        .iter()
        .map(|d| {
            let mut a = audit::audit_dir(d, now)?;
            if let Some(root) = &args.state {
                audit::apply_state(&mut a, &HostState::open(root, d)?)?;
            }
            Ok(a)
        })
        .collect::<Result<Vec<_>, forge_queue::QueueError>>()
        .context("audit")?;
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &audits)?;
        writeln!(out)?;
    } else {
        for (i, a) in audits.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            write!(out, "{a}")?;
        }
    }
    Ok(0)
}

fn verify_cmd(args: VerifyArgs) -> anyhow::Result<u8> {
    if args.nats.nats.url.is_some() {
        if !args.dirs.is_empty() || args.state.is_some() {
            anyhow::bail!(
                "with --nats, give no directories or --state (the stream keeps every checkpoint shipped)"
            );
        }
        let key = args.key.as_deref().map(load_verifier).transpose()?;
        return fleet::verify(&args.nats, args.json, key.as_ref(), args.run.as_deref());
    }
    let key = args.key.as_deref().map(load_verifier).transpose()?;
    let reports = args
        .dirs
        .iter()
        .map(|d| verify_one(d, key.as_ref(), args.state.as_deref(), args.run.as_deref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
    } else {
        for r in &reports {
            writeln!(out, "{r}")?;
        }
    }
    Ok(if reports.iter().all(|r| r.is_intact()) {
        0
    } else {
        1
    })
}

fn export_cmd(args: ExportArgs) -> anyhow::Result<u8> {
    let Some(dir) = args.dir else {
        let schema = forge_queue_host::export::schema();
        println!("{}", serde_json::to_string_pretty(&schema)?);
        return Ok(0);
    };
    let key = args.key.as_deref().map(load_verifier).transpose()?;
    let context = || format!("export {}", dir.display());
    let state = args
        .state
        .as_deref()
        .map(|root| HostState::open(root, &dir))
        .transpose()
        .with_context(context)?;
    let records = forge_queue_host::export::export_dir(
        &dir,
        chrono::Utc::now(),
        args.session.as_deref(),
        key.as_ref(),
        state.as_ref(),
    )
    .with_context(context)?;
    if let Some(session) = &args.session
        && records.is_empty()
    {
        anyhow::bail!("{}: no session {session}", dir.display());
    }
    let mut out = io::stdout().lock();
    for record in &records {
        serde_json::to_writer(&mut out, record)?;
        writeln!(out)?;
    }
    Ok(0)
}

fn keygen(args: KeygenArgs) -> anyhow::Result<u8> {
    use std::os::unix::fs::OpenOptionsExt;
    if args.name.contains('/') || args.name.starts_with('.') {
        anyhow::bail!(
            "key name {:?} must not contain '/' or start with '.': it names the key files",
            args.name
        );
    }
    if !args.dir.is_dir() {
        anyhow::bail!(
            "the folder {} does not exist (or is not a folder); create it first (mkdir -p), then run keygen again",
            args.dir.display()
        );
    }
    let key = note::SigningKey::generate(&args.name)?;
    let verifier = key.verifier().to_string();
    let write = |path: &Path, mode: u32, text: &str| -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| {
                format!(
                    "create {} (an existing key is never replaced)",
                    path.display()
                )
            })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("write {}", path.display()))
    };
    let skey = args.dir.join(format!("{}.skey", args.name));
    let vkey = args.dir.join(format!("{}.vkey", args.name));
    write(&skey, 0o600, &format!("{}\n", key.expose_encoded()))?;
    write(&vkey, 0o644, &format!("{verifier}\n"))?;
    eprintln!(
        "forge-queue: wrote {} (signing key: give it to the sidecar as FORGE_SIGNING_KEY_FILE) and {} (verifier key: --key)",
        skey.display(),
        vkey.display()
    );
    writeln!(io::stdout().lock(), "{verifier}")?;
    Ok(0)
}

fn verify_one(
    dir: &Path,
    key: Option<&note::VerifierKey>,
    state: Option<&Path>,
    run: Option<&str>,
) -> anyhow::Result<verify::DirVerification> {
    let context = || format!("verify {}", dir.display());
    let Some(key) = key else {
        return verify::verify_dir(dir).with_context(context);
    };
    let state = state
        .map(|s| forge_queue::state::HostState::open(s, dir))
        .transpose()
        .with_context(context)?;
    verify::verify_dir_signed_for_run(dir, key, state.as_ref(), run).with_context(context)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use forge_queue_host::watch::{EventDelivery, LivenessNotice};

    fn notice(dir: &Path) -> LivenessNotice {
        LivenessNotice {
            dir: dir.to_path_buf(),
            at: chrono::Utc::now(),
            session: None,
            heartbeat: None,
            age: Duration::from_secs(20),
            threshold: Duration::from_secs(15),
        }
    }

    fn done(dir: &Path, status: DoneStatus) -> Delivery {
        Delivery::Event(EventDelivery {
            dir: dir.to_path_buf(),
            file_name: "x".into(),
            event: forge_protocol::event::Event {
                v: 1,
                session: "20261125T120000.000Z-0a1b2c".into(),
                seq: 1,
                ts: "2026-11-25T12:00:00.000Z".into(),
                prev: None,
                body: EventBody::Done(forge_protocol::event::Done {
                    status,
                    summary: "s".into(),
                    warnings: vec![],
                }),
            },
            backlog: 0,
            sha256: String::new(),
        })
    }

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "0s", "m", "3d", "-1s", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_watchdog_is_its_own_exit_code_below_no_done() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let watcher = Watcher::new([a.path(), b.path()], WatchOptions::default()).unwrap();
        let mut until = UntilDone::new(watcher.dirs(), watcher.stop_handle(), None);
        let watchdog = |dir: &Path| {
            Delivery::Watchdog(forge_queue_host::watch::WatchdogNotice {
                dir: dir.to_path_buf(),
                at: chrono::Utc::now(),
                session: None,
                last_event_ts: None,
                idle: Duration::from_secs(3),
                limit: Duration::from_secs(2),
            })
        };
        until.observe(&watchdog(a.path()));
        until.observe(&done(b.path(), DoneStatus::Blocked));
        assert_eq!(until.exit_code(), EXIT_WATCHDOG);
        until.observe(&Delivery::Stale(notice(b.path())));
        assert_eq!(until.exit_code(), EXIT_WATCHDOG, "a done is final");
    }

    #[test]
    fn a_recovered_directory_is_waited_for_again_and_failure_wins() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let watcher = Watcher::new([a.path(), b.path()], WatchOptions::default()).unwrap();
        let mut until = UntilDone::new(watcher.dirs(), watcher.stop_handle(), None);
        until.observe(&Delivery::Stale(notice(a.path())));
        assert_eq!(until.settled[a.path()], Some(Settled::Stale));
        until.observe(&Delivery::Recovered(notice(a.path())));
        assert_eq!(until.settled[a.path()], None, "recovered: wait again");
        until.observe(&done(a.path(), DoneStatus::Blocked));
        until.observe(&Delivery::Stale(notice(a.path())));
        assert_eq!(
            until.settled[a.path()],
            Some(Settled::Done(DoneStatus::Blocked)),
            "a done is final"
        );
        assert_eq!(until.exit_code(), 3, "b unsettled: only blocked so far");
        until.observe(&done(b.path(), DoneStatus::Failure));
        assert_eq!(until.exit_code(), 1);
    }
}
