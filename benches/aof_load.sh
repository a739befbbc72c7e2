#!/usr/bin/env bash
# AOF startup load time, ringkv against redis-server (issue 5).
#
# For each server in turn: start it empty with appendonly yes (everysec,
# automatic rewrite off), write $KEYS keys named as redis-benchmark names
# them (key:000000000042) with $SIZE-byte values through redis-cli --pipe,
# SHUTDOWN, and time the restart to the first PONG: the AOF is then a log
# of SET commands. Then BGREWRITEAOF, SHUTDOWN, and time the restart again:
# the AOF is then a base (RDB format, for both servers) and an empty tail.
#
# Usage: benches/aof_load.sh   (KEYS=200000 for a quick run)
# Environment: KEYS [2000000], SIZE [1024], SHARDS [2],
#              RINGKV [target/release/ringkv], WORK [mktemp -d]
set -euo pipefail

KEYS=${KEYS:-2000000}
SIZE=${SIZE:-1024}
SHARDS=${SHARDS:-2}
RINGKV=$(realpath "${RINGKV:-target/release/ringkv}")
WORK=${WORK:-$(mktemp -d)}
PORT=${PORT:-7611}

SPID=""
cleanup() { [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null || true; }
trap cleanup EXIT

now_ms() { date +%s%3N; }
field() { redis-cli -p "$PORT" info persistence | tr -d '\r' | awk -F: -v k="$1" '$1 == k {print $2}'; }
wait_pong() { until [ "$(redis-cli -p "$PORT" ping 2>/dev/null)" = "PONG" ]; do sleep 0.02; done; }

start() { # name -> sets SPID; prints the time to the first PONG
    local name=$1 t0
    t0=$(now_ms)
    if [ "$name" = redis ]; then
        redis-server --port "$PORT" --save "" --dir "$WORK/$name" --appendonly yes \
            --auto-aof-rewrite-percentage 0 --daemonize no >>"$WORK/$name.log" 2>&1 &
    else
        (cd "$WORK/$name" && exec "$RINGKV" --port "$PORT" --shards "$SHARDS" --save "" \
            --appendonly yes --auto-aof-rewrite-percentage 0 >>"$WORK/$name.log" 2>&1) &
    fi
    SPID=$!
    wait_pong
    echo $(( $(now_ms) - t0 ))
}

stop() {
    redis-cli -p "$PORT" shutdown >/dev/null 2>&1 || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
}

echo "# work dir $WORK, $KEYS keys x $SIZE bytes, ringkv --shards $SHARDS"
echo "| server | AOF | size (MB) | load to first PONG (ms) | keys |"
echo "|---|---|---|---|---|"
for name in ringkv redis; do
    mkdir -p "$WORK/$name"
    start "$name" >/dev/null
    python3 "$(dirname "$0")/gen_sets.py" "$KEYS" "$SIZE" | redis-cli -p "$PORT" --pipe >/dev/null
    stop
    ms=$(start "$name")
    mb=$(( $(du -sb "$WORK/$name/appendonlydir" | cut -f1) / 1048576 ))
    echo "| $name | command log | $mb | $ms | $(redis-cli -p "$PORT" dbsize) |"
    redis-cli -p "$PORT" bgrewriteaof >/dev/null
    sleep 0.5
    until [ "$(field aof_rewrite_in_progress)" = 0 ]; do sleep 0.1; done
    stop
    ms=$(start "$name")
    mb=$(( $(du -sb "$WORK/$name/appendonlydir" | cut -f1) / 1048576 ))
    echo "| $name | base after BGREWRITEAOF | $mb | $ms | $(redis-cli -p "$PORT" dbsize) |"
    stop
    rm -rf "${WORK:?}/$name"
done
