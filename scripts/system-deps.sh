#!/usr/bin/env bash
# Install the Debian packages the test suite needs, when missing and when we can (root + apt-get):
#   python3.11-doc  natural text for training the tiny model (html/_sources)
#   chromium        headless browser for the explorer's browser tests and for kaleido's PNG export
set -euo pipefail
need=()
[ -d /usr/share/doc/python3.11/html/_sources ] || need+=(python3.11-doc)
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || need+=(chromium fonts-liberation)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: please install: ${need[*]} (needs root and apt-get)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system-deps: installed ${need[*]}"
