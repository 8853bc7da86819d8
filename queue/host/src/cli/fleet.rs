//! The fleet side of the `forge-queue` binary:
//! `ship`, and `watch` / `audit` / `verify` with `--nats`. Flags and output
//! only; the work is in [`forge_queue_host::nats`].

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use forge_queue::note::VerifierKey;
use forge_queue_host::nats::consume::{ConsumeOptions, SessionsSettled, StreamWatcher};
use forge_queue_host::nats::ship::{ShipOptions, Shipper};
use forge_queue_host::nats::{Connection, StreamSpec, read, subject};
use forge_queue_host::render;
use forge_queue_host::trust::Verdict;
use forge_queue_host::watch::{Delivery, WatchOptions, Watcher};

/// Where the stream is: shared by every subcommand that talks to NATS.
#[derive(Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated (nats://host:4222, tls://...).
    #[arg(long = "nats", value_name = "URL")]
    pub url: Option<String>,
    /// JetStream stream name.
    #[arg(long, default_value = "FORGE", value_name = "NAME")]
    pub stream: String,
    /// Subjects are <PREFIX>.<owner>.<repo>.<issue>.<session>.<kind>.
    #[arg(long, default_value = "forge", value_name = "PREFIX")]
    pub subject_prefix: String,
    /// NATS credentials file (.creds: JWT and nkey seed).
    #[arg(long, value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// PEM file of CA certificates to trust (turns TLS on).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

impl NatsArgs {
    fn connection(&self, url: &str, name: &str) -> anyhow::Result<Connection> {
        subject::check_prefix(&self.subject_prefix).map_err(anyhow::Error::msg)?;
        Ok(Connection {
            url: url.to_string(),
            creds: self.creds.clone(),
            tls_ca: self.tls_ca.clone(),
            name: name.to_string(),
        })
    }

    fn require_url(&self, what: &str) -> anyhow::Result<&str> {
        match &self.url {
            Some(url) => Ok(url),
            None => bail!("{what} needs --nats URL"),
        }
    }
}

/// `watch --nats`: the durable consumer's options.
#[derive(Args, Debug, Clone)]
pub struct WatchNatsArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Durable consumer name (with --nats): where this consumer resumes.
    #[arg(long, value_name = "NAME", requires = "url")]
    pub durable: Option<String>,
    /// Only subjects matching this (with --nats), e.g. forge.acme.*.17.>
    #[arg(long, value_name = "SUBJECT", requires = "url")]
    pub filter: Option<String>,
    /// Messages fetched at a time and left unacked at most (with --nats).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// Seconds before JetStream redelivers an unacked message (with --nats).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub ack_wait_secs: u64,
}

/// `audit` / `verify` of a stream.
#[derive(Args, Debug, Clone)]
pub struct ReadNatsArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Only this session (with --nats).
    #[arg(long, value_name = "SESSION", requires = "url")]
    pub session: Option<String>,
}

/// Stream retention when `ship` creates the stream.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Retention {
    /// Keep messages until the stream's limits (the default).
    Limits,
    /// Keep a message until every consumer acked it.
    Interest,
    /// Remove a message once one consumer acked it.
    Workqueue,
}

/// `forge-queue ship`.
#[derive(Args, Debug)]
pub struct ShipArgs {
    /// Queue directories.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Retention of the stream if it has to be created.
    #[arg(long, value_enum, default_value = "limits")]
    pub retention: Retention,
    /// Replicas of the stream if it has to be created (cluster size, <= 5).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Duplicate window (seconds) of the stream if it has to be created:
    /// a message id seen within it is dropped.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub duplicate_window_secs: u64,
    /// This machine's name in the Forge-Host header (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Seconds to wait for the server's ack before publishing again.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub ack_timeout_secs: u64,
    /// Messages published and not yet acked by the server, at most: acks
    /// are taken in order, and a file moves to cur/ after its own.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_in_flight: u32,
    /// Ship what the directories hold now, then exit.
    #[arg(long)]
    pub once: bool,
    /// Safety-net rescan interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rescan_ms: u64,
}

/// `forge-queue ship`: exit 0 (with `--once`, after shipping everything),
/// 2 on error.
pub fn ship(args: ShipArgs) -> anyhow::Result<u8> {
    let url = args.nats.require_url("ship")?;
    let host = args.host.clone().unwrap_or_else(host_name);
    let options = ShipOptions {
        conn: args
            .nats
            .connection(url, &format!("forge-queue ship on {host}"))?,
        stream: StreamSpec {
            name: args.nats.stream.clone(),
            prefix: args.nats.subject_prefix.clone(),
            retention: match args.retention {
                Retention::Limits => async_nats::jetstream::stream::RetentionPolicy::Limits,
                Retention::Interest => async_nats::jetstream::stream::RetentionPolicy::Interest,
                Retention::Workqueue => async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            },
            replicas: usize::from(args.replicas),
            duplicate_window: Duration::from_secs(args.duplicate_window_secs),
        },
        host,
        ack_timeout: Duration::from_secs(args.ack_timeout_secs),
        max_in_flight: args.max_in_flight as usize,
    };
    let mut shipper = Shipper::connect(options, |warning| eprintln!("forge-queue: {warning}"))
        .with_context(|| format!("ship to {url}"))?;
    let watch = Shipper::watch_options(WatchOptions {
        rescan_interval: Duration::from_millis(args.rescan_ms),
        notify: !args.once,
        ..WatchOptions::default()
    });
    let mut watcher = Watcher::new(&args.dirs, watch)?;
    let handler = |d: &Delivery| {
        if let Delivery::Invalid(_) = d {
            eprintln!("forge-queue: {}", render::human_line(d));
        }
        shipper.ship(d)
    };
    if args.once {
        watcher.poll(handler).context("ship")?;
        drop(watcher);
        let s = shipper.finish().context("ship")?;
        eprintln!(
            "forge-queue: shipped {} events ({} already in the stream), {} checkpoints and {} liveness notices",
            s.events, s.duplicates, s.checkpoints, s.notices
        );
    } else {
        watcher.run(handler).context("ship")?;
    }
    Ok(0)
}

/// `forge-queue watch --nats`: the directory watcher's lines (an invalid
/// message is a warning on stderr), each flushed before its ack.
pub fn watch(
    args: &WatchNatsArgs,
    until_done: bool,
    json: bool,
    key: Option<VerifierKey>,
    run: Option<String>,
) -> anyhow::Result<u8> {
    let url = args.nats.require_url("watch")?;
    let Some(durable) = &args.durable else {
        bail!("watch --nats needs --durable NAME: the consumer that remembers what was acked");
    };
    let options = ConsumeOptions {
        conn: args
            .nats
            .connection(url, &format!("forge-queue watch {durable}"))?,
        stream: args.nats.stream.clone(),
        durable: durable.clone(),
        filter: args.filter.clone(),
        batch: args.batch as usize,
        ack_wait: Duration::from_secs(args.ack_wait_secs),
        checkpoint_key: key.clone(),
    };
    let mut watcher =
        StreamWatcher::connect(&options, |warning| eprintln!("forge-queue: {warning}"))
            .with_context(|| format!("watch {url}"))?;
    let mut until = until_done.then(|| match &key {
        Some(_) => SessionsSettled::trusting(run.clone()),
        None => SessionsSettled::default(),
    });
    let mut stdout = io::stdout().lock();
    // A checkpoint is re-signed every heartbeat: print the ones that cover
    // more, as for a directory.
    let mut newest_printed: HashMap<(PathBuf, String), u64> = HashMap::new();
    let print = |d: &Delivery| -> io::Result<()> {
        let print = match d {
            Delivery::Invalid(_) => {
                eprintln!("forge-queue: {}", render::human_line(d));
                false
            }
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
        if !print {
            return Ok(());
        }
        let line = if json {
            render::json_line(d)
        } else {
            render::human_line(d)
        };
        writeln!(stdout, "{line}")?;
        // Flushed before the ack: printed, then acked.
        stdout.flush()
    };
    let mut print = print;
    let handler = |d: &Delivery, verdicts: &[Verdict]| -> io::Result<()> {
        print(d)?;
        let mut out = io::stdout().lock();
        for v in verdicts {
            if let Some(line) = render::verdict_line(v, json) {
                writeln!(out, "{line}")?;
                out.flush()?;
            }
        }
        Ok(())
    };
    watcher
        .run(until.as_mut(), handler)
        .with_context(|| format!("watch {url}"))?;
    Ok(until.map_or(0, |u| {
        for (session, seq) in u.pending() {
            eprintln!(
                "forge-queue: done at seq {seq} of session {session} not acted on: no checkpoint signed by the key covered it"
            );
        }
        for (session, why) in u.report() {
            eprintln!("forge-queue: session {session}: {why}");
        }
        u.exit_code()
    }))
}

fn stream_label(args: &ReadNatsArgs) -> String {
    match &args.session {
        Some(s) => format!("stream {} session {s}", args.nats.stream),
        None => format!("stream {}", args.nats.stream),
    }
}

fn read_records(args: &ReadNatsArgs, what: &str) -> anyhow::Result<Vec<read::Record>> {
    let url = args.nats.require_url(what)?;
    let conn = args.nats.connection(url, &format!("forge-queue {what}"))?;
    let filter = match &args.session {
        Some(s) => subject::session_filter(&args.nats.subject_prefix, s),
        None => format!("{}.>", args.nats.subject_prefix),
    };
    read::read(&conn, &args.nats.stream, &filter).with_context(|| format!("{what} {url}"))
}

/// `forge-queue audit --nats`: 0, or 2.
pub fn audit(args: &ReadNatsArgs, json: bool) -> anyhow::Result<u8> {
    let records = read_records(args, "audit")?;
    let audit = read::audit_records(&stream_label(args), records);
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &[&audit])?;
        writeln!(out)?;
    } else {
        write!(out, "{audit}")?;
    }
    Ok(0)
}

/// `forge-queue verify --nats [--key K [--run R]]`: 0 intact, 1 broken,
/// 2 error.
pub fn verify(
    args: &ReadNatsArgs,
    json: bool,
    key: Option<&VerifierKey>,
    run: Option<&str>,
) -> anyhow::Result<u8> {
    let records = read_records(args, "verify")?;
    let v = match key {
        Some(key) => read::verify_records_signed(&stream_label(args), records, key, run),
        None => read::verify_records(&stream_label(args), records),
    };
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &[&v])?;
        writeln!(out)?;
    } else {
        writeln!(out, "{v}")?;
    }
    Ok(if v.is_intact() { 0 } else { 1 })
}

/// The kernel's host name, or `unknown`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
