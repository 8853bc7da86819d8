//! What `forge-queue watch` prints for a delivery: one human line, or one
//! JSON object per line (`--json`). Kept in the library so a Rust host can
//! print exactly what the CLI prints.
//!
//! Summaries, method names and done texts are agent-controlled: every
//! character that moves the cursor, reorders or hides text is escaped (see
//! [`escape`]), so an event can neither forge extra lines, send terminal
//! escapes, nor pass for another event. JSON output is the event unchanged.

use std::borrow::Cow;
use std::fmt::Write;

use forge_protocol::event::{Event, EventBody, Outcome};
use serde::Serialize;

use crate::watch::{CheckpointNotice, Delivery, LivenessNotice, WatchdogNotice};
use crate::writer::rfc3339_ms;

/// Whether `c` must not reach a terminal as is: Unicode categories Cc
/// (controls: newline, ESC, ...), Cf (format: the bidi overrides and
/// isolates U+202A..U+202E and U+2066..U+2069, zero-width characters
/// U+200B..U+200F, U+FEFF, soft hyphen, ...), Zl (U+2028 line separator)
/// and Zp (U+2029 paragraph separator).
pub fn is_unsafe_for_display(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    // U+200B (zero width space) is Cf in older Unicode data and Cf-like in
    // effect everywhere: listed explicitly so a data change cannot let it through.
    c == '\u{200b}'
        || matches!(
            get_general_category(c),
            G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator
        )
}

/// `s` with every character [`is_unsafe_for_display`] escaped Rust-style
/// (`\n`, `\u{1b}`, `\u{202e}`): one line on any terminal, in logical
/// order, with nothing hidden.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_for_display) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_for_display(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One line for a human: `time  dir  kind  summary` (no newline).
pub fn human_line(d: &Delivery) -> String {
    let dir = d.dir().to_string_lossy();
    let (time, summary) = match d {
        Delivery::Event(e) => (e.event.ts.clone(), event_summary(&e.event)),
        Delivery::Stale(n) => (rfc3339_ms(n.at), stale_summary(n)),
        Delivery::Recovered(n) => (rfc3339_ms(n.at), recovered_summary(n)),
        Delivery::Invalid(i) => (
            rfc3339_ms(chrono::Utc::now()),
            format!("new/{}: {} (left in place)", i.file_name, i.reason),
        ),
        Delivery::Checkpoint(c) => (c.checkpoint.time.clone(), checkpoint_summary(c)),
        Delivery::BadCheckpoint(i) => (
            rfc3339_ms(chrono::Utc::now()),
            format!("{}: {}", i.file_name, i.reason),
        ),
        Delivery::Watchdog(w) => (rfc3339_ms(w.at), watchdog_summary(w)),
        Delivery::CheckpointFile(c) => (
            rfc3339_ms(chrono::Utc::now()),
            format!(
                "checkpoint/{}: {} bytes, not verified (no key)",
                c.session,
                c.note.len()
            ),
        ),
    };
    format!(
        "{}  {}  {:<13}  {}",
        escape(&time),
        escape(&dir),
        d.kind(),
        escape(&summary)
    )
}

fn event_summary(event: &Event) -> String {
    match &event.body {
        EventBody::SessionStart(s) => {
            let writable: Vec<String> = s.writable.iter().map(|n| format!("#{n}")).collect();
            format!(
                "{}/{} issue #{} on {} (writable {}), sidecar {} pid {}, heartbeat {}s",
                s.owner,
                s.repo,
                s.issue,
                s.api_base.as_deref().unwrap_or(&s.forge),
                writable.join(","),
                s.version,
                s.pid,
                s.limits.heartbeat_secs
            )
        }
        EventBody::Intent(i) => match i.target {
            Some(target) => format!("about to {} #{target} (op {})", i.op, i.op_id),
            None => format!("about to {} (op {})", i.op, i.op_id),
        },
        EventBody::Op(op) if op.outcome == Outcome::Ok => op.summary.clone(),
        // The sidecar's summaries already say "denied ..." or "failed ...".
        EventBody::Op(op) if op.summary.starts_with(op.outcome.as_str()) => op.summary.clone(),
        EventBody::Op(op) => format!("[{}] {}", op.outcome.as_str(), op.summary),
        EventBody::Done(d) if d.warnings.is_empty() => {
            format!("{}: {}", d.status.as_str(), d.summary)
        }
        EventBody::Done(d) => format!(
            "{}: {} [warnings: {}]",
            d.status.as_str(),
            d.summary,
            d.warnings.join("; ")
        ),
        EventBody::ScopeGrown(g) => format!(
            "PR #{} joined the writable set: branch {}, {}",
            g.number, g.branch, g.reason
        ),
        EventBody::Unknown => "(a kind this version does not know; skipped)".to_string(),
        EventBody::SessionEnd(e) => format!(
            "{}; calls ok {}, denied {}, error {}; {}",
            e.reason,
            e.counts.ok,
            e.counts.denied,
            e.counts.error,
            if e.done {
                "done was signalled"
            } else {
                "no done signal: abandoned"
            }
        ),
    }
}

fn stale_summary(n: &LivenessNotice) -> String {
    let mut s = match &n.heartbeat {
        Some(h) => format!(
            "sidecar not responding: heartbeat {} (pid {}) is {}s old",
            h.ts,
            h.pid,
            n.age.as_secs()
        ),
        None => format!(
            "sidecar not responding: no heartbeat for {}s",
            n.age.as_secs()
        ),
    };
    let _ = write!(s, " (limit {}s) and no session_end", n.threshold.as_secs());
    if let Some(session) = &n.session {
        let _ = write!(s, "; session {session}");
    }
    s
}

fn checkpoint_summary(c: &CheckpointNotice) -> String {
    let cp = &c.checkpoint;
    format!(
        "signed by {}: {} events of session {} (through seq {}), {}#{}",
        c.key,
        cp.events,
        cp.session,
        cp.last_seq(),
        cp.repository,
        cp.issue
    )
}

fn watchdog_summary(w: &WatchdogNotice) -> String {
    let mut s = format!(
        "watchdog fired: done without self-report; no event for {}s (limit {}s)",
        w.idle.as_secs(),
        w.limit.as_secs()
    );
    if let Some(ts) = &w.last_event_ts {
        let _ = write!(s, " since {ts}");
    }
    if let Some(session) = &w.session {
        let _ = write!(s, "; session {session}");
    }
    s
}

fn recovered_summary(n: &LivenessNotice) -> String {
    match &n.heartbeat {
        Some(h) => format!("heartbeat resumed: {} (pid {})", h.ts, h.pid),
        None => "sidecar responding again".to_string(),
    }
}

/// One JSON object (no newline). An event is the event's own object plus
/// `"dir"`; a liveness notice is
/// `{"kind":"stale"|"recovered","dir","ts","session","pid","heartbeat_ts","age_ms","threshold_ms"}`;
/// an invalid file is `{"kind":"invalid"|"bad_checkpoint","dir","file","reason"}`;
/// a checkpoint is
/// `{"kind":"checkpoint","dir","ts","key","repository","issue","session","events","last"}`;
/// the watchdog is
/// `{"kind":"watchdog","dir","ts","session","last_event_ts","idle_ms","limit_ms"}`.
pub fn json_line(d: &Delivery) -> String {
    let dir = d.dir().to_string_lossy();
    let line = match d {
        Delivery::Event(e) => serde_json::to_string(&EventLine {
            dir: &dir,
            event: &e.event,
        }),
        Delivery::Stale(n) | Delivery::Recovered(n) => serde_json::to_string(&NoticeLine {
            kind: d.kind(),
            dir: &dir,
            ts: rfc3339_ms(n.at),
            session: n.session.as_deref(),
            pid: n.heartbeat.as_ref().map(|h| h.pid),
            heartbeat_ts: n.heartbeat.as_ref().map(|h| h.ts.as_str()),
            age_ms: n.age.as_millis() as u64,
            threshold_ms: n.threshold.as_millis() as u64,
        }),
        Delivery::CheckpointFile(c) => serde_json::to_string(&serde_json::json!({
            "kind": "checkpoint_file",
            "dir": &dir,
            "session": &c.session,
            "bytes": c.note.len(),
        })),
        Delivery::Invalid(i) | Delivery::BadCheckpoint(i) => serde_json::to_string(&InvalidLine {
            kind: d.kind(),
            dir: &dir,
            file: &i.file_name,
            reason: &i.reason,
        }),
        Delivery::Checkpoint(c) => serde_json::to_string(&CheckpointLine {
            kind: "checkpoint",
            dir: &dir,
            ts: &c.checkpoint.time,
            key: &c.key,
            repository: &c.checkpoint.repository,
            issue: c.checkpoint.issue,
            session: &c.checkpoint.session,
            events: c.checkpoint.events,
            last: &c.checkpoint.last,
        }),
        Delivery::Watchdog(w) => serde_json::to_string(&WatchdogLine {
            kind: "watchdog",
            dir: &dir,
            ts: rfc3339_ms(w.at),
            session: w.session.as_deref(),
            last_event_ts: w.last_event_ts.as_deref(),
            idle_ms: w.idle.as_millis() as u64,
            limit_ms: w.limit.as_millis() as u64,
        }),
    };
    // These types always serialize (string keys, no non-finite floats).
    line.unwrap_or_default()
}

#[derive(Serialize)]
struct EventLine<'a> {
    dir: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

#[derive(Serialize)]
struct NoticeLine<'a> {
    kind: &'static str,
    dir: &'a str,
    ts: String,
    session: Option<&'a str>,
    pid: Option<u32>,
    heartbeat_ts: Option<&'a str>,
    age_ms: u64,
    threshold_ms: u64,
}

#[derive(Serialize)]
struct CheckpointLine<'a> {
    kind: &'static str,
    dir: &'a str,
    ts: &'a str,
    key: &'a str,
    repository: &'a str,
    issue: u64,
    session: &'a str,
    events: u64,
    last: &'a str,
}

#[derive(Serialize)]
struct WatchdogLine<'a> {
    kind: &'static str,
    dir: &'a str,
    ts: String,
    session: Option<&'a str>,
    last_event_ts: Option<&'a str>,
    idle_ms: u64,
    limit_ms: u64,
}

#[derive(Serialize)]
struct InvalidLine<'a> {
    kind: &'static str,
    dir: &'a str,
    file: &'a str,
    reason: &'a str,
}

/// The line for a `done` that is not to be acted on (none for a trusted
/// one): `{"kind":"unverified_done","dir","session","seq","reason"}` with
/// `json`, else `time  dir  unverified_done  ...`.
pub fn verdict_line(v: &crate::trust::Verdict, json: bool) -> Option<String> {
    let crate::trust::Verdict::Unverified {
        dir,
        session,
        seq,
        reason,
    } = v
    else {
        return None;
    };
    Some(if json {
        serde_json::json!({
            "kind": "unverified_done",
            "dir": dir.to_string_lossy(),
            "session": session,
            "seq": seq,
            "reason": reason,
        })
        .to_string()
    } else {
        format!(
            "{}  {}  {:<13}  done at seq {seq} of session {} not acted on: {}",
            rfc3339_ms(chrono::Utc::now()),
            escape(&dir.to_string_lossy()),
            "unverified_done",
            escape(session),
            escape(reason)
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::watch::EventDelivery;
    use crate::writer::Heartbeat;
    use forge_protocol::DoneStatus;
    use forge_protocol::event::Done;

    fn done(summary: &str) -> Delivery {
        Delivery::Event(EventDelivery {
            dir: PathBuf::from("/q/a"),
            file_name: "x".into(),
            event: Event {
                v: 1,
                session: "20261125T120000.000Z-0a1b2c".into(),
                seq: 4,
                ts: "2026-11-25T12:00:01.000Z".into(),
                prev: Some("ab".into()),
                body: EventBody::Done(Done {
                    status: DoneStatus::Blocked,
                    summary: summary.into(),
                    warnings: vec![],
                }),
            },
            backlog: 0,
            sha256: String::new(),
        })
    }

    #[test]
    fn human_line_has_time_dir_kind_summary() {
        assert_eq!(
            human_line(&done("need a decision")),
            "2026-11-25T12:00:01.000Z  /q/a  done           blocked: need a decision"
        );
    }

    fn with_body(body: EventBody) -> Delivery {
        let Delivery::Event(mut e) = done("x") else {
            unreachable!("done() is an event")
        };
        e.event.body = body;
        Delivery::Event(e)
    }

    #[test]
    fn scope_growth_done_warnings_and_unknown_kinds_are_shown() {
        let grown = with_body(EventBody::ScopeGrown(forge_protocol::event::ScopeGrown {
            number: 21,
            branch: "agent/issue-17".into(),
            reason: "opened".into(),
        }));
        assert_eq!(
            human_line(&grown),
            "2026-11-25T12:00:01.000Z  /q/a  scope_grown    PR #21 joined the writable set: branch agent/issue-17, opened"
        );
        let warned = with_body(EventBody::Done(Done {
            status: DoneStatus::Success,
            summary: "ok".into(),
            warnings: vec!["PR #21 commit abc1234: 'Fixes #500' would close #500".into()],
        }));
        assert!(
            human_line(&warned).ends_with(
                "success: ok [warnings: PR #21 commit abc1234: 'Fixes #500' would close #500]"
            ),
            "{}",
            human_line(&warned)
        );
        let unknown = with_body(EventBody::Unknown);
        assert!(
            human_line(&unknown).contains("skipped"),
            "{}",
            human_line(&unknown)
        );
    }

    #[test]
    fn human_line_escapes_agent_text() {
        let line = human_line(&done("a\nb\u{1b}[31m"));
        assert!(line.ends_with("blocked: a\\nb\\u{1b}[31m"), "{line}");
    }

    #[test]
    fn human_line_escapes_text_that_reorders_hides_or_breaks_lines() {
        let spoof = "tests fail\u{2028}2026-11-25T12:00:02.000Z  /q/a  done  success: all pass\u{2029}\u{202e}x\u{200b}\u{2066}\u{feff}\u{ad}";
        let line = human_line(&done(spoof));
        assert!(!line.contains(is_unsafe_for_display), "{line}");
        assert!(
            line.ends_with(
                "blocked: tests fail\\u{2028}2026-11-25T12:00:02.000Z  /q/a  done  success: all pass\\u{2029}\\u{202e}x\\u{200b}\\u{2066}\\u{feff}\\u{ad}"
            ),
            "{line}"
        );
        // JSON keeps the text exact.
        let v: serde_json::Value = serde_json::from_str(&json_line(&done(spoof))).unwrap();
        assert_eq!(v["summary"], spoof);
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for s in ["post_comment", "héllo wörld – 日本語 😀", "tab-free text"] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s}");
        }
        assert_eq!(escape("post_comment\u{200b}"), "post_comment\\u{200b}");
    }

    #[test]
    fn json_line_is_the_event_plus_dir() {
        let v: serde_json::Value = serde_json::from_str(&json_line(&done("x"))).unwrap();
        assert_eq!(v["dir"], "/q/a");
        assert_eq!(v["kind"], "done");
        assert_eq!(v["status"], "blocked");
        assert_eq!(v["seq"], 4);
        assert_eq!(v["session"], "20261125T120000.000Z-0a1b2c");
        assert!(!json_line(&done("a\nb")).contains('\n'));
    }

    #[test]
    fn stale_notice_json() {
        let d = Delivery::Stale(LivenessNotice {
            dir: PathBuf::from("/q/b"),
            at: chrono::Utc::now(),
            session: Some("s".into()),
            heartbeat: Some(Heartbeat {
                pid: 9,
                session: "s".into(),
                ts: "2026-11-25T12:00:00.000Z".into(),
            }),
            age: Duration::from_secs(20),
            threshold: Duration::from_secs(15),
        });
        let v: serde_json::Value = serde_json::from_str(&json_line(&d)).unwrap();
        assert_eq!(v["kind"], "stale");
        assert_eq!(v["dir"], "/q/b");
        assert_eq!(v["pid"], 9);
        assert_eq!(v["age_ms"], 20_000);
        assert_eq!(v["threshold_ms"], 15_000);
        assert!(human_line(&d).contains("heartbeat 2026-11-25T12:00:00.000Z (pid 9) is 20s old"));
    }
}
