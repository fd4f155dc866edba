#!/usr/bin/env bash
# Does a contender's place in the run order move its throughput? wrk -t2 against direct (the
# mock at full speed), then llmux and the floor in both orders, with and without a pause after
# direct: prints llmux / floor for each. bench/run.sh alternates its order and pauses after
# the fastest runs because of what this showed (BENCHMARKS.md, run R). Needs wrk and release
# binaries (see floor-ratio.sh).
#   bash bench/order-effect.sh [ROUNDS]   (BIN=dir of the binaries, C=connections, PAUSE=s)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/bench/release}
ROUNDS=${1:-3}
C=${C:-64}
PAUSE=${PAUSE:-5}
. bench/lib.sh
bench_init 19401
llmux_config 19403 >"$W/llmux.toml"
start_floor 19402
RUST_LOG=warn "$BIN/llmux" --config "$W/llmux.toml" >"$W/llmux.log" 2>&1 &
sleep 1.5
D=http://127.0.0.1:$MOCK/bench-a/v1/chat/completions
F=http://127.0.0.1:19402/v1/chat/completions
L=http://127.0.0.1:19403/v1/chat/completions
run() { WRK_BODY=$W/body.json wrk -t2 -c"$C" -d4s -s bench/wrk.lua "$1" | awk '/requests in/ {print $1}'; }
ratio() { python3 -c "print(round($1 / $2, 2))"; }
for r in $(seq 1 "$ROUNDS"); do
  for pause in 0 "$PAUSE"; do
    run "$D" >/dev/null
    sleep "$pause"
    l1=$(run "$L")
    f1=$(run "$F")
    run "$D" >/dev/null
    sleep "$pause"
    f2=$(run "$F")
    l2=$(run "$L")
    echo "round $r, pause ${pause}s after direct: llmux/floor $(ratio "$l1" "$f1") with llmux next," \
      "$(ratio "$l2" "$f2") with the floor next"
  done
done
