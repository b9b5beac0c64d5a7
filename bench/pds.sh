#!/usr/bin/env bash
# PDS benchmark: atcr's embedded PDS side by side with the reference PDS (npm @atproto/pds, with
# the in-memory PLC directory of npm @did-plc/server), both on loopback, driven by the same Node
# client (bench/pds/load.mjs, plain fetch):
#   - createRecord on one repository: sequentially, then from 8 concurrent clients;
#   - getRecord p50/p99 (1,000 sequential reads);
#   - sync.getRepo of the repository once it holds 5,000 records (median of 3);
#   - RSS: VmRSS of the server process idle (2 s after start, account made) and after the run.
#
#   bench/pds.sh [-a ATCR_BIN]
#
# Needs Node 22 (tests/interop/setup.sh installs it into tests/interop/node) and installs
# bench/pds/node_modules from the npm registry (package-lock.json). Servers bind 127.0.0.1 only
# and are stopped by PID; scratch data is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
atcr=target/release/atcr
while getopts a: opt; do
    case $opt in
    a) atcr=$OPTARG ;;
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

echo "== atcr ($atcr)"
"$atcr" serve --data-dir "$work/atcr" --listen 127.0.0.1:0 2>"$work/atcr.log" &
atcr_pid=$!
pids+=("$atcr_pid")
for _ in $(seq 100); do grep -q 'listening' "$work/atcr.log" && break; sleep 0.1; done
port=$(grep -o 'addr=[0-9.:]*' "$work/atcr.log" | head -1 | rev | cut -d: -f1 | rev)
echo bench-password | "$atcr" user add bench --password-stdin --data-dir "$work/atcr" \
    --listen "127.0.0.1:$port" >/dev/null
sleep 2
atcr_idle=$(rss "$atcr_pid")
atcr_out=$(node bench/pds/load.mjs "http://127.0.0.1:$port" bench.atcr.test bench-password)
atcr_after=$(rss "$atcr_pid")
kill "$atcr_pid"

echo "== reference PDS (@atproto/pds)"
node bench/pds/ref-pds.mjs >"$work/ref.json" 2>"$work/ref.log" &
ref_pid=$!
pids+=("$ref_pid")
for _ in $(seq 600); do [ -s "$work/ref.json" ] && break; sleep 0.1; done
[ -s "$work/ref.json" ] || { cat "$work/ref.log"; exit 1; }
ref_url=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])' <"$work/ref.json")
sleep 2
ref_idle=$(rss "$ref_pid")
ref_out=$(node bench/pds/load.mjs "$ref_url" bench.test bench-password)
ref_after=$(rss "$ref_pid")

python3 - "$atcr_out" "$ref_out" "$atcr_idle" "$atcr_after" "$ref_idle" "$ref_after" <<'PY'
import json, sys
a, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
a["rss_idle_mib"], a["rss_after_mib"], r["rss_idle_mib"], r["rss_after_mib"] = map(float, sys.argv[3:7])
rows = [
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
print("| | atcr | @atproto/pds | ratio |")
print("|---|---:|---:|---:|")
for label, key in rows:
    ratio = a[key] / r[key] if r[key] else float("nan")
    print(f"| {label} | {a[key]} | {r[key]} | {ratio:.2f}× |")
PY
