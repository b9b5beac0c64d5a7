#!/usr/bin/env bash
# Garbage collection at scale: a node with BLOBS blobs (a tenth of them referenced by nothing)
# and REPOS repositories of TAGS tags each, collected while a client pushes manifests.
#
#   bench/gc.sh [-n REPOS] [-t TAGS_PER_REPO] [-b BLOBS] [-p SECONDS] [-r REPS] [-a ATCR_BIN]
#               [-B BENCH_BIN]
#               (defaults: 100000, 10, 100000, 20, 1; the binaries are built in release when not
#               given)
#
# Steps: a node is started on a scratch data directory (`[gc] interval_secs = 0`, `grace_secs =
# 1`) and one account added; it is stopped and `benches/gc.rs fill` writes the blobs into the
# filesystem store and the repositories into the index; the node is started again. Then
# `benches/gc.rs puts` pushes tagged manifests one after another, SECONDS without a collection,
# then during `atcr gc` (through the admin socket), then SECONDS more; the p50/p99 of the
# manifest PUTs before, during and after the collection (and before and after pooled: the
# baseline with twice the samples) are printed beside the collection's own
# report (wall time, blobs deleted) and the node's RSS before and peak RSS during it (VmHWM,
# reset with /proc/PID/clear_refs just before). Before the pushes, a dry-run collection on the
# idle node gives the collector's own memory (the pushes grow the node's RSS by themselves).
# Sizes on disk are read before and after. With -r, the filled data directory is copied aside
# once and each repetition starts the node on a fresh copy of it; the last lines give every
# repetition's p99 ratio and their median (the ratio moves by ±15 % from run to run here).
#
# With BENCH_FILLED=DIR the filled data directory is kept there for the next invocation (the
# fill's sizes are then those of the first). The node binds 127.0.0.1 only and is stopped by
# PID; the scratch directory is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# One run at a time: two on the same two cores measure each other.
exec 9>"${TMPDIR:-/tmp}/atcr-bench-gc.lock"
if ! flock -n 9; then
    echo "bench/gc.sh: another run is in progress (${TMPDIR:-/tmp}/atcr-bench-gc.lock)" >&2
    exit 1
fi
REPOS=100000
TAGS=10
BLOBS=100000
PHASE=20
REPS=1
atcr=""
bench_bin=""
while getopts n:t:b:p:r:a:B: opt; do
    case $opt in
    a) atcr=$(realpath "$OPTARG") ;;
    B) bench_bin=$(realpath "$OPTARG") ;;
    n) REPOS=$OPTARG ;;
    t) TAGS=$OPTARG ;;
    b) BLOBS=$OPTARG ;;
    p) PHASE=$OPTARG ;;
    r) REPS=$OPTARG ;;
    *) exit 2 ;;
    esac
done

if [ -z "$atcr" ]; then
    cargo build --release --locked --bin atcr
    atcr=$PWD/target/release/atcr
fi
[ -n "$bench_bin" ] || bench_bin=$(cargo bench --locked --bench gc --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gc" and m.get("executable"):
        print(m["executable"])')
work=$(mktemp -d)
pid=""
puts_pid=""
cleanup() {
    [ -n "$puts_pid" ] && kill "$puts_pid" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/atcr.toml" <<TOML
data_dir = "$work/data"
[gc]
interval_secs = 0
grace_secs = 1
TOML
export ATCR_CONFIG="$work/atcr.toml"
hwm() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
start() {
    "$atcr" serve --listen 127.0.0.1:0 2>"$work/log" &
    pid=$!
    for _ in $(seq 1200); do grep -q 'listening' "$work/log" && break; sleep 0.1; done
    port=$(grep -o 'addr=[0-9.:]*' "$work/log" | head -1 | rev | cut -d: -f1 | rev)
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
sizes() {
    echo "$1: index.redb $(du -m "$work/data/index.redb" | cut -f1) MiB, pds.redb $(du -m "$work/data/pds.redb" | cut -f1) MiB, blobs $(find "$work/data/blobs/blobs" -type f | wc -l) files"
}

# BENCH_FILLED=DIR: the filled data directory is kept in DIR (made there when DIR does not
# exist yet) and later invocations start from a copy of it instead of filling again (≈5 min).
if [ -n "${BENCH_FILLED:-}" ] && [ -d "$BENCH_FILLED" ]; then
    echo "== filled data from $BENCH_FILLED"
    cp -a "$BENCH_FILLED" "$work/data"
else
    echo "== account"
    start
    line=$(echo "gc-bench-pw" | "$atcr" user add gcbench --password-stdin --listen "127.0.0.1:$port")
    printf 'gcbench\t%s\n' "${line#*$'\t'}" > "$work/owners"
    stop

    echo "== fill ($BLOBS blobs, $REPOS repositories, $TAGS tags each)"
    "$bench_bin" fill "$work/data" "$work/owners" "$REPOS" "$TAGS" "$BLOBS"
    [ -z "${BENCH_FILLED:-}" ] || cp -a "$work/data" "$BENCH_FILLED"
fi
sizes before

[ "$REPS" -le 1 ] || cp -a "$work/data" "$work/filled"
for rep in $(seq "$REPS"); do
    echo "== repetition $rep of $REPS"
    if [ "$rep" -gt 1 ]; then
        rm -rf "$work/data" "$work/puts" "$work/stop"
        cp -a "$work/filled" "$work/data"
    fi
    echo "== start"
    start
    for _ in $(seq 1200); do grep -q 'search index rebuilt' "$work/log" && break; sleep 0.5; done
    sleep 2

    echo "== a dry-run collection on the idle node (mark, storage listing, PDS mark; nothing deleted)"
    idle_rss=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    echo 5 > "/proc/$pid/clear_refs"
    "$atcr" gc --dry-run
    echo "idle node RSS before it: $idle_rss MiB, peak during it: $(hwm "$pid") MiB"

    echo "== manifest PUTs: ${PHASE}s without a collection, then during one, then ${PHASE}s after"
    "$bench_bin" puts "http://127.0.0.1:$port" gcbench gc-bench-pw "$work/stop" "$work/puts" &
    puts_pid=$!
    sleep "$PHASE"
    rss_before=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    echo 5 > "/proc/$pid/clear_refs"
    gc_start=$(date +%s%3N)
    "$atcr" gc > "$work/gc.out"
    gc_end=$(date +%s%3N)
    peak=$(hwm "$pid")
    sleep "$PHASE"
    touch "$work/stop"
    wait "$puts_pid"
    puts_pid=""
    cat "$work/gc.out"
    echo "collection: $((gc_end - gc_start)) ms wall (atcr gc, client side, from $gc_start ms after the epoch), node RSS before it: $rss_before MiB, peak during it: $peak MiB"
    # BENCH_KEEP=DIR keeps the PUTs' times and latencies (`puts`: epoch ms, µs) and the node's log.
    if [ -n "${BENCH_KEEP:-}" ]; then
        mkdir -p "$BENCH_KEEP/$rep" && cp "$work/puts" "$work/log" "$BENCH_KEEP/$rep/"
    fi
    python3 - "$work/puts" "$gc_start" "$gc_end" "$work/log" "$work/ratios" <<'PY'
import datetime, re, sys
path, start, end, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ratios = sys.argv[5]
before, during, after = [], [], []
for line in open(path):
    at, us = map(int, line.split())
    if at < start:
        before.append(us)
    elif at <= end:
        during.append(us)
    else:
        after.append(us)
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * p))] / 1000 if v else float("nan")
for name, v in (("without GC", before), ("during GC", during), ("after GC", after),
                ("without GC, before and after pooled", before + after)):
    print(f"manifest PUT {name}: {len(v)} PUTs, p50 {pct(v, .5):.2f} ms, p99 {pct(v, .99):.2f} ms")
# The PUTs started in each phase of the collection (the node logs when each ends).
phases = []
for line in open(log):
    m = re.match(r"(\S+Z) .*garbage collection phase done phase=\"?([a-z ]+?)\"? millis=(\d+)", line)
    if m:
        ended = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() * 1000
        if start <= ended <= end + 1000:
            phases.append((m.group(2), ended - int(m.group(3)), ended))
slow = pct(before, .99)
with open(ratios, "a") as out:
    out.write(f"{pct(during, .99) / slow:.2f} {pct(during, .99) / pct(before + after, .99):.2f}\n")
for name, a, b in phases:
    v = [us for line in open(path) for at, us in [map(int, line.split())] if a <= at < b]
    over = sum(1 for us in v if us / 1000 > 2 * slow)
    print(f"  {name}: {(b - a) / 1000:.1f} s from +{(a - start) / 1000:.1f} s, {len(v)} PUTs, "
          f"p50 {pct(v, .5):.2f} ms, p99 {pct(v, .99):.2f} ms, {over} over twice the p99 without GC")
PY
    stop
done
sizes after
python3 - "$work/ratios" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
for name, i in (("before the collection", 0), ("before and after pooled", 1)):
    v = [r[i] for r in rows]
    print(f"p99 during / p99 {name}: " + ", ".join(f"{x:.2f}x" for x in v)
          + f"; median {statistics.median(v):.2f}x")
PY
