#!/usr/bin/env bash
# The test command: every unit and end-to-end test of the workspace,
# including the check of the Gitea client against Prism's validating mock
# of the Gitea API spec and the MCP bridge check with the TypeScript MCP SDK
# (both installed here from the npm registry if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

tests/prism/install.sh
tests/mcp-ts/install.sh
# End-to-end tests run the real binaries: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
