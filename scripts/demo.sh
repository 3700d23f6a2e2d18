#!/usr/bin/env bash
# The demo: builds Weir and runs the hourly-landing job (W2: JSON logs -> filter ->
# hour-partitioned Parquet) on its embedded generator with `coordinator local`.
#   scripts/demo.sh                 # 2,000,000 records into ./out/w2-hourly
#   EVENTS=10000000 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}

scripts/setup.sh
cargo build --release --bin coordinator
rm -rf out/w2-hourly
"$CARGO_TARGET_DIR/release/coordinator" local examples/w2-hourly-etl.json \
  --set "sources.0.generator.events=${EVENTS:-2000000}" \
  --set sinks.0.parquet.path=out/w2-hourly
echo "Parquet files: find out/w2-hourly -name '*.parquet' | head"
