#!/usr/bin/env bash
# PDS benchmark: atcr's embedded PDS side by side with the reference PDS (npm @atproto/pds, with
# the in-memory PLC directory of npm @did-plc/server), both on loopback, driven by the same Node
# client (bench/pds/load.mjs), with node:http and with fetch():
#   - createRecord on one repository: sequentially, then from 8 concurrent clients;
#   - getRecord p50/p99 (1,000 sequential reads);
#   - sync.getRepo of the repository once it holds 5,000 records (median of 3);
#   - RSS: VmRSS of the server process idle (2 s after start, account made) and after the run;
#   - the floor under a sequential write: the client's round trip for a request that does
#     nothing (describeServer) plus one durable sync of a small log write on the disk the servers
#     use (pwrite + fdatasync of 600 bytes, mean of 2,000), and the ratio that floor allows
#     against the reference's sequential rate.
#
#   bench/pds.sh [-a ATCR_BIN] [-r REPETITIONS] [-c "http fetch"]
#
# Each repetition runs every client against a fresh atcr and a fresh reference PDS, back to
# back; the tables give medians with the spread, and the ratio per repetition.
#
# Needs Node 22 (tests/interop/setup.sh installs it into tests/interop/node) and installs
# bench/pds/node_modules from the npm registry (package-lock.json). Servers bind 127.0.0.1 only
# and are stopped by PID; scratch data is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
atcr=target/release/atcr
reps=1
clients="http fetch"
while getopts a:r:c: opt; do
    case $opt in
    a) atcr=$OPTARG ;;
    r) reps=$OPTARG ;;
    c) clients=$OPTARG ;;
    *) exit 2 ;;
    esac
done
[ -x "$atcr" ] || cargo build --release --locked
tests/interop/setup.sh >/dev/null
export PATH="$PWD/tests/interop/node/bin:$PATH" npm_config_nodedir="$PWD/tests/interop/node"
stamp=bench/pds/node_modules/.atcr-lock-sha256
want=$(sha256sum bench/pds/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    (cd bench/pds && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$stamp"
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

run_atcr() { # CLIENT -> one JSON line
    local dir="$work/atcr-$1-$rep" pid port
    "$atcr" serve --data-dir "$dir" --listen 127.0.0.1:0 2>"$dir.log" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do grep -q 'listening' "$dir.log" && break; sleep 0.1; done
    port=$(grep -o 'addr=[0-9.:]*' "$dir.log" | head -1 | rev | cut -d: -f1 | rev)
    echo bench-password | "$atcr" user add bench --password-stdin --data-dir "$dir" \
        --listen "127.0.0.1:$port" >/dev/null
    sleep 2
    local idle out after
    idle=$(rss "$pid")
    out=$(BENCH_CLIENT=$1 node bench/pds/load.mjs "http://127.0.0.1:$port" bench.atcr.test bench-password)
    after=$(rss "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pids=()
    rm -rf "$dir"
    echo "{\"server\":\"atcr\",\"client\":\"$1\",\"rss_idle_mib\":$idle,\"rss_after_mib\":$after,${out#\{}"
}

run_ref() { # CLIENT -> one JSON line
    local log="$work/ref-$1-$rep" pid url
    node bench/pds/ref-pds.mjs >"$log.json" 2>"$log.log" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do [ -s "$log.json" ] && break; sleep 0.1; done
    [ -s "$log.json" ] || { cat "$log.log" >&2; exit 1; }
    url=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])' <"$log.json")
    sleep 2
    local idle out after
    idle=$(rss "$pid")
    out=$(BENCH_CLIENT=$1 node bench/pds/load.mjs "$url" bench.test bench-password)
    after=$(rss "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pids=()
    echo "{\"server\":\"reference\",\"client\":\"$1\",\"rss_idle_mib\":$idle,\"rss_after_mib\":$after,${out#\{}"
}

# Mean microseconds of a 600-byte pwrite + fdatasync in a preallocated file under $work.
sync_us() {
    python3 - "$work/sync-probe" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
os.pwrite(fd, bytes(1 << 20), 0)
os.fsync(fd)
n = 2000
start = time.perf_counter()
for i in range(n):
    os.pwrite(fd, os.urandom(600), (i * 600) % ((1 << 20) - 600))
    os.fdatasync(fd)
print(round((time.perf_counter() - start) / n * 1e6))
os.close(fd)
os.unlink(sys.argv[1])
PY
}

# Each repetition runs every (client, server) pair on a fresh server, atcr and the reference
# back to back, so that both see the same machine state.
: >"$work/results"
for rep in $(seq "$reps"); do
    echo "{\"server\":\"disk\",\"client\":\"-\",\"sync_us\":$(sync_us)}" >>"$work/results"
    for client in $clients; do
        echo "== repetition $rep, $client client: atcr ($atcr)" >&2
        run_atcr "$client" >>"$work/results"
        echo "== repetition $rep, $client client: reference PDS (@atproto/pds)" >&2
        run_ref "$client" >>"$work/results"
    done
done

python3 - "$work/results" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
runs = [r for r in lines if r["server"] != "disk"]
syncs = [r["sync_us"] for r in lines if r["server"] == "disk"]
rows = [
    ("no-op round trip, describeServer (µs)", "noop_round_trip_us"),
    ("createRecord, sequential (records/s)", "create_sequential_per_s"),
    ("createRecord, 8 clients (records/s)", "create_8_clients_per_s"),
    ("createRecord, 8 clients, to 5,000 (records/s)", "fill_per_s"),
    ("getRecord p50 (ms)", "get_record_p50_ms"),
    ("getRecord p99 (ms)", "get_record_p99_ms"),
    ("getRepo, 5,000 records (ms)", "get_repo_5000_ms"),
    ("getRepo size (bytes)", "get_repo_bytes"),
    ("RSS idle (MiB)", "rss_idle_mib"),
    ("RSS after the run (MiB)", "rss_after_mib"),
]
def cell(values):
    m = statistics.median(values)
    fmt = (lambda v: f"{v:.0f}") if all(float(v).is_integer() for v in values) else (lambda v: f"{v:.2f}")
    return fmt(m) if len(values) == 1 else f"{fmt(m)} ({fmt(min(values))}–{fmt(max(values))})"
for client in dict.fromkeys(r["client"] for r in runs):
    atcr = [r for r in runs if r["client"] == client and r["server"] == "atcr"]
    ref = [r for r in runs if r["client"] == client and r["server"] == "reference"]
    print(f"\n{client} client, {len(atcr)} repetition(s): median (min–max); ratio of the medians, and per repetition")
    print("| | atcr | @atproto/pds | ratio | per repetition |")
    print("|---|---:|---:|---:|---:|")
    for label, key in rows:
        a, r = [x[key] for x in atcr], [x[key] for x in ref]
        ratio = statistics.median(a) / statistics.median(r) if statistics.median(r) else float("nan")
        each = ", ".join(f"{x / y:.2f}×" if y else "–" for x, y in zip(a, r))
        print(f"| {label} | {cell(a)} | {cell(r)} | {ratio:.2f}× | {each} |")
    # The fastest a sequential write can be answered durably: the client's round trip plus
    # one log sync; against the reference's rate, the highest ratio a server could show.
    sync = statistics.median(syncs)
    floor = statistics.median(x["noop_round_trip_us"] for x in atcr) + sync
    ceiling = 1e6 / floor / statistics.median(x["create_sequential_per_s"] for x in ref)
    print(f"\nFloor under a sequential write with this client: {floor:.0f} µs (round trip "
          f"+ {sync:.0f} µs log sync, median of {len(syncs)}); at the reference's sequential "
          f"rate that allows at most {ceiling:.1f}× (atcr: "
          f"{1e6 / statistics.median(x['create_sequential_per_s'] for x in atcr):.0f} µs per write).")
PY
