#!/usr/bin/env bash
# Runs the whole test suite. Installs redis-server and redis-tools (the
# differential oracle, redis-cli and redis-benchmark) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq redis-server redis-tools
fi
cargo test --all-targets --all-features
