#!/usr/bin/env bash
# Install nats-server (Debian's package, JetStream included) for the fleet
# tests (tests/tests/nats.rs), which start and stop it themselves.
set -euo pipefail
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  apt-get update -qq
  apt-get install -y -qq nats-server
fi
