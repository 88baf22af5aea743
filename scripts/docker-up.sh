#!/usr/bin/env bash
# Make sure a Docker engine answers. As root on Debian/Ubuntu with no engine running, install
# docker.io, docker-compose (SDK local mode's fallback) and mmdebstrap (offline base images),
# then start dockerd in the background. Anywhere else, stop with a clear message.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "docker-up: no Docker engine answers ('docker info' failed)." >&2
  echo "docker-up: start Docker (Docker Desktop, or 'sudo systemctl start docker') and run this again." >&2
  exit 1
fi
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "docker-up: installing ${need[*]} from Debian packages" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The Debian client may shadow a stale one; use the engine's own.
log=${DOCKERD_LOG:-/var/log/mlops-dockerd.log}
echo "docker-up: starting dockerd (log: $log)" >&2
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "docker-up: engine ready" >&2; exit 0; fi
  sleep 1
done
echo "docker-up: dockerd did not answer within 60 s; see $log" >&2
tail -n 20 "$log" >&2 || true
exit 1
