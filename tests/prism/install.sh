#!/usr/bin/env bash
# Install Stoplight Prism (pinned in tests/prism/package-lock.json) for the
# contract test that runs the Gitea client against a validating mock.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/prism ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "prism: added Stoplight Prism $(node_modules/.bin/prism --version 2>/dev/null) in tests/prism/node_modules"
else
  echo "prism: already in tests/prism/node_modules, nothing added"
fi
