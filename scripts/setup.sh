#!/usr/bin/env bash
# Installs what building and testing Weir needs on a Debian machine, idempotently: a Rust
# toolchain with rustfmt and clippy must already be there (rustup); libclang-dev (bindgen,
# for RocksDB) and a C/C++ toolchain come from Debian; the test suite's independent
# Parquet readers (pyarrow, DuckDB) come from PyPI, the Kafka-protocol broker (tansu) from
# crates.io, Redis and Chromium (with ChromeDriver) from Debian. protoc comes vendored.
#   scripts/setup.sh          # build prerequisites
#   scripts/setup.sh test     # also the test prerequisites
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: Weir needs a Rust toolchain (cargo 1.88 or newer); install it with rustup" >&2
  exit 1
fi
for tool in rustfmt clippy; do
  if ! cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$tool"
  fi
done
missing=()
for cmd in cc c++ make pkg-config python3; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq build-essential pkg-config libclang-dev python3 python3-pip >/dev/null
fi

if [ "${1:-}" = test ]; then
  # A real Redis for the window join's Redis state (Debian's package; the tests start
  # their own servers on free ports).
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq redis-server >/dev/null
  fi
  # A real browser for the web console's test: Debian's Chromium, driven through
  # ChromeDriver (WebDriver).
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  # A real Kafka-protocol broker for the Kafka tests (shared/FACTS.md: no Apache Kafka
  # can be fetched here; tansu with sqlite storage is the broker that works).
  if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql
  fi
  if ! python3 -c 'import pyarrow, duckdb' >/dev/null 2>&1; then
    python3 -m pip install --quiet pyarrow duckdb 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages pyarrow duckdb
  fi
fi
