#!/usr/bin/env bash
# Make sure the Dockerfile's base, python:3.11-slim, is there for ENGINE (docker
# or podman): present already, or pulled, or — where Docker Hub cannot be
# reached — a stand-in built from Debian packages (debootstrap, as root) and
# tagged with the same name, so the Dockerfile stays unchanged.
#
# The stand-in differs from the real image in ways the Dockerfile must not
# depend on: Debian's Python 3.11 in /usr/bin (linked from /usr/local/bin) and
# Debian's pip 23 in a new venv (the Dockerfile pins its own pip).
#
#   docker/base-image.sh podman
set -euo pipefail

ENGINE=${1:-docker}
IMAGE=docker.io/library/python:3.11-slim
SUITE=bookworm

say() { printf 'base-image: %s\n' "$*" >&2; }

if "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1; then
  say "$IMAGE is present"
  exit 0
fi
if timeout 120 "$ENGINE" pull "$IMAGE" >/dev/null 2>&1; then
  say "pulled $IMAGE"
  exit 0
fi
say "cannot pull $IMAGE: building a stand-in from Debian $SUITE packages"
if [ "$(id -u)" != 0 ] || ! command -v debootstrap >/dev/null 2>&1; then
  say "the stand-in needs root and debootstrap (apt-get install debootstrap)"
  exit 1
fi

# The mirror apt already uses here (deb822 or one-line sources), else Debian's.
mirror=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}' || true)
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 | awk '{print $2}' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  "$SUITE" "$rootfs" "$mirror" >/dev/null
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
# This machine's CA bundle: pip inside the build reaches PyPI through it.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
tar -C "$rootfs" -c . | "$ENGINE" import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' \
  --change 'CMD ["python3"]' - "$IMAGE" >/dev/null
say "built the stand-in $IMAGE ($(du -sh "$rootfs" | cut -f1))"
