#!/usr/bin/env bash
# W1 (the ad joiner) side by side: Weir's whole job (`weir-bench w1`: two generator
# sources, hash exchange, window_join with RocksDB, memory and Redis state, blackhole
# checking the counters; parallelism 2) and its operator core alone (`weir-join-core`, one subtask), Apache
# Flink's W1 with RocksDB and with heap state (shared/bench/flink/run.sh) and the
# hand-written ceiling (shared/bench/limits/run.sh), one after the other on this machine.
# Writes the figures and ratios into BENCHMARKS.md between the w1 markers.
#   integration/bench/w1.sh          # REPEAT=3 runs of Weir
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-$PWD/../shared}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}
REPEAT=${REPEAT:-3}
LOG=$(mktemp -d /tmp/weir-w1.XXXXXX)
trap 'rm -rf "$LOG"' EXIT
B=$CARGO_TARGET_DIR/release
load() { uptime | sed 's/.*load average: //'; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

cargo build --release --workspace --bins --quiet
LOAD_BEFORE=$(load)
echo "# weir, load $LOAD_BEFORE" >&2
for state in rocksdb memory redis; do
  for _ in $(seq "$REPEAT"); do "$B/weir-bench" w1 --state $state | tee -a "$LOG/weir.txt" >&2; done
done
for _ in $(seq "$REPEAT"); do "$B/weir-join-core" | tee -a "$LOG/core.txt" >&2; done
echo "# flink, load $(load)" >&2
"$SHARED/bench/flink/run.sh" w1_rocksdb w1_hashmap | tee "$LOG/flink.txt" >&2
echo "# ceiling, load $(load)" >&2
REPEAT=$REPEAT W2_VARIANTS="sonic:zstd" "$SHARED/bench/limits/run.sh" > "$LOG/limits.txt"
grep -E '^w1_hashmap' "$LOG/limits.txt" >&2

grep -q 'ok=false' "$LOG/weir.txt" "$LOG/core.txt" && { echo "weir verification failed" >&2; exit 1; }
weir=$(awk '$2=="w1_rocksdb" {print $5}' "$LOG/weir.txt" | median)
weir_rss=$(awk '$2=="w1_rocksdb" {print $6}' "$LOG/weir.txt" | sort -n | tail -1)
mem=$(awk '$2=="w1_memory" {print $5}' "$LOG/weir.txt" | median)
mem_rss=$(awk '$2=="w1_memory" {print $6}' "$LOG/weir.txt" | sort -n | tail -1)
red=$(awk '$2=="w1_redis" {print $5}' "$LOG/weir.txt" | median)
red_rss=$(awk '$2=="w1_redis" {print $6}' "$LOG/weir.txt" | sort -n | tail -1)
red_mem=$(sed -n 's/.*INFO redis peak_memory_mb=\([0-9]*\).*/\1/p' "$LOG/weir.txt" | sort -n | tail -1)
core=$(awk '$1=="weir" {print $5}' "$LOG/core.txt" | median)
core_rss=$(awk '$1=="weir" {print $6}' "$LOG/core.txt" | sort -n | tail -1)
flink() { awk -v w="$1" -v f="$2" '$2==w {print $f}' "$LOG/flink.txt"; }
ceiling() { grep -E "^w1_hashmap +$1" "$LOG/limits.txt" | awk '{for (i=1;i<=NF;i++) if ($i=="median") print $(i+1)}'; }
ceil2=$(ceiling "2 procs")
ceil1=$(ceiling "1 thread")

section=$(awk -v w="$weir" -v wr="$weir_rss" -v m="$mem" -v mr="$mem_rss" -v d="$red" -v dr="$red_rss" -v dm="$red_mem" -v c="$core" -v cr="$core_rss" \
  -v r="$(flink w1_rocksdb 5)" -v rr="$(flink w1_rocksdb 6)" -v h="$(flink w1_hashmap 5)" -v hr="$(flink w1_hashmap 6)" \
  -v c2="$ceil2" -v c1="$ceil1" -v when="$(date -u +%Y-%m-%dT%H:%MZ)" -v load="$LOAD_BEFORE" -v n="$REPEAT" 'BEGIN {
  printf "## W1 joiner: latest comparison (%s, load before: %s)\n\n", when, load
  printf "Command: `integration/bench/w1.sh` (Weir: median of %d runs; Flink: one run). W1 as in\n", n
  printf "shared/bench/flink/README.md: 5M impressions + 650,181 clicks, 60 s window; counters checked.\n\n"
  printf "| | events/s | peak RSS | Weir RocksDB / it | Weir memory / it |\n| --- | --- | --- | --- | --- |\n"
  printf "| **Weir W1 job**, P = 2, RocksDB state (`weir-bench w1`) | %d | %d MB | | |\n", w, wr
  printf "| **Weir W1 job**, P = 2, memory state (`weir-bench w1 --state memory`) | %d | %d MB | | |\n", m, mr
  printf "| **Weir W1 job**, P = 2, Redis state (`weir-bench w1 --state redis`) | %d | %d MB + Redis %d MB | | |\n", d, dr, dm
  printf "| Flink `w1_rocksdb` (P = 2) | %d | %d MB | **%.2fx** (Redis: %.2fx) | %.2fx |\n", r, rr, w / r, d / r, m / r
  printf "| Flink `w1_hashmap` (P = 2) | %d | %d MB | %.2fx | **%.2fx** |\n", h, hr, w / h, m / h
  printf "| ceiling, 2 processes (`limits w1`) | %d | | %.1f %% | **%.1f %%** |\n", c2, 100 * w / c2, 100 * m / c2
  printf "| Weir operator core alone, 1 subtask, RocksDB (`weir-join-core`) | %d | %d MB | | |\n", c, cr
  printf "| ceiling, 1 thread | %d | | core: %.1f %% | |\n", c1, 100 * c / c1
}')
echo "$section"
{
  echo "$section"
  echo
  echo "Raw lines:"
  echo
  echo '```'
  cat "$LOG/weir.txt" "$LOG/core.txt" "$LOG/flink.txt"
  grep -E '^w1_hashmap' "$LOG/limits.txt"
  echo '```'
} > "$LOG/section.md"
awk -v f="$LOG/section.md" '
  /<!-- w1:start -->/ { print; while ((getline l < f) > 0) print l; skip = 1; next }
  /<!-- w1:end -->/ { skip = 0 }
  !skip' BENCHMARKS.md > "$LOG/B.md" && cp "$LOG/B.md" BENCHMARKS.md
