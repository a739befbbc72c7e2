#!/usr/bin/env bash
# Snapshot cost and RDB load time, ringkv against redis-server (issue 5).
#
# 1. Dataset: $KEYS keys named as redis-benchmark names them
#    (key:000000000042) with $SIZE-byte values of 'x' (its payload), written
#    to redis-server through redis-cli --pipe, then SAVE; both servers start
#    from copies of that one dump.rdb, so the benchmark overwrites existing keys.
# 2. Load time: wall time from starting the server to its first PONG, and
#    the server's own "DB loaded from disk" log line.
# 3. BGSAVE under writes: redis-benchmark -t set -r $KEYS -d $SIZE -c 50
#    writes random keys; one run without a save (reference), then one run
#    during which BGSAVE starts after 1 s. Memory is sampled every 20 ms
#    during the save: ringkv's VmRSS; redis's parent VmRSS plus the fork
#    child's private pages (the copy-on-write cost). Reported: peak over the
#    baseline before BGSAVE, save duration, and redis-benchmark's p99.9 and
#    max latency of the run.
#
# Usage: benches/rdb_snapshot.sh   (KEYS=200000 for a quick run)
# Environment: KEYS [2000000], SIZE [1024], BENCH_N [400000], SHARDS [2],
#              RINGKV [target/release/ringkv], WORK [mktemp -d]
set -euo pipefail

KEYS=${KEYS:-2000000}
SIZE=${SIZE:-1024}
BENCH_N=${BENCH_N:-400000}
SHARDS=${SHARDS:-2}
RINGKV=${RINGKV:-target/release/ringkv}
WORK=${WORK:-$(mktemp -d)}
RINGKV=$(realpath "$RINGKV")
PORT_R=${PORT_R:-7601}
PORT_K=${PORT_K:-7602}

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
private_kb() {
    awk '/^Private/ {s += $2} END {print s + 0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0
}
now_ms() { date +%s%3N; }
field() { redis-cli -p "$1" info persistence | tr -d '\r' | awk -F: -v k="$2" '$1 == k {print $2}'; }

wait_pong() {
    local port=$1
    until [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; do sleep 0.02; done
}

echo "# work dir $WORK, $KEYS keys x $SIZE bytes"
mkdir -p "$WORK/gen" "$WORK/redis" "$WORK/ringkv"
redis-server --port "$PORT_R" --save "" --dir "$WORK/gen" --daemonize no >"$WORK/gen.log" 2>&1 &
PIDS+=($!)
wait_pong "$PORT_R"
python3 "$(dirname "$0")/gen_sets.py" "$KEYS" "$SIZE" | redis-cli -p "$PORT_R" --pipe >/dev/null
echo "dataset: $(redis-cli -p "$PORT_R" dbsize) keys"
redis-cli -p "$PORT_R" save >/dev/null
redis-cli -p "$PORT_R" shutdown nosave >/dev/null 2>&1 || true
sleep 0.5
ls -l "$WORK/gen/dump.rdb"
cp "$WORK/gen/dump.rdb" "$WORK/redis/dump.rdb"
cp "$WORK/gen/dump.rdb" "$WORK/ringkv/dump.rdb"

start_server() { # name port -> sets SPID, prints load time
    local name=$1 port=$2 t0
    t0=$(now_ms)
    if [ "$name" = redis ]; then
        redis-server --port "$port" --save "" --dir "$WORK/redis" --daemonize no \
            >"$WORK/redis.log" 2>&1 &
    else
        (cd "$WORK/ringkv" && exec "$RINGKV" --port "$port" --shards "$SHARDS" --save "" \
            --loglevel notice >"$WORK/ringkv.log" 2>&1) &
    fi
    SPID=$!
    PIDS+=("$SPID")
    wait_pong "$port"
    echo "$name: load to first PONG $(( $(now_ms) - t0 )) ms;" \
        "log: $(grep -a -o 'DB loaded from disk.*' "$WORK/$name.log" | head -1)"
}

latency() { # file -> "p99.9 max" in ms
    awk '/Latency by percentile/ {on = 1; next}
         on && /%/ { p = $1; sub("%", "", p); v = $3;
                     if (p + 0 >= 99.9 && !got) { p999 = v; got = 1 } max = v }
         /^$/ && on && got { on = 0 }
         END { printf "p99.9 %s ms, max %s ms", p999, max }' "$1"
}

bench_save() { # name port pid
    local name=$1 port=$2 pid=$3 base peak cur child t0 t1
    redis-benchmark -p "$port" -t set -r "$KEYS" -d "$SIZE" -c 50 -n "$BENCH_N" \
        --precision 3 >"$WORK/$name-ref.txt" 2>&1
    echo "$name: writes without a save: $(latency "$WORK/$name-ref.txt")"
    base=$(rss_kb "$pid")
    redis-benchmark -p "$port" -t set -r "$KEYS" -d "$SIZE" -c 50 -n "$BENCH_N" \
        --precision 3 >"$WORK/$name-save.txt" 2>&1 &
    local bpid=$!
    sleep 1
    base=$(rss_kb "$pid")
    peak=$base
    t0=$(now_ms)
    redis-cli -p "$port" bgsave >/dev/null
    while :; do
        cur=$(rss_kb "$pid")
        if [ "$name" = redis ]; then
            for child in $(pgrep -P "$pid" || true); do
                cur=$(( cur + $(private_kb "$child") ))
            done
        fi
        [ "$cur" -gt "$peak" ] && peak=$cur
        [ "$(field "$port" rdb_bgsave_in_progress)" = 0 ] && break
        sleep 0.02
    done
    t1=$(now_ms)
    wait "$bpid"
    echo "$name: BGSAVE took $(( t1 - t0 )) ms, status $(field "$port" rdb_last_bgsave_status);" \
        "RSS before $(( base / 1024 )) MB, peak extra $(( (peak - base) / 1024 )) MB;" \
        "writes during the run: $(latency "$WORK/$name-save.txt")"
    grep -a -E "copy-on-write|CoW" "$WORK/$name.log" | tail -1 || true
}

for name in ringkv redis; do
    if [ "$name" = redis ]; then port=$PORT_R; else port=$PORT_K; fi
    start_server "$name" "$port"
    echo "$name: dataset RSS $(( $(rss_kb "$SPID") / 1024 )) MB"
    bench_save "$name" "$port" "$SPID"
    kill -9 "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
done
