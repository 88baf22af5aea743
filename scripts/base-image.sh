#!/usr/bin/env bash
# Build the offline base image (Debian bookworm + python3) from Debian packages, for machines that
# reach no image registry. Users with a registry pass BASE_IMAGE=python:3.11-slim-bookworm instead.
# Usage: scripts/base-image.sh [IMAGE_NAME]   (default: mlops-base:bookworm)
set -euo pipefail
name=${1:-mlops-base:bookworm}
if docker image inspect "$name" >/dev/null 2>&1; then exit 0; fi
command -v mmdebstrap >/dev/null 2>&1 || { echo "base-image: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "base-image: building $name from Debian packages (about 30 s)" >&2
mmdebstrap --quiet --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates,libgomp1 \
  bookworm "$tmp/base.tar"
docker import "$tmp/base.tar" "$name" >/dev/null
echo "base-image: $name ready" >&2
