#!/usr/bin/env bash
# AOF write throughput: ringkv vs redis-server with appendonly yes, in one
# interleaved run. For each appendfsync policy (everysec, always) and
# pipeline depth (-P 16, -P 1), each round runs ringkv (--shards 1) and then
# redis-server on a fresh directory, both pinned to SERVER_CPU, driven by
# `redis-benchmark -t set -c CLIENTS` pinned to CLIENT_CPU. Reports ops/s,
# p50/p99 and operations per server CPU-second (utime+stime from
# /proc/PID/stat), and the per-round ratio ringkv/redis.
#
# Usage: benches/aof_compare.sh      (ROUNDS [2], N [200000], CLIENTS [50],
#        SERVER_CPU [1], CLIENT_CPU [0], BUILD [1], RINGKV [target/release/ringkv])
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
N=${N:-200000}
CLIENTS=${CLIENTS:-50}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
[ "${BUILD:-1}" = 1 ] && cargo build --release -q
BIN=${RINGKV:-$PWD/target/release/ringkv}
TICK=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_up() {
  for _ in $(seq 200); do
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2
  exit 1
}

# run SERVER FSYNC P -> prints "ops p50 p99 ops_per_cpu_s"
run() {
  local server=$1 fsync=$2 p=$3 dir port pid
  dir=$(mktemp -d)
  port=$(free_port)
  if [ "$server" = ringkv ]; then
    (cd "$dir" && exec taskset -c "$SERVER_CPU" "$BIN" --port "$port" --shards 1 \
      --appendonly yes --appendfsync "$fsync" --save "" --loglevel warning >/dev/null 2>&1) &
  else
    taskset -c "$SERVER_CPU" redis-server --port "$port" --dir "$dir" --save "" \
      --appendonly yes --appendfsync "$fsync" --loglevel warning >/dev/null 2>&1 &
  fi
  pid=$!
  wait_up "$port"
  local t0 t1 csv
  t0=$(cpu_ticks "$pid")
  csv=$(taskset -c "$CLIENT_CPU" redis-benchmark -p "$port" -t set -n "$N" -r 100000 \
    -c "$CLIENTS" -P "$p" --csv 2>/dev/null | tail -1)
  t1=$(cpu_ticks "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  # "SET","rps","avg","min","p50","p95","p99","max"
  echo "$csv" | tr -d '"' | awk -F, -v t="$((t1 - t0))" -v hz="$TICK" -v n="$N" \
    '{ cpu = t / hz; printf "%.0f %s %s %.0f\n", $2, $5, $7, (cpu > 0 ? n / cpu : 0) }'
}

echo "| appendfsync | -P | round | ringkv ops/s | redis ops/s | ratio | ringkv p50/p99 ms | redis p50/p99 ms | ringkv ops/CPU-s | redis ops/CPU-s | ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for fsync in everysec always; do
  for p in 16 1; do
    for r in $(seq "$ROUNDS"); do
      read -r ko kp50 kp99 kc < <(run ringkv "$fsync" "$p")
      read -r ro rp50 rp99 rc < <(run redis "$fsync" "$p")
      awk -v f="$fsync" -v p="$p" -v r="$r" -v ko="$ko" -v ro="$ro" -v kc="$kc" -v rc="$rc" \
        -v kl="$kp50/$kp99" -v rl="$rp50/$rp99" 'BEGIN {
          printf "| %s | %s | %s | %d | %d | %.2fx | %s | %s | %d | %d | %.2fx |\n",
            f, p, r, ko, ro, ko / ro, kl, rl, kc, rc, (rc > 0 ? kc / rc : 0) }'
    done
  done
done
