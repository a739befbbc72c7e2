#!/usr/bin/env bash
# Fragmentation under churn: fill ringkv (--shards 1) and redis-server to
# maxmemory (MAXMEM, allkeys-lru), then overwrite random keys with a mix of
# value sizes (32, 256, 1024 and 4096 bytes, in turn) for DURATION seconds, and
# report VmRSS / used_memory at the end for both servers, run one after the
# other, each pinned to SERVER_CPU with redis-benchmark on CLIENT_CPU.
#
# Usage: benches/fragmentation.sh   (MAXMEM [100mb], DURATION [60] seconds, RINGKV [target/release/ringkv],
#        SERVER_CPU [1], CLIENT_CPU [0], BUILD [1])
set -euo pipefail
cd "$(dirname "$0")/.."
MAXMEM=${MAXMEM:-100mb}
SECS=${DURATION:-60}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
[ "${BUILD:-1}" = 1 ] && cargo build --release -q
BIN=${RINGKV:-$PWD/target/release/ringkv}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
field() { redis-cli -p "$1" info memory | awk -F: -v f="$2" '$1 == f { gsub("\r", ""); print $2 }'; }

run() {
  local server=$1 dir port pid end
  dir=$(mktemp -d)
  port=$(free_port)
  if [ "$server" = ringkv ]; then
    (cd "$dir" && exec taskset -c "$SERVER_CPU" "$BIN" --port "$port" --shards 1 --save "" \
      --maxmemory "$MAXMEM" --maxmemory-policy allkeys-lru --loglevel warning >/dev/null 2>&1) &
  else
    taskset -c "$SERVER_CPU" redis-server --port "$port" --dir "$dir" --save "" --appendonly no \
      --maxmemory "$MAXMEM" --maxmemory-policy allkeys-lru --loglevel warning >/dev/null 2>&1 &
  fi
  pid=$!
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  end=$((SECONDS + SECS))
  while [ "$SECONDS" -lt "$end" ]; do
    for d in 32 256 1024 4096; do
      taskset -c "$CLIENT_CPU" redis-benchmark -p "$port" -t set -n 200000 -r 1000000 -d "$d" \
        -P 16 -q >/dev/null 2>&1
    done
  done
  local used rss keys
  used=$(field "$port" used_memory)
  rss=$(field "$port" used_memory_rss)
  keys=$(redis-cli -p "$port" dbsize)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  awk -v s="$server" -v u="$used" -v r="$rss" -v k="$keys" \
    'BEGIN { printf "| %s | %d | %.1f | %.1f | %.2f |\n", s, k, u / 1048576, r / 1048576, r / u }'
}

echo "| server | keys | used_memory (MiB) | RSS (MiB) | RSS / used_memory |"
echo "|---|---|---|---|---|"
run ringkv
run redis
