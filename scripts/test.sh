#!/usr/bin/env bash
# Weir's whole test suite, as CI runs it: set-up, format and lint checks, a release build
# of every binary, then every unit and integration test (the integration tests start the
# real binaries as processes and read their output with pyarrow and DuckDB).
set -euo pipefail
cd "$(dirname "$0")/.."
# Outside the clone, so a later clone on the same machine reuses the build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}

scripts/setup.sh test
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo build --release --workspace --bins
cargo test --release --workspace
