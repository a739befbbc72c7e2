#!/usr/bin/env bash
# Compares ringkv with redis-server using redis-benchmark.
#
# Throughput/latency: for each round, ringkv (--shards 1) and redis-server run
# in turn (interleaved A B A B ...), both pinned to SERVER_CPU, driven by one
# redis-benchmark pinned to CLIENT_CPU. Each workload runs SET then GET on a
# freshly flushed server; the server's CPU time (utime+stime of all its
# threads, /proc/PID/stat) is sampled around every run to give operations per
# server CPU-second. ringkv --shards 2 is run as well (unpinned, see below).
# Memory: loads MEM_KEYS distinct 16-byte keys with 16-byte values through
# redis-cli --pipe and reports VmRSS growth per key for each server.
# Collections (issue 3): the redis-benchmark list/set/hash/zset tests
# (lpush rpush lpop rpop sadd hset spop zadd lrange_100 lrange_600), -P 16,
# each run on its own so the server CPU time is per test, ringkv and redis
# interleaved over ROUNDS rounds; and the RSS growth per key of COLL_MEM_KEYS
# small collections (10-field hash, 10-element list, 10-member set of strings
# and of integers, 10-member zset), one fresh server per type.
#
# Usage:
#   benches/compare.sh               # full run (ROUNDS=3, N=1000000): strings,
#                                    # collections, both memory measurements
#   benches/compare.sh --memory      # both memory measurements only
#   benches/compare.sh --collections # collections throughput + memory only
#   ROUNDS=1 N=200000 N_LAT=20000 MEM_KEYS=200000 benches/compare.sh   # quick run
#
# Environment (defaults in brackets):
#   ROUNDS [3]        interleaved rounds
#   N [1000000]       requests per run for the -c 50 workloads (also the -r keyspace)
#   N_LAT [100000]    requests per run for the -c 1 latency workload
#   CLIENTS [50]      parallel connections for the throughput workloads
#   SERVER_CPU [1]    CPU the pinned servers run on
#   CLIENT_CPU [0]    CPU redis-benchmark runs on (pinned runs)
#   SHARDS2 [1]       also run ringkv --shards 2 (server and client unpinned)
#   MEMORY [1]        run the memory measurement after the throughput rounds
#   MEM_KEYS [1000000] keys loaded by the memory measurement
#   COLL_N [1000000]  requests per collections test (except LRANGE)
#   COLL_N_LRANGE [200000] requests per lrange_100 / lrange_600 test
#   COLL_R [100000]   -r keyspace of the collections tests (distinct members/fields)
#   COLL_MEMORY [1]   run the collections memory measurement (full and --collections)
#   COLL_MEM_KEYS [100000] keys per type in the collections memory measurement
#   BUILD [1]         run cargo build --release first
#   OUT [target/bench-results/compare-<time>]  raw results and logs
#
# Output: Markdown tables on stdout (also saved as $OUT/summary.md) and the raw
# per-run numbers in $OUT/raw.tsv. Latencies are in milliseconds, as printed by
# redis-benchmark; p99.9 is read from its "Latency by percentile distribution".
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=all
case "${1:-}" in
  --memory) MODE=memory ;;
  --collections) MODE=collections ;;
  "") ;;
  -h|--help) sed -n '2,46p' "$0"; exit 0 ;;
  *) echo "unknown argument: $1 (use --memory, --collections or no argument)" >&2; exit 2 ;;
esac

ROUNDS=${ROUNDS:-3}
N=${N:-1000000}
N_LAT=${N_LAT:-100000}
CLIENTS=${CLIENTS:-50}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
SHARDS2=${SHARDS2:-1}
MEMORY=${MEMORY:-1}
MEM_KEYS=${MEM_KEYS:-1000000}
COLL_N=${COLL_N:-1000000}
COLL_N_LRANGE=${COLL_N_LRANGE:-200000}
COLL_R=${COLL_R:-100000}
COLL_MEMORY=${COLL_MEMORY:-1}
COLL_MEM_KEYS=${COLL_MEM_KEYS:-100000}
BUILD=${BUILD:-1}
OUT=${OUT:-target/bench-results/compare-$(date +%Y%m%d-%H%M%S)}
RINGKV=${RINGKV:-target/release/ringkv}
CLK_TCK=$(getconf CLK_TCK)

for tool in redis-server redis-benchmark redis-cli taskset; do
  command -v "$tool" >/dev/null || { echo "compare.sh needs $tool (apt-get install redis-server redis-tools util-linux)" >&2; exit 1; }
done

mkdir -p "$OUT"
RAW=$OUT/raw.tsv
SUMMARY=$OUT/summary.md

# ---------------------------------------------------------------- processes --

STARTED_PIDS=()
BENCH_PID=
cleanup() {
  local pid
  if [ -n "$BENCH_PID" ]; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  for pid in "${STARTED_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${STARTED_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  STARTED_PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}

# start_server KIND -> sets SERVER_PID and SERVER_PORT.
# KIND: ringkv (1 shard, pinned), redis (pinned), ringkv-2sh (2 shards, unpinned).
start_server() {
  local kind=$1 attempt pid port i
  for attempt in 1 2 3; do
    port=$(free_port)
    case $kind in
      ringkv)
        taskset -c "$SERVER_CPU" "$RINGKV" --shards 1 --port "$port" --loglevel warning --save "" \
          >>"$OUT/$kind.log" 2>&1 &
        ;;
      ringkv-2sh)
        "$RINGKV" --shards 2 --port "$port" --loglevel warning --save "" >>"$OUT/$kind.log" 2>&1 &
        ;;
      redis)
        taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --save '' \
          --appendonly no --daemonize no --logfile "$OUT/redis.log" >/dev/null 2>&1 &
        ;;
    esac
    pid=$!
    STARTED_PIDS+=("$pid")
    for i in $(seq 1 200); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ]; then
        SERVER_PID=$pid
        SERVER_PORT=$port
        return 0
      fi
      sleep 0.05
    done
    stop_server "$pid"
    echo "  ($kind did not start on port $port, attempt $attempt; see $OUT/$kind.log)" >&2
  done
  echo "could not start $kind" >&2
  exit 1
}

stop_server() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${STARTED_PIDS[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  STARTED_PIDS=("${kept[@]+"${kept[@]}"}")
}

# CPU time (ticks) of a process, all threads: utime+stime (fields 14, 15).
# The comm field may contain spaces, so count fields after the last ')'.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat")
  stat=${stat##*) }
  # After "pid (comm) ", field 3 (state) is the first word: utime is word 12.
  echo "$stat" | awk '{print $12 + $13}'
}

rss_kb() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# ---------------------------------------------------------------- parsing ----

# parse_bench FILE N -> "rps avg p50 p99 p999 max"
parse_bench() {
  tr '\r' '\n' <"$1" | awk -v n="$2" '
    /throughput summary:/ { rps = $3 }
    /avg +min +p50 +p95 +p99 +max/ { getline; avg = $1; p50 = $3; p99 = $5; max = $6 }
    /% <= .* milliseconds \(cumulative count/ {
      # "99.902% <= 7.551 milliseconds (cumulative count 19981)"
      lat = $3; cnt = $7; sub(/\)/, "", cnt)
      if (cnt + 0 >= need && (best == "" || lat + 0 < best + 0)) best = lat
    }
    BEGIN { need = n * 0.999; if (need > int(need)) need = int(need) + 1 }
    END {
      if (rps == "") { print "parse-error"; exit 1 }
      if (best == "") best = max
      print rps, avg, p50, p99, best, max
    }'
}

# ---------------------------------------------------------------- workloads --

# name|redis-benchmark flags|requests
WORKLOADS=(
  "c${CLIENTS}-P1|-c $CLIENTS -P 1|$N"
  "c${CLIENTS}-P16|-c $CLIENTS -P 16|$N"
  "c1-P1|-c 1 -P 1|$N_LAT"
)

describe_workload() {
  local flags=$2 n=$3
  echo "redis-benchmark -t <set|get> -n $n -r $N $flags -d 16"
}

# measure KIND ROUND WORKLOAD TEST N LOG CMD... : runs CMD (a redis-benchmark
# invocation writing to LOG), samples the server's CPU time around it and
# appends one row to $RAW.
measure() {
  local kind=$1 round=$2 name=$3 test=$4 n=$5 log=$6
  shift 6
  local before after parsed cpu opc rps avg p50 p99 p999 max
  before=$(cpu_ticks "$SERVER_PID")
  # In the background and waited for, so that Ctrl-C/SIGTERM run the
  # cleanup at once instead of after the benchmark finishes.
  "$@" >"$log" 2>&1 &
  BENCH_PID=$!
  if ! wait "$BENCH_PID"; then
    echo "redis-benchmark failed against $kind; see $log" >&2
    exit 1
  fi
  BENCH_PID=
  after=$(cpu_ticks "$SERVER_PID")
  parsed=$(parse_bench "$log" "$n") || { echo "cannot parse $log" >&2; exit 1; }
  cpu=$(awk -v a="$after" -v b="$before" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (a - b) / t }')
  opc=$(awk -v n="$n" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.0f", n / c; else print "nan" }')
  read -r rps avg p50 p99 p999 max <<<"$parsed"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$round" "$kind" "$name" "$test" "$n" "$rps" "$avg" "$p50" "$p99" "$p999" "$max" "$cpu" "$opc" >>"$RAW"
  printf '  round %s %-10s %-8s %-10s %10s ops/s  p50 %s  p99 %s  p99.9 %s ms  cpu %ss  %s ops/cpu-s\n' \
    "$round" "$kind" "$name" "$test" "$rps" "$p50" "$p99" "$p999" "$cpu" "$opc" >&2
}

# run_workload KIND ROUND WORKLOAD_SPEC CLIENT_PREFIX...
run_workload() {
  local kind=$1 round=$2 spec=$3
  shift 3
  local name flags n test
  IFS='|' read -r name flags n <<<"$spec"
  redis-cli -p "$SERVER_PORT" FLUSHALL >/dev/null
  for test in set get; do
    # shellcheck disable=SC2086
    measure "$kind" "$round" "$name" "$test" "$n" "$OUT/bench-$kind-r$round-$name-$test.txt" \
      "$@" redis-benchmark -p "$SERVER_PORT" -t "$test" -n "$n" -r "$N" $flags -d 16
  done
}

run_server_round() {
  local kind=$1 round=$2 spec
  start_server "$kind"
  for spec in "${WORKLOADS[@]}"; do
    if [ "$kind" = ringkv-2sh ]; then
      run_workload "$kind" "$round" "$spec"
    else
      run_workload "$kind" "$round" "$spec" taskset -c "$CLIENT_CPU"
    fi
  done
  stop_server "$SERVER_PID"
}

# ---------------------------------------------------------------- summary ----

# values SERVER WORKLOAD TEST COLUMN -> one value per line
values() {
  awk -F'\t' -v s="$1" -v w="$2" -v t="$3" -v c="$4" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
    $2 == s && $3 == w && $4 == t && $k != "nan" { print $k }' "$RAW"
}

# ratios A B WORKLOAD TEST COLUMN -> per-round A/B, one per line
ratios() {
  awk -F'\t' -v a="$1" -v b="$2" -v w="$3" -v t="$4" -v c="$5" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
    $3 == w && $4 == t && $2 == a { x[$1] = $k }
    $3 == w && $4 == t && $2 == b { y[$1] = $k }
    END { for (r in x) if ((r in y) && x[r] != "nan" && y[r] != "nan" && y[r] > 0) print x[r] / y[r] }' "$RAW"
}

# stats FORMAT: stdin numbers -> "median [min–max]" (just the value for one round)
stats() {
  sort -g | awk -v f="$1" '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "-"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      if (NR == 1) printf f "\n", m
      else printf f " [" f "–" f "]\n", m, v[1], v[NR]
    }'
}

summarize() {
  local servers=(ringkv redis)
  if [ "$SHARDS2" = 1 ]; then servers+=(ringkv-2sh); fi
  local spec name flags n test s col
  local cols=(rps p50 p99 p999 ops_per_cpu_s)
  local fmts=("%.0f" "%.3f" "%.3f" "%.3f" "%.0f")
  echo
  echo "## Throughput and latency ($ROUNDS interleaved round(s); median [min–max] over rounds)"
  echo
  echo "ringkv and redis: server pinned to CPU $SERVER_CPU, redis-benchmark pinned to CPU $CLIENT_CPU."
  if [ "$SHARDS2" = 1 ]; then
    echo "ringkv-2sh: ringkv --shards 2 (one shard per CPU of the affinity mask), redis-benchmark unpinned."
  fi
  echo "Latencies in ms. ops/CPU-s = requests / server CPU seconds (utime+stime, all threads)."
  echo "Ratio rows: median [min–max] of the per-round ratios (interleaved runs); >1 means ringkv is higher."
  for spec in "${WORKLOADS[@]}"; do
    IFS='|' read -r name flags n <<<"$spec"
    echo
    echo "### $name: \`$(describe_workload "$name" "$flags" "$n")\`"
    echo
    echo "| test | server | ops/s | p50 | p99 | p99.9 | ops/CPU-s |"
    echo "|---|---|---|---|---|---|---|"
    for test in set get; do
      for s in "${servers[@]}"; do
        printf '| %s | %s ' "${test^^}" "$s"
        for i in "${!cols[@]}"; do
          printf '| %s ' "$(values "$s" "$name" "$test" "${cols[$i]}" | stats "${fmts[$i]}")"
        done
        echo "|"
      done
      for s in "${servers[@]}"; do
        if [ "$s" = redis ]; then continue; fi
        printf '| %s | **%s/redis** ' "${test^^}" "$s"
        for col in "${cols[@]}"; do
          printf '| %s ' "$(ratios "$s" redis "$name" "$test" "$col" | stats "%.2fx")"
        done
        echo "|"
      done
    done
  done
}

# ---------------------------------------------------------------- memory -----

# RESP SET commands for MEM_KEYS keys "key:%012d" (16 bytes), values
# "val:%012d"; with a TTL argument, each SET also gets `PX <ttl>`.
gen_sets() {
  awk -v n="$MEM_KEYS" -v ttl="${1:-}" 'BEGIN {
    for (i = 0; i < n; i++) {
      if (ttl == "")
        printf "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$16\r\nval:%012d\r\n", i, i
      else
        printf "*5\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$16\r\nval:%012d\r\n$2\r\nPX\r\n$%d\r\n%s\r\n", i, i, length(ttl), ttl
    }
  }'
}

used_memory() {
  redis-cli -p "$1" info memory | awk -F: '/^used_memory:/ { gsub("\r", ""); print $2 }'
}

memory_one() {
  local kind=$1 ttl=${2:-} before after ubefore uafter out replies
  start_server "$kind"
  sleep 0.2
  before=$(rss_kb "$SERVER_PID")
  ubefore=$(used_memory "$SERVER_PORT")
  out=$(gen_sets "$ttl" | redis-cli -p "$SERVER_PORT" --pipe 2>&1 | tr '\r' '\n')
  replies=$(echo "$out" | awk '/errors:/ { gsub(",", ""); print $2 "/" $4 }')
  sleep 0.5
  after=$(rss_kb "$SERVER_PID")
  uafter=$(used_memory "$SERVER_PORT")
  stop_server "$SERVER_PID"
  awk -v k="$kind" -v t="${ttl:+yes}" -v b="$before" -v a="$after" -v ub="$ubefore" -v ua="$uafter" \
    -v n="$MEM_KEYS" -v r="$replies" 'BEGIN {
    printf "| %s | %s | %.1f | %.1f | %.1f | %.1f | %s |\n", k, (t == "" ? "no" : t), b / 1024, a / 1024,
      (a - b) * 1024 / n, (ua - ub) / n, r
  }'
}

memory() {
  echo
  echo "## Memory: $MEM_KEYS keys, 16-byte keys and 16-byte values, without and with a TTL"
  echo
  echo "Keys \`key:%012d\`, values \`val:%012d\` (with a TTL: \`PX 100000000\`), loaded with \`redis-cli --pipe\`; servers as above (ringkv --shards 1)."
  echo "bytes/key: VmRSS growth and used_memory growth, divided by the key count."
  echo
  echo "| server | TTL | RSS before (MiB) | RSS after (MiB) | RSS bytes/key | used_memory bytes/key | errors/replies |"
  echo "|---|---|---|---|---|---|---|"
  memory_one ringkv
  memory_one redis
  memory_one ringkv 100000000
  memory_one redis 100000000
}

# ---------------------------------------------------------------- collections

# The redis-benchmark collection tests, in redis-benchmark's own order.
COLL_TESTS=(lpush rpush lpop rpop sadd hset spop zadd lrange_100 lrange_600)

COLL_FLAGS="-P 16 -c $CLIENTS"

# One server, all collection tests in order on the same (unflushed) server,
# as one `redis-benchmark -t lpush,...,lrange_600` would run them. The tests
# run one by one so that the CPU time is per test. lrange_N is redis-benchmark's
# own `LRANGE mylist 0 N-1` after its "LPUSH (needed to benchmark LRANGE)"
# step; here that LPUSH step (same command, same count) runs untimed first and
# the LRANGE is sent as a custom command, so its CPU time is the LRANGE's only.
run_coll_round() {
  local kind=$1 round=$2 test log filled=0 client=(taskset -c "$CLIENT_CPU")
  start_server "$kind"
  for test in "${COLL_TESTS[@]}"; do
    log=$OUT/coll-$kind-r$round-$test.txt
    case $test in
      lrange_*)
        if [ $filled = 0 ]; then
          # shellcheck disable=SC2086
          "${client[@]}" redis-benchmark -p "$SERVER_PORT" -t lpush -n "$COLL_N_LRANGE" -r "$COLL_R" $COLL_FLAGS -q \
            >"$OUT/coll-$kind-r$round-lrange-fill.txt" 2>&1
          filled=1
        fi
        # shellcheck disable=SC2086
        measure "$kind" "$round" coll "$test" "$COLL_N_LRANGE" "$log" "${client[@]}" \
          redis-benchmark -p "$SERVER_PORT" -n "$COLL_N_LRANGE" -r "$COLL_R" $COLL_FLAGS \
          LRANGE mylist 0 $((${test#lrange_} - 1))
        ;;
      *)
        # shellcheck disable=SC2086
        measure "$kind" "$round" coll "$test" "$COLL_N" "$log" "${client[@]}" \
          redis-benchmark -p "$SERVER_PORT" -t "$test" -n "$COLL_N" -r "$COLL_R" $COLL_FLAGS
        ;;
    esac
  done
  stop_server "$SERVER_PID"
}

summarize_coll() {
  local test t
  echo
  echo "## Collections: throughput and CPU efficiency ($ROUNDS interleaved round(s); median [min–max] over rounds)"
  echo
  echo "\`redis-benchmark -t <test> -n $COLL_N -r $COLL_R -P 16 -c $CLIENTS\` (\`-n $COLL_N_LRANGE\` for LRANGE), one test per"
  echo "invocation, in the order ${COLL_TESTS[*]} on one server per round (LRANGE: see Method)."
  echo "Server pinned to CPU $SERVER_CPU, redis-benchmark pinned to CPU $CLIENT_CPU; ringkv --shards 1."
  echo "Ratio columns: median [min–max] of the per-round ringkv/redis ratios; >1 means ringkv is higher."
  echo
  echo "| test | ringkv ops/s | redis ops/s | ringkv/redis ops/s | ringkv ops/CPU-s | redis ops/CPU-s | ringkv/redis ops/CPU-s |"
  echo "|---|---|---|---|---|---|---|"
  for test in "${COLL_TESTS[@]}"; do
    t=${test^^}
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" \
      "$(values ringkv coll "$test" rps | stats %.0f)" \
      "$(values redis coll "$test" rps | stats %.0f)" \
      "$(ratios ringkv redis coll "$test" rps | stats %.2fx)" \
      "$(values ringkv coll "$test" ops_per_cpu_s | stats %.0f)" \
      "$(values redis coll "$test" ops_per_cpu_s | stats %.0f)" \
      "$(ratios ringkv redis coll "$test" ops_per_cpu_s | stats %.2fx)"
  done
  echo
  echo "### Collections: latency (ms, median [min–max] over rounds)"
  echo
  echo "| test | ringkv p50 | redis p50 | ringkv p99 | redis p99 | ringkv/redis p99 | ringkv p99.9 | redis p99.9 |"
  echo "|---|---|---|---|---|---|---|---|"
  for test in "${COLL_TESTS[@]}"; do
    t=${test^^}
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" \
      "$(values ringkv coll "$test" p50 | stats %.3f)" \
      "$(values redis coll "$test" p50 | stats %.3f)" \
      "$(values ringkv coll "$test" p99 | stats %.3f)" \
      "$(values redis coll "$test" p99 | stats %.3f)" \
      "$(ratios ringkv redis coll "$test" p99 | stats %.2fx)" \
      "$(values ringkv coll "$test" p999 | stats %.3f)" \
      "$(values redis coll "$test" p999 | stats %.3f)"
  done
}

# gen_coll TYPE: one command per key for COLL_MEM_KEYS keys "<t>:%014d"
# (16 bytes), each creating a 10-element collection; elements are 16 bytes
# ("val:%012d" / "mem:%012d"), except the integer set.
gen_coll() {
  awk -v n="$COLL_MEM_KEYS" -v t="$1" '
    function b(s) { return "$" length(s) "\r\n" s "\r\n" }
    BEGIN {
      for (i = 0; i < n; i++) {
        e = i * 10
        if (t == "hash") {
          out = "*22\r\n" b("HSET") b(sprintf("h:%014d", i))
          for (j = 0; j < 10; j++) out = out b("field:" j) b(sprintf("val:%012d", e + j))
        } else if (t == "list") {
          out = "*12\r\n" b("RPUSH") b(sprintf("l:%014d", i))
          for (j = 0; j < 10; j++) out = out b(sprintf("val:%012d", e + j))
        } else if (t == "set") {
          out = "*12\r\n" b("SADD") b(sprintf("s:%014d", i))
          for (j = 0; j < 10; j++) out = out b(sprintf("mem:%012d", e + j))
        } else if (t == "intset") {
          out = "*12\r\n" b("SADD") b(sprintf("i:%014d", i))
          for (j = 0; j < 10; j++) out = out b(sprintf("%d", e + j))
        } else if (t == "zset") {
          out = "*22\r\n" b("ZADD") b(sprintf("z:%014d", i))
          for (j = 0; j < 10; j++) out = out b(j + 1) b(sprintf("mem:%012d", e + j))
        }
        printf "%s", out
      }
    }'
}

# INFO memory used_memory of the running server, in bytes.
used_memory() {
  redis-cli -p "$SERVER_PORT" INFO memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'
}

coll_memory_one() {
  local type=$1 kind=$2 rss0 rss1 um0 um1 out replies enc first
  case $type in
    hash) first=h ;; list) first=l ;; set) first=s ;; intset) first=i ;; zset) first=z ;;
  esac
  start_server "$kind"
  sleep 0.2
  rss0=$(rss_kb "$SERVER_PID")
  um0=$(used_memory)
  out=$(gen_coll "$type" | redis-cli -p "$SERVER_PORT" --pipe 2>&1 | tr '\r' '\n')
  replies=$(echo "$out" | awk '/errors:/ { gsub(",", ""); print $2 "/" $4 }')
  sleep 0.5
  rss1=$(rss_kb "$SERVER_PID")
  um1=$(used_memory)
  enc=$(redis-cli -p "$SERVER_PORT" OBJECT ENCODING "$(printf '%s:%014d' "$first" 0)")
  stop_server "$SERVER_PID"
  awk -v ty="$type" -v k="$kind" -v r0="$rss0" -v r1="$rss1" -v u0="$um0" -v u1="$um1" \
    -v n="$COLL_MEM_KEYS" -v r="$replies" -v e="$enc" 'BEGIN {
    printf "| %s | %s | %s | %.1f | %.1f | %s |\n", ty, k, e, (r1 - r0) * 1024 / n, (u1 - u0) / n, r
  }'
}

coll_memory() {
  local type
  echo
  echo "## Collections memory: $COLL_MEM_KEYS keys per type, 10 elements each (RSS growth)"
  echo
  echo "One fresh server per type and server (ringkv --shards 1 and redis, in turn, types in the order below),"
  echo "loaded with \`redis-cli --pipe\`. Keys are 16 bytes (\`h:%014d\`, ...); elements are 16 bytes"
  echo "(hash fields \`field:0\`..\`field:9\` with values \`val:%012d\`; list elements \`val:%012d\`;"
  echo "set and zset members \`mem:%012d\`, zset scores 1..10; intset: the integers 10i..10i+9)."
  echo "bytes/key = growth divided by the key count, i.e. key + collection + per-key overhead."
  echo "used_memory is each server's own INFO memory figure (allocator-reported), for reference."
  echo
  echo "| type | server | OBJECT ENCODING | RSS bytes/key | used_memory bytes/key | errors/replies |"
  echo "|---|---|---|---|---|---|"
  for type in hash list set intset zset; do
    coll_memory_one "$type" ringkv
    coll_memory_one "$type" redis
  done
}

# ---------------------------------------------------------------- main -------

machine() {
  echo "# ringkv vs redis-server ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "- CPU: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) CPUs; RAM $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "- kernel: $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- $(redis-server --version | cut -d' ' -f1-3); $(redis-benchmark --version 2>/dev/null | head -1 || true)"
  echo "- ringkv: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)'), release build"
  echo "- command: \`ROUNDS=$ROUNDS N=$N N_LAT=$N_LAT CLIENTS=$CLIENTS SHARDS2=$SHARDS2 MEMORY=$MEMORY MEM_KEYS=$MEM_KEYS COLL_N=$COLL_N COLL_N_LRANGE=$COLL_N_LRANGE COLL_R=$COLL_R COLL_MEMORY=$COLL_MEMORY COLL_MEM_KEYS=$COLL_MEM_KEYS benches/compare.sh${1:+ $1}\`"
}

if [ "$BUILD" = 1 ]; then
  cargo build --release >&2
fi
[ -x "$RINGKV" ] || { echo "missing $RINGKV" >&2; exit 1; }

machine "${1:-}" >"$SUMMARY"
printf 'round\tserver\tworkload\ttest\tn\trps\tavg\tp50\tp99\tp999\tmax\tcpu_s\tops_per_cpu_s\n' >"$RAW"
if [ "$MODE" = all ]; then
  for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    run_server_round ringkv "$round"
    run_server_round redis "$round"
    if [ "$SHARDS2" = 1 ]; then run_server_round ringkv-2sh "$round"; fi
  done
  summarize >>"$SUMMARY"
fi
if [ "$MODE" = all ] || [ "$MODE" = collections ]; then
  for round in $(seq 1 "$ROUNDS"); do
    echo "collections round $round/$ROUNDS" >&2
    run_coll_round ringkv "$round"
    run_coll_round redis "$round"
  done
  summarize_coll >>"$SUMMARY"
fi
if [ "$MODE" = memory ] || { [ "$MODE" = all ] && [ "$MEMORY" = 1 ]; }; then
  echo "memory" >&2
  memory >>"$SUMMARY"
fi
if [ "$MODE" = memory ] || { [ "$MODE" != memory ] && [ "$COLL_MEMORY" = 1 ]; }; then
  echo "collections memory" >&2
  coll_memory >>"$SUMMARY"
fi
cat "$SUMMARY"
echo >&2
echo "raw results: $OUT (summary.md, raw.tsv, redis-benchmark outputs)" >&2
