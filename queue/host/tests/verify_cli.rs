//! `forge-queue verify`: an intact queue, and each kind of tampering caught
//! and described separately.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use forge_protocol::DoneStatus;
use forge_protocol::event::Outcome;
use forge_queue::{EventName, QueueWriter};

/// A queue with one session of 6 events, the first 3 already acked.
fn queue() -> (tempfile::TempDir, PathBuf, String) {
    let (t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(5)).unwrap();
    for i in 1..5 {
        w.append(op(i, "read_pr", 18, Outcome::Ok)).unwrap();
    }
    w.append(done(DoneStatus::Success, "done")).unwrap();
    for seq in 0..3 {
        let name = EventName::format(w.session(), seq);
        fs::rename(dir.join("new").join(&name), dir.join("cur").join(&name)).unwrap();
    }
    let session = w.session().to_string();
    (t, dir, session)
}

fn file(dir: &Path, session: &str, seq: u64) -> PathBuf {
    let name = EventName::format(session, seq);
    let cur = dir.join("cur").join(&name);
    if cur.exists() {
        cur
    } else {
        dir.join("new").join(name)
    }
}

fn verify(dir: &Path) -> (i32, String) {
    let (code, out, err) = run(&["verify", path_str(dir)]);
    (code, out + &err)
}

#[test]
fn an_untouched_queue_is_intact() {
    let (_t, dir, _) = queue();
    let (code, out) = verify(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact (1 sessions, 6 events)"), "{out}");
}

#[test]
fn an_edited_byte_is_caught_and_located() {
    let (_t, dir, session) = queue();
    let target = file(&dir, &session, 2);
    let mut bytes = fs::read(&target).unwrap();
    let at = bytes.windows(3).position(|w| w == b"#18").unwrap();
    bytes[at + 2] = b'9'; // "read_pr #18" -> "#19"
    fs::write(&target, bytes).unwrap();
    let (code, out) = verify(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN"), "{out}");
    assert!(
        out.contains(&format!(
            "new/{session}-00000003.json: prev is not the SHA-256 of cur/{session}-00000002.json"
        )),
        "{out}"
    );
}

#[test]
fn a_deleted_event_is_caught_and_located() {
    let (_t, dir, session) = queue();
    fs::remove_file(file(&dir, &session, 3)).unwrap();
    let (code, out) = verify(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "new/{session}-00000004.json: seq 3 is missing before it"
        )),
        "{out}"
    );
}

#[test]
fn a_swapped_pair_is_caught_and_named() {
    let (_t, dir, session) = queue();
    let (a, b) = (file(&dir, &session, 3), file(&dir, &session, 4));
    let (bytes_a, bytes_b) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
    fs::write(&a, bytes_b).unwrap();
    fs::write(&b, bytes_a).unwrap();
    let (code, out) = verify(&dir);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "new/{session}-00000003.json: swapped with new/{session}-00000004.json"
        )),
        "{out}"
    );
}

#[test]
fn json_output_and_several_directories() {
    let (_t, good, _) = queue();
    let (_u, bad, session) = queue();
    fs::remove_file(file(&bad, &session, 0)).unwrap();
    let (code, out, _) = run(&["verify", "--json", path_str(&good), path_str(&bad)]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["sessions"][0]["problems"].as_array().unwrap().len(), 0);
    let problem = &v[1]["sessions"][0]["problems"][0];
    assert_eq!(problem["problem"], "missing");
    assert_eq!(
        (problem["first"].as_u64(), problem["last"].as_u64()),
        (Some(0), Some(0))
    );
}
