#!/usr/bin/env bash
# A 3-coordinator, 2-task-manager Weir cluster on this machine, for trying the cluster
# commands. Builds the binaries, starts everything in the background with logs and Raft
# data under $WEIR_CLUSTER_DIR (default ./weir-cluster), and stops it all on Ctrl-C.
# Running it again restarts the same cluster from its data (no re-initialization).
#   deploy/local-cluster.sh
#   export WEIR_COORDINATORS=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003   # in another shell
#   coordinator list; coordinator taskmanagers; coordinator submit examples/w2-hourly-etl.json
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}
DIR=${WEIR_CLUSTER_DIR:-$PWD/weir-cluster}
BIN=$CARGO_TARGET_DIR/release
scripts/setup.sh
cargo build --release --bin coordinator --bin taskmanager
mkdir -p "$DIR"

PEERS=(--peer 1=127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003)
COORDINATORS=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait; echo "cluster stopped"' EXIT INT TERM

for id in 1 2 3; do
  init=()
  # --init is ignored by a member that already has Raft state, so a restart is the same command.
  [ "$id" = 1 ] && init=(--init)
  "$BIN/coordinator" serve --id "$id" --listen "127.0.0.1:700$id" --data-dir "$DIR/coordinator-$id" \
    --http-address "127.0.0.1:808$id" \
    "${PEERS[@]}" "${init[@]}" 2>>"$DIR/coordinator-$id.log" &
  pids+=($!)
done
for tm in 1 2; do
  "$BIN/taskmanager" --coordinators "$COORDINATORS" --address "127.0.0.1:720$tm" --slots 2 --work-dir "$DIR/taskmanager-$tm" \
    --metrics-address "127.0.0.1:925$tm" \
    2>>"$DIR/taskmanager-$tm.log" &
  pids+=($!)
done

for _ in $(seq 50); do
  "$BIN/coordinator" taskmanagers --coordinators "$COORDINATORS" 2>/dev/null | grep -c alive | grep -q 2 && break
  sleep 0.2
done
"$BIN/coordinator" taskmanagers --coordinators "$COORDINATORS"
echo "cluster up (logs and data in $DIR); export WEIR_COORDINATORS=$COORDINATORS; Ctrl-C stops it"
echo "web console: http://127.0.0.1:8081/ (any of 8081-8083); metrics: those and 127.0.0.1:9251-9252/metrics"
wait
