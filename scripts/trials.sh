#!/usr/bin/env bash
# Kill trials on a private development broker, with figures.
#
#   scripts/trials.sh [--trials N] [--kinds LIST] [--restart-after-ms MS] [--keep-logs]
#
# Runs N trials (default 20) of each kind, one at a time, each with fresh
# topics, application id and state directories, of a counting application
# (tests/src/bin/streams-app.rs, idcount: 6,000 records over 500 keys, sent
# at a steady rate over 8 s, 6 partitions):
#   at-least-once  three instances; one is killed with SIGKILL under load,
#                  and restarted on its state directory 4 s later;
#   exactly-once   the same under exactly_once_v2, restarted 1 s later; the
#                  output read as a read_committed consumer on Apache Kafka
#                  reads it;
#   scaling        1 -> 3 -> 1 instances under load (at-least-once, clean
#                  stops).
# LIST is comma-separated from these (default all); --restart-after-ms sets
# how long a killed instance stays down, for every kind.
#
# Each trial checks that every input record is counted (the latest output
# of each key against the counts computed from the input topic), that the
# final state equals that count exactly (exactly-once and scaling; after a
# crash under at-least-once a key may be counted more: reported, allowed),
# and that no committed output is duplicated (exactly-once). Prints a line
# per trial on stderr and a table on stdout: trials, failed, records, lost
# (sum of each key's deficit), duplicated (sum of each key's surplus), dup
# outputs (output records repeating a key's count), the longest time
# without any output and without output in one partition, from the first
# input to the last output. Exits 1 when a check failed, naming the folder
# that keeps the instances' logs. See tests/src/bin/trials.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

args=()
while (($#)); do
  case "$1" in
    --trials|--kinds|--restart-after-ms)
      args+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --trials=*|--kinds=*|--restart-after-ms=*|--keep-logs) args+=("$1"); shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "trials: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh
# Errors built on hot paths capture backtraces when this is set.
unset RUST_BACKTRACE

cargo build --workspace --locked --bins
target/debug/trials "${args[@]}"
