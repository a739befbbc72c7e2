#!/usr/bin/env bash
# Runs the whole test suite. Installs redis-server and redis-tools (the
# differential oracle, redis-cli and redis-benchmark), and make and gcc for
# jemalloc's build, when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null \
  || ! command -v make >/dev/null || ! command -v cc >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # make and a C compiler build jemalloc (tikv-jemalloc-sys).
  $SUDO apt-get install -y -qq redis-server redis-tools make gcc
fi
cargo test --all-targets --all-features
