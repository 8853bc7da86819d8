#!/usr/bin/env bash
# Installs nats-server (the distribution's package, JetStream included) for
# the fleet tests (tests/tests/nats.rs), which start and stop it themselves
# on a free port. Idempotent: does nothing when it is installed.
set -euo pipefail
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nats-server >/dev/null
    echo "nats: added the distribution's nats-server"
else
    echo "nats: nats-server already installed, nothing added"
fi
