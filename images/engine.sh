#!/usr/bin/env bash
# Make sure a Docker engine answers. Use the running one; else, on Debian as root,
# install docker.io and start dockerd with the flags these machines need; else stop
# with a message saying what to install. Never skips silently.
set -euo pipefail

answers() { docker info >/dev/null 2>&1; }

if command -v docker >/dev/null && answers; then
  echo "engine: Docker $(docker version -f '{{.Server.Version}}' 2>/dev/null) answers"
  exit 0
fi
if [ "$(id -u)" != 0 ] || [ ! -f /etc/debian_version ]; then
  echo "engine: ERROR: no Docker engine answers (docker info failed)." >&2
  echo "engine: install Docker Engine (https://docs.docker.com/engine/install/) and start it," >&2
  echo "engine: or run as root on Debian, where 'make engine' installs docker.io itself." >&2
  exit 1
fi
if ! command -v dockerd >/dev/null; then
  echo "engine: installing docker.io from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
# These machines have no iptables and no bridge: containers that need the network
# run with --network=host (image builds do).
echo "engine: starting dockerd (log: /var/log/loopline-dockerd.log)"
nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
  >/var/log/loopline-dockerd.log 2>&1 &
# A daemon that was killed (a session ending, say) first removes its stale network
# sandboxes, ~0.1 s each: after a day of test runs that took about a minute here.
for second in $(seq 1 300); do
  if answers; then
    echo "engine: Docker $(docker version -f '{{.Server.Version}}') answers after ${second} s"
    exit 0
  fi
  if [ $((second % 15)) = 0 ]; then
    echo "engine: waiting for dockerd (${second} s): $(tail -1 /var/log/loopline-dockerd.log | cut -c1-120)"
  fi
  sleep 1
done
echo "engine: ERROR: dockerd did not answer within 300 s; see /var/log/loopline-dockerd.log:" >&2
tail -20 /var/log/loopline-dockerd.log >&2
exit 1
