#!/usr/bin/env bash
# The benchmark (not a test): builds the release binaries the bench runs
# (`cargo bench` does not build another package's binaries), the minimal
# jsonrpsee server process it compares the sidecar's RSS and cold start
# with (tests/examples/rpc_ping.rs, in the bench profile), installs the MCP
# peer it compares the bridge with (tests/gitea-mcp/install.sh), then runs
# tests/benches/sidecar.rs. Figures: stdout, target/sidecar-bench.json and
# target/sidecar-bench.md; BENCHMARKS.md says what they mean. Environment
# knobs (SIDECAR_BENCH_FAST=1 for a smoke run, ..._ONLY, ..._DISK_DIR, ...):
# the header of tests/benches/sidecar.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The binaries as the image has them (each package built on its own).
tests/build-shipped.sh --release
cargo build --locked --profile bench -p forge-e2e --example rpc_ping
tests/gitea-mcp/install.sh
cargo bench --locked -p forge-e2e --bench sidecar
