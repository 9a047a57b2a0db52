#!/usr/bin/env bash
# Every check on a fresh machine: set-up, formatting, lints, then all tests
# (unit, integration against a private broker per test binary, doc tests,
# and each benchmark run once as a test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
# Errors built on hot paths capture backtraces when this is set; tests do
# not need it, and it slows them down.
unset RUST_BACKTRACE

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
cargo test --workspace --benches --locked
# One at-least-once kill trial and one scaling trial (under a minute;
# scripts/trials.sh runs 20 of each kind, exactly-once too). Exactly-once
# kill and restart is tested by tests/tests/failover.rs here: on the
# development broker, which does not filter aborted transactions, about one
# exactly-once trial in fifty restores an aborted write (README,
# "Development broker").
scripts/trials.sh --trials 1 --kinds at-least-once,scaling
