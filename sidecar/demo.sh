#!/usr/bin/env bash
# Quick start: run the sidecar on the built-in in-memory forge and show one
# agent session end to end: reads, an allowed write, a denied write, the PR
# loop (the pushed branch agent/issue-17 becomes a PR that joins the scope,
# its description is updated, a review is read), the done signal, a graceful
# stop, and what the host finds in the queue.
set -euo pipefail
cd "$(dirname "$0")/.."

# Cargo's own progress lines show on stderr; a cold build takes a few minutes.
echo "Building forge-sidecar and forge-queue (debug; the first build takes a few minutes)..." >&2
cargo build --locked --bin forge-sidecar --bin forge-queue
bin=$PWD/target/debug
echo "Built: $bin/forge-sidecar and $bin/forge-queue" >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/forge-demo.XXXXXX")
sock=$work/forge.sock
queue=$work/queue

"$bin/forge-sidecar" serve --forge memory --branch agent/issue-17 --socket "$sock" --queue-dir "$queue" 2>"$work/sidecar.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  "$bin/forge-sidecar" health --socket "$sock" --timeout-secs 1 >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/sidecar.log"; exit 1; }
  sleep 0.05
done

call() {
  printf '\n$ forge-sidecar call %s %s\n' "$1" "${2:-}"
  "$bin/forge-sidecar" call --socket "$sock" "$@" || true
}

call scope
call read_issue '{"number": 17}'
call read_pr '[18]'
call read_comments '{"number": 17}'
call post_comment '{"number": 17, "body": "Found it: the export loop stops one row early. Fix in #18."}'
call post_comment '{"number": 500, "body": "I will rotate the keys too."}'
call update_description '{"number": 18, "body": "Fixes the off-by-one in the export loop. Closes #17."}'
call open_pr '{"title": "Export the last row", "body": "Closes #17, and fixes #500 on the way."}'
call open_pr '{"title": "Export the last row", "body": "Closes #17."}'
call scope
call update_description '{"number": 501, "body": "Closes #17.\n\nThe export loop stopped one row short; a test now exports 10 rows."}'
call read_reviews '{"number": 18}'
call signal_done '{"status": "success", "summary": "Export fixed in PR #18, with a regression test."}'
call signal_done '{"status": "failure", "summary": "second signal"}'

kill -TERM "$pid"
wait "$pid"
trap - EXIT

printf '\n$ ls %s/new\n' "$queue"
ls "$queue/new"
printf '\n$ forge-queue watch --until-done %s    # what the host sees, then acks into cur/\n' "$queue"
"$bin/forge-queue" watch --until-done "$queue"
printf '\n$ forge-queue audit %s\n' "$queue"
"$bin/forge-queue" audit "$queue"
printf '\n$ forge-queue verify %s\n' "$queue"
"$bin/forge-queue" verify "$queue"
printf '\nSidecar log: %s/sidecar.log; queue: %s\n' "$work" "$queue"
printf 'The binaries are in %s; to put them on PATH: cargo install --locked --path sidecar && cargo install --locked --path queue/host\n' "$bin"
