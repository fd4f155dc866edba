#!/usr/bin/env bash
# Added latency of the Redis-backed shared budget vs the local governor budget: two llmux
# instances in front of the same mock, identical but for `[cluster] redis_url`, at fixed
# rates, interleaved. Loopback only, bounded (~1 minute).
#
#   bench/cluster.sh        (LLMUX_BIN_DIR: prebuilt llmux/llmux-mock; default target/release)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BIN=${LLMUX_BIN_DIR:-$ROOT/target/release}
TARGET_DIR=${BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target/bench}}
DUR=${BENCH_DURATION_S:-5}
RATES=${BENCH_RATES:-1000 5000}
[ -x "$BIN/llmux" ] || (cd "$ROOT" && cargo build --release --workspace --bins)
[ -x "$TARGET_DIR/release/loadgen" ] ||
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --manifest-path "$HERE/loadgen/Cargo.toml"
LOADGEN=$TARGET_DIR/release/loadgen
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

MOCK=$(free_port); REDIS=$(free_port); LOCAL=$(free_port); SHARED=$(free_port)
"$BIN/llmux-mock" --listen "127.0.0.1:$MOCK" --padding 900 >/dev/null 2>&1 & PIDS+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & PIDS+=($!)
for name in local shared; do
  port=$LOCAL; [ $name = shared ] && port=$SHARED
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\ndefault_config = "c"\nworkers = 2\n\n' "$port"
    [ $name = shared ] && printf '[cluster]\nredis_url = "redis://127.0.0.1:%s"\n\n' "$REDIS"
    printf '[virtual_keys.t]\nprovider = "openai"\nbase_url = "http://127.0.0.1:%s/t/v1"\nrpm = 100000000\ntpm = 2000000000\n\n' "$MOCK"
    printf '[configs.c]\nstrategy = { mode = "single" }\ntargets = [ { virtual_key = "t" } ]\n'
  } >"$WORK/$name.toml"
  RUST_LOG=warn "$BIN/llmux" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 & PIDS+=($!)
done
for p in $MOCK $REDIS $LOCAL $SHARED; do wait_port "$p"; done
sleep 1.5 # the cluster connects within one ping period
printf '%s\n' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":64}' >"$WORK/body.json"

echo "| rate | budget | achieved RPS | p50 | p99 | errors |"
echo "|---|---|---|---|---|---|"
for r in $RATES; do
  for round in 1 2; do
    for name in local shared; do
      port=$LOCAL; [ $name = shared ] && port=$SHARED
      timeout $((DUR + 20)) "$LOADGEN" rate --url "http://127.0.0.1:$port/v1/chat/completions" \
        --rps "$r" --duration-s "$DUR" --conns 50 --body-file "$WORK/body.json" --label "$name" \
        >"$WORK/$r-$name-$round.json"
    done
  done
  python3 - "$WORK" "$r" <<'PY'
import json, statistics, sys
work, r = sys.argv[1], sys.argv[2]
res = {}
for name in ("local", "shared"):
    runs = [json.load(open(f"{work}/{r}-{name}-{k}.json")) for k in (1, 2)]
    p50 = statistics.median(d["latency_us"]["p50"] for d in runs)
    p99 = statistics.median(d["latency_us"]["p99"] for d in runs)
    rps = statistics.median(d["achieved_rps"] for d in runs)
    err = sum(d["errors"]["total"] for d in runs)
    res[name] = (p50, p99)
    label = "local (governor)" if name == "local" else "shared (Redis GCRA)"
    print(f"| {int(r):,} | {label} | {rps:,.0f} | {p50:,.0f} µs | {p99:,.0f} µs | {err} |")
d50 = res["shared"][0] - res["local"][0]
d99 = res["shared"][1] - res["local"][1]
print(f"| {int(r):,} | **added by Redis** | | **{d50:+,.0f} µs** | **{d99:+,.0f} µs** | |")
PY
done
grep -q '"Redis unavailable' "$WORK/shared.log" && echo "warning: the shared instance lost Redis during the run" >&2
exit 0
