#!/usr/bin/env bash
# Install the official TypeScript MCP SDK and Ajv (pinned in
# tests/mcp-ts/package-lock.json) for the test that drives the MCP bridge
# with them. Reinstalls when the lock file is newer than the install.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -e node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "mcp-ts: added the TypeScript MCP SDK and Ajv in tests/mcp-ts/node_modules"
else
  echo "mcp-ts: already in tests/mcp-ts/node_modules, nothing added"
fi
