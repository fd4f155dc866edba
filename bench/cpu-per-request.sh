#!/usr/bin/env bash
# CPU time llmux spends per request (user + system, from /proc/PID/stat) under wrk -t2 -c64,
# for plain llmux and the same build with one feature on: per-key limits (keys), every request
# traced (otel), 10 % traced (otel10), a Gemini account (gemini). All run side by side against
# one llmux-mock; rounds are interleaved. Unlike RPS, the figure hardly moves with what else the
# machine runs. Needs wrk and release binaries:
#   CARGO_TARGET_DIR=target/bench cargo build --release --workspace --bins
#   bash bench/cpu-per-request.sh [ROUNDS]   (BIN=dir of the binaries, DUR=seconds per run)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/bench/release}
ROUNDS=${1:-3}
DUR=${DUR:-4}
W=$(mktemp -d)
KEY=sk-llmux-bench-key-0123456789
SHA=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
MOCK_PORT=19101
declare -A PORT=([plain]=19102 [keys]=19103 [otel]=19104 [otel10]=19105 [gemini]=19106) PID=()

base() { # base NAME DEFAULT_CONFIG
  cat <<EOF
[server]
listen = "127.0.0.1:${PORT[$1]}"
default_config = "$2"
workers = 2

[virtual_keys.bench-a]
provider = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/bench-a/v1"

[virtual_keys.bench-gemini]
provider = "gemini"
base_url = "http://127.0.0.1:$MOCK_PORT/bench-g"
api_key = "bench-gemini-key"

[configs.single]
strategy = { mode = "single" }
targets = [{ virtual_key = "bench-a" }]

[configs.gemini]
strategy = { mode = "single" }
targets = [{ virtual_key = "bench-gemini", override_params = { model = "gemini-2.5-flash" } }]
EOF
}
base plain single >"$W/plain.toml"
{ base keys single; printf '\n[auth]\nkeys = [{ name = "bench", sha256 = "%s", rpm = 100000000, tpm = 4000000000, max_concurrent = 100000, budget_usd = { daily = 1000000000, monthly = 1000000000 } }]\n' "$SHA"; } >"$W/keys.toml"
{ base otel single; printf '\n[telemetry]\notlp_endpoint = "http://127.0.0.1:%s/_mock/v1/traces"\n' "$MOCK_PORT"; } >"$W/otel.toml"
{ base otel10 single; printf '\n[telemetry]\notlp_endpoint = "http://127.0.0.1:%s/_mock/v1/traces"\nsample_ratio = 0.1\n' "$MOCK_PORT"; } >"$W/otel10.toml"
base gemini gemini >"$W/gemini.toml"
printf '%s\n' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":64}' >"$W/body.json"

cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
"$BIN/llmux-mock" --listen "127.0.0.1:$MOCK_PORT" --padding 900 --workers 1 >"$W/mock.log" 2>&1 &
for n in "${!PORT[@]}"; do
  RUST_LOG=warn "$BIN/llmux" --config "$W/$n.toml" >"$W/$n.log" 2>&1 &
  PID[$n]=$!
done
sleep 1.5
for r in $(seq 1 "$ROUNDS"); do
  for n in plain keys otel otel10 gemini; do
    t0=$(awk '{print $14 + $15}' "/proc/${PID[$n]}/stat")
    req=$(WRK_BODY=$W/body.json wrk -t2 -c64 -d"${DUR}s" -H "authorization: Bearer $KEY" \
      -s bench/wrk.lua "http://127.0.0.1:${PORT[$n]}/v1/chat/completions" | awk '/requests in/ {print $1}')
    t1=$(awk '{print $14 + $15}' "/proc/${PID[$n]}/stat")
    ticks=$(getconf CLK_TCK)
    echo "round $r $n: $req requests, $((req / DUR)) RPS, $(((t1 - t0) * 1000000 / ticks / req)) µs CPU per request"
  done
done
