#!/usr/bin/env bash
# llmux's throughput as a share of the floor's (examples/floor.rs: actix-web + reqwest doing
# nothing but forwarding), and the CPU each spends per request: wrk -t2 at 64 and 256
# connections, floor / llmux / (optionally) an older llmux interleaved round by round, all in
# front of one llmux-mock. Prints one line per run and the medians. It also counts the CPU the
# rest of the machine spends per request (the mock and wrk, "rest"): on a machine the load
# saturates, throughput goes as 1 / (proxy + rest) CPU per request, so a ratio r to the floor
# allows llmux (floor + rest) / r − rest per request; the last lines print that budget. Needs
# wrk and release binaries:
#   CARGO_TARGET_DIR=target/bench cargo build --release --workspace --bins --example floor
#   bash bench/floor-ratio.sh [ROUNDS]   (BIN=dir of the binaries, BEFORE=an older llmux,
#                                         DUR=seconds per run)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/bench/release}
ROUNDS=${1:-5}
DUR=${DUR:-4}
BEFORE=${BEFORE:-}
. bench/lib.sh
bench_init 19201
MOCK_PID=$!
declare -A PORT=([floor]=19202 [llmux]=19203 [before]=19204) PID=()
start_floor "${PORT[floor]}"
PID[floor]=$!
llmux_config "${PORT[llmux]}" >"$W/llmux.toml"
RUST_LOG=warn "$BIN/llmux" --config "$W/llmux.toml" >"$W/llmux.log" 2>&1 &
PID[llmux]=$!
NAMES=(floor llmux)
if [ -n "$BEFORE" ]; then
  llmux_config "${PORT[before]}" >"$W/before.toml"
  RUST_LOG=warn "$BEFORE" --config "$W/before.toml" >"$W/before.log" 2>&1 &
  PID[before]=$!
  NAMES+=(before)
fi
sleep 1.5
echo "load average at start: $(cut -d' ' -f1 /proc/loadavg)"
ticks=$(getconf CLK_TCK)
TIMEFORMAT='%U %S'
for r in $(seq 1 "$ROUNDS"); do
  for c in 64 256; do
    for n in "${NAMES[@]}"; do
      t0=$(awk '{print $14 + $15}' "/proc/${PID[$n]}/stat")
      m0=$(awk '{print $14 + $15}' "/proc/$MOCK_PID/stat")
      # bash's `time` reports the CPU of wrk itself (user and system seconds).
      { time WRK_BODY=$W/body.json wrk -t2 -c"$c" -d"${DUR}s" -s bench/wrk.lua \
        "http://127.0.0.1:${PORT[$n]}/v1/chat/completions" >"$W/wrk.out" 2>>"$W/wrk.err"; } 2>"$W/wrk.time"
      req=$(awk '/requests in/ {print $1}' "$W/wrk.out")
      t1=$(awk '{print $14 + $15}' "/proc/${PID[$n]}/stat")
      m1=$(awk '{print $14 + $15}' "/proc/$MOCK_PID/stat")
      rest=$(awk -v m=$((m1 - m0)) -v t="$ticks" -v r="$req" '{printf "%d", (m / t + $1 + $2) * 1e9 / r}' "$W/wrk.time")
      echo "round=$r c=$c $n rps=$((req / DUR)) cpu_ns_per_req=$(((t1 - t0) * 1000000000 / ticks / req)) rest_ns_per_req=$rest" | tee -a "$W/runs"
    done
  done
done
echo "load average at end: $(cut -d' ' -f1 /proc/loadavg)"
python3 - "$W/runs" <<'EOF'
import re, statistics as st, sys
d = {}
for line in open(sys.argv[1]):
    m = re.match(r"round=(\d+) c=(\d+) (\w+) rps=(\d+) cpu_ns_per_req=(\d+) rest_ns_per_req=(\d+)", line)
    if m:
        d.setdefault((m[2], m[3]), []).append((int(m[4]), int(m[5]), int(m[6])))
for c in ("64", "256"):
    floor = d[(c, "floor")]
    for n in ("llmux", "before"):
        if (c, n) not in d:
            continue
        ratios = [a[0] / f[0] for a, f in zip(d[(c, n)], floor)]
        print(f"c{c} {n}: {n} / floor RPS per round {[round(x, 2) for x in ratios]}, median "
              f"{st.median(ratios):.2f}; CPU per request median {st.median(x[1] for x in d[(c, n)]) / 1000:.1f} µs "
              f"(floor {st.median(x[1] for x in floor) / 1000:.1f} µs)")
    f_cpu = st.median(x[1] for x in floor) / 1000
    rest = st.median(x[2] for x in d[(c, "floor")] + d[(c, "llmux")]) / 1000
    l_cpu = st.median(x[1] for x in d[(c, "llmux")]) / 1000
    print(f"c{c} budget: mock + wrk {rest:.1f} µs per request; from CPU alone llmux / floor would be "
          f"{(f_cpu + rest) / (l_cpu + rest):.2f}; 0.9x allows llmux {(f_cpu + rest) / 0.9 - rest:.1f} µs "
          f"(it spends {l_cpu:.1f})")
EOF
