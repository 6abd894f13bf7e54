#!/usr/bin/env bash
# Resolve the base image every Loopline image builds FROM; write its name to $1.
#
# Where $BASE_IMAGE (python:3.11-slim-bookworm) is present or can be pulled, use it.
# Where no image registry can be reached (air-gapped build machines such as ours),
# build an equivalent from Debian bookworm packages with debootstrap (Debian
# bookworm's python3 is 3.11, like the official image) and tag it $LOCAL_BASE.
set -euo pipefail

out=${1:?usage: build.sh OUTPUT_FILE}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE=${LOCAL_BASE:-loopline/base:py3.11-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

use() { echo "$1" > "$out"; echo "base-image: using $1"; }

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then use "$BASE_IMAGE"; exit 0; fi
echo "base-image: trying docker pull $BASE_IMAGE"
if timeout 120 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then use "$BASE_IMAGE"; exit 0; fi
if docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
  echo "base-image: $BASE_IMAGE cannot be pulled; $LOCAL_BASE (debootstrap) is already built"
  use "$LOCAL_BASE"; exit 0
fi

echo "base-image: $BASE_IMAGE cannot be pulled; building $LOCAL_BASE from Debian bookworm with debootstrap (~1 minute)"
if ! command -v debootstrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  else
    echo "base-image: ERROR: debootstrap is missing. Install it (apt-get install debootstrap, as root)" \
         "or make $BASE_IMAGE pullable (docker pull $BASE_IMAGE)." >&2
    exit 1
  fi
fi
rootfs=$(mktemp -d /tmp/loopline-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$rootfs" "$MIRROR" 2>&1 | awk '/^I: (Retrieving|Configuring)/ && NR % 25 == 0 { print "base-image: debootstrap: " $0; fflush() }'
[ -x "$rootfs/usr/bin/python3" ] || { echo "base-image: ERROR: debootstrap did not install python3" >&2; exit 1; }
# Like the official image: `python` on PATH, no apt lists or package archives.
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/archives/"*.deb
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$LOCAL_BASE" >/dev/null
use "$LOCAL_BASE"
