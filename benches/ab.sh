#!/usr/bin/env bash
# Interleaved A/B comparison of server command lines under redis-benchmark.
#
# Each round starts every server of SERVERS in turn (A B C A B C ...), runs
# every TESTS line against it with redis-benchmark, and records ops/s, p99
# and ops per server CPU-second (utime+stime of all the server's threads,
# from /proc). At the end it prints, per test, the median over rounds of
# each server's numbers and of the per-round ratios to the first server.
#
# Usage: benches/ab.sh NAME=CMD [NAME=CMD ...]
#   CMD is a server command line without --port (added, on a free loopback
#   port); "taskset -c 1 ..." pins it.
# Environment:
#   ROUNDS [3]      interleaved rounds
#   CLIENT [taskset -c 0]  prefix for redis-benchmark
#   TESTS           redis-benchmark arguments, one run per line (default:
#                   SET and GET at -c 50 -P 1 and -P 16, -d 16 -r 1000000);
#                   a line starting with "tx_load" runs benches/tx_load.rs
#                   (MULTI/SET/SET/EXEC) with the rest of the line instead
#   SETUP           a redis-cli command run on each server once it is up
#                   (e.g. SCRIPT LOAD "...", for EVALSHA tests)
# Examples (BENCHMARKS.md, "Thread-per-core efficiency"):
#   benches/ab.sh "redis=taskset -c 1 redis-server --save '' --appendonly no" \
#                 "ringkv=taskset -c 1 target/release/ringkv --shards 1 --save ''"
#   benches/ab.sh "1shard=taskset -c 1 target/release/ringkv --shards 1 --save ''" \
#                 "2shards=taskset -c 1 target/release/ringkv --shards 2 --save ''"
# Starts and stops only its own servers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
CLIENT=${CLIENT:-taskset -c 0}
TESTS=${TESTS:-"-t set -n 300000 -r 1000000 -c 50 -P 1 -d 16
-t get -n 300000 -r 1000000 -c 50 -P 1 -d 16
-t set -n 1500000 -r 1000000 -c 50 -P 16 -d 16
-t get -n 1500000 -r 1000000 -c 50 -P 16 -d 16"}
[ $# -ge 1 ] || { sed -n '2,24p' "$0"; exit 2; }
if grep -q '^tx_load' <<<"$TESTS"; then
  TX_LOAD=$(cargo bench --bench tx_load --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*tx_load[^"]*\)".*/\1/p' | tail -1)
fi
RAW=$(mktemp)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -f "$RAW"' EXIT
cpu() { cat /proc/"$1"/task/*/stat 2>/dev/null | awk '{s+=$14+$15} END{print s}'; }
for r in $(seq "$ROUNDS"); do
  for spec in "$@"; do
    name=${spec%%=*}; cmd=${spec#*=}
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    eval "exec $cmd --port $port" >/dev/null 2>&1 &
    PID=$!
    for _ in $(seq 200); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.05; done
    # shellcheck disable=SC2086
    [ -n "${SETUP:-}" ] && eval "redis-cli -p $port $SETUP" >/dev/null
    while read -r line; do
      [ -z "$line" ] && continue
      t0=$(cpu "$PID")
      if [[ $line == tx_load* ]]; then
        # shellcheck disable=SC2086
        out=$($CLIENT "$TX_LOAD" -p "$port" ${line#tx_load} 2>/dev/null)
      else
        # shellcheck disable=SC2086
        out=$($CLIENT redis-benchmark -p "$port" $line 2>/dev/null | tr '\r' '\n')
      fi
      t1=$(cpu "$PID")
      rps=$(echo "$out" | sed -n 's/.*throughput summary: \([0-9.]*\).*/\1/p' | tail -1)
      p99=$(echo "$out" | grep -a -A1 'avg       min' | tail -1 | awk '{print $5}')
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$name" "$line" "$rps" "$((t1 - t0))" "$p99" >>"$RAW"
    done <<<"$TESTS"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  done
done
python3 - "$RAW" "$(getconf CLK_TCK)" <<'PY'
import sys, re, statistics as st
hz = int(sys.argv[2]); rows = {}; names = []; tests = []
for l in open(sys.argv[1]):
    r, name, test, rps, ticks, p99 = l.rstrip('\n').split('\t')
    n = int(re.search(r'-n (\d+)', test).group(1))
    cps = n / (max(int(ticks), 1) / hz)
    rows.setdefault((test, r), {})[name] = (float(rps or 0), cps, float(p99 or 0))
    if name not in names: names.append(name)
    if test not in tests: tests.append(test)
base = names[0]
print(f"ratios: median [min-max] of per-round ratios to {base}; ops/CPU-s = requests / server CPU seconds\n")
print("| test | server | ops/s | p99 ms | ops/CPU-s | ops/s ratio | ops/CPU-s ratio |")
print("|---|---|---|---|---|---|---|")
for t in tests:
    rs = [v for (tt, _), v in rows.items() if tt == t]
    for nm in names:
        xs = [x[nm] for x in rs if nm in x]
        med = lambda i: st.median(x[i] for x in xs)
        rr = [x[nm][0] / x[base][0] for x in rs if nm in x and x[base][0]]
        cr = [x[nm][1] / x[base][1] for x in rs if nm in x]
        ratio = lambda v: f"{st.median(v):.2f}x [{min(v):.2f}-{max(v):.2f}]" if v else "-"
        print(f"| `{t}` | {nm} | {med(0):.0f} | {med(2):.3f} | {med(1):.0f} | {ratio(rr)} | {ratio(cr)} |")
PY
