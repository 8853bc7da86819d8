#!/usr/bin/env bash
# Builds the binaries that ship, as they ship: each package on its own, so
# cargo unifies no other workspace member's features into it, and links
# them into target/shipped/<profile>/, where the end-to-end tests and the
# benchmarks run them. The Dockerfile builds the image's binaries with it.
#   tests/build-shipped.sh            debug profile (the end-to-end tests)
#   tests/build-shipped.sh --release  release profile (the image, benches)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
flags=(--locked)
if [ "${1:-}" = "--release" ]; then
    profile=release
    flags+=(--release)
fi
target="${CARGO_TARGET_DIR:-target}"
out="$target/shipped/$profile"
mkdir -p "$out"
for pkg_bin in forge-sidecar:forge-sidecar forge-queue-host:forge-queue; do
    pkg="${pkg_bin%%:*}"
    bin="${pkg_bin##*:}"
    cargo build "${flags[@]}" -p "$pkg" --bin "$bin"
    # A hard link: no copy on disk, and a later build of another variant
    # into target/<profile>/ leaves this one as it is.
    ln -f "$target/$profile/$bin" "$out/$bin" 2>/dev/null \
        || cp -p "$target/$profile/$bin" "$out/$bin"
done
