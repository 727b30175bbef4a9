#!/usr/bin/env bash
# Runs every test: unit tests (seconds, no VM), then the scenario suite, which
# boots real boards under QEMU and runs real containers in them, then the
# fresh-host check (scripts/fresh-host.sh: the README's set-up and main job in
# a clean Debian root, with an empty cache). Prepares the host first.
# SOCBOX_BOARDS=raspi4b-fast limits the boards (default: all).
# SOCBOX_FRESH_HOST=bookworm (default) picks the fresh hosts to check:
# bookworm, trixie, both comma-separated, or none.
set -euo pipefail
# Go from the official tarball lives here when it is not on PATH.
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
cd "$(dirname "$0")/.."
bash scripts/host-setup.sh
go vet ./...
# Unit step: every test that boots no VM (scenarios/ boot tests skip under -short).
go test -count=1 $(go list ./... | grep -v '/scenarios$')
go test -count=1 -short ./scenarios/
go test -count=1 -v -timeout 85m ./scenarios/...
fresh=${SOCBOX_FRESH_HOST:-bookworm}
if [ "$fresh" != none ]; then
  for suite in ${fresh//,/ }; do
    bash scripts/fresh-host.sh --suite "$suite"
  done
fi
