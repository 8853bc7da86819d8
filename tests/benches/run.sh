#!/usr/bin/env bash
# The benchmark (not a test): builds the release binaries the bench runs
# (`cargo bench` does not build another package's binaries), then runs
# tests/benches/sidecar.rs. Figures: stdout, target/sidecar-bench.json and
# target/sidecar-bench.md; BENCHMARKS.md says what they mean. Environment
# knobs (SIDECAR_BENCH_FAST=1 for a smoke run, ..._ONLY, ..._DISK_DIR, ...):
# the header of tests/benches/sidecar.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The binaries as the image has them (each package built on its own).
tests/build-shipped.sh --release
cargo bench --locked -p forge-e2e --bench sidecar
