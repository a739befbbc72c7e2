#!/usr/bin/env bash
# Idle CPU of a ringkv server: starts it with SHARDS shards (default 4), lets
# it settle, then samples its CPU time (utime+stime of all threads, from
# /proc) over IDLE_SECONDS seconds (default 10), first with no client, then with
# CONNS connections (default 20) that each sent one PING and stay open idle.
# Prints the CPU used as a percentage of one core. Starts its server on a
# free loopback port and stops only that server.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS=${SHARDS:-4}
SECONDS_IDLE=${IDLE_SECONDS:-10}
CONNS=${CONNS:-20}
BIN=${RINGKV:-target/release/ringkv}
[ "${BUILD:-1}" = 1 ] && cargo build --release -q
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" --port "$PORT" --shards "$SHARDS" --save "" --loglevel warning >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.05; done
ticks() { cat /proc/"$PID"/task/*/stat | awk '{s+=$14+$15} END{print s}'; }
measure() {
  sleep 1
  local t0 t1
  t0=$(ticks); sleep "$SECONDS_IDLE"; t1=$(ticks)
  awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v s="$SECONDS_IDLE" \
    'BEGIN{printf "%.2f%% of one core (%d ticks in %ds)\n", 100*d/hz/s, d, s}'
}
echo "ringkv --shards $SHARDS, no clients: $(measure)"
FDS=()
for i in $(seq "$CONNS"); do
  exec {fd}<>/dev/tcp/127.0.0.1/"$PORT"
  printf 'PING\r\n' >&"$fd"
  FDS+=("$fd")
done
echo "ringkv --shards $SHARDS, $CONNS idle connections: $(measure)"
for fd in "${FDS[@]}"; do exec {fd}>&-; done
