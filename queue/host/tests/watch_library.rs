//! The `Watcher` library API on real queues written by `QueueWriter`:
//! order, acks across restarts, redelivery, invalid files, notifications,
//! rescans and liveness (with an injected clock: no sleeping).

mod common;

use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use common::*;
use forge_protocol::DoneStatus;
use forge_protocol::event::Outcome;
use forge_queue::{EventName, QueueWriter};
use forge_queue_host::watch::{Delivery, WatchError, WatchOptions, Watcher};

/// Poll once and return what was delivered, as "kind:seq" / "stale" / ...
fn poll(w: &mut Watcher) -> Vec<String> {
    let mut got = Vec::new();
    w.poll(|d: &Delivery| -> Result<(), ()> {
        got.push(label(d));
        Ok(())
    })
    .unwrap();
    got
}

fn label(d: &Delivery) -> String {
    match d {
        Delivery::Event(e) => format!("{}:{}", e.event.body.kind(), e.event.seq),
        Delivery::Invalid(i) => format!("invalid:{}", i.file_name),
        other => other.kind().to_string(),
    }
}

fn reads(w: &QueueWriter, n: u64) {
    for i in 0..n {
        w.append(op(i, "read_issue", 17, Outcome::Ok)).unwrap();
    }
}

#[test]
fn restart_delivers_each_event_exactly_once_in_order() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(5)).unwrap();
    reads(&w, 2);
    let mut first = Watcher::new([&dir], WatchOptions::default()).unwrap();
    assert_eq!(poll(&mut first), ["session_start:0", "op:1", "op:2"]);
    assert_eq!(poll(&mut first), Vec::<String>::new(), "acked: not again");
    drop(first);
    reads(&w, 2);
    let mut second = Watcher::new([&dir], WatchOptions::default()).unwrap();
    assert_eq!(poll(&mut second), ["op:3", "op:4"]);
    assert!(names_in(&dir, "new").is_empty());
    assert_eq!(names_in(&dir, "cur").len(), 5);
}

#[test]
fn a_handler_error_leaves_the_event_for_the_next_watcher() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    reads(&w, 3);
    let mut first = Watcher::new([&dir], WatchOptions::default()).unwrap();
    let mut seen = Vec::new();
    let err = first
        .poll(|d: &Delivery| {
            let Delivery::Event(e) = d else { return Ok(()) };
            seen.push(e.event.seq);
            if e.event.seq == 1 {
                Err("disk full")
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(matches!(err, WatchError::Handler("disk full")));
    assert_eq!(seen, [0, 1]);
    assert_eq!(names_in(&dir, "cur"), [EventName::format(w.session(), 0)]);
    let mut second = Watcher::new([&dir], WatchOptions::default()).unwrap();
    assert_eq!(
        poll(&mut second),
        ["op:1", "op:2"],
        "at-least-once: seq 1 again"
    );
}

#[test]
fn without_ack_each_event_is_delivered_once_per_run_and_stays() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    reads(&w, 2);
    let options = WatchOptions {
        ack: false,
        ..WatchOptions::default()
    };
    let mut watcher = Watcher::new([&dir], options.clone()).unwrap();
    assert_eq!(poll(&mut watcher), ["op:0", "op:1"]);
    reads(&w, 1);
    assert_eq!(poll(&mut watcher), ["op:2"]);
    assert_eq!(names_in(&dir, "new").len(), 3);
    assert!(names_in(&dir, "cur").is_empty());
    let mut again = Watcher::new([&dir], options).unwrap();
    assert_eq!(poll(&mut again).len(), 3, "a new run sees them all");
}

#[test]
fn invalid_files_are_reported_once_and_left_in_place() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    reads(&w, 1);
    let bogus = EventName::format(w.session(), 1);
    fs::write(dir.join("new").join(&bogus), b"{\"v\":1,").unwrap();
    fs::write(dir.join("new").join("notes.txt"), b"hello").unwrap();
    // Seq 1 is taken by the bogus file: the writer refuses to overwrite it.
    assert!(w.append(op(1, "read_pr", 18, Outcome::Ok)).is_err());
    let w2 = QueueWriter::open(&dir).unwrap();
    reads(&w2, 1);
    let mut watcher = Watcher::new([&dir], WatchOptions::default()).unwrap();
    let got = poll(&mut watcher);
    assert_eq!(
        got,
        [
            "invalid:notes.txt".to_string(),
            "op:0".into(),
            format!("invalid:{bogus}"),
            "op:0".into()
        ]
    );
    assert_eq!(poll(&mut watcher), Vec::<String>::new(), "reported once");
    assert_eq!(names_in(&dir, "new"), [bogus, "notes.txt".to_string()]);
}

#[test]
fn a_real_gap_does_not_stop_delivery() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    reads(&w, 4);
    fs::remove_file(dir.join("new").join(EventName::format(w.session(), 1))).unwrap();
    let mut watcher = Watcher::new([&dir], WatchOptions::default()).unwrap();
    assert_eq!(poll(&mut watcher), ["op:0", "op:2", "op:3"]);
}

#[test]
fn sessions_and_directories_are_each_delivered_in_order() {
    let (_t, a) = tempdir();
    let (_u, b) = tempdir();
    let a1 = QueueWriter::open(&a).unwrap();
    reads(&a1, 2);
    let a2 = QueueWriter::open(&a).unwrap();
    reads(&a2, 2);
    let b1 = QueueWriter::open(&b).unwrap();
    reads(&b1, 3);
    let mut watcher = Watcher::new(
        [&a, &b],
        WatchOptions {
            batch: 1, // interleave the directories as much as possible
            ..WatchOptions::default()
        },
    )
    .unwrap();
    let mut per_dir: Vec<(String, String, u64)> = Vec::new();
    watcher
        .poll(|d: &Delivery| -> Result<(), ()> {
            if let Delivery::Event(e) = d {
                per_dir.push((
                    d.dir().display().to_string(),
                    e.event.session.clone(),
                    e.event.seq,
                ));
            }
            Ok(())
        })
        .unwrap();
    let of = |dir: &Path| -> Vec<(String, u64)> {
        per_dir
            .iter()
            .filter(|(d, _, _)| d == &dir.display().to_string())
            .map(|(_, s, q)| (s.clone(), *q))
            .collect()
    };
    let s = |w: &QueueWriter| w.session().to_string();
    assert_eq!(of(&a), [(s(&a1), 0), (s(&a1), 1), (s(&a2), 0), (s(&a2), 1)]);
    assert_eq!(of(&b), [(s(&b1), 0), (s(&b1), 1), (s(&b1), 2)]);
}

/// Run a watcher on its own thread; deliveries come back on a channel.
fn spawn_watcher(
    dir: &Path,
    options: WatchOptions,
) -> (
    forge_queue_host::watch::StopHandle,
    mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let mut watcher = Watcher::new([dir], options).unwrap();
    let stop = watcher.stop_handle();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        watcher
            .run(|d: &Delivery| tx.send(label(d)).map_err(|_| ()))
            .unwrap();
    });
    (stop, rx, thread)
}

fn expect(rx: &mpsc::Receiver<String>, want: &str) {
    let got = rx
        .recv_timeout(TIMEOUT)
        .expect("delivery within the timeout");
    assert_eq!(got, want);
}

#[test]
fn notifications_deliver_new_events_without_a_rescan() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(3600)).unwrap();
    let options = WatchOptions {
        rescan_interval: Duration::from_secs(3600),
        ..WatchOptions::default()
    };
    let (stop, rx, thread) = spawn_watcher(&dir, options);
    expect(&rx, "session_start:0"); // the initial scan is over
    reads(&w, 2);
    w.append(done(DoneStatus::Success, "ok")).unwrap();
    expect(&rx, "op:1");
    expect(&rx, "op:2");
    expect(&rx, "done:3");
    stop.stop();
    thread.join().unwrap();
    assert_eq!(names_in(&dir, "cur").len(), 4);
}

#[test]
fn the_periodic_rescan_alone_finds_new_events() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(3600)).unwrap();
    let options = WatchOptions {
        notify: false,
        rescan_interval: Duration::from_millis(20),
        ..WatchOptions::default()
    };
    let (stop, rx, thread) = spawn_watcher(&dir, options);
    expect(&rx, "session_start:0");
    reads(&w, 2);
    expect(&rx, "op:1");
    expect(&rx, "op:2");
    stop.stop();
    thread.join().unwrap();
}

/// A clock the test moves by hand.
fn manual_clock(start: DateTime<Utc>) -> (Arc<Mutex<DateTime<Utc>>>, WatchOptions) {
    let now = Arc::new(Mutex::new(start));
    let read = now.clone();
    let options = WatchOptions {
        clock: Arc::new(move || *read.lock().unwrap()),
        ..WatchOptions::default()
    };
    (now, options)
}

#[test]
fn a_stale_heartbeat_is_reported_once_and_its_recovery_too() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(2)).unwrap();
    // Heartbeat timestamps have millisecond resolution.
    let t0 = Utc::now()
        .duration_trunc(chrono::Duration::milliseconds(1))
        .unwrap();
    write_heartbeat(&dir, w.session(), t0);
    let (now, options) = manual_clock(t0);
    let mut watcher = Watcher::new([&dir], options).unwrap();
    assert_eq!(poll(&mut watcher), ["session_start:0"]);
    *now.lock().unwrap() = t0 + chrono::Duration::seconds(6);
    assert_eq!(
        poll(&mut watcher),
        Vec::<String>::new(),
        "3 intervals: not yet"
    );
    *now.lock().unwrap() = t0 + chrono::Duration::seconds(7);
    assert_eq!(poll(&mut watcher), ["stale"]);
    assert_eq!(poll(&mut watcher), Vec::<String>::new(), "reported once");
    write_heartbeat(&dir, w.session(), t0 + chrono::Duration::seconds(7));
    assert_eq!(poll(&mut watcher), ["recovered"]);
    assert_eq!(poll(&mut watcher), Vec::<String>::new());
}

#[test]
fn a_stale_notice_comes_whatever_the_last_event_was() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(5)).unwrap();
    w.append(done(DoneStatus::Success, "finished")).unwrap();
    // No heartbeat at all, and the clock is an hour on: the sidecar died
    // after signalling done, without session_end.
    let (_now, options) = manual_clock(Utc::now() + chrono::Duration::hours(1));
    let mut watcher = Watcher::new([&dir], options).unwrap();
    assert_eq!(poll(&mut watcher), ["session_start:0", "done:1", "stale"]);
}

#[test]
fn an_ended_session_is_not_stale_even_for_a_restarted_watcher() {
    let (_t, dir) = tempdir();
    let w = QueueWriter::open(&dir).unwrap();
    w.append(session_start(5)).unwrap();
    w.append(session_end(false)).unwrap();
    let mut first = Watcher::new([&dir], WatchOptions::default()).unwrap();
    assert_eq!(poll(&mut first), ["session_start:0", "session_end:1"]);
    drop(first);
    // Everything is in cur/ now; the new watcher must learn from there.
    let (_now, options) = manual_clock(Utc::now() + chrono::Duration::hours(1));
    let mut second = Watcher::new([&dir], options).unwrap();
    assert_eq!(poll(&mut second), Vec::<String>::new());
}

#[test]
fn a_directory_where_nothing_ever_happens_goes_stale() {
    let (_t, dir) = tempdir();
    let t0 = Utc::now();
    let (now, options) = manual_clock(t0);
    let mut watcher = Watcher::new([&dir], options).unwrap();
    assert_eq!(poll(&mut watcher), Vec::<String>::new());
    *now.lock().unwrap() = t0 + chrono::Duration::seconds(16);
    assert_eq!(poll(&mut watcher), ["stale"]);
}

#[test]
fn a_missing_directory_is_an_error_and_new_cur_are_created() {
    let (_t, dir) = tempdir();
    assert!(Watcher::new([dir.join("typo")], WatchOptions::default()).is_err());
    let w = Watcher::new([&dir, &dir], WatchOptions::default()).unwrap();
    assert_eq!(
        w.dirs().count(),
        1,
        "a directory given twice is watched once"
    );
    assert!(dir.join("new").is_dir() && dir.join("cur").is_dir());
}

#[test]
fn checkpoints_are_delivered_after_their_events_and_forged_ones_are_refused() {
    use forge_queue::checkpoint::{Checkpoint, CheckpointSigner};
    use forge_queue::note::SigningKey;
    let (_t, dir) = tempdir();
    let key = SigningKey::generate("test").unwrap();
    let w = QueueWriter::open(&dir)
        .unwrap()
        .with_checkpoints(CheckpointSigner {
            key: key.clone(),
            repository: "acme/widgets".into(),
            issue: 17,
        });
    w.append(session_start(5)).unwrap();
    w.append(done(DoneStatus::Success, "ok")).unwrap();
    let options = WatchOptions {
        notify: false,
        checkpoint_key: Some(key.verifier()),
        ..WatchOptions::default()
    };
    let mut watcher = Watcher::new([&dir], options).unwrap();
    let mut seen = Vec::new();
    watcher
        .poll(|d: &Delivery| -> Result<(), ()> {
            seen.push(match d {
                Delivery::Checkpoint(c) => format!("checkpoint:{}", c.checkpoint.events),
                other => label(other),
            });
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, ["session_start:0", "done:1", "checkpoint:2"]);
    assert!(
        poll(&mut watcher).is_empty(),
        "an unchanged checkpoint is not delivered again"
    );

    // Someone without the key rewrites the checkpoint.
    let path = dir.join("checkpoint").join(w.session());
    let text = key
        .verifier()
        .open(&fs::read(&path).unwrap())
        .unwrap()
        .to_string();
    let mut claim = Checkpoint::parse(&text).unwrap();
    claim.events = 3;
    let forger = SigningKey::generate("test").unwrap();
    fs::write(&path, claim.sign(&forger).unwrap()).unwrap();
    let mut refused = Vec::new();
    watcher
        .poll(|d: &Delivery| -> Result<(), ()> {
            if let Delivery::BadCheckpoint(f) = d {
                refused.push(f.reason.clone());
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("not signed by test+"), "{}", refused[0]);
}
