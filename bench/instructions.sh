#!/usr/bin/env bash
# Instructions per proxied request (valgrind callgrind), for the floor and llmux: unlike time,
# the count repeats from run to run whatever else the machine is doing. Each runs under
# callgrind behind one llmux-mock; wrk -t1 -c16 warms it up, the counters are zeroed, then
# DUR seconds of wrk are counted. Needs valgrind, wrk and release binaries (see floor-ratio.sh).
#   bash bench/instructions.sh   (BIN=dir of the binaries, LLMUX=another llmux binary)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/bench/release}
LLMUX=${LLMUX:-$BIN/llmux}
DUR=${DUR:-15}
W=$(mktemp -d)
MOCK=19301
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
printf '%s\n' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":64}' >"$W/body.json"
printf '[server]\nlisten = "127.0.0.1:19302"\ndefault_config = "single"\nworkers = 2\n\n[virtual_keys.bench-a]\nprovider = "openai"\nbase_url = "http://127.0.0.1:%s/bench-a/v1"\n\n[configs.single]\nstrategy = { mode = "single" }\ntargets = [{ virtual_key = "bench-a" }]\n' "$MOCK" >"$W/llmux.toml"
"$BIN/llmux-mock" --listen "127.0.0.1:$MOCK" --padding 900 --workers 1 >"$W/mock.log" 2>&1 &
for who in floor llmux; do
  if [ "$who" = llmux ]; then
    port=19302
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$W/cg.$who" "$LLMUX" --config "$W/llmux.toml" >"$W/$who.log" 2>&1 &
  else
    port=19303
    valgrind --tool=callgrind --callgrind-out-file="$W/cg.$who" "$BIN/examples/floor" \
      "http://127.0.0.1:$MOCK/bench-a/v1/chat/completions" "127.0.0.1:$port" 2 reqwest >"$W/$who.log" 2>&1 &
  fi
  vg=$!
  sleep 8
  url="http://127.0.0.1:$port/v1/chat/completions"
  WRK_BODY=$W/body.json wrk -t1 -c16 -d3s -s bench/wrk.lua "$url" >/dev/null
  callgrind_control -z "$vg" >/dev/null 2>&1
  req=$(WRK_BODY=$W/body.json wrk -t1 -c16 -d"${DUR}s" -s bench/wrk.lua "$url" | awk '/requests in/ {print $1}')
  callgrind_control -d "$vg" >/dev/null 2>&1
  sleep 1
  kill -INT "$vg"
  wait "$vg" 2>/dev/null || true
  total=$(callgrind_annotate "$W/cg.$who.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$who: $req requests, $((total / req)) instructions per request"
done
