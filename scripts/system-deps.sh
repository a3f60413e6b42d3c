#!/usr/bin/env bash
# Install the Debian packages the test suite needs, when missing and when we can (root + apt-get).
set -euo pipefail
need=()
[ -d /usr/share/doc/python3.11/html/_sources ] || need+=(python3.11-doc)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: please install: ${need[*]} (needs root and apt-get)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq "${need[@]}" >/dev/null
echo "system-deps: installed ${need[*]}"
