#!/usr/bin/env bash
# How much code a request runs, as the caches see it: the distinct 64-byte lines (and 4-KiB
# pages) of machine code executed over N keep-alive requests, for the floor and llmux
# (valgrind callgrind, instruction-level dump). At a low rate every request starts on caches the
# rest of the machine has emptied, so this, more than the instruction count, is what a request's
# own CPU time grows with. Deterministic for one binary and input, like bench/instructions.sh:
# only the thread that served the requests is counted (the daemon's timers and metrics upkeep
# run on others, now and then).
# The last lines print where llmux's extra lines are, by crate (llmux's own by module). Needs
# valgrind, curl, wrk and release binaries:
#   CARGO_TARGET_DIR=target/bench cargo build --release --workspace --bins --example floor
#   bash bench/code-lines.sh   (BIN=dir of the binaries, LLMUX=another llmux binary,
#                               N=requests counted, default 40)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/bench/release}
LLMUX=${LLMUX:-$BIN/llmux}
N=${N:-40}
. bench/lib.sh
bench_init 19701
llmux_config 19702 >"$W/llmux.toml"
VG=(valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no --separate-threads=yes)
for who in floor llmux; do
  if [ "$who" = floor ]; then
    port=19703
    start_floor "$port" "${VG[@]}" --callgrind-out-file="$W/cg.$who"
  else
    port=19702
    RUST_LOG=warn "${VG[@]}" --callgrind-out-file="$W/cg.$who" "$LLMUX" --config "$W/llmux.toml" >"$W/$who.log" 2>&1 &
  fi
  vg=$!
  sleep 8
  url="http://127.0.0.1:$port/v1/chat/completions"
  WRK_BODY=$W/body.json wrk -t1 -c4 -d3s -s bench/wrk.lua "$url" >/dev/null
  sleep 0.5
  callgrind_control -z "$vg" >/dev/null 2>&1
  # One connection, N requests on it (curl reuses it for every URL of one invocation).
  args=()
  for _ in $(seq 1 "$N"); do args+=(-o /dev/null "$url"); done
  curl -s -H 'content-type: application/json' --data-binary @"$W/body.json" "${args[@]}"
  callgrind_control -d "$vg" >/dev/null 2>&1
  sleep 1
  kill -INT "$vg"
  wait "$vg" 2>/dev/null || true
done
python3 - "$W" "$N" <<'EOF'
import collections, glob, sys
def load(path):
    """Executed instruction addresses by function (cost lines after `calls=` are the call's
    inclusive cost at the call site: skipped)."""
    by_fn, fn, after_call, ir = collections.defaultdict(set), None, False, 0
    for line in open(path):
        if line.startswith("calls="):
            after_call = True
        elif line.startswith("fn="):
            fn = line[3:].strip()
        elif line.startswith("0x"):
            if after_call:
                after_call = False
                continue
            f = line.split()
            if len(f) > 2 and int(f[2]) > 0:
                by_fn[fn].add(int(f[0], 16))
                ir += int(f[2])
    return by_fn, ir
def group(fn):
    name = fn.lstrip("<&").removeprefix("mut ")
    parts = name.split("::")
    return "::".join(parts[:3]) if parts[0] == "llmux" else parts[0]
n = int(sys.argv[2])
res = {}
for who in ("floor", "llmux"):
    # One file per thread of the counted dump: the one that ran the most is the worker that
    # served the connection.
    by_fn, ir = max((load(p) for p in glob.glob(f"{sys.argv[1]}/cg.{who}.1-*")), key=lambda r: r[1])
    addrs = set().union(*by_fn.values())
    lines = {a >> 6 for a in addrs}
    print(f"{who}: {ir // n} instructions per request; over {n} requests {len(lines)} code lines "
          f"({len(lines) * 64 // 1024} KiB), {len({a >> 12 for a in addrs})} pages")
    g = collections.Counter()
    for fn, a in by_fn.items():
        g[group(fn)] += len({x >> 6 for x in a})
    res[who] = g
a, b = res["floor"], res["llmux"]
print("code lines by crate (llmux's own by module), largest differences:")
for k in sorted(set(a) | set(b), key=lambda k: a[k] - b[k])[:20]:
    print(f"    {k:40} floor {a[k]:5}  llmux {b[k]:5}  {b[k] - a[k]:+5}")
EOF
