#!/usr/bin/env bash
# Installs the independent signed-note verifier the interoperability test
# uses: Go's golang.org/x/mod/sumdb/note, from the distribution's packages
# (golang-go and golang-golang-x-mod-dev), then builds tests/note/verify.go
# offline into tests/note/bin/note-verify. Idempotent: does nothing when the
# binary is newer than its source.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/bin/note-verify"

if [ -x "$bin" ] && [ "$bin" -nt "$here/verify.go" ]; then
    echo "note: tests/note/bin/note-verify is up to date, nothing added"
    exit 0
fi
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/golang.org/x/mod/sumdb/note ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends golang-go golang-golang-x-mod-dev >/dev/null
    echo "note: added the distribution's golang-go and golang-golang-x-mod-dev"
fi
mkdir -p "$here/bin"
cd "$here"
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$here/bin/.gocache" \
    go build -o "$bin" verify.go
echo "note: built tests/note/bin/note-verify"
