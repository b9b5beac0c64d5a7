#!/usr/bin/env bash
# The second S3 server, run by hand (CI runs s3s-fs, see docs/operations.md): moto[server] from
# PyPI, in a virtual environment under tests/s3/moto-venv (made when missing). Starts moto and an
# atcr node whose blobs live in a moto bucket, both on 127.0.0.1, then: skopeo pushes an image
# made with umoci, pulls it back (skopeo verifies every digest), pulls it through presigned
# redirects, deletes it, two collections free its blobs (the bucket's object count goes back
# down), and `atcr doctor` passes every check. moto accepts forged presigned signatures, which
# is why CI does not rely on it.
#
#   tests/s3/moto-check.sh [ATCR_BIN]     (default target/release/atcr)
set -euo pipefail
cd "$(dirname "$0")/../.."
atcr=$(realpath "${1:-target/release/atcr}")
[ -x "$atcr" ] || { echo "no $atcr: cargo build --release"; exit 1; }
for tool in skopeo umoci curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool"; exit 1; }
done
venv=tests/s3/moto-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "moto[server]"
fi

work=$(mktemp -d /tmp/atcr-moto-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.05
  done
  echo "nothing listens on $1"; exit 1
}
count_objects() { # bucket prefix
  curl -s "http://127.0.0.1:$moto_port/$1?list-type=2&prefix=$2" | { grep -o '<Key>' || true; } | wc -l
}

moto_port=$(free_port)
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_port "$moto_port"
curl -sf -X PUT "http://127.0.0.1:$moto_port/atcr" >/dev/null

printf 'moto-key\n' >"$work/key" && printf 'moto-secret\n' >"$work/secret"
printf 'moto-check-password\n' >"$work/admin-password"
chmod 600 "$work/key" "$work/secret" "$work/admin-password"
port=$(free_port)
export ATCR_STORAGE_BACKEND=s3 ATCR_STORAGE_BUCKET=atcr ATCR_STORAGE_ROOT=node
export ATCR_STORAGE_ENDPOINT="http://127.0.0.1:$moto_port" ATCR_STORAGE_REGION=us-east-1
export ATCR_STORAGE_ACCESS_KEY_ID_FILE="$work/key" ATCR_STORAGE_SECRET_ACCESS_KEY_FILE="$work/secret"
export ATCR_STORAGE_REDIRECT=true ATCR_GC_GRACE_SECS=1 ATCR_GC_INTERVAL_SECS=0
export ATCR_ACCOUNTS_ADMIN_PASSWORD_FILE="$work/admin-password"
"$atcr" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/atcr.log" 2>&1 &
pids+=($!)
wait_port "$port"

umoci init --layout "$work/img" >/dev/null
umoci new --image "$work/img:t" >/dev/null
head -c 3145728 /dev/urandom >"$work/payload"
umoci insert --rootless --image "$work/img:t" "$work/payload" /payload >/dev/null
creds=(--dest-creds admin:moto-check-password)
ref="docker://127.0.0.1:$port/admin/moto:t"
skopeo copy -q --dest-tls-verify=false "${creds[@]}" "oci:$work/img:t" "$ref"
before=$(count_objects atcr node/blobs/)
echo "pushed: $before objects under node/blobs/ in moto"
skopeo copy -q --src-tls-verify=false --src-creds admin:moto-check-password "$ref" "oci:$work/pulled:t"
echo "pulled back through presigned redirects, every digest verified by skopeo"
grep -q '"GET /atcr/node/blobs/' "$work/moto.log" || { echo "no blob GET reached moto"; exit 1; }

skopeo delete -q --tls-verify=false --creds admin:moto-check-password "$ref" 2>/dev/null ||
  skopeo delete --tls-verify=false --creds admin:moto-check-password "$ref"
sleep 1.2; "$atcr" gc --data-dir "$work/data"
sleep 1.2; "$atcr" gc --data-dir "$work/data"
after=$(count_objects atcr node/blobs/)
echo "after delete and two collections: $after objects under node/blobs/"
[ "$after" -lt "$before" ] || { echo "the collections freed nothing"; exit 1; }

"$atcr" doctor --listen "127.0.0.1:$port" --data-dir "$work/data" | grep -iE "storage|s3|FAIL"
echo "moto check passed"
