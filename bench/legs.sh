#!/usr/bin/env bash
# Where a proxy's added latency sits along its path, from the kernel's packet times on loopback
# (tcpdump, no instrumentation in either process). floor and llmux run side by side behind one
# llmux-mock; one loadgen sends to both interleaved in 200-ms slices (as bench/p50-pairs.sh), and
# each request is cut into three legs:
#   in -> up     the client's request arrives .. the proxy's request to the mock leaves
#   upstream     that request leaves .. the mock's answer arrives (the mock's own time)
#   down -> out  the answer arrives .. the proxy's answer to the client leaves
# A request is counted only when exactly one upstream request falls inside it (at 500 RPS about
# half are, at 5k RPS ~1 %, too few: a low-rate tool; the count is printed). Needs tcpdump and
# release binaries:
#   CARGO_TARGET_DIR=target/bench cargo build --release --workspace --bins --example floor
#   bash bench/legs.sh [ROUNDS]   (BIN=dir of the binaries, RATE=requests per second, default
#                                  500; DUR=seconds per contender and round, default 6)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tcpdump >/dev/null || { echo "bench/legs.sh needs tcpdump (apt-get install tcpdump)" >&2; exit 1; }
BIN=${BIN:-$PWD/target/bench/release}
ROUNDS=${1:-2}
RATE=${RATE:-500}
DUR=${DUR:-6}
. bench/lib.sh
bench_init 19601
declare -A PORT=([floor]=19602 [llmux]=19603) PID=()
start_floor "${PORT[floor]}"
PID[floor]=$!
llmux_config "${PORT[llmux]}" >"$W/llmux.toml"
RUST_LOG=warn "$BIN/llmux" --config "$W/llmux.toml" >"$W/llmux.log" 2>&1 &
PID[llmux]=$!
sleep 2
url() { echo "http://127.0.0.1:${PORT[$1]}/v1/chat/completions"; }
mix() { # mix A B RPS SECONDS
  "$BIN/loadgen" rate --url "$(url "$1")" --label "$1" --url-b "$(url "$2")" --label-b "$2" \
    --slice-ms 200 --rps "$3" --duration-s "$4" --conns 50 --body-file "$W/body.json" 2>/dev/null
}
mix floor llmux 2000 2 >/dev/null # warm both pools
tcpdump -i lo -n -B 65536 -w "$W/cap.pcap" \
  "tcp and (port $MOCK or port ${PORT[floor]} or port ${PORT[llmux]})" 2>"$W/tcpdump.err" &
TD=$!
sleep 1
for r in $(seq 1 "$ROUNDS"); do
  a=floor b=llmux
  [ $((r % 2)) = 0 ] && a=llmux b=floor
  mix "$a" "$b" "$RATE" $((2 * DUR)) >"$W/lg$r.json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); b=d['b']
print(f\"round $r loadgen p50: {d['label']} {d['latency_us']['p50']} µs, {b['label']} {b['latency_us']['p50']} µs\")" "$W/lg$r.json"
done
# Which upstream connections are whose, while they are still open.
ss -tnp state established "( dport = :$MOCK )" >"$W/ss.txt"
sleep 0.5
kill "$TD"
wait "$TD" 2>/dev/null || true
tcpdump -r "$W/cap.pcap" -tt -n -q 2>/dev/null >"$W/cap.txt"
python3 - "$W/cap.txt" "$W/ss.txt" "$MOCK" "${PORT[floor]}" "${PID[floor]}" "${PORT[llmux]}" "${PID[llmux]}" <<'EOF'
import bisect, collections, re, statistics, sys
cap, ssf, mock = sys.argv[1], sys.argv[2], int(sys.argv[3])
procs = {"floor": (int(sys.argv[4]), sys.argv[5]), "llmux": (int(sys.argv[6]), sys.argv[7])}
owner = {}
for line in open(ssf):
    m = re.search(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:%d.*pid=(\d+)," % mock, line)
    for name, (_, pid) in procs.items():
        if m and m.group(2) == pid:
            owner[int(m.group(1))] = name
pat = re.compile(r"^(\d+\.\d+) IP 127\.0\.0\.1\.(\d+) > 127\.0\.0\.1\.(\d+): tcp (\d+)")
ev = collections.defaultdict(list)  # proxy -> [(time, kind, connection port)]
for line in open(cap):
    m = pat.match(line)
    if not m or m.group(4) == "0":
        continue  # data segments only
    t, s, d = float(m.group(1)), int(m.group(2)), int(m.group(3))
    for name, (port, _) in procs.items():
        if d == port:
            ev[name].append((t, "in", s))
        elif s == port:
            ev[name].append((t, "out", d))
    if d == mock and s in owner:
        ev[owner[s]].append((t, "up", s))
    elif s == mock and d in owner:
        ev[owner[d]].append((t, "down", d))
for name in procs:
    e = sorted(ev[name])
    reqs, last_in = [], {}
    for t, kind, c in e:
        if kind == "in":
            last_in[c] = t
        elif kind == "out" and c in last_in:
            reqs.append((last_in.pop(c), t))
    ups = [(t, c) for t, k, c in e if k == "up"]
    downs = [(t, c) for t, k, c in e if k == "down"]
    ut, dt = [t for t, _ in ups], [t for t, _ in downs]
    legs = {"in -> up": [], "upstream": [], "down -> out": [], "in -> out": []}
    skipped = 0
    for t0, t3 in reqs:
        i, j = bisect.bisect_right(ut, t0), bisect.bisect_left(ut, t3)
        k, m = bisect.bisect_right(dt, t0), bisect.bisect_left(dt, t3)
        conns = {downs[x][1] for x in range(k, m)}
        if j - i != 1 or conns != {ups[i][1]}:
            skipped += 1
            continue
        t1, t2 = ups[i][0], downs[m - 1][0]
        for leg, v in zip(legs, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            legs[leg].append(v * 1e6)
    print(f"{name}: {len(reqs)} requests, {len(reqs) - skipped} cut into legs ({skipped} overlapped another)")
    for leg, v in legs.items():
        if len(v) > 3:
            q = statistics.quantiles(v, n=4)
            print(f"    {leg:12} p50 {q[1]:6.1f} µs  (p25 {q[0]:6.1f}, p75 {q[2]:6.1f})")
EOF
