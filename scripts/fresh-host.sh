#!/usr/bin/env bash
# Proves the README's set-up on a fresh Debian host. It makes a clean Debian
# root with mmdebstrap (Debian's own minimal system plus Go, nothing of
# socbox's prerequisites), puts a clean clone of this repository in it, and
# runs, inside it, with an empty socbox cache:
#   1. `socbox doctor`, which must fail (nothing is installed yet);
#   2. the README's main job, ./scripts/demo.sh: host set-up, default image
#      build, boot, containerd, the bundled scenarios (--job test runs the
#      README's test command, ./scripts/test.sh, instead: every test);
#   3. `socbox doctor`, which must now pass;
#   4. `socbox doctor` once more with arch-test removed, which must fail and
#      name it (mmdebstrap cannot build a foreign root without it).
# The root lives in its own mount and PID namespace: its mounts and every
# process started in it end with the script. The whole directory is removed
# at the end unless --keep.
#
# Usage: scripts/fresh-host.sh [--suite bookworm|trixie] [--job demo|test] [--keep]
#   --suite   the host's Debian release (default bookworm, Debian 12; trixie
#             is Debian 13, whose QEMU is 10.0)
#   --job     demo (default): the README's main job; test: the README's test
#             command (the whole suite; about an hour on 2 cores)
#   --keep    keep the root afterwards (its path is printed)
# Needs root, mmdebstrap, unshare (util-linux), git and Go on this host; the
# qemu-user binfmt_misc handlers registered here with the F flag (as
# scripts/host-setup.sh registers them) serve the root too. Extra arguments
# after -- go to demo.sh (socbox run).
set -euo pipefail
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
cd "$(dirname "$0")/.."
repo=$(pwd)

suite=bookworm job=demo keep=0 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) suite=${2:?--suite needs bookworm or trixie}; shift 2 ;;
    --suite=*) suite=${1#*=}; shift ;;
    --job) job=${2:?--job needs demo or test}; shift 2 ;;
    --job=*) job=${1#*=}; shift ;;
    --keep) keep=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-host: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$suite" in bookworm|trixie) ;; *) echo "fresh-host: --suite must be bookworm or trixie, not $suite" >&2; exit 2 ;; esac
case "$job" in demo|test) ;; *) echo "fresh-host: --job must be demo or test, not $job" >&2; exit 2 ;; esac

say() { printf 'fresh-host %s: %s\n' "$suite" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap --mode=root, chroot, mounts): run it with sudo"
for tool in mmdebstrap unshare git; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/host-setup.sh first"
done
goroot=$(go env GOROOT)
[ -x "$goroot/bin/go" ] || die "no Go found (go env GOROOT = $goroot)"
for h in qemu-aarch64 qemu-arm; do
  grep -qs '^flags:.*F' "/proc/sys/fs/binfmt_misc/$h" ||
    die "binfmt_misc handler $h is not registered with the F flag here: run scripts/host-setup.sh first"
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/socbox-fresh-$suite-XXXXXX")
root="$work/root"
cleanup() {
  local rc=$?
  if [ "$keep" -eq 1 ]; then say "kept the root: $root"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }

say "making a clean Debian $suite root (mmdebstrap --variant=important) in $root"
# apt in a fresh root fails now and then while a mirror syncs: try again.
for i in 1 2 3; do
  if mmdebstrap --quiet --variant=important "$suite" "$root" 2>"$work/mmdebstrap.log"; then break; fi
  [ "$i" -lt 3 ] || { tail -20 "$work/mmdebstrap.log" >&2; die "mmdebstrap $suite failed 3 times"; }
  say "mmdebstrap failed (try $i of 3), retrying"; rm -rf "$root"; sleep $((i * 10))
done
say "root made after $(elapsed)"

# Go, as a user installs it from the official tarball.
mkdir -p "$root/usr/local"
cp -a "$goroot" "$root/usr/local/go"
# This host's CA bundle: a host behind a TLS-intercepting proxy (as a
# corporate network often is) reaches the Go module proxy only with it. It
# goes where update-ca-certificates keeps it when ca-certificates is
# installed later.
mkdir -p "$root/etc/ssl/certs" "$root/usr/local/share/ca-certificates"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/host-bundle.crt"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A clean clone of what is committed here, as a user gets it.
git clone --quiet --no-hardlinks "$repo" "$root/src/socbox"
say "clone of $(git -C "$repo" rev-parse --short HEAD) in /src/socbox"

# The script run inside the root, as root with an empty environment.
cat >"$root/fresh-host-job.sh" <<'EOF'
set -uo pipefail
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
cd /src/socbox
job=$1; shift
t0=$(date +%s)
step() { printf '\nfresh-host: == %s (at %ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

step "socbox doctor before set-up: must fail"
go build -o /usr/local/bin/socbox ./cmd/socbox || exit 1
if socbox doctor; then echo "fresh-host: doctor passed on a host with nothing installed" >&2; exit 1; fi

if [ "$job" = test ]; then
  step "./scripts/test.sh"
  ./scripts/test.sh || exit 1
else
  step "./scripts/demo.sh $*"
  ./scripts/demo.sh "$@" || exit 1
fi

step "socbox doctor after set-up: must pass"
socbox doctor || exit 1

step "socbox doctor without arch-test: must fail and name it"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q arch-test >/dev/null || exit 1
out=$(socbox doctor 2>&1); rc=$?
printf '%s\n' "$out"
if [ "$rc" -eq 0 ] || ! printf '%s\n' "$out" | grep -q 'FAIL.*arch-test'; then
  echo "fresh-host: doctor did not report the missing arch-test" >&2; exit 1
fi
step "done"
EOF

say "running the $job job inside the root"
# A mount and PID namespace of its own: /proc, /sys and /dev for the root,
# gone with the namespace; --kill-child ends anything left running in it.
set +e
unshare --mount --pid --fork --kill-child -- /bin/bash -c '
  set -e
  root=$1; shift
  mount --make-rprivate /
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  exec chroot "$root" /usr/bin/env -i TERM=dumb /bin/bash /fresh-host-job.sh "$@"
' fresh-host "$root" "$job" "${extra[@]}"
rc=$?
set -e
[ "$rc" -eq 0 ] || die "the $job job failed inside the $suite root (exit $rc) after $(elapsed)"
say "PASSED in $(elapsed)"
