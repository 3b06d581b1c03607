#!/usr/bin/env bash
# Install every Debian package that building, testing and benchmarking
# KoruDelta needs. `scripts/deps.sh --check` only reports whether any is
# missing (exit 1 if so). Safe to run repeatedly.
# wrk, redis-server (it brings redis-tools: redis-cli, redis-benchmark) and
# nginx are for `make bench` only (bench/http/run.py starts its own instances on
# free loopback ports; the system services are never used).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-dev
  libssl-dev libsqlite3-dev libedit-dev libpcre2-dev libzstd-dev
  libmicrohttpd-dev libcurl4-openssl-dev
  python3 python3-pytest python3-yaml python3-cryptography python3-hnswlib libhnswlib-dev
  util-linux groff-base
  wrk redis-server nginx
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${1:-}" = "--check" ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing packages: ${missing[*]}" >&2
    exit 1
  fi
  exit 0
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
