//! `forge-queue`: the host's view of forge-sidecar queue directories.
//!
//! - `watch DIR...`: print every event in order and ack it (move it to
//!   `cur/`); report stale sidecars. Exit codes with `--until-done`:
//!   0 all done with success, 1 a failure, 4 a directory without done
//!   (stale sidecar, or session ended without done), 3 blocked; the most
//!   severe wins in that order. 2: usage or I/O error.
//! - `audit DIR...`: per-session summary (table, or `--json`). 0, or 2.
//! - `verify DIR...`: chain check. 0 intact, 1 broken, 2 usage or I/O.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use forge_protocol::DoneStatus;
use forge_protocol::event::EventBody;
use forge_queue::watch::{Delivery, StopHandle, WatchOptions, Watcher};
use forge_queue::{audit, render, verify};

/// Exit code: usage or I/O error.
const EXIT_ERROR: u8 = 2;

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
}

#[derive(Args)]
struct WatchArgs {
    /// Queue directories.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// One JSON object per line: the event plus "dir".
    #[arg(long)]
    json: bool,
    /// Leave files in new/ (inspect without consuming).
    #[arg(long)]
    no_ack: bool,
    /// Exit once every DIR has delivered its first done event (or has
    /// none coming: stale sidecar, session ended without done).
    /// Exit 0 all success, 1 any failure, 4 any without done, 3 any blocked
    /// (the first that applies).
    #[arg(long)]
    until_done: bool,
    /// Safety-net rescan interval in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    rescan_ms: u64,
    /// Do not use inotify; find new events by rescanning only.
    #[arg(long)]
    poll_only: bool,
}

#[derive(Args)]
struct AuditArgs {
    /// Queue directories.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// A JSON array with one object per DIR.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// Queue directories.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// A JSON array with one object per DIR.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors itself.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Watch(args) => watch(args),
        Command::Audit(args) => audit_cmd(args),
        Command::Verify(args) => verify_cmd(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("forge-queue: {}", error_chain(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
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
    let options = WatchOptions {
        ack: !args.no_ack,
        rescan_interval: Duration::from_millis(args.rescan_ms),
        notify: !args.poll_only,
        ..WatchOptions::default()
    };
    let mut watcher = Watcher::new(&args.dirs, options)?;
    if !args.poll_only {
        for dir in watcher.unwatched() {
            eprintln!(
                "forge-queue: cannot use inotify on {}; rescanning every {} ms",
                dir.display(),
                args.rescan_ms
            );
        }
    }
    let mut until = args
        .until_done
        .then(|| UntilDone::new(watcher.dirs(), watcher.stop_handle()));
    let mut stdout = io::stdout().lock();
    let mut deliver = |d: &Delivery| -> io::Result<()> {
        match d {
            // Not an event: a warning for the operator, not output.
            Delivery::Invalid(_) => eprintln!("forge-queue: {}", render::human_line(d)),
            _ => {
                let line = if args.json {
                    render::json_line(d)
                } else {
                    render::human_line(d)
                };
                writeln!(stdout, "{line}")?;
                // Flushed before the watcher acks: printed, then moved.
                stdout.flush()?;
            }
        }
        if let Some(until) = &mut until {
            until.observe(d);
        }
        Ok(())
    };
    watcher.run(&mut deliver).context("watch")?;
    if args.until_done {
        // Settled: still deliver what is already complete in new/ (the
        // done call's own op, a refused second done, session_end).
        watcher.finish(&mut deliver).context("watch")?;
    }
    Ok(until.map_or(0, |u| u.exit_code()))
}

/// How a directory finished, for `--until-done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Done(DoneStatus),
    /// Stale sidecar (provisional: a recovery reopens it).
    Stale,
    /// Session ended without done.
    Abandoned,
}

/// `--until-done` bookkeeping: stops the watcher once every directory is
/// settled.
struct UntilDone {
    settled: HashMap<PathBuf, Option<Settled>>,
    stop: StopHandle,
}

impl UntilDone {
    fn new<'a>(dirs: impl Iterator<Item = &'a Path>, stop: StopHandle) -> UntilDone {
        UntilDone {
            settled: dirs.map(|d| (d.to_path_buf(), None)).collect(),
            stop,
        }
    }

    fn observe(&mut self, d: &Delivery) {
        let Some(slot) = self.settled.get_mut(d.dir()) else {
            return;
        };
        let open = matches!(slot, None | Some(Settled::Stale));
        match d {
            Delivery::Event(e) => match &e.event.body {
                EventBody::Done(done) if open => *slot = Some(Settled::Done(done.status)),
                // Only if nothing newer is waiting: a later session in the
                // backlog may still signal done.
                EventBody::SessionEnd(end) if open && !end.done && e.backlog == 0 => {
                    *slot = Some(Settled::Abandoned)
                }
                _ => {}
            },
            Delivery::Stale(_) if slot.is_none() => *slot = Some(Settled::Stale),
            Delivery::Recovered(_) if *slot == Some(Settled::Stale) => *slot = None,
            _ => {}
        }
        if self.settled.values().all(Option::is_some) {
            self.stop.stop();
        }
    }

    /// 1 failure > 4 no done (stale/abandoned) > 3 blocked > 0 success.
    fn exit_code(&self) -> u8 {
        let any = |f: fn(&Settled) -> bool| self.settled.values().flatten().any(f);
        for (dir, s) in &self.settled {
            match s {
                Some(Settled::Done(DoneStatus::Success)) => {}
                Some(s) => eprintln!("forge-queue: {}: {}", dir.display(), describe(*s)),
                None => eprintln!("forge-queue: {}: not settled", dir.display()),
            }
        }
        if any(|s| *s == Settled::Done(DoneStatus::Failure)) {
            1
        } else if any(|s| matches!(s, Settled::Stale | Settled::Abandoned)) {
            4
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
    }
}

fn audit_cmd(args: AuditArgs) -> anyhow::Result<u8> {
    let now = chrono::Utc::now();
    let audits = args
        .dirs
        .iter()
        .map(|d| audit::audit_dir(d, now).with_context(|| format!("audit {}", d.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
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
    let reports = args
        .dirs
        .iter()
        .map(|d| verify_one(d))
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

fn verify_one(dir: &Path) -> anyhow::Result<verify::DirVerification> {
    verify::verify_dir(dir).with_context(|| format!("verify {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use forge_queue::watch::{EventDelivery, LivenessNotice};

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
        })
    }

    #[test]
    fn a_recovered_directory_is_waited_for_again_and_failure_wins() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let watcher = Watcher::new([a.path(), b.path()], WatchOptions::default()).unwrap();
        let mut until = UntilDone::new(watcher.dirs(), watcher.stop_handle());
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
