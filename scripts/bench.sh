#!/usr/bin/env bash
# Runtime throughput benchmark on a private development broker.
#
#   scripts/bench.sh [--count N] [--partitions P] [--scenarios LIST] [--rounds R] [-- EXTRA...]
#
# Starts a broker on a free loopback port, writes N records (default
# 1,000,000, about 100 bytes each) over P partitions (default 4), and runs
# scenarios on that same input. The basis of every ratio is the semantic
# loop: a raw rdkafka consume-and-produce loop that does the per-record
# work a topology must do, and no more (issue 20): it forwards key, value,
# timestamp and headers to the key's partition, with an idempotent
# producer, committing the consumed offsets every commit.interval.ms after
# waiting for every delivery, and the framework's client settings (fetch,
# batch, linger). The bare loop (raw: no headers or timestamps, not
# idempotent, no commits until the end) is a second reference. Then: a
# topology that passes each record's bytes through untouched
# (passthrough), a stateless topology, a count per key in RocksDB with a
# changelog under at-least-once (count-alos), the same under exactly-once
# (count-eos), final counts per key in tumbling 60 s windows with 10 s
# grace (window-count: RocksDB, cached, suppressed until each window
# closes; the input's event time advances 1 ms per record), the model
# server's topology on as many wine records with models swapped every
# 100 ms (serving; it also prints the swaps and the longest any record
# waited for its model) and its other engines (serving-stage,
# serving-actors), and restore: a full restore, into an empty state
# directory, of a RocksDB store whose changelog holds N distinct keys over
# P partitions, in records/s from the first restore fetch to the last
# record restored (the group join excluded).
#
# For each it prints records per second, the ratio to the semantic loop of
# the same round and to the bare loop, CPU seconds per million records of
# the process (CPU s/M) and of the one thread that consumes, processes and
# produces (loop/M: a loop's own thread or the stream thread, and its
# ratio to the semantic loop's), the process's peak resident memory, and
# the commits and their mean time. LIST is comma-separated from semantic,
# raw, passthrough, stateless, count-alos, count-eos, window-count,
# serving, serving-stage, serving-actors, restore, queries, or all (every
# one but queries).
# queries: interactive queries on two instances with HTTP query servers in
# one process (10,000 keys; in-process get, HTTP lookups of local and of
# forwarded keys, merged scans): requests/s, mean and p99 latency, CPU
# seconds per million requests. EXTRA arguments (KEY=VALUE streams
# settings such as commit.interval.ms=1000; consumer.KEY=VALUE and
# producer.KEY=VALUE reach the loops too) go to bench-runtime; see
# tests/src/bin/bench-runtime.rs. BENCH_SCENARIO_TIMEOUT (seconds, default
# 300) stops a streams scenario that runs longer and reports its partial
# rate. --rounds R (default 1) runs the scenarios R times in turn on the
# same input, each round starting one scenario further along the list,
# and ends with each one's medians: single ratios move by a tenth or more
# on a shared machine. Transparent huge pages stay as mimalloc and the
# kernel have them, as in an application's binary; BENCH_HUGE_PAGES=0
# turns them off, as model-server does (see scripts/bench-memory.sh).
# Unset RUST_BACKTRACE first, and run it where no build competes for the
# cores.
#
# Targets (issue 20; median of the rounds' steady ratios to the semantic
# loop): passthrough >= 0.9, stateless >= 0.85, count-alos >= 0.75,
# count-eos >= 0.55, serving (each engine) >= 0.75, window-count >= 0.6;
# passthrough's loop/M <= 1.15 x the semantic loop's; exactly-once commits
# < 5 ms each; restore >= 500,000 records/s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

count=1000000
partitions=4
scenarios=all
extra=()
while (($#)); do
  case "$1" in
    --count) count="${2:?--count needs a number}"; shift 2 ;;
    --count=*) count="${1#*=}"; shift ;;
    --partitions) partitions="${2:?--partitions needs a number}"; shift 2 ;;
    --partitions=*) partitions="${1#*=}"; shift ;;
    --scenarios) scenarios="${2:?--scenarios needs a list}"; shift 2 ;;
    --scenarios=*) scenarios="${1#*=}"; shift ;;
    --rounds) export BENCH_ROUNDS="${2:?--rounds needs a number}"; shift 2 ;;
    --rounds=*) export BENCH_ROUNDS="${1#*=}"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "bench: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh
# Errors built on hot paths capture backtraces when this is set.
unset RUST_BACKTRACE

# The same build as the tests: other target selections resolve dependency
# features differently and rebuild RocksDB.
cargo build --workspace --all-targets
bin="target/debug/bench-runtime"

# A free loopback port: ask the kernel for one.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# Stop the broker on exit; keep its log only when something failed.
stop_broker() {
  local status=$?
  scripts/dev-broker.sh stop "$port" >/dev/null 2>&1 || true
  if ((status == 0)); then
    rm -f ".tools/run/broker-$port.log"
  else
    echo "bench: failed; the broker's log is .tools/run/broker-$port.log" >&2
  fi
}
trap stop_broker EXIT
bootstrap="$(scripts/dev-broker.sh start "$port")"
broker_pid="$(cat ".tools/run/broker-$port.pid" 2>/dev/null || true)"
echo "bench: broker on $bootstrap; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

BENCH_BROKER_PID="$broker_pid" "$bin" "$bootstrap" "$count" "$partitions" "$scenarios" "${extra[@]}"
