#!/usr/bin/env bash
# The test command: every unit and end-to-end test of the workspace,
# including the check of the Gitea client against Prism's validating mock
# of the Gitea API spec (installed here from the npm registry if missing)
# and the fleet tests against a real nats-server (installed by apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."

tests/prism/install.sh
tests/nats/install.sh
# End-to-end tests run the real binaries: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
