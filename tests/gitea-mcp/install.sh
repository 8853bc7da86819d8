#!/usr/bin/env bash
# Installs the peer the sidecar bench compares the MCP bridge with: the
# gitea-mcp MCP server (Python, FastMCP) at the versions pinned in
# tests/gitea-mcp/requirements.txt, into tests/gitea-mcp/venv. Only the
# benchmark uses it (tests/benches/run.sh calls this); no test does.
# Reinstalls when requirements.txt is newer than the install.
set -euo pipefail
cd "$(dirname "$0")"
stamp=venv/.installed
if [ -e "$stamp" ] && [ "$stamp" -nt requirements.txt ]; then
    echo "gitea-mcp: already in tests/gitea-mcp/venv, nothing added"
    exit 0
fi
rm -rf venv
python3 -m venv venv
venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
touch "$stamp"
echo "gitea-mcp: added the pinned gitea-mcp server in tests/gitea-mcp/venv"
