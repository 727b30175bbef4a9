#!/usr/bin/env bash
# The main job on the built-in default: prepares the host, builds (or finds)
# the default Debian image, boots raspi4b-fast, installs containerd, runs the
# bundled scenarios and prints the results. Extra arguments go to `socbox run`.
set -euo pipefail
# Go from the official tarball lives here when it is not on PATH.
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
cd "$(dirname "$0")/.."
bash scripts/host-setup.sh
exec go run ./cmd/socbox run "$@"
