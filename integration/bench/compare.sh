#!/usr/bin/env bash
# Side-by-side benchmark: W2 (JSON -> hourly Parquet) and W3 (keyed 10 s tumbling count)
# on Weir, on Apache Flink (shared/bench/flink/run.sh) and on the hand-written ceiling
# (shared/bench/limits/run.sh, one plain loop per core), one after the other on this
# machine, then writes the figures and ratios into BENCHMARKS.md.
#   integration/bench/compare.sh            # REPEAT=3 runs of Weir and of the ceiling
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SHARED=${SHARED:-$ROOT/../shared}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}
REPEAT=${REPEAT:-3}
LOG=$(mktemp -d /tmp/weir-compare.XXXXXX)
trap 'rm -rf "$LOG"' EXIT

cargo build --release --workspace --bins --quiet
B=$CARGO_TARGET_DIR/release
load() { uptime | sed 's/.*load average: //'; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "# weir, load $(load)" >&2
for w in w2 w3; do
  for _ in $(seq "$REPEAT"); do "$B/weir-bench" "$w" | tee -a "$LOG/weir.txt" >&2; done
done
echo "# flink, load $(load)" >&2
"$SHARED/bench/flink/run.sh" w2_etl w3_tumbling > "$LOG/flink.txt"
cat "$LOG/flink.txt" >&2
echo "# ceiling, load $(load)" >&2
REPEAT=$REPEAT W2_VARIANTS="sonic:zstd" "$SHARED/bench/limits/run.sh" > "$LOG/limits.txt"
grep -E '^(w2_etl|w3_tumbling)' "$LOG/limits.txt" >&2

grep -q 'ok=false' "$LOG/weir.txt" && { echo "weir verification failed" >&2; exit 1; }
weir_eps() { awk -v w="$1" '$1=="weir" && $2==w {print $5}' "$LOG/weir.txt" | median; }
weir_rss() { awk -v w="$1" '$1=="weir" && $2==w {print $6}' "$LOG/weir.txt" | sort -n | tail -1; }
flink_eps() { awk -v w="$1" '$1=="flink" && $2==w {print $5}' "$LOG/flink.txt"; }
flink_rss() { awk -v w="$1" '$1=="flink" && $2==w {print $6}' "$LOG/flink.txt"; }
ceil_eps() { grep -E "^$1 +2 procs" "$LOG/limits.txt" | awk '{for (i=1;i<=NF;i++) if ($i=="median") print $(i+1)}'; }

row() { # name, weir workload, ceiling label
  local we fe ce
  we=$(weir_eps "$2"); fe=$(flink_eps "$2"); ce=$(ceil_eps "$3")
  awk -v n="$1" -v we="$we" -v fe="$fe" -v ce="$ce" -v wr="$(weir_rss "$2")" -v fr="$(flink_rss "$2")" 'BEGIN {
    printf "| %s | %.0f | %s MB | %.0f | %s MB | %.0f | **%.2f×** | **%.1f %%** |\n", n, we, wr, fe, fr, ce, we/fe, 100*we/ce }'
}

{
  echo "## Latest comparison ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load before: $(load))"
  echo
  echo "Command: \`integration/bench/compare.sh\` (REPEAT=$REPEAT; Weir and ceiling: median of the runs; Flink: one run)."
  echo "All with parallelism 2. Weir's time is the whole \`coordinator local\` process, start to exit."
  echo
  echo "| workload | Weir events/s | Weir peak RSS | Flink events/s | Flink peak RSS | ceiling events/s (2 procs) | Weir / Flink | Weir / ceiling |"
  echo "|---|---|---|---|---|---|---|---|"
  row "W2 JSON → hourly Parquet (zstd)" w2_etl "w2_etl/sonic/zstd"
  row "W3 keyed 10 s tumbling count" w3_tumbling "w3_tumbling"
  echo
  echo "Raw lines:"
  echo
  echo '```'
  cat "$LOG/weir.txt" "$LOG/flink.txt"
  grep -E '^(w2_etl|w3_tumbling)' "$LOG/limits.txt"
  echo '```'
} > "$LOG/section.md"

python3 - "$ROOT/BENCHMARKS.md" "$LOG/section.md" <<'PY'
import sys, re
path, section = sys.argv[1], open(sys.argv[2]).read()
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n\n<!-- compare:start -->\n<!-- compare:end -->\n"
text = re.sub(r"<!-- compare:start -->.*<!-- compare:end -->",
              lambda _: "<!-- compare:start -->\n" + section + "<!-- compare:end -->", text, flags=re.S)
open(path, "w").write(text)
PY
cat "$LOG/section.md"
