#!/usr/bin/env bash
# W1 through the window join's operator core (weir-join-core, one subtask, RocksDB state)
# next to Apache Flink's W1 job with RocksDB and with heap state
# (shared/bench/flink/run.sh) and the hand-written ceiling (shared/bench/limits/run.sh),
# one after the other on this machine. Prints the raw lines and the ratios.
#   integration/bench/join_core.sh          # REPEAT=3 runs of Weir
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-$PWD/../shared}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}
REPEAT=${REPEAT:-3}
LOG=$(mktemp -d /tmp/weir-join-core.XXXXXX)
trap 'rm -rf "$LOG"' EXIT

cargo build --release --workspace --bins --quiet
echo "# weir, load $(uptime | sed 's/.*load average: //')" >&2
for _ in $(seq "$REPEAT"); do "$CARGO_TARGET_DIR/release/weir-join-core" | tee -a "$LOG/weir.txt" >&2; done
"$SHARED/bench/flink/run.sh" w1_rocksdb w1_hashmap | tee "$LOG/flink.txt" >&2
REPEAT=$REPEAT W2_VARIANTS="sonic:zstd" "$SHARED/bench/limits/run.sh" > "$LOG/limits.txt"
grep -E '^w1_hashmap' "$LOG/limits.txt" >&2

grep -q 'ok=false' "$LOG/weir.txt" && { echo "weir verification failed" >&2; exit 1; }
weir=$(awk '$1=="weir" {print $5}' "$LOG/weir.txt" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
rocksdb=$(awk '$2=="w1_rocksdb" {print $5}' "$LOG/flink.txt")
hashmap=$(awk '$2=="w1_hashmap" {print $5}' "$LOG/flink.txt")
ceiling=$(grep -E '^w1_hashmap +1 thread' "$LOG/limits.txt" | awk '{for (i=1;i<=NF;i++) if ($i=="median") print $(i+1)}')
awk -v w="$weir" -v r="$rocksdb" -v h="$hashmap" -v c="$ceiling" 'BEGIN {
  printf "weir w1_core (1 subtask, RocksDB) %d ev/s; flink w1_rocksdb (P=2) %d: %.2fx; flink w1_hashmap (P=2) %d: %.2fx; ceiling (1 thread) %d: %.1f %%\n",
    w, r, w / r, h, w / h, c, 100 * w / c }'
