#!/usr/bin/env bash
# Resident memory of `model-server` under full load, beside its throughput
# (issue 20, "Memory": peak at most 64 MiB for 300,000 records published
# as fast as possible, without losing throughput).
#
#   scripts/bench-memory.sh [--count N] [--engine streams|stage|actors|all]
#       [--store memory|standard|custom|all] [--partitions P] [--rounds R]
#       [--model FILE]... [--label TEXT] [--timeout S] [--idle S]
#       [-- KEY=VALUE...]
#
# Each run gets a private development broker on a free loopback port (a
# fresh one per run: the topics' names are fixed, so a shared broker would
# hand a run the previous run's records), a fresh application id and state
# directory, and a `model-server` on a free HTTP port. Once its `/health`
# answers 200 the models are published (by default the two linear models
# of scripts/bench.sh's serving scenario; --model FILE, repeatable, picks
# others), and once `/models` shows the last one serving, one record per
# partition warms it up: once they are scored, every engine has joined its
# group and fetches (`/health` does not say so for `stage` and `actors`).
# Then N wine records (default 300,000, from data/winequality_red.csv) go
# to `mdata` as fast as the broker takes them (`model-client publish
# --rate 0`). The server's VmRSS is sampled from /proc every 50 ms from
# its start to its end; its Prometheus counter `model_server_records`
# (served + not served, which every engine exports) is polled every 10 ms
# (a scrape costs the server about 0.1 ms of CPU). The run's serving period spans from the first
# record's creation (its `ts`, read back from `mdata`) to the first poll
# that saw all N scored: it includes the server's delay in seeing the
# first record, and can be overstated by one poll, never understated. After
# --idle seconds (default 5) without load, the server's CPU time and peak
# RSS are read and it is stopped with SIGTERM; it must exit 0.
#
# One row per run: label, engine/store, records, seconds of the serving
# period, records/s over it, CPU seconds of the server process (its whole
# life: start, models, load and idle; utime+stime) per million records,
# peak RSS (VmHWM), steady RSS (median of the samples in the last half of
# the serving period) and RSS at idle after the load, in MiB.
#
#   --engine     streams (default), stage, actors, or all three
#   --store      the streams engine's statistics store: standard (default,
#                RocksDB), memory, custom, or all three
#   --partitions partitions of mdata and mscores (default 2, as
#                model-server's own default)
#   --rounds R   run everything R times (default 1)
#   --label TEXT names the rows (default: none)
#   --timeout S  a run that has not scored N records S seconds after the
#                server started fails (default 300)
#   KEY=VALUE    settings passed to every server as `-c KEY=VALUE`:
#                streams settings and librdkafka's (`consumer.` and
#                `producer.` prefixes target one client, unprefixed keys
#                go to all), e.g. consumer.queued.max.messages.kbytes=65536
#                for librdkafka's own prefetch bound instead of the
#                framework's 1024
#
# The environment reaches the server, so MIMALLOC_SHOW_STATS=1,
# MIMALLOC_PURGE_DELAY=0 or MODEL_SERVER_HUGE_PAGES=1 (keep transparent
# huge pages, which the server otherwise turns off) can be tried as they are; the server's log is
# kept (and its path printed) when BENCH_MEMORY_KEEP=1 or a run fails.
# Run it where no build competes for the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

count=300000
engines=streams
stores=standard
partitions=2
rounds=1
label=""
timeout=300
idle=5
models=()
extra=()
while (($#)); do
  case "$1" in
    --count) count="${2:?--count needs a number}"; shift 2 ;;
    --engine) engines="${2:?--engine needs a name}"; shift 2 ;;
    --store) stores="${2:?--store needs a name}"; shift 2 ;;
    --partitions) partitions="${2:?--partitions needs a number}"; shift 2 ;;
    --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
    --label) label="${2?--label needs a text}"; shift 2 ;;
    --timeout) timeout="${2:?--timeout needs seconds}"; shift 2 ;;
    --idle) idle="${2:?--idle needs seconds}"; shift 2 ;;
    --model) models+=("${2:?--model needs a file}"); shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "bench-memory: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for n in "$count" "$partitions" "$rounds" "$timeout" "$idle"; do
  [[ "$n" =~ ^[0-9]+$ ]] && ((n > 0)) || { echo "bench-memory: '$n' is not a positive number" >&2; exit 2; }
done
case "$engines" in
  all) engines="streams stage actors" ;;
  streams|stage|actors) ;;
  *) echo "bench-memory: --engine streams|stage|actors|all, not '$engines'" >&2; exit 2 ;;
esac
case "$stores" in
  all) stores="standard memory custom" ;;
  memory|standard|custom) ;;
  *) echo "bench-memory: --store memory|standard|custom|all, not '$stores'" >&2; exit 2 ;;
esac
for kv in "${extra[@]}"; do
  [[ "$kv" == ?*=* ]] || { echo "bench-memory: '$kv' is not KEY=VALUE" >&2; exit 2; }
done
if ((${#models[@]} == 0)); then
  models=(data/models/pmml/winequalityLinearRegression.pmml data/models/onnx/wine_linear_regression.onnx)
fi
for model in "${models[@]}"; do
  [[ -f "$model" ]] || { echo "bench-memory: no model file $model" >&2; exit 2; }
done

scripts/setup.sh
# Errors built on hot paths capture backtraces when this is set.
unset RUST_BACKTRACE
# The same build as the tests: other target selections resolve dependency
# features differently and rebuild RocksDB.
cargo build --workspace --all-targets
server_bin="target/debug/model-server"
client_bin="target/debug/model-client"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# What the current run started, for the trap.
broker_port=""
server_pid=""
publisher_pid=""
sampler_pid=""
run_dir=""
label_now=""
cleanup() {
  local status=$?
  for pid in "$publisher_pid" "$sampler_pid" "$server_pid"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  if [[ -n "$broker_port" ]]; then
    scripts/dev-broker.sh stop "$broker_port" >/dev/null 2>&1 || true
    if ((status == 0)); then rm -f ".tools/run/broker-$broker_port.log"; fi
  fi
  if ((status != 0)) && [[ -n "$run_dir" ]]; then
    echo "bench-memory: failed; logs in $run_dir" >&2
  fi
}
trap cleanup EXIT

# Exits 0 once `/models` (at $1) shows the model named $2 serving, 2 when
# /metrics says a model was rejected, 1 otherwise. (Waiting for the last
# model rather than counting builds: the stage engine skips a model older
# than one it already has.)
model_ready_py='
import json, re, sys, urllib.request
try:
    metrics = urllib.request.urlopen(sys.argv[1] + "/metrics", timeout=2).read().decode()
    if sum(int(float(v)) for v in re.findall(r"^model_server_models_rejected(?:_total)? (\S+)", metrics, re.M)):
        sys.exit(2)
    models = json.load(urllib.request.urlopen(sys.argv[1] + "/models", timeout=2))
except (OSError, ValueError):
    sys.exit(1)
sys.exit(0 if any(m.get("name") == sys.argv[2] for m in models) else 1)
'

# Samples VmRSS of $1 every 50 ms into $2 ("unix-time kB") until it exits.
sampler_py='
import sys, time
pid, out = sys.argv[1], open(sys.argv[2], "w", buffering=1)
while True:
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(l for l in f if l.startswith("VmRSS:")).split()[1]
    except (OSError, StopIteration):
        break
    out.write(f"{time.time():.3f} {rss}\n")
    time.sleep(0.05)
'

# Polls /metrics every 10 ms until N records in all are scored; prints
# when (unix time). Fails when the server exits early, or at the deadline.
watch_py='
import re, os, sys, time, urllib.request
url, n, deadline, server = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
pattern = re.compile(r"^model_server_records(?:_total)?\{outcome=\"(?:not_)?served\"\} (\S+)", re.M)
def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
scored = 0
while True:
    now = time.time()
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
        scored = sum(int(float(v)) for v in pattern.findall(text))
    except Exception:
        pass
    if scored >= n:
        print(f"{now:.3f}")
        sys.exit(0)
    if not alive(server):
        sys.exit(f"the server exited after {scored} records scored")
    if now > deadline:
        sys.exit(f"{scored} of {n} records scored within the timeout")
    time.sleep(max(0.0, 0.01 - (time.time() - now)))
'

fail() {
  echo "bench-memory: $label_now: $*" >&2
  if [[ -n "$run_dir" && -f "$run_dir/server.log" ]]; then
    echo "bench-memory: the server's log ends:" >&2
    tail -n 30 "$run_dir/server.log" >&2
  fi
  exit 1
}

printf '%-22s %-16s %8s %8s %9s %7s %8s %8s %8s\n' \
  label engine/store records seconds records/s "CPU s/M" "peak MiB" "steady" "idle"

run_one() {
  local engine="$1" store="$2"
  local what="$engine"
  [[ "$engine" == streams ]] && what="streams/$store"
  label_now="${label:-$what}"
  run_dir="$(mktemp -d "${TMPDIR:-/tmp}/bench-memory.XXXXXX")"
  broker_port="$(free_port)"
  local bootstrap http_port app
  bootstrap="$(scripts/dev-broker.sh start "$broker_port")"
  http_port="$(free_port)"
  app="bench-memory-$$-$RANDOM"
  local args=(--engine "$engine" --bootstrap-servers "$bootstrap" --port "$http_port"
    --application-id "$app" --partitions "$partitions"
    # A quick group join on the development broker (it answers a join
    # after about half the session timeout); any KEY=VALUE may override.
    -c consumer.session.timeout.ms=6000 -c consumer.heartbeat.interval.ms=1000)
  [[ "$engine" == streams ]] && args+=(--store "$store")
  [[ "$engine" != stage ]] && args+=(--state-dir "$run_dir/state")
  for kv in "${extra[@]}"; do args+=(-c "$kv"); done

  local started deadline url="http://127.0.0.1:$http_port"
  started="$(date +%s.%N)"
  deadline="$(python3 -c "print($started + $timeout)")"
  "$server_bin" "${args[@]}" >"$run_dir/server.log" 2>&1 &
  server_pid=$!
  python3 -c "$sampler_py" "$server_pid" "$run_dir/rss" &
  sampler_pid=$!

  # Up: /health answers 200 (the streams engine: Running).
  until curl -fs -o /dev/null --max-time 2 "$url/health"; do
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited at start"
    python3 -c "import sys, time; sys.exit(time.time() > $deadline)" || fail "/health did not answer 200 within ${timeout} s"
    sleep 0.1
  done

  # The models first, each built before the records start.
  for model in "${models[@]}"; do
    "$client_bin" --bootstrap-servers "$bootstrap" publish --model "$model" --count 0 \
      --partitions "$partitions" >>"$run_dir/client.log" 2>&1 || fail "publishing $model failed (see $run_dir/client.log)"
  done
  local last_model="${models[-1]##*/}" ready
  last_model="${last_model%.*}"
  while :; do
    ready=0
    python3 -c "$model_ready_py" "$url" "$last_model" || ready=$?
    ((ready == 0)) && break
    ((ready == 2)) && fail "a model was rejected"
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited while building models"
    python3 -c "import sys, time; sys.exit(time.time() > $deadline)" || fail "the models were not built within ${timeout} s"
    sleep 0.1
  done

  # The warm-up: one record per partition (the publisher deals records
  # out in turn), each at offset 0.
  "$client_bin" --bootstrap-servers "$bootstrap" publish --no-models --rate 0 --count "$partitions" \
    --partitions "$partitions" >>"$run_dir/client.log" 2>&1 || fail "the warm-up publish failed"
  python3 -c "$watch_py" "$url/metrics" "$partitions" "$deadline" "$server_pid" >/dev/null ||
    fail "the warm-up records were not scored"

  "$client_bin" --bootstrap-servers "$bootstrap" publish --no-models --rate 0 --count "$count" \
    --partitions "$partitions" >>"$run_dir/client.log" 2>&1 &
  publisher_pid=$!
  local end first
  end="$(python3 -c "$watch_py" "$url/metrics" "$((count + partitions))" "$deadline" "$server_pid")" ||
    fail "not all records were scored"
  wait "$publisher_pid" || fail "the publisher failed (see $run_dir/client.log)"
  publisher_pid=""
  # The load's first records are at offset 1 of each partition (record i
  # goes to partition i mod P); a partition's messages are read in order,
  # so the first 1,000 read hold at least one of them, each created within
  # a millisecond of the first.
  first="$("$client_bin" --bootstrap-servers "$bootstrap" read --topic mdata --count 1000 2>>"$run_dir/client.log" |
    python3 -c 'import json, sys
ts = [v["value"]["ts"] for v in map(json.loads, sys.stdin) if v["offset"] == 1]
print(min(ts) / 1000)')" || fail "cannot read the first record back"

  sleep "$idle"
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited after the load"
  local hwm idle_rss cpu_ticks
  hwm="$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")"
  idle_rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")"
  # utime and stime: fields 14 and 15, counted after the command's ")".
  cpu_ticks="$(sed 's/.*) //' "/proc/$server_pid/stat" | awk '{ print $12 + $13 }')"
  kill -TERM "$server_pid"
  local status=0
  wait "$server_pid" || status=$?
  server_pid=""
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
  ((status == 0)) || fail "the server exited with status $status after SIGTERM"

  python3 - "$run_dir/rss" "$first $end" "$count" "$cpu_ticks" "$(getconf CLK_TCK)" \
    "$hwm" "$idle_rss" "$label_now" "$what" <<'PY'
import statistics, sys
rss, period, n, ticks, hz, hwm, idle, label, what = sys.argv[1:]
start, end = map(float, period.split())
n = int(n)
samples = [tuple(map(float, line.split())) for line in open(rss) if line.strip()]
half = start + (end - start) / 2
steady = [kb for t, kb in samples if half <= t <= end] or [samples[-1][1]]
seconds = end - start
mib = lambda kb: float(kb) / 1024
print(f"{label[:22]:<22} {what:<16} {n:>8} {seconds:>8.2f} {n / seconds:>9.0f} "
      f"{int(ticks) / int(hz) / n * 1e6:>7.1f} {mib(hwm):>8.1f} "
      f"{mib(statistics.median(steady)):>8.1f} {mib(idle):>8.1f}")
PY

  scripts/dev-broker.sh stop "$broker_port" >/dev/null 2>&1 || true
  rm -f ".tools/run/broker-$broker_port.log"
  broker_port=""
  if [[ "${BENCH_MEMORY_KEEP:-0}" == 1 ]]; then
    echo "bench-memory: $label_now: logs kept in $run_dir" >&2
  else
    rm -rf "$run_dir"
  fi
  run_dir=""
}

echo "bench-memory: $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((round = 1; round <= rounds; round++)); do
  for engine in $engines; do
    if [[ "$engine" == streams ]]; then
      for store in $stores; do run_one streams "$store"; done
    else
      run_one "$engine" -
    fi
  done
done
