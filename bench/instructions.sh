#!/usr/bin/env bash
# Instructions per proxied request (valgrind callgrind), for the floor and llmux: unlike time,
# the count repeats from run to run whatever else the machine is doing. Each runs under
# callgrind behind one llmux-mock; wrk -t1 warms it up, the counters are zeroed, then DUR
# seconds of wrk are counted. Needs valgrind, wrk and release binaries (see floor-ratio.sh).
#   bash bench/instructions.sh   (BIN=dir of the binaries, LLMUX=another llmux binary,
#                                 BEFORE=an older llmux to count too, CONNS=wrk connections,
#                                 default 16; CACHE=1 also simulates the caches and prints
#                                 L1 data misses per request)
# glibc's memcpy/memset switch to `rep movsb`/`rep stosb` above a size and alignment it picks
# at run time, and valgrind counts every byte those move as an instruction: the tunables below
# keep them on the vector loops, so a copy counts by its size the same way on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/bench/release}
LLMUX=${LLMUX:-$BIN/llmux}
BEFORE=${BEFORE:-}
DUR=${DUR:-15}
CONNS=${CONNS:-16}
CACHE=${CACHE:-0}
. bench/lib.sh
bench_init 19301
llmux_config 19302 >"$W/llmux.toml"
export GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=1000000000:glibc.cpu.x86_rep_stosb_threshold=1000000000
VG=(valgrind --tool=callgrind)
[ "$CACHE" = 1 ] && VG+=(--cache-sim=yes)
WHO=(floor llmux)
[ -n "$BEFORE" ] && WHO+=(before)
for who in "${WHO[@]}"; do
  if [ "$who" = floor ]; then
    port=19303
    start_floor "$port" "${VG[@]}" --callgrind-out-file="$W/cg.$who"
  else
    port=19302
    bin=$LLMUX
    [ "$who" = before ] && bin=$BEFORE
    RUST_LOG=warn "${VG[@]}" --callgrind-out-file="$W/cg.$who" "$bin" --config "$W/llmux.toml" >"$W/$who.log" 2>&1 &
  fi
  vg=$!
  sleep 8
  url="http://127.0.0.1:$port/v1/chat/completions"
  WRK_BODY=$W/body.json wrk -t1 -c"$CONNS" -d3s -s bench/wrk.lua "$url" >/dev/null
  callgrind_control -z "$vg" >/dev/null 2>&1
  req=$(WRK_BODY=$W/body.json wrk -t1 -c"$CONNS" -d"${DUR}s" -s bench/wrk.lua "$url" | awk '/requests in/ {print $1}')
  callgrind_control -d "$vg" >/dev/null 2>&1
  sleep 1
  kill -INT "$vg"
  wait "$vg" 2>/dev/null || true
  # PROGRAM TOTALS lists the events in the order of the `Events` line: Ir first; with the
  # cache simulation, D1mr and D1mw are the 5th and 6th.
  read -r total d1r d1w < <(callgrind_annotate "$W/cg.$who.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {
    gsub(",", ""); print $1, ($9 == "" ? 0 : $9), ($11 == "" ? 0 : $11) }')
  line="$who: $req requests at $CONNS connections, $((total / req)) instructions per request"
  [ "$CACHE" = 1 ] && line="$line, $(((d1r + d1w) / req)) L1 data misses per request"
  echo "$line"
done
