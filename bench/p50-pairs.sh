#!/usr/bin/env bash
# The p50 at a fixed rate, compared pair by pair: floor, llmux and (optionally) a second llmux
# build, each pair interleaved by one loadgen (200-ms slices to one, then the other, as
# bench/run.sh's paired rounds do), so the machine's drift between runs hits both alike. Each
# round runs every pair once, the order within a pair alternating with the round; the last
# lines print, per pair, the difference of the two p50s in every round and its median. Made to
# A/B one change to llmux's request path on the p50 target (BENCHMARKS.md, run AC):
#   CARGO_TARGET_DIR=target/bench cargo build --release --workspace --bins --example floor
#   bash bench/p50-pairs.sh [ROUNDS]   (BIN=dir of the binaries, OTHER=another llmux binary
#                                       or a script that execs one, RATE=requests per second,
#                                       default 5000; DUR=seconds per pair, default 6)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/bench/release}
ROUNDS=${1:-6}
RATE=${RATE:-5000}
DUR=${DUR:-6}
OTHER=${OTHER:-}
. bench/lib.sh
bench_init 19501
declare -A PORT=([floor]=19502 [llmux]=19503 [other]=19504)
start_floor "${PORT[floor]}"
llmux_config "${PORT[llmux]}" >"$W/llmux.toml"
RUST_LOG=warn "$BIN/llmux" --config "$W/llmux.toml" >"$W/llmux.log" 2>&1 &
PAIRS=("floor llmux")
if [ -n "$OTHER" ]; then
  llmux_config "${PORT[other]}" >"$W/other.toml"
  RUST_LOG=warn "$OTHER" --config "$W/other.toml" >"$W/other.log" 2>&1 &
  PAIRS+=("floor other" "llmux other")
fi
sleep 2
echo "load average at start: $(cut -d' ' -f1 /proc/loadavg)"
url() { echo "http://127.0.0.1:${PORT[$1]}/v1/chat/completions"; }
for r in $(seq 1 "$ROUNDS"); do
  for pair in "${PAIRS[@]}"; do
    read -r a b <<<"$pair"
    [ $((r % 2)) = 0 ] && read -r b a <<<"$pair"
    "$BIN/loadgen" rate --url "$(url "$a")" --label "$a" --url-b "$(url "$b")" --label-b "$b" \
      --slice-ms 200 --rps "$RATE" --duration-s "$((2 * DUR))" --conns 50 --body-file "$W/body.json" \
      2>/dev/null >"$W/r$r.$a.$b.json"
    python3 - "$W/r$r.$a.$b.json" "$r" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); b = d["b"]
errs = d["errors"]["total"] + b["errors"]["total"]
print(f"round={sys.argv[2]} {d['label']} p50={d['latency_us']['p50']} {b['label']} p50={b['latency_us']['p50']} errors={errs}")
EOF
  done
done | tee "$W/rounds.txt"
echo "load average at end: $(cut -d' ' -f1 /proc/loadavg)"
python3 - "$W/rounds.txt" "${PAIRS[@]}" <<'EOF'
import re, statistics, sys
rows = [dict(re.findall(r"(\w+)=(\d+)", l.replace(" p50", "_p50"))) | {"who": re.findall(r"(\w+) p50", l)}
        for l in open(sys.argv[1])]
for pair in sys.argv[2:]:
    a, b = pair.split()
    diffs = [int(r[b + "_p50"]) - int(r[a + "_p50"]) for r in rows if set(r["who"]) == {a, b}]
    if diffs:
        print(f"p50 {b} - {a}: per round {diffs} µs, median {statistics.median(diffs):+g} µs")
EOF
