//! `forge-queue audit`: refused writes with target and reason, an
//! interrupted write as "outcome unknown", done or its absence, the table
//! and the JSON form.

mod common;

use common::*;
use forge_protocol::DoneStatus;
use forge_protocol::event::Outcome;
use forge_queue::QueueWriter;

/// Session 1: reads, a denied and an errored write, a successful write,
/// done, session_end. Session 2: an intent with no op (the sidecar was
/// killed mid-write), no done.
fn queue() -> (tempfile::TempDir, std::path::PathBuf) {
    let (t, dir) = tempdir();
    let s1 = QueueWriter::open(&dir).unwrap();
    s1.append(session_start(5)).unwrap();
    s1.append(op(1, "read_issue", 17, Outcome::Ok)).unwrap();
    s1.append(op(2, "read_pr", 18, Outcome::Ok)).unwrap();
    s1.append(op(3, "post_comment", 500, Outcome::Denied))
        .unwrap();
    s1.append(intent(4, "update_description", 18)).unwrap();
    s1.append(op(4, "update_description", 18, Outcome::Error))
        .unwrap();
    s1.append(intent(5, "post_comment", 17)).unwrap();
    s1.append(op(5, "post_comment", 17, Outcome::Ok)).unwrap();
    s1.append(done(DoneStatus::Success, "fixed the widget"))
        .unwrap();
    s1.append(session_end(true)).unwrap();
    let s2 = QueueWriter::open(&dir).unwrap();
    s2.append(session_start(5)).unwrap();
    s2.append(intent(1, "post_comment", 17)).unwrap();
    (t, dir)
}

#[test]
fn the_table_lists_refused_and_unknown_writes_and_done() {
    let (_t, dir) = queue();
    let (code, out, err) = run(&["audit", path_str(&dir)]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "acme/widgets #17",
        "post_comment                1      1      0",
        "denied write: post_comment #500 (seq 3) scope_denied: write to #500 denied: outside the assigned scope",
        "error write: update_description #18 (seq 5) forge_unavailable: forge timed out",
        "done: success: fixed the widget",
        "end: ended (SIGTERM)",
        "outcome unknown: post_comment #17 (op 1, intent seq 1)",
        "done: no done signal",
        "chain: intact",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // The second session has no session_end and no heartbeat: stale.
    assert!(
        out.contains("no session_end and no fresh heartbeat"),
        "{out}"
    );
}

#[test]
fn the_json_form_has_the_same_facts() {
    let (_t, dir) = queue();
    let (code, out, _) = run(&["audit", "--json", path_str(&dir)]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s1 = &v[0]["sessions"][0];
    assert_eq!(s1["calls"]["read_issue"]["ok"], 1);
    assert_eq!(s1["calls"]["post_comment"]["denied"], 1);
    let failed = s1["failed_writes"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["target"], 500);
    assert_eq!(failed[0]["outcome"], "denied");
    assert_eq!(failed[1]["outcome"], "error");
    assert_eq!(s1["unknown_writes"].as_array().unwrap().len(), 0);
    assert_eq!(s1["done"]["status"], "success");
    assert_eq!(s1["end"]["state"], "ended");
    assert_eq!(s1["chain"]["intact"], true);
    let s2 = &v[0]["sessions"][1];
    assert_eq!(s2["unknown_writes"][0]["op"], "post_comment");
    assert_eq!(s2["unknown_writes"][0]["target"], 17);
    assert!(s2["done"].is_null());
    assert_eq!(s2["end"]["state"], "stale");
}

#[test]
fn a_broken_chain_shows_in_the_audit() {
    let (_t, dir) = queue();
    let first = common::names_in(&dir, "new")[2].clone();
    std::fs::remove_file(dir.join("new").join(first)).unwrap();
    let (code, out, _) = run(&["audit", path_str(&dir)]);
    assert_eq!(code, 0, "audit reports, verify judges");
    assert!(out.contains("chain: BROKEN"), "{out}");
    assert!(out.contains("seq 2 is missing"), "{out}");
}
