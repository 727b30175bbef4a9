#!/usr/bin/env bash
# Runs every test: unit tests (seconds, no VM), then the scenario suite, which
# boots real boards under QEMU and runs real containers in them. Prepares the
# host first. SOCBOX_BOARDS=raspi4b-fast limits the boards (default: all).
set -euo pipefail
# Go from the official tarball lives here when it is not on PATH.
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
cd "$(dirname "$0")/.."
bash scripts/host-setup.sh
go vet ./...
go test -count=1 $(go list ./... | grep -v /scenarios)
go test -count=1 -v -timeout 85m ./scenarios/...
