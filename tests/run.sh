#!/usr/bin/env bash
# The test command: every unit and end-to-end test of the workspace,
# including the check of the Gitea client against Prism's validating mock
# of the Gitea API spec, the MCP bridge check with the TypeScript MCP SDK
# (both installed here from the npm registry if missing), the check of
# the signed checkpoints against Go's signed-note package, and the fleet
# tests against a real nats-server (both installed from the distribution's
# packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

tests/prism/install.sh
tests/mcp-ts/install.sh
tests/note/install.sh
tests/nats/install.sh
# End-to-end tests run the real binaries: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
# The attack tests once more against the release build, built as the
# Dockerfile builds the image (each binary on its own).
cargo build --release --locked -p forge-sidecar
cargo build --release --locked -p forge-queue-host
cargo test --release --locked -p forge-e2e --test adversary
