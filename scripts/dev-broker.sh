#!/usr/bin/env bash
# The development broker (Tansu, in-memory storage) on 127.0.0.1.
#
#   scripts/dev-broker.sh start [PORT]   start it (default 9092), wait until it
#                                        answers, print the bootstrap address
#   scripts/dev-broker.sh stop [PORT]    stop it
#   scripts/dev-broker.sh status [PORT]  say whether it runs
#
# A second start on a running broker is harmless; a port held by anything
# else is an error. Run scripts/setup.sh first to install the broker.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BROKER_BIN="$ROOT/.tools/bin/tansu"
RUN="$ROOT/.tools/run"

usage() {
  echo "usage: $0 start|stop|status [PORT]" >&2
  exit 2
}

command="${1:-}"
port="${2:-9092}"
[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || { echo "error: bad port '$port'" >&2; exit 2; }
pidfile="$RUN/broker-$port.pid"
logfile="$RUN/broker-$port.log"
address="127.0.0.1:$port"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

running_pid() {
  [[ -f "$pidfile" ]] || return 1
  local pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null && grep -q tansu "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  else
    return 1
  fi
}

case "$command" in
  start)
    if pid="$(running_pid)"; then
      echo "$address"
      exit 0
    fi
    if answers; then
      echo "error: port $port on 127.0.0.1 is in use by another process; choose another port: $0 start PORT" >&2
      exit 1
    fi
    if [[ ! -x "$BROKER_BIN" ]]; then
      echo "error: broker not installed at $BROKER_BIN; run scripts/setup.sh" >&2
      exit 1
    fi
    mkdir -p "$RUN"
    nohup "$BROKER_BIN" broker \
      --listener-url "tcp://$address" \
      --advertised-listener-url "tcp://$address" \
      --storage-engine memory://tansu/ >"$logfile" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 1 100); do
      if answers; then
        echo "$address"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pidfile"
        echo "error: the broker exited at start; its log ($logfile):" >&2
        tail -n 20 "$logfile" >&2
        exit 1
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    echo "error: the broker did not answer on $address within 10 s; see $logfile" >&2
    exit 1
    ;;
  stop)
    if pid="$(running_pid)"; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "stopped broker on $address"
    else
      echo "no broker of ours on $address"
    fi
    rm -f "$pidfile"
    ;;
  status)
    if pid="$(running_pid)"; then
      echo "running on $address (pid $pid)"
    else
      echo "not running on $address"
      exit 3
    fi
    ;;
  *) usage ;;
esac
