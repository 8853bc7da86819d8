//! End-to-end: a sidecar restarted within a run starts from the run's tally
//! (`<queue>/run/`), not from the run's history.
//!
//! - A host that prunes `cur/` (as the README allows) does not give the run
//!   its budget or its done signal back.
//! - A run of 100,000 events starts without reading them: the history is
//!   emptied after the tally was written, and the budget and done signal
//!   still stand. The start-up time is printed, never asserted (the bench
//!   measures it).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use forge_e2e::history;
use forge_e2e::sidecar::{SidecarProcess, call_err as err, call_ok as ok, client};
use serde_json::{Value, json};

fn start(queue: &Path, run: &str, max_writes: &str) -> SidecarProcess {
    SidecarProcess::start_at(
        tempfile::tempdir().unwrap(),
        queue.to_path_buf(),
        &[
            "--forge",
            "memory",
            "--max-writes",
            max_writes,
            "--run-id",
            run,
        ],
        &[],
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// What a host's `watch` does: every event of `new/` moved to `cur/`.
fn ack_all(queue: &Path) {
    for name in names(&queue.join("new")) {
        fs::rename(queue.join("new").join(&name), queue.join("cur").join(&name)).unwrap();
    }
}

/// The one tally file of `queue` (one run) and the event it names as its tail.
fn tally_tail(queue: &Path) -> (PathBuf, String) {
    let tallies: Vec<PathBuf> = names(&queue.join("run"))
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .map(|n| queue.join("run").join(n))
        .collect();
    assert_eq!(tallies.len(), 1, "one run, one tally: {tallies:?}");
    let tally: Value = serde_json::from_slice(&fs::read(&tallies[0]).unwrap()).unwrap();
    let tail = tally["tail"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("the tally names its tail: {tally}"))
        .to_string();
    (tallies[0].clone(), tail)
}

async fn scope(s: &SidecarProcess) -> (u64, bool) {
    let scope = ok(&client(s), "scope", json!({})).await;
    (
        scope["writes_left"].as_u64().unwrap(),
        scope["done"].as_bool().unwrap(),
    )
}

#[tokio::test]
async fn pruning_cur_does_not_give_the_run_its_budget_back() {
    let root = tempfile::tempdir().unwrap();
    let queue = root.path().join("queue");

    // A crash: the sidecar is killed after spending two writes.
    let mut first = start(&queue, "job-1", "4");
    for i in 0..2 {
        let body = json!({"number": 17, "body": format!("progress {i}")});
        ok(&client(&first), "post_comment", body).await;
    }
    first.signal_and_wait("KILL");
    // The host consumed everything, then pruned what the README says it may:
    // every file of cur/ that sorts before the tally's tail.
    ack_all(&queue);
    let (_, tail) = tally_tail(&queue);
    let mut pruned = 0;
    for name in names(&queue.join("cur")) {
        if name < tail {
            fs::remove_file(queue.join("cur").join(&name)).unwrap();
            pruned += 1;
        }
    }
    assert!(pruned >= 4, "session_start, two intents, two ops: {pruned}");

    let mut second = start(&queue, "job-1", "4");
    assert_eq!(scope(&second).await, (2, false), "two of four writes spent");
    ok(
        &client(&second),
        "post_comment",
        json!({"number": 17, "body": "progress 2"}),
    )
    .await;
    ok(
        &client(&second),
        "signal_done",
        json!({"status": "success", "summary": "finished"}),
    )
    .await;
    second.stop();

    // A graceful stop: the tally covers every event, and the host may
    // delete all of cur/.
    ack_all(&queue);
    for name in names(&queue.join("cur")) {
        fs::remove_file(queue.join("cur").join(&name)).unwrap();
    }
    let mut third = start(&queue, "job-1", "4");
    assert_eq!(scope(&third).await, (1, true), "three spent, done stands");
    let again = err(
        &client(&third),
        "signal_done",
        json!({"status": "success", "summary": "again"}),
    )
    .await;
    assert_eq!(again["code"], -32007, "{again}");
    ok(
        &client(&third),
        "post_comment",
        json!({"number": 17, "body": "progress 3"}),
    )
    .await;
    let over = err(
        &client(&third),
        "post_comment",
        json!({"number": 17, "body": "progress 4"}),
    )
    .await;
    assert_eq!(over["code"], -32005, "the budget is spent: {over}");
    third.stop();
}

#[tokio::test]
async fn a_run_of_100000_events_starts_from_its_tally_without_reading_them() {
    let root = tempfile::tempdir().unwrap();
    let queue = root.path().join("queue");
    let events = history::write_run(&queue, "job-big", 3, 99_992);
    assert_eq!(events, 100_000);

    // The first start of this sidecar on that queue has no tally yet: it
    // reads the run once and writes one.
    let mut first = start(&queue, "job-big", "10");
    assert_eq!(scope(&first).await, (7, true));
    first.stop();
    ack_all(&queue);
    let (tally, tail) = tally_tail(&queue);
    assert!(
        tail.starts_with("2") && !tail.starts_with(history::SESSION),
        "the tail is the first restart's own last event: {tail}"
    );

    // Every event of the history is emptied in place: a start that read
    // them would find no run (and give the budget and done back).
    let old: Vec<String> = names(&queue.join("cur"))
        .into_iter()
        .filter(|n| n.starts_with(history::SESSION))
        .collect();
    assert_eq!(old.len(), 100_000);
    for name in &old {
        fs::write(queue.join("cur").join(name), b"").unwrap();
    }

    let t0 = Instant::now();
    let mut second = start(&queue, "job-big", "10");
    let started = t0.elapsed();
    assert_eq!(scope(&second).await, (7, true), "budget and done stand");
    let log = second.log();
    assert!(
        log.contains("run tally"),
        "the start says it continued from the tally:\n{log}"
    );
    eprintln!(
        "start with 100,000 events of the run in cur/ (exec → /health answered, test harness): {started:?}"
    );
    second.stop();
    assert!(tally.exists());
}
