#!/usr/bin/env bash
# Installs what socbox needs on a Debian/Ubuntu host, idempotently:
# QEMU, image-building tools, binfmt_misc handlers for arm64/armhf, and the
# Go modules. Safe to run again; does nothing that is already done.
set -euo pipefail
# Go from the official tarball lives here when it is not on PATH.
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"

# dpkg-dev: dpkg-architecture, which mmdebstrap's eatmydata hooks call (the
# image build runs dpkg without its fsyncs through them).
need_pkgs=(qemu-system-arm qemu-utils qemu-user-static mmdebstrap arch-test dpkg-dev e2fsprogs kmod
           gpgv gpg debian-archive-keyring dpkg ca-certificates containerd runc
           busybox-static fdisk dosfstools mtools)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for p in "${need_pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "socbox setup: installing ${missing[*]}"
  # apt-get update fails now and then while a mirror syncs; retry, and go on
  # with the lists we have if it keeps failing.
  for i in 1 2 3 4 5; do
    if $sudo apt-get update -q; then break; fi
    echo "socbox setup: apt-get update failed (try $i of 5), retrying in $((i * 5))s" >&2
    sleep $((i * 5))
  done
  for i in 1 2 3; do
    if $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; then
      break
    fi
    if [ "$i" -eq 3 ]; then echo "socbox setup: apt-get install failed" >&2; exit 1; fi
    sleep 5
    $sudo apt-get update -q || true
  done
fi

# binfmt_misc is not always mounted (containers, minimal VMs): mount it and
# register the qemu-user handlers mmdebstrap needs to run arm binaries.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for arch in aarch64 arm; do
  if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$arch" ]; then
    conf="/usr/lib/binfmt.d/qemu-$arch.conf"
    if [ ! -f "$conf" ]; then
      echo "socbox setup: $conf missing; is qemu-user-static installed?" >&2
      exit 1
    fi
    $sudo sh -c "cat '$conf' > /proc/sys/fs/binfmt_misc/register"
    echo "socbox setup: registered binfmt handler qemu-$arch"
  fi
done

cd "$(dirname "$0")/.."
go mod download
echo "socbox setup: host ready"
