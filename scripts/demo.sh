#!/usr/bin/env bash
# The demos, on embedded generators with `coordinator local`:
#   scripts/demo.sh                 # W2 hourly landing: 2,000,000 JSON log records ->
#                                   # filter -> hour-partitioned Parquet in ./out/w2-hourly
#   EVENTS=10000000 scripts/demo.sh
#   scripts/demo.sh ad-joiner       # the ad joiner: impressions and clicks -> window join
#                                   # -> user lookup (Redis) -> ad lookup (Parquet
#                                   # snapshot) -> training samples in ./out/ad-joiner
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}
B=$CARGO_TARGET_DIR/release

scripts/setup.sh
case "${1:-w2}" in
w2)
  cargo build --release --bin coordinator
  rm -rf out/w2-hourly
  "$B/coordinator" local examples/w2-hourly-etl.json \
    --set "sources.0.generator.events=${EVENTS:-2000000}" \
    --set sinks.0.parquet.path=out/w2-hourly
  echo "Parquet files: find out/w2-hourly -name '*.parquet' | head"
  ;;
ad-joiner)
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  cargo build --release --workspace --bins
  out=$PWD/out/ad-joiner
  rm -rf "$out" && mkdir -p "$out"
  # A Redis of the demo's own, on a free port, holding 1,000,000 users (of W1's 10M: the
  # others are unknown and get nulls).
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$out" > "$out/redis.log" 2>&1 &
  redis_pid=$!
  trap 'kill $redis_pid 2>/dev/null || true' EXIT
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
  "$B/weir-datagen" users --count 1000000 | redis-cli -p "$port" --pipe > /dev/null
  # The ads table's snapshots for the hours the generated events lie in (the last second
  # of 2023, the first minutes of 2024): the lookup switches from one to the next.
  for hour in dt=2023-12-31/hour=23 dt=2024-01-01/hour=00; do
    "$B/weir-datagen" ads --out "$out/dims/ads/$hour/part-0.parquet"
  done
  "$B/coordinator" local examples/ad-joiner.json \
    --set "sources.0.generator.events=${EVENTS:-2000000}" \
    --set "sources.1.generator.events=${EVENTS:-2000000}" \
    --set "operators.1.lookup_join.from.redis.url=redis://127.0.0.1:$port" \
    --set "operators.2.lookup_join.from.parquet.path=$out/dims/ads/dt=%Y-%m-%d/hour=%H" \
    --set "sinks.0.parquet.path=$out/samples"
  echo "Training samples: find $out/samples -name '*.parquet' | head"
  ;;
*)
  echo "usage: scripts/demo.sh [w2|ad-joiner]" >&2
  exit 2
  ;;
esac
