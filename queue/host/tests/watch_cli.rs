//! `forge-queue watch` as a host runs it: backlog, restart, `--until-done`
//! exit codes, `--no-ack`, output formats, liveness lines, usage errors.

mod common;

use std::fs;

use chrono::Utc;
use common::*;
use forge_protocol::DoneStatus;
use forge_protocol::event::Outcome;
use forge_queue::{EventName, QueueWriter};

fn seqs_of(stdout: &str) -> Vec<(String, u64)> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["session"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_late_watcher_delivers_the_backlog_in_order() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(5)).unwrap();
    for i in 0..48 {
        w.append(op(i, "read_comments", 17, Outcome::Ok)).unwrap();
    }
    w.append(done(DoneStatus::Success, "all green")).unwrap();
    let (code, out, err) = run(&["watch", "--json", "--until-done", path_str(&dir)]);
    assert_eq!(code, 0, "{err}");
    let got = seqs_of(&out);
    let want: Vec<_> = (0..50).map(|s| (w.session().to_string(), s)).collect();
    assert_eq!(got, want);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["dir"], path_str(&dir));
    assert_eq!(first["kind"], "session_start");
    assert_eq!(first["repo"], "widgets");
    assert!(names_in(&dir, "new").is_empty());
    assert_eq!(names_in(&dir, "cur").len(), 50);
}

#[test]
fn until_done_delivers_what_follows_the_done_before_it_settles() {
    // As a sidecar leaves it: done, then the done call's op, a refused
    // second done and session_end, all in new/ when the watcher starts.
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(5)).unwrap();
    w.append(done(DoneStatus::Success, "all green")).unwrap();
    w.append(op(1, "signal_done", 0, Outcome::Ok)).unwrap();
    w.append(op(2, "signal_done", 0, Outcome::Denied)).unwrap();
    w.append(session_end(true)).unwrap();
    let listed = names_in(&dir, "new").len();
    let (code, out, err) = run(&["watch", "--json", "--until-done", path_str(&dir)]);
    assert_eq!(code, 0, "{err}");
    let want: Vec<_> = (0..5).map(|s| (w.session().to_string(), s)).collect();
    assert_eq!(seqs_of(&out), want, "every event that new/ held is printed");
    assert_eq!(listed, 5);
    assert!(names_in(&dir, "new").is_empty(), "and acked");
}

#[test]
fn across_a_restart_every_event_arrives_exactly_once_in_order() {
    let (_t, dir) = tempdir();
    let first = QueueWriter::open(&dir).unwrap();
    first.append(session_start(5)).unwrap();
    first.append(op(1, "read_issue", 17, Outcome::Ok)).unwrap();
    first.append(done(DoneStatus::Success, "one")).unwrap();
    let (code, out1, err) = run(&["watch", "--json", "--until-done", path_str(&dir)]);
    assert_eq!(code, 0, "{err}");
    // The sidecar goes on (a second session) while no watcher runs.
    first.append(session_end(true)).unwrap();
    let second = QueueWriter::open(&dir).unwrap();
    second.append(session_start(5)).unwrap();
    second.append(done(DoneStatus::Success, "two")).unwrap();
    let (code, out2, err) = run(&["watch", "--json", "--until-done", path_str(&dir)]);
    assert_eq!(code, 0, "{err}");
    let mut all = seqs_of(&out1);
    all.extend(seqs_of(&out2));
    let (s1, s2) = (first.session().to_string(), second.session().to_string());
    assert_eq!(
        all,
        [
            (s1.clone(), 0),
            (s1.clone(), 1),
            (s1.clone(), 2),
            (s1, 3),
            (s2.clone(), 0),
            (s2, 1)
        ]
    );
    assert!(names_in(&dir, "new").is_empty());
}

/// A queue whose one session ends with `done(status)`.
fn queue_done(status: DoneStatus) -> (tempfile::TempDir, std::path::PathBuf) {
    let (t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(5)).unwrap();
    w.append(done(status, "summary")).unwrap();
    write_heartbeat(&dir, w.session(), Utc::now());
    (t, dir)
}

fn until_done(dirs: &[&std::path::Path]) -> i32 {
    let mut args = vec!["watch", "--until-done"];
    args.extend(dirs.iter().map(|d| path_str(d)));
    run(&args).0
}

#[test]
fn until_done_exit_codes_follow_the_done_status() {
    let (_a, success) = queue_done(DoneStatus::Success);
    let (_b, failure) = queue_done(DoneStatus::Failure);
    let (_c, blocked) = queue_done(DoneStatus::Blocked);
    assert_eq!(until_done(&[&success]), 0);
    let (_a, success) = queue_done(DoneStatus::Success);
    assert_eq!(until_done(&[&failure]), 1);
    let (_b, failure) = queue_done(DoneStatus::Failure);
    assert_eq!(until_done(&[&blocked]), 3);
    let (_c, blocked) = queue_done(DoneStatus::Blocked);
    assert_eq!(
        until_done(&[&success, &failure, &blocked]),
        1,
        "failure wins"
    );
    let (_a, success) = queue_done(DoneStatus::Success);
    let (_c, blocked) = queue_done(DoneStatus::Blocked);
    assert_eq!(until_done(&[&success, &blocked]), 3);
}

#[test]
fn until_done_ends_with_4_when_no_done_can_come() {
    // The session ended gracefully without done: abandoned.
    let (_a, abandoned) = tempdir();
    let w = QueueWriter::open(&abandoned).unwrap();
    w.append(session_start(5)).unwrap();
    w.append(session_end(false)).unwrap();
    assert_eq!(until_done(&[&abandoned]), 4);
    // The sidecar died: heartbeat an hour old, no session_end.
    let (_b, dead) = tempdir();
    let w = QueueWriter::open(&dead).unwrap();
    w.append(session_start(5)).unwrap();
    write_heartbeat(&dead, w.session(), Utc::now() - chrono::Duration::hours(1));
    let (_c, blocked) = queue_done(DoneStatus::Blocked);
    assert_eq!(
        until_done(&[&dead, &blocked]),
        4,
        "no done outranks blocked"
    );
    let (_c, failure) = queue_done(DoneStatus::Failure);
    let (_d, dead2) = tempdir();
    let w = QueueWriter::open(&dead2).unwrap();
    w.append(session_start(5)).unwrap();
    write_heartbeat(&dead2, w.session(), Utc::now() - chrono::Duration::hours(1));
    assert_eq!(
        until_done(&[&dead2, &failure]),
        1,
        "failure outranks no done"
    );
}

#[test]
fn no_ack_leaves_every_file_in_new() {
    let (_t, dir) = queue_done(DoneStatus::Success);
    let before = names_in(&dir, "new");
    let (code, out, _) = run(&["watch", "--no-ack", "--until-done", path_str(&dir)]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2);
    assert_eq!(names_in(&dir, "new"), before);
    assert!(names_in(&dir, "cur").is_empty());
}

#[test]
fn human_lines_have_time_dir_kind_and_summary() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(5)).unwrap();
    w.append(op(1, "post_comment", 500, Outcome::Denied))
        .unwrap();
    w.append(done(DoneStatus::Blocked, "need a decision\non the API"))
        .unwrap();
    let (code, out, _) = run(&["watch", "--until-done", path_str(&dir)]);
    assert_eq!(code, 3);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let d = path_str(&dir);
    assert!(
        lines[0].contains(&format!("  {d}  session_start  acme/widgets issue #17")),
        "{out}"
    );
    assert!(
        lines[1].contains(&format!("  {d}  op             [denied] post_comment #500")),
        "{out}"
    );
    assert!(
        lines[2].ends_with("done           blocked: need a decision\\non the API"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("20"),
        "starts with the event time: {out}"
    );
}

#[test]
fn a_stale_sidecar_is_reported_and_so_is_its_recovery() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    // A 1 s heartbeat: stale after 3 s, and a stale sidecar is looked at
    // again every second, so the recovery shows within about a second.
    w.append(session_start(1)).unwrap();
    write_heartbeat(&dir, w.session(), Utc::now() - chrono::Duration::hours(1));
    let watch = Running::spawn(&["watch", "--json", path_str(&dir)]);
    assert_eq!(watch.next_json()["kind"], "session_start");
    let stale = watch.next_json();
    assert_eq!(stale["kind"], "stale");
    assert_eq!(stale["dir"], path_str(&dir));
    assert_eq!(stale["session"], w.session());
    assert_eq!(stale["pid"], 4242);
    assert_eq!(stale["threshold_ms"], 3_000);
    assert!(stale["age_ms"].as_u64().unwrap() >= 3_600_000);
    // The sidecar beats again (it was paused, say).
    write_heartbeat(&dir, w.session(), Utc::now());
    let recovered = watch.next_json();
    assert_eq!(recovered["kind"], "recovered");
    // And events keep flowing after that.
    w.append(done(DoneStatus::Success, "back")).unwrap();
    assert_eq!(watch.next_json()["kind"], "done");
}

#[test]
fn invalid_files_are_reported_on_stderr_and_left_alone() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(5)).unwrap();
    let garbage = EventName::format(w.session(), 1);
    fs::write(dir.join("new").join(&garbage), b"not json").unwrap();
    let w2 = QueueWriter::open(&dir).unwrap();
    w2.append(done(DoneStatus::Success, "ok")).unwrap();
    let (code, out, err) = run(&["watch", "--json", "--until-done", path_str(&dir)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.contains(&garbage) && err.contains("invalid"), "{err}");
    assert_eq!(names_in(&dir, "new"), [garbage]);
}

#[test]
fn usage_and_io_errors_exit_2() {
    let (_t, dir) = tempdir();
    assert_eq!(run(&["watch"]).0, 2, "no DIR");
    assert_eq!(run(&["watch", "--frobnicate", path_str(&dir)]).0, 2);
    let (code, _, err) = run(&["watch", path_str(&dir.join("missing"))]);
    assert_eq!(code, 2);
    assert!(err.contains("missing"), "{err}");
    assert_eq!(run(&["audit", path_str(&dir.join("missing"))]).0, 2);
    assert_eq!(run(&["verify", path_str(&dir.join("missing"))]).0, 2);
    assert_eq!(run(&["bogus"]).0, 2);
}
