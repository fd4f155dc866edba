# Shared by the small bench scripts (floor-ratio.sh, instructions.sh, p50-pairs.sh and the
# others beside this file); sourced, not run. `bench_init MOCK_PORT` makes the scratch dir $W
# (removed at exit, with every background job), the request body $W/body.json, and starts
# llmux-mock from $BIN on MOCK_PORT as bench/run.sh does (~1.3 KB answers, one worker).
bench_init() {
  MOCK=$1
  W=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
  printf '%s\n' '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}],"max_tokens":64}' >"$W/body.json"
  "$BIN/llmux-mock" --listen "127.0.0.1:$MOCK" --padding 900 --workers 1 >"$W/mock.log" 2>&1 &
}

# llmux_config PORT: an llmux config listening on PORT with one OpenAI-compatible leaf in front
# of the mock (what bench/run.sh's `llmux` contender uses).
llmux_config() {
  printf '[server]\nlisten = "127.0.0.1:%s"\ndefault_config = "single"\nworkers = 2\n\n' "$1"
  printf '[virtual_keys.bench-a]\nprovider = "openai"\nbase_url = "http://127.0.0.1:%s/bench-a/v1"\n\n' "$MOCK"
  printf '[configs.single]\nstrategy = { mode = "single" }\ntargets = [{ virtual_key = "bench-a" }]\n'
}

# start_floor PORT [PREFIX...]: the floor (examples/floor.rs from $BIN: actix-web + reqwest
# forwarding, two workers) on PORT in front of the mock, in the background, run under PREFIX
# (valgrind, say) when given; its output goes to $W/floor.log, its pid to $!.
start_floor() {
  local port=$1
  shift
  "$@" "$BIN/examples/floor" "http://127.0.0.1:$MOCK/bench-a/v1/chat/completions" \
    "127.0.0.1:$port" 2 reqwest >"$W/floor.log" 2>&1 &
}
