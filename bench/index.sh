#!/usr/bin/env bash
# The registry index's size at scale, as a running node writes it and after its collector's
# online compaction, with the offline compaction of the same file as the reference.
#
#   bench/index.sh [-n REPOS] [-t TAGS_PER_REPO] [-u OWNERS] [-P]
#               (defaults: 100000, 10, 100; -P: one transaction per repository, as the indexer
#               applies pushes, instead of 500 repositories to a transaction)
#
# Steps, on a scratch directory: `benches/web.rs fill` writes the repositories into a fresh
# index (owners with made-up DIDs: nothing but the index is read); `benches/web.rs compact-online`
# compacts it as the collector of a running node does, while a writer pushes one more
# repository every 20 ms (write p50/p99 for 10 s before and during the compaction); then the
# same file, a copy of it taken before the online compaction, is compacted offline
# (`benches/web.rs compact`, what `atcr gc` does with the daemon stopped). Bytes on disk
# (`du`) after each step. The scratch directory is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
REPOS=100000
TAGS=10
USERS=100
MODE=""
while getopts n:t:u:P opt; do
    case $opt in
    n) REPOS=$OPTARG ;;
    t) TAGS=$OPTARG ;;
    u) USERS=$OPTARG ;;
    P) MODE=per-push ;;
    *) exit 2 ;;
    esac
done
bench_bin=$(cargo bench --locked --bench web --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "web" and m.get("executable"):
        print(m["executable"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/data"
python3 - "$USERS" > "$work/owners" <<'PY'
import sys
alphabet = "abcdefghijklmnopqrstuvwxyz234567"
for i in range(int(sys.argv[1])):
    tail = "".join(alphabet[(i * 7 + j * 13) % 32] for j in range(18))
    print(f"bench{i}\tdid:plc:{i:06d}{tail}")
PY
du_mb() { du -B1 "$1" | awk '{printf "%.1f MB", $1 / 1e6}'; }
echo "== fill ($REPOS repositories, $TAGS tags each${MODE:+, $MODE})"
"$bench_bin" fill "$work/data" "$work/owners" "$REPOS" "$TAGS" $MODE
echo "as written: $(du_mb "$work/data/index.redb")"
cp --sparse=always "$work/data/index.redb" "$work/offline.redb"
echo "== online compaction, with a writer"
"$bench_bin" compact-online "$work/data/index.redb" "$work/owners" "$REPOS"
echo "after the online compaction: $(du_mb "$work/data/index.redb")"
echo "== offline compaction of the file as written (reference)"
"$bench_bin" compact "$work/offline.redb"
echo "after the offline compaction: $(du_mb "$work/offline.redb")"
