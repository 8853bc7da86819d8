#!/usr/bin/env bash
# The test command: every unit and end-to-end test of the workspace,
# including the check of the Gitea client against Prism's validating mock
# of the Gitea API spec, the MCP bridge check with the TypeScript MCP SDK
# (both installed here from the npm registry if missing), the check of
# the signed checkpoints against Go's signed-note package, and the fleet
# tests against a real nats-server (both installed from the distribution's
# packages if missing). Each stage prints one banner line (what, why, how
# long it usually takes on two cores) and how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
# A whole run is not an edit-and-rebuild loop: without incremental caches
# the workspace's own crates take 1.4 GB less of target/ (set
# CARGO_INCREMENTAL=1 to keep them).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Nor line tables: a failing test still names its file and line; only a
# backtrace loses them (set CARGO_PROFILE_DEV_DEBUG=line-tables-only to
# keep them). The test executables are then about a third smaller.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-false}"

started=$SECONDS
stage_name=
stage() {
    if [ -n "$stage_name" ]; then
        echo "== $stage_name: done in $((SECONDS - stage_start))s"
    fi
    stage_name="$1"
    stage_start=$SECONDS
    echo "== $1 — $2"
}

stage "1/5 installs" "test tools missing on this machine (each says what it added); seconds when present"
tests/prism/install.sh
tests/mcp-ts/install.sh
tests/note/install.sh
tests/nats/install.sh

stage "2/5 shipped binaries, debug" "the end-to-end tests run forge-sidecar and forge-queue as the image builds them (each package on its own); a few minutes on a fresh clone"
tests/build-shipped.sh

stage "3/5 cargo test --workspace" "unit tests, then the end-to-end suites against the binaries of stage 2; the longest stage on a fresh clone"
cargo test --workspace --locked

stage "4/5 shipped binaries, release" "the image's own binaries (lto, one codegen unit): the slowest build, done once"
tests/build-shipped.sh --release

stage "5/5 attack tests on the release binaries" "tests/tests/adversary.rs once more against what the image contains; under a minute"
FORGE_E2E_PROFILE=release cargo test --locked -p forge-e2e --test adversary

stage "all stages passed" "total $((SECONDS - started))s"
