#!/usr/bin/env bash
# llmux benchmark harness: llmux vs a direct call, nginx and (when they install and run here)
# the Portkey gateway and the LiteLLM proxy, all in front of the bundled mock provider on
# loopback. See BENCHMARKS.md for what is measured and the last results.
#
#   bench/run.sh            full run (≤ 10 minutes including installs and builds)
#   bench/run.sh --smoke    a few seconds: llmux vs direct, a few hundred requests; exits
#                           non-zero only if requests fail (for CI)
#
# Environment (all optional):
#   LLMUX_BIN_DIR        directory with llmux and llmux-mock; when set, nothing is built
#                        (smoke default: target/debug, built if missing)
#   BENCH_TARGET_DIR     cargo target dir for the release build and the load tool
#                        (default: $CARGO_TARGET_DIR, else target/bench)
#   BENCH_BUDGET_S       time box of the whole run in seconds (default 570; a watchdog stops
#                        the run at budget + 25 s whatever happens)
#   BENCH_DURATION_S     seconds per load run (default 5)
#   BENCH_RATES          fixed rates in RPS (default "1000 5000")
#   BENCH_CONNS          wrk connection counts for max throughput (default "64 256")
#   BENCH_ROUNDS         interleaved rounds of the fixed-rate and throughput runs for direct,
#                        nginx and llmux; the report shows the median (default 2). Even
#                        rounds run the contenders in reverse order
#   BENCH_PAIR_ROUNDS    rounds of the paired llmux-vs-floor runs (issue 15's targets): in
#                        each, the floor and llmux run back to back (order alternating) at
#                        BENCH_PAIR_RATE RPS and at each BENCH_CONNS; the report takes the
#                        median of the per-round ratios, with a distribution-free 95 %
#                        interval for it (default 10; 0 skips them)
#   BENCH_PAIR_RATE      fixed rate of the paired latency runs (default 5000)
#   BENCH_PAIR_DURATION_S  seconds per paired run (default 3)
#   BENCH_SETTLE_S       pause after each max-throughput run of a contender faster than any
#                        proxy (direct, llmux-cache-hit), before the next one (default 3)
#   BENCH_HOLD_STREAMS   open-stream counts for the memory test (default "2000 9500": with the
#                        20000 open-files limit here llmux needs 2 fds per stream)
#   BENCH_PEERS=0        skip Portkey and LiteLLM;  BENCH_PERF=0 skip perf
#   BENCH_INSTALL_OHA=1  `cargo install oha` when missing (slow: several minutes of compiling)
#   BENCH_PORT_BASE      first loopback port to try (default 18700)
#   LLMUX_BEFORE_BIN     an older llmux binary: run it too, on the same config, as contender
#                        "llmux-before", for a before/after comparison in one run
#   BENCH_WAIT_QUIET_S   wait up to this long for the 1-minute load average to fall below 1.0
#                        before measuring (default 0: do not wait, just report it)
set -euo pipefail

MODE=full
case "${1:-}" in
  "") ;;
  --smoke) MODE=smoke ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--smoke]" >&2
    exit 2
    ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
T0=$SECONDS
BUDGET_S=${BENCH_BUDGET_S:-570}
DUR=${BENCH_DURATION_S:-5}
RATES=${BENCH_RATES:-1000 5000}
CONNS=${BENCH_CONNS:-64 256}
HOLD_STREAMS=${BENCH_HOLD_STREAMS:-2000 9500}
PEERS=${BENCH_PEERS:-1}
ROUNDS=${BENCH_ROUNDS:-2}
SETTLE=${BENCH_SETTLE_S:-3}
PAIR_ROUNDS=${BENCH_PAIR_ROUNDS:-10}
PAIR_RATE=${BENCH_PAIR_RATE:-5000}
PDUR=${BENCH_PAIR_DURATION_S:-3}
PERF=${BENCH_PERF:-1}
PORTKEY_VERSION=1.15.2
TARGET_DIR=${BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target/bench}}
RESULTS=$HERE/results
RAW=$RESULTS/raw-$MODE
LOGS=$RESULTS/logs-$MODE
[ "$MODE" = smoke ] && BUDGET_S=${BENCH_BUDGET_S:-300}

say() { printf '[bench %4ss] %s\n' "$((SECONDS - T0))" "$*"; }
left() { echo $((BUDGET_S - (SECONDS - T0))); }
# note KEY TEXT: a line for the report's "what ran / what did not" section.
note() {
  say "$1: $2"
  printf '%s\t%s\n' "$1" "$2" >>"$RAW/notes.tsv"
}
loadavg() { cut -d' ' -f1 /proc/loadavg; }

rm -rf "$RAW" "$LOGS"
mkdir -p "$RAW" "$LOGS"
WORK=$(mktemp -d /tmp/llmux-bench.XXXXXX)

# ---------------------------------------------------------------------------------------------
# Processes: every one we start gets its own session (setsid) so the whole group can be ended
# by its id; the EXIT trap ends them all.
declare -A PID=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local name pid
  for name in "${!PID[@]}"; do
    pid=${PID[$name]}
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 40); do
    local alive=0
    for pid in "${PID[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PID[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

start_bg() { # start_bg NAME CMD...: output to $LOGS/NAME.log
  local name=$1
  shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  PID[$name]=$!
}
stop_bg() {
  local name=$1 pid=${PID[$1]:-}
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}

# Watchdog: whatever happens, the run ends shortly after its budget.
setsid bash -c "sleep $((BUDGET_S + 25)); kill -TERM $$" >/dev/null 2>&1 </dev/null &
PID[watchdog]=$!

# Many held-open streams need many descriptors (llmux holds two per stream).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
NEXT_PORT=${BENCH_PORT_BASE:-18700}
alloc_port() { # prints nothing; sets the variable named $1
  while ! port_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
  printf -v "$1" '%s' "$NEXT_PORT"
  NEXT_PORT=$((NEXT_PORT + 1))
}

# wait_ok NAME URL [TRIES] [curl args...]: until URL answers 2xx (0.2 s apart).
wait_ok() {
  local name=$1 url=$2 tries=${3:-50}
  shift 3 || shift $#
  local i
  for i in $(seq 1 "$tries"); do
    if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then return 0; fi
    if [ -n "${PID[$name]:-}" ] && ! kill -0 "${PID[$name]}" 2>/dev/null; then
      say "$name exited; last log lines:"
      tail -5 "$LOGS/$name.log" | sed 's/^/    /'
      return 1
    fi
    sleep 0.2
  done
  say "$name not ready after $tries tries; last log lines:"
  tail -5 "$LOGS/$name.log" | sed 's/^/    /'
  return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# thread_snap LABEL: CPU ticks (user+system) of each llmux thread, to see which threads each
# phase keeps busy (the main thread runs the actor system, actix-rt|system:N are the workers).
thread_snap() {
  local t
  for t in /proc/"$LLMUX_PID"/task/*; do
    [ -r "$t/stat" ] || continue
    # comm may contain spaces and '|': take the fields after the closing parenthesis.
    printf '%s\t%s\t%s\t%s\n' "$1" "${t##*/}" "$(tr -d '\n' <"$t/comm")" \
      "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
  done >>"$RAW/threads.tsv" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Installs (full mode): wrk and nginx from Debian, perf optional; peers into bench/.

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    timeout 120 apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive timeout 180 apt-get install -y -qq --no-install-recommends "$@" \
    >>"$LOGS/apt.log" 2>&1
}

if [ "$MODE" = full ]; then
  missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing from apt: ${missing[*]}"
    apt_install "${missing[@]}" || say "apt-get install failed (see $LOGS/apt.log)"
  fi
  if [ "$PERF" = 1 ] && ! command -v perf >/dev/null; then
    apt_install linux-perf || true
  fi
  if ! command -v oha >/dev/null && [ -x "$HOME/.cargo/bin/oha" ]; then PATH=$HOME/.cargo/bin:$PATH; fi
  if [ "${BENCH_INSTALL_OHA:-0}" = 1 ] && ! command -v oha >/dev/null; then
    say "cargo install oha (bounded to 6 minutes)"
    timeout 360 cargo install --locked oha >>"$LOGS/oha-install.log" 2>&1 ||
      say "cargo install oha failed or timed out (see $LOGS/oha-install.log)"
  fi
else
  command -v curl >/dev/null || apt_install curl
  command -v python3 >/dev/null || apt_install python3
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---------------------------------------------------------------------------------------------
# Builds

if [ -n "${LLMUX_BIN_DIR:-}" ]; then
  BIN=$LLMUX_BIN_DIR
elif [ "$MODE" = smoke ]; then
  BIN=$ROOT/target/debug
  if [ ! -x "$BIN/llmux" ] || [ ! -x "$BIN/llmux-mock" ]; then
    say "building llmux (debug) in target/"
    (cd "$ROOT" && cargo build --workspace --bins) >"$LOGS/build.log" 2>&1 || {
      tail -20 "$LOGS/build.log"
      exit 1
    }
  fi
else
  BIN=$TARGET_DIR/release
  say "building llmux and llmux-mock (release, target dir $TARGET_DIR)"
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR timeout 540 cargo build --release --workspace --bins --example floor) \
    >"$LOGS/build.log" 2>&1 || {
    tail -20 "$LOGS/build.log"
    exit 1
  }
fi
for b in llmux llmux-mock; do
  [ -x "$BIN/$b" ] || {
    echo "no $BIN/$b" >&2
    exit 1
  }
done
say "building the load tool (bench/loadgen)"
CARGO_TARGET_DIR=$TARGET_DIR timeout 300 cargo build --release --quiet \
  --manifest-path "$HERE/loadgen/Cargo.toml" >"$LOGS/build-loadgen.log" 2>&1 || {
  tail -20 "$LOGS/build-loadgen.log"
  exit 1
}
LOADGEN=$TARGET_DIR/release/loadgen
LLMUX_VERSION=$("$BIN/llmux" --version 2>/dev/null || echo llmux)

# ---------------------------------------------------------------------------------------------
# Peers (full mode): installed here, each bounded; a failure is reported and skipped.

PORTKEY_JS=$HERE/.portkey/node_modules/@portkey-ai/gateway/build/start-server.js
LITELLM=$HERE/.venv/bin/litellm
HAVE_PORTKEY=0
HAVE_LITELLM=0
if [ "$MODE" = full ] && [ "$PEERS" = 1 ]; then
  if [ ! -f "$PORTKEY_JS" ]; then
    if ! command -v npm >/dev/null; then
      note portkey "not run: npm/node are not installed"
    elif [ "$(left)" -lt 420 ]; then
      note portkey "not run: not installed and too little of the time budget left to install it"
    else
      say "installing @portkey-ai/gateway@$PORTKEY_VERSION from npm into bench/.portkey"
      mkdir -p "$HERE/.portkey"
      timeout 180 npm install --prefix "$HERE/.portkey" --no-audit --no-fund --loglevel=error \
        "@portkey-ai/gateway@$PORTKEY_VERSION" >"$LOGS/portkey-install.log" 2>&1 ||
        note portkey "not run: npm install @portkey-ai/gateway failed (see logs/portkey-install.log)"
    fi
  fi
  [ -f "$PORTKEY_JS" ] && HAVE_PORTKEY=1
  if [ ! -x "$LITELLM" ]; then
    if [ "$(left)" -lt 420 ]; then
      note litellm "not run: not installed and too little of the time budget left to install it"
    else
      say "installing litellm[proxy] from PyPI into bench/.venv (bounded to 4 minutes)"
      { [ -x "$HERE/.venv/bin/pip" ] || python3 -m venv "$HERE/.venv"; } >"$LOGS/litellm-install.log" 2>&1 &&
        timeout 240 "$HERE/.venv/bin/pip" install -q --disable-pip-version-check 'litellm[proxy]' \
          >>"$LOGS/litellm-install.log" 2>&1 ||
        note litellm "not run: pip install 'litellm[proxy]' failed (see logs/litellm-install.log)"
    fi
  fi
  [ -x "$LITELLM" ] && HAVE_LITELLM=1
elif [ "$MODE" = full ]; then
  note peers "not run: BENCH_PEERS=0"
fi

# ---------------------------------------------------------------------------------------------
# Quiet machine?

if [ "${BENCH_WAIT_QUIET_S:-0}" -gt 0 ]; then
  for _ in $(seq 1 "$BENCH_WAIT_QUIET_S"); do
    awk '{exit !($1 < 1.0)}' /proc/loadavg && break
    sleep 1
  done
fi
LOAD_START=$(loadavg)

# ---------------------------------------------------------------------------------------------
# Services

alloc_port MOCK_PORT
alloc_port LLMUX_PORT
alloc_port NGINX_PORT
alloc_port PORTKEY_PORT
alloc_port LITELLM_PORT
alloc_port LLMUX_INFO_PORT
alloc_port SSE_PORT
alloc_port FLOOR_PORT
alloc_port FLOOR_HYPER_PORT
alloc_port LLMUX_BEFORE_PORT
alloc_port LLMUX_FRESH_PORT
alloc_port LLMUX_PAIR_PORT
alloc_port LLMUX_KEYS_PORT
alloc_port LLMUX_OTEL_PORT
MOCK=http://127.0.0.1:$MOCK_PORT
PADDING=900

printf '%s\n' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":64}' \
  >"$WORK/body.json"
printf '%s\n' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":64,"stream":true}' \
  >"$WORK/body-stream.json"

set_behavior() { # set_behavior JSON-FIELDS (the whole default behavior is replaced)
  curl -fsS -o /dev/null --max-time 5 -X POST "$MOCK/_mock/behavior" \
    -H 'content-type: application/json' -d "{\"account\":\"*\",$1}"
}

say "starting llmux-mock on :$MOCK_PORT (padding $PADDING, 1 worker)"
start_bg mock "$BIN/llmux-mock" --listen "127.0.0.1:$MOCK_PORT" --padding "$PADDING" --workers 1
wait_ok mock "$MOCK/_mock/stats" 50
SSE_INTERVAL=${BENCH_STREAM_INTERVAL_MS:-10}
[ "$MODE" = smoke ] && SSE_INTERVAL=2
SSE=http://127.0.0.1:$SSE_PORT
say "starting the TCP_NODELAY SSE upstream (loadgen sse-server) on :$SSE_PORT (50 chunks x $SSE_INTERVAL ms)"
start_bg sse "$LOADGEN" sse-server --listen "127.0.0.1:$SSE_PORT" --chunks 50 \
  --interval-ms "$SSE_INTERVAL" --max-s $((BUDGET_S + 60))
for _ in $(seq 1 50); do port_free "$SSE_PORT" || break; sleep 0.1; done

write_llmux_config() { # write_llmux_config PORT FILE
  local port=$1 file=$2 acct
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\ndefault_config = "single"\nworkers = %s\n\n' \
      "$port" "${BENCH_LLMUX_WORKERS:-2}"
    for acct in a b c d e; do
      printf '[virtual_keys.bench-%s]\nprovider = "openai"\nbase_url = "%s/bench-%s/v1"\n\n' \
        "$acct" "$MOCK" "$acct"
    done
    printf '[virtual_keys.sse]\nprovider = "openai"\nbase_url = "%s/v1"\n\n' "$SSE"
    cat <<'EOF'
[configs.sse]
strategy = { mode = "single" }
targets = [{ virtual_key = "sse" }]

[configs.single]
strategy = { mode = "single" }
targets = [{ virtual_key = "bench-a" }]

# loadbalance over 4 children, one of them a fallback pair
[configs.tree]
strategy = { mode = "loadbalance" }
targets = [
  { virtual_key = "bench-a" },
  { virtual_key = "bench-b" },
  { virtual_key = "bench-c" },
  { strategy = { mode = "fallback" }, targets = [{ virtual_key = "bench-d" }, { virtual_key = "bench-e" }] },
]
EOF
  } >"$file"
}
write_llmux_config "$LLMUX_PORT" "$WORK/llmux.toml"
# The response cache, for this llmux only (older binaries refuse `cache`): llmux-cache-hit
# sends the same body every time, so all but its first request are hits; llmux-cache-miss
# forces a refresh, so every request pays the miss path (key, provider call, store).
cat >>"$WORK/llmux.toml" <<'EOF'

[configs.cached]
cache = { mode = "simple", max_age = 3600 }
strategy = { mode = "single" }
targets = [{ virtual_key = "bench-a" }]
EOF
# A translated provider (Gemini's wire format, spoken by the mock), so its translation cost
# shows next to OpenAI's pass-through: llmux-gemini.
cat >>"$WORK/llmux.toml" <<EOF

[virtual_keys.bench-gemini]
provider = "gemini"
base_url = "$MOCK/bench-g"
api_key = "bench-gemini-key"

[configs.gemini]
strategy = { mode = "single" }
targets = [{ virtual_key = "bench-gemini", override_params = { model = "gemini-2.5-flash" } }]
EOF
cp "$WORK/llmux.toml" "$RAW/llmux.toml"
say "starting llmux on :$LLMUX_PORT (RUST_LOG=warn)"
RUST_LOG=warn start_bg llmux "$BIN/llmux" --config "$WORK/llmux.toml"
wait_ok llmux "http://127.0.0.1:$LLMUX_PORT/v1/models" 100
LLMUX_PID=${PID[llmux]}
sleep 1
RSS_IDLE_START=$(rss_kb "$LLMUX_PID")
say "llmux idle RSS at start: ${RSS_IDLE_START} kB"
thread_snap start

# Contenders: NAME -> URL and one optional extra header.
# Contenders of the non-streaming tests are listed in NAMES; those named sse-* are the
# streaming contenders in front of the TCP_NODELAY SSE upstream.
declare -A URL=() HDR=() SBODY=()
NAMES=()
add() {
  NAMES+=("$1")
  reg "$@"
}
reg() { # reg NAME URL [HEADER]: a contender not in the non-streaming tests
  URL[$1]=$2
  HDR[$1]=${3:-}
  SBODY[$1]=$WORK/body-stream.json
}
add direct "$MOCK/bench-a/v1/chat/completions"
add llmux "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions"
add llmux-tree "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions" "x-portkey-config: tree"
add llmux-cache-hit "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions" "x-portkey-config: cached"
add llmux-cache-miss "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions" \
  "x-portkey-config: cached"$'\n'"x-portkey-cache-force-refresh: true"
add llmux-gemini "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions" "x-portkey-config: gemini"
if [ -n "${LLMUX_BEFORE_BIN:-}" ] && [ -x "$LLMUX_BEFORE_BIN" ]; then
  write_llmux_config "$LLMUX_BEFORE_PORT" "$WORK/llmux-before.toml"
  say "starting llmux-before ($LLMUX_BEFORE_BIN) on :$LLMUX_BEFORE_PORT (RUST_LOG=warn)"
  RUST_LOG=warn start_bg llmux-before "$LLMUX_BEFORE_BIN" --config "$WORK/llmux-before.toml"
  if wait_ok llmux-before "http://127.0.0.1:$LLMUX_BEFORE_PORT/v1/models" 100; then
    add llmux-before "http://127.0.0.1:$LLMUX_BEFORE_PORT/v1/chat/completions"
  else
    note llmux-before "not run: it did not start (see logs/llmux-before.log)"
  fi
fi
reg sse-direct "$SSE/v1/chat/completions"
reg sse-llmux "http://127.0.0.1:$LLMUX_PORT/v1/chat/completions" "x-portkey-config: sse"

if [ "$MODE" = full ]; then
  # The floor of llmux's own stack: actix-web + reqwest forwarding, nothing else
  # (examples/floor.rs); floor-hyper forwards with the hyper-util client that reqwest wraps.
  FLOOR_BIN=$BIN/examples/floor
  if [ -x "$FLOOR_BIN" ]; then
    for client in reqwest hyper; do
      name=floor port=$FLOOR_PORT
      [ "$client" = hyper ] && name=floor-hyper port=$FLOOR_HYPER_PORT
      say "starting the actix-web + $client floor on :$port (2 workers)"
      start_bg "$name" "$FLOOR_BIN" "$MOCK/bench-a/v1/chat/completions" "127.0.0.1:$port" \
        "${BENCH_LLMUX_WORKERS:-2}" "$client"
      if wait_ok "$name" "http://127.0.0.1:$port/x" 50 -X POST -H 'content-type: application/json' -d @"$WORK/body.json"; then
        add "$name" "http://127.0.0.1:$port/v1/chat/completions"
      else
        note "$name" "not run: the floor server did not start (see logs/$name.log)"
      fi
    done
  else
    note floor "not run: $FLOOR_BIN is missing (LLMUX_BIN_DIR without examples/floor)"
  fi
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
user root;
worker_processes 2;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $LOGS/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 1000000;
  upstream mock {
    server 127.0.0.1:$MOCK_PORT;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  if [ -x "$NGINX" ]; then
    say "starting nginx on :$NGINX_PORT (2 workers, upstream keepalive 256)"
    start_bg nginx "$NGINX" -e "$LOGS/nginx-error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
    if wait_ok nginx "http://127.0.0.1:$NGINX_PORT/_mock/stats" 50; then
      add nginx "http://127.0.0.1:$NGINX_PORT/bench-a/v1/chat/completions"
    else
      note nginx "not run: nginx did not start (see logs/nginx.log)"
    fi
  else
    note nginx "not run: nginx is not installed"
  fi

  if [ "$HAVE_PORTKEY" = 1 ]; then
    leaf() { printf '{"provider":"openai","api_key":"sk-bench","custom_host":"%s/bench-%s/v1"}' "$MOCK" "$1"; }
    PK_SINGLE=$(leaf a)
    PK_TREE="{\"strategy\":{\"mode\":\"loadbalance\"},\"targets\":[$(leaf a),$(leaf b),$(leaf c),{\"strategy\":{\"mode\":\"fallback\"},\"targets\":[$(leaf d),$(leaf e)]}]}"
    printf '%s\n' "$PK_TREE" >"$RAW/portkey-tree.json"
    say "starting the Portkey gateway $PORTKEY_VERSION on :$PORTKEY_PORT (node $(node --version))"
    NODE_ENV=production start_bg portkey node "$PORTKEY_JS" "--port=$PORTKEY_PORT" --headless
    if wait_ok portkey "http://127.0.0.1:$PORTKEY_PORT/v1/chat/completions" 100 \
      -X POST -H 'content-type: application/json' -H "x-portkey-config: $PK_SINGLE" -d @"$WORK/body.json"; then
      add portkey "http://127.0.0.1:$PORTKEY_PORT/v1/chat/completions" "x-portkey-config: $PK_SINGLE"
      add portkey-tree "http://127.0.0.1:$PORTKEY_PORT/v1/chat/completions" "x-portkey-config: $PK_TREE"
    else
      note portkey "not run: the gateway did not answer (see logs/portkey.log)"
      stop_bg portkey
    fi
  fi

  if [ "$HAVE_LITELLM" = 1 ]; then
    cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: $MOCK/bench-a/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
  drop_params: true
EOF
    cp "$WORK/litellm.yaml" "$RAW/litellm.yaml"
    LITELLM_VERSION=$("$HERE/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || echo '?')
    say "starting the LiteLLM proxy $LITELLM_VERSION on :$LITELLM_PORT (1 worker)"
    # LiteLLM refuses to start without a master key; requests then need it as a bearer token.
    LL_KEY=sk-bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    LITELLM_MASTER_KEY=$LL_KEY LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR LITELLM_TELEMETRY=False \
      start_bg litellm "$LITELLM" --config "$WORK/litellm.yaml" --host 127.0.0.1 \
      --port "$LITELLM_PORT" --num_workers 1
    if wait_ok litellm "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" 300 \
      -X POST -H 'content-type: application/json' -H "authorization: Bearer $LL_KEY" -d @"$WORK/body.json"; then
      add litellm "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" "authorization: Bearer $LL_KEY"
    else
      note litellm "not run: the proxy did not answer within 60 s (see logs/litellm.log)"
      stop_bg litellm
    fi
  fi
fi
{
  echo "mode=$MODE"
  echo "command=bench/run.sh${1:+ $1}"
  echo "llmux_version=$LLMUX_VERSION"
  echo "portkey_version=$([ -n "${PID[portkey]:-}" ] && echo "$PORTKEY_VERSION" || echo -)"
  echo "litellm_version=$([ -n "${PID[litellm]:-}" ] && echo "${LITELLM_VERSION:-?}" || echo -)"
  echo "nproc=$(nproc)"
  echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "mem=$(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel=$(uname -r)"
  echo "nofile=$NOFILE"
  echo "load_start=$LOAD_START"
  echo "duration_s=$DUR"
  echo "rounds=$ROUNDS"
  echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
  echo "rss_idle_start_kb=$RSS_IDLE_START"
  echo "llmux_pid=$LLMUX_PID"
  echo "contenders=${NAMES[*]}"
} >"$RAW/meta.env"

# ---------------------------------------------------------------------------------------------
# Measurements. Each writes $RAW/TEST__NAME.json; load runs are bounded by their own duration
# and by `timeout`.

summary() { # summary FILE: one line for the console
  python3 - "$1" <<'EOF' 2>/dev/null || true
import json, sys
d = json.load(open(sys.argv[1]))
lat = d.get("latency_us") or d.get("ttft_us") or {}
if d.get("mode") == "hold":
    p = (d.get("procs") or [{}])[0]
    print(f"{d['opened']:,}/{d['streams']:,} open after {d['open_s']:.1f} s, "
          f"llmux RSS {p.get('rss_kb_all_open', 0) / 1024:,.1f} MB, failed {d['failed']}")
    sys.exit(0)
rps = d.get("achieved_rps", d.get("rps"))
err = (d.get("errors") or {}).get("total", 0)
parts = []
if rps is not None: parts.append(f"{rps:,.0f} rps")
if "ttft_us" in d:
    parts.append(f"ttft p50 {d['ttft_us'].get('p50',0)/1000:.1f} ms p99 {d['ttft_us'].get('p99',0)/1000:.1f} ms")
    parts.append(f"total p50 {d['total_us'].get('p50',0)/1000:.1f} ms")
else:
    parts.append(f"p50 {lat.get('p50',0)} µs p99 {lat.get('p99',0)} µs max {lat.get('max',0)} µs")
parts.append(f"errors {err}")
print(", ".join(parts))
EOF
}

hdr_args() { # hdr_args NAME: sets HARGS to one -H per header line of contender NAME
  HARGS=()
  local line
  while IFS= read -r line; do
    [ -n "$line" ] && HARGS+=(-H "$line")
  done <<<"${HDR[$1]}"
  return 0
}

lg() { # lg OUT NAME BOUND_S MODE ARGS...: loadgen against contender NAME
  local out=$1 name=$2 bound=$3 mode=$4
  shift 4
  local hdr=()
  hdr_args "$name"
  hdr=("${HARGS[@]}")
  if timeout "$bound" "$LOADGEN" "$mode" --url "${URL[$name]}" "${hdr[@]}" --label "$name" "$@" \
    >"$out.tmp" 2>>"$LOGS/loadgen.err"; then
    mv "$out.tmp" "$out"
    printf '    %-13s %s\n' "$name" "$(summary "$out")"
  else
    rm -f "$out.tmp"
    printf '    %-13s loadgen failed or timed out (see logs/loadgen.err)\n' "$name"
    return 1
  fi
}

mix_summary() { # mix_summary FILE: one console line for an interleaved run (loadgen --url-b)
  python3 - "$1" <<'EOF' 2>/dev/null || true
import json, sys
d = json.load(open(sys.argv[1]))
b = d["b"]
print(f"{d['label']} p50 {d['latency_us']['p50']} µs, {b['label']} p50 {b['latency_us']['p50']} µs, "
      f"errors {d['errors']['total'] + b['errors']['total']}")
EOF
}

wrk_run() { # wrk_run OUT NAME CONNS [SECONDS]
  local out=$1 name=$2 c=$3 d=${4:-$DUR}
  if command -v wrk >/dev/null; then
    if WRK_BODY=$WORK/body.json WRK_HEADERS=${HDR[$name]} WRK_JSON=$out.tmp \
      timeout $((d + 20)) wrk -t2 -c"$c" -d"${d}s" --timeout 5s -s "$HERE/wrk.lua" "${URL[$name]}" \
      >>"$LOGS/wrk.log" 2>&1 && [ -s "$out.tmp" ]; then
      mv "$out.tmp" "$out"
      printf '    %-13s %s\n' "$name" "$(summary "$out")"
    else
      rm -f "$out.tmp"
      printf '    %-13s wrk failed or timed out (see logs/wrk.log)\n' "$name"
    fi
  else
    lg "$out" "$name" $((d + 20)) closed --conns "$c" --duration-s "$d" --body-file "$WORK/body.json" || true
  fi
}

FAILED=0
check_errors() { # check_errors FILE...: count failed requests (smoke)
  local f n
  for f in "$@"; do
    if [ ! -s "$f" ]; then
      FAILED=$((FAILED + 1))
      continue
    fi
    n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"]["total"])' "$f")
    FAILED=$((FAILED + n))
  done
}

# The same llmux with a gateway key that has every per-key limit (set high, so none refuses)
# (llmux-keys), and with [telemetry] exporting every span to the mock's OTLP/HTTP sink
# (llmux-otel). Registers both as contenders; fails if either does not start.
start_feature_llmuxes() {
  local key=sk-llmux-bench-key-0123456789 sha
  sha=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
  write_llmux_config "$LLMUX_KEYS_PORT" "$WORK/llmux-keys.toml"
  cat >>"$WORK/llmux-keys.toml" <<EOF

[auth]
keys = [{ name = "bench", sha256 = "$sha", rpm = 100000000, tpm = 4000000000, max_concurrent = 100000, budget_usd = { daily = 1000000000, monthly = 1000000000 } }]
EOF
  write_llmux_config "$LLMUX_OTEL_PORT" "$WORK/llmux-otel.toml"
  cat >>"$WORK/llmux-otel.toml" <<EOF

[telemetry]
otlp_endpoint = "$MOCK/_mock/v1/traces"
EOF
  cp "$WORK/llmux-keys.toml" "$WORK/llmux-otel.toml" "$RAW/"
  RUST_LOG=warn start_bg llmux-keys "$BIN/llmux" --config "$WORK/llmux-keys.toml"
  RUST_LOG=warn start_bg llmux-otel "$BIN/llmux" --config "$WORK/llmux-otel.toml"
  wait_ok llmux-keys "http://127.0.0.1:$LLMUX_KEYS_PORT/v1/models" 100 -H "authorization: Bearer $key" &&
    wait_ok llmux-otel "http://127.0.0.1:$LLMUX_OTEL_PORT/v1/models" 100 || return 1
  add llmux-keys "http://127.0.0.1:$LLMUX_KEYS_PORT/v1/chat/completions" "authorization: Bearer $key"
  add llmux-otel "http://127.0.0.1:$LLMUX_OTEL_PORT/v1/chat/completions"
}

if [ "$MODE" = smoke ]; then
  start_feature_llmuxes || FAILED=$((FAILED + 1))
  say "smoke: ${NAMES[*]}"
  for n in "${NAMES[@]}"; do
    lg "$RAW/rate-200__$n.json" "$n" 30 rate --rps 200 --duration-s 1.5 --conns 8 \
      --body-file "$WORK/body.json" --threads 1 || true
    check_errors "$RAW/rate-200__$n.json"
  done
  set_behavior '"stream_chunks":20,"chunk_interval_ms":2,"response_padding":100'
  for n in direct llmux llmux-tree llmux-gemini; do
    lg "$RAW/stream-c10__$n.json" "$n" 30 stream --concurrency 10 --count 30 --expect-chunks 20 \
      --body-file "$WORK/body-stream.json" --timeout-ms 10000 --threads 1 || true
    check_errors "$RAW/stream-c10__$n.json"
  done
  for n in sse-direct sse-llmux; do
    lg "$RAW/sse-c10__${n#sse-}.json" "$n" 30 stream --concurrency 10 --count 20 --expect-chunks 50 \
      --body-file "$WORK/body-stream.json" --timeout-ms 10000 --threads 1 || true
    check_errors "$RAW/sse-c10__${n#sse-}.json"
  done
  echo "rss_idle_after_kb=$(rss_kb "$LLMUX_PID")" >>"$RAW/meta.env"
  echo "load_end=$(loadavg)" >>"$RAW/meta.env"
  echo "elapsed_s=$((SECONDS - T0))" >>"$RAW/meta.env"
  python3 "$HERE/report.py" "$RAW" "$RESULTS/smoke.md" || true
  if [ "$FAILED" -gt 0 ]; then
    say "smoke FAILED: $FAILED failed requests or runs"
    exit 1
  fi
  say "smoke ok (results: bench/results/smoke.md)"
  exit 0
fi

# Full run. Tests loop over contenders innermost so that contenders compared with each other
# run close together in time on this shared machine.

# Fit the load runs into what is left of the budget (builds may have taken most of it).
K=${#NAMES[@]}
CORE=0
for n in "${NAMES[@]}"; do case $n in direct | nginx | floor* | llmux*) CORE=$((CORE + 1)) ;; esac; done
# + logging cost (4 runs a round) + feature cost (6 runs a round).
RUNS=$((4 * (K + (ROUNDS - 1) * CORE) + (K < 6 ? K : 6) + 10 * ROUNDS))
FIXED=$((160 + 2 * K + 2 * ROUNDS * SETTLE * $(echo $CONNS | wc -w)))
# The paired runs keep their own length (PDUR): set aside what they take.
[ -n "${URL[floor]:-}" ] && FIXED=$((FIXED + PAIR_ROUNDS * 2 * ($(echo $CONNS | wc -w) + 1) * (PDUR + 1)))
FIT=$(((($(left) - FIXED) * 10 / RUNS - 7) / 10))
if [ "$FIT" -lt "$DUR" ]; then
  if [ "$FIT" -lt 2 ]; then FIT=2; fi
  note duration "load runs shortened from ${DUR}s to ${FIT}s to fit the time budget ($(left)s left after installs and builds)"
  DUR=$FIT
  sed -i "s/^duration_s=.*/duration_s=$DUR/" "$RAW/meta.env"
fi
set_behavior "\"response_padding\":$PADDING"
say "warm-up (1 s each)"
for n in "${NAMES[@]}"; do
  lg "$WORK/warm__$n.json" "$n" 30 closed --conns 32 --duration-s 1 --body-file "$WORK/body.json" >/dev/null || true
done

# The contenders compared closely (direct, nginx, llmux) run ROUNDS interleaved rounds; the
# report takes the median of the rounds. The peers, orders of magnitude slower, run once.
in_round() { [ "$1" = 1 ] || case $2 in direct | nginx | floor* | llmux*) true ;; *) false ;; esac; }
# A contender's place in the order moves its numbers on this shared machine: right after
# `direct` at full speed, llmux measured 10-25 % lower against the floor than one place later
# (bench/order-effect.sh, BENCHMARKS.md run R). So even rounds run the list backwards, and the
# runs faster than any proxy are followed by a pause (settle).
order() { # order ROUND: NAMES, reversed in even rounds
  ORDER=("${NAMES[@]}")
  if [ $(($1 % 2)) = 0 ]; then
    local i
    ORDER=()
    for ((i = ${#NAMES[@]} - 1; i >= 0; i--)); do ORDER+=("${NAMES[$i]}"); done
  fi
}
settle() { case $1 in direct | llmux-cache-hit) sleep "$SETTLE" ;; esac; }
for r in $RATES; do
  for round in $(seq 1 "$ROUNDS"); do
    say "fixed rate $r RPS, 50 connections, ${DUR}s each, round $round/$ROUNDS (load $(loadavg))"
    order "$round"
    for n in "${ORDER[@]}"; do
      in_round "$round" "$n" || continue
      lg "$RAW/rate-${r}__${n}__r$round.json" "$n" $((DUR + 20)) rate --rps "$r" --duration-s "$DUR" \
        --conns 50 --body-file "$WORK/body.json" || true
    done
  done
done

thread_snap "fixed-rate runs"
if command -v oha >/dev/null && [ "$(left)" -gt 300 ]; then
  say "cross-check with oha -q (direct, nginx, llmux; ${DUR}s each)"
  for r in $RATES; do
    for n in direct nginx llmux; do
      [ -n "${URL[$n]:-}" ] || continue
      hdr_args "$n"
      hdr=("${HARGS[@]}")
      timeout $((DUR + 20)) oha --no-tui --output-format json -z "${DUR}s" -q "$r" -c 50 -m POST \
        -T application/json -D "$WORK/body.json" "${hdr[@]}" "${URL[$n]}" \
        >"$RAW/oha-${r}__$n.json" 2>>"$LOGS/oha.log" || rm -f "$RAW/oha-${r}__$n.json"
    done
  done
else
  note oha "not run: oha is not installed (BENCH_INSTALL_OHA=1 installs it); fixed-rate runs use bench/loadgen"
fi

for c in $CONNS; do
  for round in $(seq 1 "$ROUNDS"); do
    say "max throughput: wrk -t2 -c$c, ${DUR}s each, round $round/$ROUNDS (load $(loadavg))"
    order "$round"
    for n in "${ORDER[@]}"; do
      in_round "$round" "$n" || continue
      wrk_run "$RAW/wrk-c${c}__${n}__r$round.json" "$n" "$c"
      settle "$n"
    done
  done
done

thread_snap "wrk runs"

# llmux against its floor (issue 15's targets), paired: in each round the two run back to back,
# the order alternating, so a drift of the shared machine between rounds cancels in that
# round's ratio. Single runs here move by ±15 % from one minute to the next; the report takes
# the median of PAIR_ROUNDS per-round ratios and shows their spread. The llmux here is a
# process of its own on the `single` config (files still say `llmux`), as the floor only ever
# serves that one path: by now the main llmux has also served trees, the cache and Gemini,
# and it runs with every contender's config (its numbers are in the tables above).
if [ -n "${URL[floor]:-}" ] && [ "$PAIR_ROUNDS" -gt 0 ]; then
  write_llmux_config "$LLMUX_PAIR_PORT" "$WORK/llmux-pair.toml"
  RUST_LOG=warn start_bg llmux-pair "$BIN/llmux" --config "$WORK/llmux-pair.toml"
  reg llmux-pair "http://127.0.0.1:$LLMUX_PAIR_PORT/v1/chat/completions"
  pair_rounds=$PAIR_ROUNDS
  if wait_ok llmux-pair "http://127.0.0.1:$LLMUX_PAIR_PORT/v1/models" 100; then
    lg "$WORK/warm__llmux-pair.json" llmux-pair 30 closed --conns 32 --duration-s 1 --body-file "$WORK/body.json" >/dev/null || true
  else
    note pairs "not run: the paired llmux did not start (see logs/llmux-pair.log)"
    pair_rounds=0
  fi
  for round in $(seq 1 "$pair_rounds"); do
    pair=(floor llmux-pair)
    [ $((round % 2)) = 0 ] && pair=(llmux-pair floor)
    say "llmux vs floor, round $round/$PAIR_ROUNDS: $PAIR_RATE RPS, then wrk -t2 at $CONNS connections, ${PDUR}s each (load $(loadavg))"
    for n in "${pair[@]}"; do
      lg "$RAW/pair-rate__${n%-pair}__r$round.json" "$n" $((PDUR + 20)) rate --rps "$PAIR_RATE" \
        --duration-s "$PDUR" --conns 50 --body-file "$WORK/body.json" || true
    done
    # The same rate, the two interleaved: one loadgen sends to one contender in even 200-ms
    # slices and to the other in odd ones, so the machine's drift between two runs (which
    # moves the sequential runs' p50 by ±100 µs) hits both alike. Who takes the even slices
    # alternates with the round.
    if timeout $((2 * PDUR + 20)) "$LOADGEN" rate --url "${URL[${pair[0]}]}" --label "${pair[0]%-pair}" \
      --url-b "${URL[${pair[1]}]}" --label-b "${pair[1]%-pair}" --slice-ms 200 --rps "$PAIR_RATE" \
      --duration-s $((2 * PDUR)) --conns 50 --body-file "$WORK/body.json" \
      >"$RAW/pair-mix__both__r$round.json.tmp" 2>>"$LOGS/loadgen.err"; then
      mv "$RAW/pair-mix__both__r$round.json.tmp" "$RAW/pair-mix__both__r$round.json"
      printf '    %-13s %s\n' interleaved "$(mix_summary "$RAW/pair-mix__both__r$round.json")"
    else
      rm -f "$RAW/pair-mix__both__r$round.json.tmp"
      printf '    %-13s loadgen failed or timed out (see logs/loadgen.err)\n' interleaved
    fi
    for c in $CONNS; do
      for n in "${pair[@]}"; do
        wrk_run "$RAW/pair-c${c}__${n%-pair}__r$round.json" "$n" "$c" "$PDUR"
      done
    done
  done
  stop_bg llmux-pair
  echo "pair_rate=$PAIR_RATE" >>"$RAW/meta.env"
  echo "pair_duration_s=$PDUR" >>"$RAW/meta.env"
fi
if [ "$(left)" -gt 200 ]; then
  say "mock with 20 ms latency: wrk -t2 -c64, ${DUR}s each"
  set_behavior "\"response_padding\":$PADDING,\"latency_ms\":20"
  for n in direct nginx llmux llmux-tree portkey litellm; do
    [ -n "${URL[$n]:-}" ] || continue
    wrk_run "$RAW/lat20-c64__$n.json" "$n" 64
  done
  set_behavior "\"response_padding\":$PADDING"
  thread_snap "mock at 20 ms"
else
  note latency20 "not run: time budget"
fi

# Streams, 50 content chunks each, at 1 and 500 concurrent streams:
#  - "mock": llmux-mock with {"stream_chunks":50,"chunk_interval_ms":$SSE_INTERVAL}, every contender;
#  - "sse": an independent upstream (loadgen sse-server, TCP_NODELAY), direct vs llmux, as a
#    cross-check that does not depend on how the mock writes its stream.
set_behavior "\"stream_chunks\":50,\"chunk_interval_ms\":$SSE_INTERVAL,\"response_padding\":200"
for spec in "1 10 30000" "500 500 20000"; do
  read -r conc count stream_timeout <<<"$spec"
  if [ "$(left)" -lt 150 ]; then
    note "streams-c$conc" "not run: time budget"
    continue
  fi
  say "streams, llmux-mock upstream: 50 chunks x ${SSE_INTERVAL} ms, concurrency $conc, $count streams"
  for n in direct llmux llmux-tree llmux-gemini portkey portkey-tree litellm; do
    [ -n "${URL[$n]:-}" ] || continue
    lg "$RAW/stream-c${conc}__$n.json" "$n" 90 stream --concurrency "$conc" --count "$count" \
      --expect-chunks 50 --body-file "${SBODY[$n]}" --timeout-ms "$stream_timeout" || true
  done
  say "streams, independent TCP_NODELAY upstream: 50 chunks x ${SSE_INTERVAL} ms, concurrency $conc, $count streams"
  for n in sse-direct sse-llmux; do
    [ -n "${URL[$n]:-}" ] || continue
    lg "$RAW/sse-c${conc}__${n#sse-}.json" "$n" 90 stream --concurrency "$conc" --count "$count" \
      --expect-chunks 50 --body-file "${SBODY[$n]}" --timeout-ms "$stream_timeout" || true
  done
done
if [ -n "${PID[portkey]:-}" ] && grep -q 'TypeError: immutable' "$LOGS/portkey.log"; then
  note portkey-streams "streams through the Portkey gateway failed with HTTP 500; its log: \
'tryTargetsRecursively error: immutable ... TypeError: immutable at _Headers.append ... updateHeaders' \
(a known Portkey bug on Node's fetch, Portkey-AI/gateway issues 1389 and 1550; node $(node --version))"
fi

thread_snap "streams"
# Peers are done: stop them so they do not share the CPU with what follows.
stop_bg portkey
stop_bg litellm

# Logging cost: a second llmux at RUST_LOG=info (JSON lines to a file, as under journald).
if [ "$(left)" -gt 120 ]; then
  write_llmux_config "$LLMUX_INFO_PORT" "$WORK/llmux-info.toml"
  RUST_LOG=info start_bg llmux-info "$BIN/llmux" --config "$WORK/llmux-info.toml"
  if wait_ok llmux-info "http://127.0.0.1:$LLMUX_INFO_PORT/v1/models" 100; then
    add llmux-info "http://127.0.0.1:$LLMUX_INFO_PORT/v1/chat/completions"
    say "logging cost: llmux vs llmux at RUST_LOG=info, wrk -c64 and 5000 RPS"
    for round in $(seq 1 "$ROUNDS"); do
      for n in llmux llmux-info; do
        wrk_run "$RAW/logcost-c64__${n}__r$round.json" "$n" 64
      done
      for n in llmux llmux-info; do
        lg "$RAW/logcost-rate5000__${n}__r$round.json" "$n" $((DUR + 20)) rate --rps 5000 \
          --duration-s "$DUR" --conns 50 --body-file "$WORK/body.json" || true
      done
    done
  fi
  stop_bg llmux-info
  thread_snap "logging-cost runs"
else
  note logcost "not run: time budget"
fi

# Feature cost: llmux vs the same llmux with per-key limits (llmux-keys) and with OpenTelemetry
# export (llmux-otel); both started by start_feature_llmuxes.
if [ "$(left)" -gt 150 ] && start_feature_llmuxes; then
  say "feature cost: llmux vs llmux with per-key limits vs llmux with OpenTelemetry export, wrk -c64 and 5000 RPS"
  for round in $(seq 1 "$ROUNDS"); do
    for n in llmux llmux-keys llmux-otel; do
      wrk_run "$RAW/featcost-c64__${n}__r$round.json" "$n" 64
    done
    for n in llmux llmux-keys llmux-otel; do
      lg "$RAW/featcost-rate5000__${n}__r$round.json" "$n" $((DUR + 20)) rate --rps 5000 \
        --duration-s "$DUR" --conns 50 --body-file "$WORK/body.json" || true
    done
  done
  stop_bg llmux-keys
  stop_bg llmux-otel
  thread_snap "feature-cost runs"
else
  note featcost "not run: time budget, or llmux-keys / llmux-otel did not start (see logs/)"
fi

# perf: where llmux spends its CPU under wrk -c64.
if [ "$PERF" = 1 ] && command -v perf >/dev/null && [ "$(left)" -gt 100 ]; then
  say "perf record on llmux under wrk -c64 (6 s)"
  set_behavior "\"response_padding\":$PADDING"
  (WRK_BODY=$WORK/body.json timeout 30 wrk -t2 -c64 -d9s -s "$HERE/wrk.lua" \
    "${URL[llmux]}" >/dev/null 2>&1 || true) &
  wrk_bg=$!
  sleep 1
  cpu_before=$(awk '{print $14 + $15}' "/proc/$LLMUX_PID/stat")
  t_before=$SECONDS
  if timeout 30 perf record -F 1999 -p "$LLMUX_PID" -o "$WORK/perf.data" -- sleep 6 \
    >"$LOGS/perf.log" 2>&1; then
    timeout 90 perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio \
      2>>"$LOGS/perf.log" | grep -v '^#' | sed '/^$/d' >"$RAW/perf-all.txt" || true
    head -40 "$RAW/perf-all.txt" >"$RAW/perf-symbols.txt"
    timeout 60 perf report -i "$WORK/perf.data" --no-children --sort dso --stdio \
      2>>"$LOGS/perf.log" | grep -v '^#' | sed '/^$/d' | head -12 >"$RAW/perf-dso.txt" || true
    timeout 60 perf report -i "$WORK/perf.data" --no-children --sort comm --stdio \
      2>>"$LOGS/perf.log" | grep -v '^#' | sed '/^$/d' | head -12 >"$RAW/perf-threads.txt" || true
  else
    note perf "not run: perf record failed (see logs/perf.log)"
  fi
  wait "$wrk_bg" 2>/dev/null || true
  # CPU time llmux spent (user+system ticks) during the perf window.
  echo "perf_cpu_ticks=$(($(awk '{print $14 + $15}' "/proc/$LLMUX_PID/stat") - cpu_before))" >>"$RAW/meta.env"
  echo "perf_wall_s=$((SECONDS - t_before))" >>"$RAW/meta.env"
  thread_snap "perf run (wrk -c64)"
elif [ "$PERF" = 1 ]; then
  note perf "not run: perf missing or time budget"
fi

# Memory: idle after all that, then many streams held open against a slow mock.
sleep 2
echo "rss_idle_after_kb=$(rss_kb "$LLMUX_PID")" >>"$RAW/meta.env"
set_behavior '"stream_chunks":50,"chunk_interval_ms":1000,"response_padding":200'
for n_streams in $HOLD_STREAMS; do
  if [ "$(left)" -lt 45 ]; then
    note "hold-$n_streams" "not run: time budget"
    continue
  fi
  if [ $((2 * n_streams + 200)) -gt "$NOFILE" ]; then
    note "hold-$n_streams" "not run: needs ~$((2 * n_streams + 200)) open files in llmux; the limit here is $NOFILE"
    continue
  fi
  say "memory: $n_streams streams held open through llmux (mock: 1 chunk/s)"
  thread_snap "before hold $n_streams"
  lg "$RAW/hold-${n_streams}__llmux.json" llmux 75 hold --streams "$n_streams" --pid "$LLMUX_PID" \
    --hold-ms 2000 --open-timeout-ms 40000 --connect-parallel 256 \
    --body-file "$WORK/body-stream.json" || true
  thread_snap "hold $n_streams"
  sleep 2
  echo "rss_after_hold_${n_streams}_kb=$(rss_kb "$LLMUX_PID")" >>"$RAW/meta.env"
done
# The same streams through the floor (actix-web + reqwest relaying bytes): what the framework
# pair alone costs per open stream.
n_streams=${HOLD_STREAMS##* }
if [ -n "${PID[floor]:-}" ] && [ "$(left)" -ge 45 ] && [ $((2 * n_streams + 200)) -le "$NOFILE" ]; then
  say "memory: $n_streams streams held open through the floor"
  lg "$RAW/hold-${n_streams}__floor.json" floor 75 hold --streams "$n_streams" --pid "${PID[floor]}" \
    --hold-ms 2000 --open-timeout-ms 40000 --connect-parallel 256 \
    --body-file "$WORK/body-stream.json" || true
fi
# The same streams through a fresh llmux ("llmux-fresh"), as the floor is fresh: the llmux
# above has served every load phase first and keeps some of what it allocated then.
if [ "$(left)" -ge 45 ] && [ $((2 * n_streams + 200)) -le "$NOFILE" ]; then
  write_llmux_config "$LLMUX_FRESH_PORT" "$WORK/llmux-fresh.toml"
  RUST_LOG=warn start_bg llmux-fresh "$BIN/llmux" --config "$WORK/llmux-fresh.toml"
  if wait_ok llmux-fresh "http://127.0.0.1:$LLMUX_FRESH_PORT/v1/models" 100; then
    reg llmux-fresh "http://127.0.0.1:$LLMUX_FRESH_PORT/v1/chat/completions"
    say "memory: $n_streams streams held open through a fresh llmux"
    lg "$RAW/hold-${n_streams}__llmux-fresh.json" llmux-fresh 75 hold --streams "$n_streams" \
      --pid "${PID[llmux-fresh]}" --hold-ms 2000 --open-timeout-ms 40000 --connect-parallel 256 \
      --body-file "$WORK/body-stream.json" || true
  fi
  stop_bg llmux-fresh
fi
set_behavior "\"response_padding\":$PADDING"

echo "load_end=$(loadavg)" >>"$RAW/meta.env"
echo "elapsed_s=$((SECONDS - T0))" >>"$RAW/meta.env"
say "writing bench/results/latest.md"
python3 "$HERE/report.py" "$RAW" "$RESULTS/latest.md"
say "done in $((SECONDS - T0)) s"
