#!/usr/bin/env bash
# A profile-guided (PGO) release build of llmux, and of the floor (examples/floor.rs) from the
# same profile so that bench/run.sh compares like with like (both of the floor's clients are
# trained). Three steps:
#   1. build both with `-Cprofile-generate` (counters in every branch and call);
#   2. train: the mock, then the instrumented llmux and floor under loadgen, on a mix of the
#      paths production runs (plain chat on one OpenAI leaf, the quick start's loadbalance /
#      fallback tree over OpenAI, Azure and Anthropic, streams, the Responses API, a cache, and
#      failed attempts that fall back); both exit by SIGTERM so that their counters are written;
#   3. merge the counters (llvm-profdata from rustup's `llvm-tools`, which matches rustc's LLVM)
#      and build both again with `-Cprofile-use`: the code a request runs is laid out together
#      and the rest moved out of its way (BENCHMARKS.md, run AH).
# Output: $PGO_DIR/release/{llmux,examples/floor} (default target/pgo), and llmux-mock and
# loadgen from a plain release build beside them, so `LLMUX_BIN_DIR=target/pgo/release` runs
# bench/run.sh and the scripts beside this one on the PGO build. ~30 minutes on 2 cores.
#   bash bench/pgo.sh    (TRAIN_S=seconds of plain-chat load, default 20; PLAIN_BIN=a directory
#                         with llmux-mock and loadgen already built)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${PGO_DIR:-$ROOT/target/pgo}
TRAIN_S=${TRAIN_S:-20}
host=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
  rustup component add llvm-tools
fi
# Neither the mock nor the load tool is measured: a plain release build of each (or those in
# $PLAIN_BIN, a directory that has both).
PLAIN=${PLAIN_BIN:-$OUT/plain/release}
if [ -z "${PLAIN_BIN:-}" ]; then
  cargo build --release --quiet --target-dir "$OUT/plain" -p llmux-mock --bin llmux-mock
  cargo build --release --quiet --target-dir "$OUT/plain" --manifest-path bench/loadgen/Cargo.toml
fi
RAW=$OUT/raw
rm -rf "$RAW" && mkdir -p "$RAW"
echo "pgo: instrumented build"
# `--target`, so that RUSTFLAGS reach only what is built for it: build scripts and proc macros
# (built for the host) are neither instrumented nor optimized with the profile.
RUSTFLAGS="-Cprofile-generate=$RAW" cargo build --release --quiet --target-dir "$OUT/gen" \
  --target "$host" -p llmux --bin llmux --example floor
GEN=$OUT/gen/$host/release

W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
MOCK=19601
"$PLAIN/llmux-mock" --listen "127.0.0.1:$MOCK" --padding 900 --workers 1 >"$W/mock.log" 2>&1 &
# config.toml's keys and trees on the mock, with the bench's single leaf as the default and
# one leaf that always fails first, so that retries and fallback are trained too.
sed -e "s/127.0.0.1:9100/127.0.0.1:$MOCK/" -e 's/127.0.0.1:8787/127.0.0.1:19602/' \
  -e 's/127.0.0.1:8788/127.0.0.1:19603/' -e 's/^default_config = .*/default_config = "single"/' \
  config.toml >"$W/llmux.toml"
cat >>"$W/llmux.toml" <<EOF

[virtual_keys.bench-a]
provider = "openai"
base_url = "http://127.0.0.1:$MOCK/bench-a/v1"

[virtual_keys.broken]
provider = "openai"
base_url = "http://127.0.0.1:$MOCK/broken/v1"

[configs.single]
strategy = { mode = "single" }
targets = [{ virtual_key = "bench-a" }]

[configs.falls-back]
strategy = { mode = "fallback" }
targets = [{ virtual_key = "broken" }, { virtual_key = "bench-a" }]
EOF
url=http://127.0.0.1:19602/v1/chat/completions
floor=http://127.0.0.1:19604/v1/chat/completions
hyper=http://127.0.0.1:19605/v1/chat/completions
chat='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":64}'
"$GEN/llmux" --config "$W/llmux.toml" >"$W/llmux.log" 2>&1 &
LLMUX_PID=$!
"$GEN/examples/floor" "http://127.0.0.1:$MOCK/bench-a/v1/chat/completions" 127.0.0.1:19604 2 \
  reqwest >"$W/floor.log" 2>&1 &
FLOOR_PID=$!
# The floor's hyper-util mode too: bench/run.sh runs it as `floor-hyper`.
"$GEN/examples/floor" "http://127.0.0.1:$MOCK/bench-a/v1/chat/completions" 127.0.0.1:19605 2 \
  hyper >"$W/floor-hyper.log" 2>&1 &
HYPER_PID=$!
sleep 2
curl -sf --retry 5 --retry-connrefused "$url" -d "$chat" -H 'content-type: application/json' >/dev/null
curl -sf "http://127.0.0.1:$MOCK/_mock/behavior" -H 'content-type: application/json' \
  -d '{"account":"broken","fail_rate":1.0,"fail_status":500}' >/dev/null
stream='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"stream":true,"stream_options":{"include_usage":true}}'
# One load run; stops the build if it answered nothing (a profile of error paths would be
# worse than none).
lg() {
  "$PLAIN/loadgen" "$@" >"$W/run.json" 2>>"$W/loadgen.err"
  python3 - "$W/run.json" "$*" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
oks = [d["ok"]] + ([d["b"]["ok"]] if "b" in d else [])
if min(oks) == 0:
    sys.exit(f"pgo: no request answered in training run: loadgen {sys.argv[2]}")
PY
}
echo "pgo: training (~$((TRAIN_S + 32)) s)"
# The hot path, as bench/run.sh loads it: llmux and the floor in alternating slices.
lg rate --url "$url" --url-b "$floor" --rps 3000 --duration-s "$TRAIN_S" --conns 50 --body "$chat"
lg closed --url "$url" --conns 64 --duration-s 3 --body "$chat"
lg closed --url "$floor" --conns 64 --duration-s 3 --body "$chat"
lg rate --url "$hyper" --rps 3000 --duration-s 5 --conns 50 --body "$chat"
lg stream --url "$hyper" --concurrency 16 --count 300 --body "$stream"
lg stream --url "$url" --concurrency 16 --count 1000 --body "$stream"
lg stream --url "$floor" --concurrency 16 --count 1000 --body "$stream"
for cfg in main canary tiered cached falls-back; do
  lg rate --url "$url" --rps 200 --duration-s 3 --conns 8 --body "$chat" -H "x-portkey-config: $cfg"
  lg stream --url "$url" --concurrency 4 --count 100 --body "$stream" -H "x-portkey-config: $cfg"
done
lg rate --url http://127.0.0.1:19602/v1/responses --rps 200 --duration-s 3 --conns 8 \
  --body '{"model":"gpt-4o-mini","input":"Say hi"}'
lg rate --url http://127.0.0.1:19602/v1/embeddings --rps 100 --duration-s 2 --conns 4 \
  --body '{"model":"text-embedding-3-small","input":"Say hi"}'
kill -TERM "$LLMUX_PID" "$FLOOR_PID" "$HYPER_PID"
wait "$LLMUX_PID" "$FLOOR_PID" "$HYPER_PID" || true
ls "$RAW"/*.profraw >/dev/null || { echo "pgo: no profile was written" >&2; exit 1; }
"$PROFDATA" merge -o "$OUT/merged.profdata" "$RAW"
echo "pgo: optimized build"
RUSTFLAGS="-Cprofile-use=$OUT/merged.profdata" cargo build --release --quiet \
  --target-dir "$OUT/use" --target "$host" -p llmux --bin llmux --example floor
mkdir -p "$OUT/release/examples"
cp "$OUT/use/$host/release/llmux" "$PLAIN/llmux-mock" "$PLAIN/loadgen" "$OUT/release/"
cp "$OUT/use/$host/release/examples/floor" "$OUT/release/examples/"
echo "pgo: $OUT/release/llmux and $OUT/release/examples/floor"
