#!/usr/bin/env bash
# The demo on a fresh machine: installs what is missing, builds, starts a
# local broker, two model-server instances (HTTP on 8888 and 8889) and the
# publisher (wine records at 200/s, a new model every 10 s), prints the web
# console's address (http://127.0.0.1:8888/), then shows every few seconds
# what the instances answer. Ctrl-C stops everything it started.
#
#   DEMO_BROKER_PORT  broker port (default 9092)
#   DEMO_STORE        memory|standard|custom (default standard)
#   DEMO_RATE         records per second (default 200)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BROKER_PORT="${DEMO_BROKER_PORT:-9092}"
STORE="${DEMO_STORE:-standard}"
RATE="${DEMO_RATE:-200}"
BROKER="127.0.0.1:$BROKER_PORT"

scripts/setup.sh
# Error values carry no backtraces on the scoring path.
# (The servers join their group within a few seconds: the development
# broker answers a join after half the session timeout, set to 6 s below.)
unset RUST_BACKTRACE
echo "demo: building (the first build takes a while)" >&2
# The same build as scripts/test.sh, so the two share one target dir.
cargo build --workspace --all-targets --locked
BIN="$ROOT/target/debug"

started_broker=false
if ! scripts/dev-broker.sh status "$BROKER_PORT" >/dev/null 2>&1; then
  scripts/dev-broker.sh start "$BROKER_PORT" >/dev/null
  started_broker=true
fi
RUN="$(mktemp -d "${TMPDIR:-/tmp}/model-demo.XXXXXX")"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo >&2
  echo "demo: stopping" >&2
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if $started_broker; then scripts/dev-broker.sh stop "$BROKER_PORT" >/dev/null || true; fi
  echo "demo: logs were in $RUN" >&2
}
trap cleanup EXIT INT TERM

for port in 8888 8889; do
  "$BIN/model-server" --store "$STORE" --bootstrap-servers "$BROKER" --port "$port" \
    --application-id model-demo --state-dir "$RUN/state-$port" \
    -c consumer.session.timeout.ms=6000 -c consumer.heartbeat.interval.ms=1000 \
    >"$RUN/server-$port.log" 2>&1 &
  pids+=($!)
done
"$BIN/model-client" --bootstrap-servers "$BROKER" publish --rate "$RATE" --loop \
  --model-interval-ms 10000 >"$RUN/client.log" 2>&1 &
pids+=($!)

cat <<MSG
demo: the console: http://127.0.0.1:8888/ (or http://127.0.0.1:8889/: every instance serves it)
demo: broker $BROKER, model servers on http://127.0.0.1:8888 and http://127.0.0.1:8889 ($STORE store)
demo: ask either one:
  curl -s localhost:8888/state/value       serving statistics, merged over both instances
  curl -s localhost:8889/state/instances   every live instance, its stores and partitions
  curl -s localhost:8888/models            the model serving each data type
  curl -s localhost:8889/state/wine        one data type's statistics
  curl -s localhost:8888/metrics           Prometheus metrics
demo: Ctrl-C stops everything
MSG

summary='
import json, sys
try:
    v = json.load(sys.stdin)
except ValueError:
    print("  (not answering yet)"); sys.exit()
for s in v.get("stats", []):
    print("  %-6s model %-40s usage %7d  mean %.3f ms  max %.3f ms" % (
        s["dataType"], s["name"], s["usage"], s["duration"] / max(s["usage"], 1), s["max"]))
print("  answered:", ", ".join(v.get("instances", [])) or "-")
for m in v.get("missing", []):
    print("  not yet answering: %s (%s)" % (m.get("instance"), m.get("error", "")[:80]))
'
instances='
import json, sys
try:
    v = json.load(sys.stdin)
except ValueError:
    print("  (not answering yet)"); sys.exit()
for i in v:
    print("  %s:%s partitions %s" % (i["host"], i["port"], sorted(set("%s-%s" % (p["topic"], p["partition"]) if isinstance(p, dict) else str(p) for p in i.get("partitions", [])))))
'
while sleep 5; do
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "demo: a process stopped; see $RUN" >&2; exit 1; }
  done
  echo "$(date +%T) GET :8888/state/value"
  curl -s --max-time 5 localhost:8888/state/value | python3 -c "$summary" || true
  echo "$(date +%T) GET :8889/state/instances"
  curl -s --max-time 5 localhost:8889/state/instances | python3 -c "$instances" || true
done
