#!/usr/bin/env bash
# Runs the whole test suite. Installs redis-server and redis-tools (the
# differential oracle, redis-cli and redis-benchmark), make and gcc for
# jemalloc's build, and python3 with venv, when they are missing; then
# redis-py (pinned) in a virtualenv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null \
  || ! command -v make >/dev/null || ! command -v cc >/dev/null \
  || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # make and a C compiler build jemalloc (tikv-jemalloc-sys).
  # python3-venv: the virtualenv for redis-py, a client the tests drive.
  $SUDO apt-get install -y -qq redis-server redis-tools make gcc python3 python3-venv
fi
# Client libraries the tests drive, at pinned versions, in a virtualenv.
PY=target/clients-venv
if [ ! -x "$PY/bin/python" ] || ! "$PY/bin/python" -c 'import redis' 2>/dev/null; then
  python3 -m venv "$PY"
  "$PY/bin/pip" install -q redis==5.0.8
fi
cargo test --all-targets --all-features
