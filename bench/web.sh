#!/usr/bin/env bash
# Web UI and search at scale: REPOS repositories with TAGS tags each generated into the registry
# index of a real node, then the node started on it.
#
#   bench/web.sh [-n REPOS] [-t TAGS_PER_REPO] [-u USERS]      (defaults: 100000, 10, 100)
#
# Steps: a node is started on a scratch data directory and USERS accounts are added through it;
# it is stopped and `benches/web.rs fill` writes the repositories (three annotated manifests,
# TAGS tags and some stars each) into its index the way the indexer would; the node is started
# again and rebuilds its search index from them (the time it logs is the search index build
# time); sizes on disk and the idle RSS (VmRSS 5 s after the rebuild) are read; then
# `benches/web.rs measure` times search queries, the home page, repository pages and manifest
# pages over loopback HTTP, one request at a time (so the times are the server's plus a
# loopback round trip), and the RSS is read again.
#
# The node binds 127.0.0.1 only and is stopped by PID; the scratch directory is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
REPOS=100000
TAGS=10
USERS=100
while getopts n:t:u: opt; do
    case $opt in
    n) REPOS=$OPTARG ;;
    t) TAGS=$OPTARG ;;
    u) USERS=$OPTARG ;;
    *) exit 2 ;;
    esac
done

cargo build --release --locked --bin atcr
bench_bin=$(cargo bench --locked --bench web --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "web" and m.get("executable"):
        print(m["executable"])')
atcr=target/release/atcr
work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
start() {
    "$atcr" serve --data-dir "$work/data" --listen 127.0.0.1:0 2>"$work/log" &
    pid=$!
    for _ in $(seq 600); do grep -q 'listening' "$work/log" && break; sleep 0.1; done
    port=$(grep -o 'addr=[0-9.:]*' "$work/log" | head -1 | rev | cut -d: -f1 | rev)
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

echo "== accounts ($USERS)"
start
: > "$work/owners"
for i in $(seq -w 0 $((USERS - 1))); do
    line=$(echo "bench-pw-$i" | "$atcr" user add "bench$i" --password-stdin --data-dir "$work/data" \
        --listen "127.0.0.1:$port")
    printf 'bench%s\t%s\n' "$i" "${line#*$'\t'}" >> "$work/owners"
done
stop

echo "== fill ($REPOS repositories, $TAGS tags each)"
"$bench_bin" fill "$work/data" "$work/owners" "$REPOS" "$TAGS"

echo "== start (search index rebuilt from the registry index)"
start
for _ in $(seq 1200); do grep -q 'search index rebuilt' "$work/log" && break; sleep 0.5; done
grep 'search index rebuilt' "$work/log" | sed 's/.*INFO //'
sleep 5
idle=$(rss "$pid")
echo "index.redb: $(du -sh "$work/data/index.redb" | cut -f1), search index: $(du -sh "$work/data/search" | cut -f1)"
echo "RSS idle: $idle MiB"

echo "== measure"
"$bench_bin" measure "http://127.0.0.1:$port" "$work/data/bench-names.txt"
echo "RSS after: $(rss "$pid") MiB"
stop
