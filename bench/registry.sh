#!/usr/bin/env bash
# Registry core benchmark: atcr side by side with CNCF Distribution (Debian's `docker-registry`).
#
#   bench/registry.sh [-r REPS] [-s SIZE_MIB] [-d SECONDS] [-c CLIENTS] [-a ATCR_BIN] [-b fs|s3]
#                     [-x] [-L] [-p] [-o RAW.tsv]
#
#   -r REPS      repetitions of every measurement; medians are reported (default 3)
#   -s SIZE_MIB  size of the big image's single pre-compressed layer, in MiB (default 1024)
#   -d SECONDS   duration of each load test (default 10)
#   -c CLIENTS   concurrent connections of each load test (default 50)
#   -a ATCR_BIN  the atcr binary (default target/release/atcr; built with cargo when missing)
#   -b BACKEND   atcr's blob storage: fs (default, a local directory) or s3 (a fresh s3s-fs on
#                loopback per repetition: tests/s3/bin/s3s-fs, built by tests/s3/setup.sh when
#                missing; its CPU is reported too). Distribution stays on its filesystem driver:
#                its S3 driver needs ListMultipartUploads, which s3s-fs 0.14.1 lacks (DIST_ON_S3)
#   -x           with -b s3: atcr's blob GETs redirect to presigned S3 URLs (storage.redirect)
#   -L           skip the wrk load tests (idle RSS, push and pull only)
#   -p           atcr's clients log in with an app password (as `atcr login` and the credential
#                helper do: checked with SHA-256), made through the XRPC API after the first
#                start, and the push runs on a server started afresh: its peak RSS then holds
#                no argon2 (the first start's hash of the account password, a password login)
#   -o FILE      also write every raw sample (registry, metric, rep, value) to FILE
#   -R FILE      only print the tables from FILE, written by -o in an earlier run
#
# Quick run: bench/registry.sh -r 1 -s 64 -d 3; through S3 with redirects: add -b s3 -x -L
#
# What it measures, for each registry, in one run on loopback (plain HTTP):
#   - idle RSS: VmRSS 2 s after the port opens, before any HTTP request;
#   - push of a SIZE_MIB single-layer image with `skopeo copy oci:… docker://…` into an empty
#     registry (skopeo's blob-info cache emptied first, so the layer is really uploaded): wall time,
#     server CPU seconds (utime+stime delta from /proc/PID/stat) and server peak RSS (VmHWM of a
#     server started just for that push);
#   - pull of that image with `skopeo copy docker://… oci:…` from a freshly started server: same;
#   - CLIENTS connections GETting a small (4 KiB) blob, then a manifest by tag, each for SECONDS
#     with `wrk --latency`, each from a freshly started server: requests/s, p99 latency, server CPU
#     per request, server peak RSS.
# With -b s3 the S3 server's CPU seconds (s3s-fs, its /proc/PID/stat) during the push and the pull
# are reported as well: with redirects the pulled bytes flow through it, not through the registry.
# Registries alternate which goes first in each repetition. Scratch data lives in a temp dir under
# /tmp that is removed on exit; servers bind 127.0.0.1 only and are stopped by PID.
#
# Needs: skopeo, docker-registry, wrk, curl, python3, gzip, tar (Debian: apt-get install -y skopeo
# docker-registry wrk curl python3). Run as root for the private blob-info cache (see below).

set -euo pipefail
trap 'echo "[bench] failed at line $LINENO: $BASH_COMMAND" >&2' ERR

REPS=3
SIZE_MIB=1024
DURATION=10
CLIENTS=50
RAW_OUT=""
REPORT_ONLY=""
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ATCR="$REPO_ROOT/target/release/atcr"

BACKEND=fs
REDIRECT=0
LOAD_TESTS=1
APP_PASSWORD=0
S3S_FS="$REPO_ROOT/tests/s3/bin/s3s-fs"

usage() { sed -n '2,/^# Quick run/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while getopts "r:s:d:c:a:b:xLpo:R:h" opt; do
    case "$opt" in
        r) REPS="$OPTARG" ;;
        s) SIZE_MIB="$OPTARG" ;;
        d) DURATION="$OPTARG" ;;
        c) CLIENTS="$OPTARG" ;;
        a) ATCR="$OPTARG" ;;
        b) BACKEND="$OPTARG" ;;
        x) REDIRECT=1 ;;
        L) LOAD_TESTS=0 ;;
        p) APP_PASSWORD=1 ;;
        o) RAW_OUT="$OPTARG" ;;
        R) REPORT_ONLY="$OPTARG" ;;
        h) usage 0 ;;
        *) usage 2 ;;
    esac
done
for n in "$REPS" "$SIZE_MIB" "$DURATION" "$CLIENTS"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $n" >&2; exit 2; }
done
[[ "$BACKEND" == fs || "$BACKEND" == s3 ]] || { echo "-b wants fs or s3, not $BACKEND" >&2; exit 2; }
[[ $REDIRECT -eq 0 || "$BACKEND" == s3 ]] || { echo "-x needs -b s3 (redirects are presigned S3 URLs)" >&2; exit 2; }

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    local f
    for f in "${WORK:-/nonexistent}"/*.log; do
        [[ -s "$f" ]] && { echo "--- last lines of $(basename "$f"):" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}

# --- report: medians and targets, from the raw samples ------------------------------------------
report() { # RAW_FILE
    python3 - "$1" <<'EOF'
import statistics, sys
from collections import defaultdict

v = defaultdict(list)
meta = {}
for line in open(sys.argv[1]):
    reg, metric, _rep, value = line.rstrip("\n").split("\t")
    if reg == "meta":
        meta[metric] = value
    else:
        v[reg, metric].append(float(value))
size_mib, reps, clients, duration = (int(meta[k]) for k in ("size_mib", "reps", "clients", "duration"))
layer_bytes, machine = int(meta["layer_bytes"]), meta["machine"]
gib = layer_bytes / 2**30
# Written only by -b s3 runs: a run without them is fs (the older raw files too).
s3, redirect = meta.get("backend", "fs") == "s3", meta.get("redirect") == "1"
dist_s3 = meta.get("dist_backend") == "s3"

def med(reg, metric):
    return statistics.median(v[reg, metric])

def derived(reg):
    d = {m: med(reg, m) for (r, m) in v if r == reg}
    d["push_cpu_per_gib"] = statistics.median(x / gib for x in v[reg, "push_cpu_s"])
    d["pull_cpu_per_gib"] = statistics.median(x / gib for x in v[reg, "pull_cpu_s"])
    d["push_mib_s"] = statistics.median(layer_bytes / 2**20 / x for x in v[reg, "push_wall_s"])
    d["pull_mib_s"] = statistics.median(layer_bytes / 2**20 / x for x in v[reg, "pull_wall_s"])
    for k in list(d):
        if k.endswith("_kib"):
            d[k[:-4] + "_mib"] = d[k] / 1024
    return d

a, b = derived("atcr"), derived("distribution")
size = f"{int(size_mib)} MiB" if int(size_mib) < 1024 else f"{int(size_mib) / 1024:g} GiB"
rows = [
    ("Idle RSS after start (MiB)", "idle_rss_mib", 1),
    (f"Push {size}: wall time (s)", "push_wall_s", 2),
    (f"Push {size}: throughput (MiB/s)", "push_mib_s", 0),
    (f"Push {size}: server CPU (s)", "push_cpu_s", 2),
    (f"Push {size}: S3 server (s3s-fs) CPU (s)", "s3_push_cpu_s", 2),
    ("Push: server CPU per GiB (s)", "push_cpu_per_gib", 2),
    (f"Push {size}: server peak RSS (MiB)", "push_hwm_mib", 1),
    (f"Pull {size}: wall time (s)", "pull_wall_s", 2),
    (f"Pull {size}: throughput (MiB/s)", "pull_mib_s", 0),
    (f"Pull {size}: server CPU (s)", "pull_cpu_s", 2),
    (f"Pull {size}: S3 server (s3s-fs) CPU (s)", "s3_pull_cpu_s", 2),
    ("Pull: server CPU per GiB (s)", "pull_cpu_per_gib", 2),
    (f"Pull {size}: server peak RSS (MiB)", "pull_hwm_mib", 1),
    (f"4 KiB blob GET, {clients} clients: requests/s", "blob_rps", 0),
    ("4 KiB blob GET: p99 latency (ms)", "blob_p99_ms", 2),
    ("4 KiB blob GET: server CPU per request (µs)", "blob_cpu_us_per_req", 1),
    ("4 KiB blob GET: server peak RSS (MiB)", "blob_hwm_mib", 1),
    (f"Manifest GET, {clients} clients: requests/s", "manifest_rps", 0),
    ("Manifest GET: p99 latency (ms)", "manifest_p99_ms", 2),
    ("Manifest GET: server CPU per request (µs)", "manifest_cpu_us_per_req", 1),
    ("Manifest GET: server peak RSS (MiB)", "manifest_hwm_mib", 1),
]
load = f"load tests {duration} s each" if ("atcr", "blob_rps") in v else "load tests skipped (-L)"
print(f"Medians of {reps} run(s); layer {layer_bytes} bytes; {load}.")
print(f"Machine: {machine}.\n")
backend = f" (S3 backend, redirects {'on' if redirect else 'off'})" if s3 else ""
dist = "Distribution 2.8.2" + (" (filesystem)" if s3 and not dist_s3 else "")
print(f"| Measurement{backend} | atcr | {dist} | atcr / Distribution |")
print("|---|---:|---:|---:|")
for label, key, digits in rows:
    if key not in a:  # S3 rows on fs, load tests skipped with -L
        continue
    if key not in b:  # Distribution not on S3
        print(f"| {label} | {a[key]:,.{digits}f} | – | |")
        continue
    ratio = a[key] / b[key] if b[key] else float("nan")
    print(f"| {label} | {a[key]:,.{digits}f} | {b[key]:,.{digits}f} | {ratio:.2f} |")

failed = {reg: sum(sum(v.get((reg, f"{k}_failed"), [])) for k in ("blob", "manifest")) for reg in ("atcr", "distribution")}
if any(failed.values()):
    print(f"| Load tests: failed requests, all runs (non-2xx, socket errors, 30 s timeouts) | {failed['atcr']:.0f} | {failed['distribution']:.0f} | |")

def verdict(ok):
    return "met" if ok else "**not met**"
print()
print(f"| Target | atcr | {dist} | Met? |")
print("|---|---:|---:|---|")
note = "" if gib > 0.99 else f" (measured with {size})"
if s3:
    if redirect:
        k = "pull_cpu_per_gib"
        print(f"| Pull: server CPU per GiB ≤ 0.05 s with redirects{note} | {a[k]:.3f} s | {b[k]:.3f} s | {verdict(a[k] <= 0.05)} |")
    # The highest sample of either, not a median: a ceiling.
    peak = {reg: max(v[reg, "push_hwm_kib"] + v[reg, "pull_hwm_kib"]) / 1024 for reg in ("atcr", "distribution")}
    print(f"| Peak RSS during push and pull ≤ 64 MiB{note} | {peak['atcr']:.1f} MiB | {peak['distribution']:.1f} MiB | {verdict(peak['atcr'] <= 64)} |")
    sys.exit(0)
r = a["push_cpu_per_gib"] / b["push_cpu_per_gib"]
print(f"| Server CPU per GiB pushed ≤ 1/4 of Distribution's | {a['push_cpu_per_gib']:.2f} s ({r:.2f}×) | {b['push_cpu_per_gib']:.2f} s | {verdict(r <= 0.25)} |")
for kind, label in (("blob", "4 KiB blob"), ("manifest", "manifest")):
    k = f"{kind}_cpu_us_per_req"
    if k not in a or k not in b:
        continue
    r = a[k] / b[k]
    print(f"| Server CPU per small request ({label}) ≤ 1/10 of Distribution's | {a[k]:.1f} µs ({r:.2f}×) | {b[k]:.1f} µs | {verdict(r <= 0.1)} |")
print(f"| Idle RSS ≤ 15 MB | {a['idle_rss_mib']:.1f} MiB | {b['idle_rss_mib']:.1f} MiB | {verdict(a['idle_rss_kib'] * 1024 <= 15e6)} |")
print(f"| Peak RSS during a 1 GiB push ≤ 40 MB{note} | {a['push_hwm_mib']:.1f} MiB | {b['push_hwm_mib']:.1f} MiB | {verdict(a['push_hwm_kib'] * 1024 <= 40e6)} |")
EOF
}

if [[ -n "$REPORT_ONLY" ]]; then
    report "$REPORT_ONLY"
    exit 0
fi

for tool in skopeo docker-registry curl python3 gzip tar sha256sum $([[ $LOAD_TESTS -eq 1 ]] && echo wrk); do
    command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install -y skopeo docker-registry wrk curl python3)"
done
if [[ ! -x "$ATCR" ]]; then
    log "building atcr (cargo build --release)"
    (cd "$REPO_ROOT" && cargo build --release) >&2
fi
[[ -x "$ATCR" ]] || die "atcr binary not found: $ATCR"
if [[ "$BACKEND" == s3 && ! -x "$S3S_FS" ]]; then
    log "building s3s-fs (tests/s3/setup.sh)"
    "$REPO_ROOT/tests/s3/setup.sh" >&2
fi
[[ "$BACKEND" == fs || -x "$S3S_FS" ]] || die "s3s-fs not found: $S3S_FS"

WORK="$(mktemp -d /tmp/atcr-bench.XXXXXX)"
SERVER_PIDS=()
cleanup() {
    local pid
    for pid in "${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RAW="$WORK/raw.tsv"
: >"$RAW"
CLK_TCK="$(getconf CLK_TCK)"

# --- skopeo's blob-info cache -------------------------------------------------------------------
# containers/image remembers where it saw a blob and then mounts or skips it instead of uploading.
# skopeo runs in a private mount namespace whose /var/lib/containers/cache is an empty directory of
# ours, so the cache is emptied before each push without touching the machine's shared one.
# Without unshare (not root), the machine's cache file is deleted instead.
CACHE_DIR="$WORK/blob-info-cache"
SYS_CACHE=/var/lib/containers/cache
mkdir -p "$CACHE_DIR"
PRIVATE_CACHE=0
if [[ $EUID -eq 0 ]] && mkdir -p "$SYS_CACHE" 2>/dev/null &&
    unshare --mount --propagation private sh -c "mount --bind '$CACHE_DIR' '$SYS_CACHE'" 2>/dev/null; then
    PRIVATE_CACHE=1
fi
skopeo_copy() {
    rm -f "$CACHE_DIR"/*
    if [[ $PRIVATE_CACHE -eq 1 ]]; then
        # shellcheck disable=SC2016 # expanded by the inner sh
        unshare --mount --propagation private sh -c \
            'mount --bind "$0" "$1" && shift && exec skopeo "$@"' \
            "$CACHE_DIR" "$SYS_CACHE" copy -q "$@"
    else
        rm -f "$SYS_CACHE/blob-info-cache-v1.boltdb" "$HOME/.local/share/containers/cache/blob-info-cache-v1.boltdb"
        skopeo copy -q "$@"
    fi
}

# --- images -------------------------------------------------------------------------------------
# An OCI layout with one gzip'd tar layer of random bytes: skopeo copies it as is (no recompression)
# and the registries store SIZE_MIB of incompressible data.
make_image() { # DIR PAYLOAD_BYTES
    local dir="$1" bytes="$2" src="$1.src"
    mkdir -p "$dir/blobs/sha256" "$src"
    head -c "$bytes" /dev/urandom >"$src/payload.bin"
    tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$src" -cf "$src/layer.tar" payload.bin
    rm -f "$src/payload.bin"
    local diff_id layer layer_size config config_digest config_size manifest manifest_digest
    diff_id="$(sha256sum "$src/layer.tar" | cut -d' ' -f1)"
    gzip -1 -n -c "$src/layer.tar" >"$src/layer.tar.gz"
    rm -rf "$src/layer.tar"
    layer="$(sha256sum "$src/layer.tar.gz" | cut -d' ' -f1)"
    layer_size="$(stat -c %s "$src/layer.tar.gz")"
    mv "$src/layer.tar.gz" "$dir/blobs/sha256/$layer"
    rmdir "$src"
    config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]}}"
    printf '%s' "$config" >"$dir/config.json"
    config_digest="$(sha256sum "$dir/config.json" | cut -d' ' -f1)"
    config_size="$(stat -c %s "$dir/config.json")"
    mv "$dir/config.json" "$dir/blobs/sha256/$config_digest"
    manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":$config_size},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer\",\"size\":$layer_size}]}"
    printf '%s' "$manifest" >"$dir/manifest.json"
    manifest_digest="$(sha256sum "$dir/manifest.json" | cut -d' ' -f1)"
    local manifest_size
    manifest_size="$(stat -c %s "$dir/manifest.json")"
    mv "$dir/manifest.json" "$dir/blobs/sha256/$manifest_digest"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
        "$manifest_digest" "$manifest_size" >"$dir/index.json"
    printf '%s %s\n' "$layer" "$layer_size" >"$dir.layer"
}

SIZE_BYTES=$((SIZE_MIB * 1024 * 1024))
log "building the ${SIZE_MIB} MiB image and the small image in $WORK"
make_image "$WORK/big" "$SIZE_BYTES"
make_image "$WORK/small" 4096
read -r BIG_LAYER BIG_LAYER_SIZE <"$WORK/big.layer"
read -r SMALL_LAYER SMALL_LAYER_SIZE <"$WORK/small.layer"
log "big layer: $BIG_LAYER_SIZE bytes; small layer: $SMALL_LAYER_SIZE bytes"

# --- servers ------------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # NAME PID PORT: a bare TCP connect, no HTTP request
    for _ in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || die "$1 exited at start"
        if (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    die "$1 did not open port $3"
}

kill_pid() { # PID: TERM, up to 10 s, then KILL; reaped and forgotten by cleanup
    local p keep=()
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${SERVER_PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    SERVER_PIDS=("${keep[@]+"${keep[@]}"}")
}

# Distribution 2.8.2's S3 driver resumes every upload (each PATCH and the final PUT) with
# ListMultipartUploads, which s3s-fs 0.14.1 answers with 501 NotImplemented: its pushes fail. So
# with -b s3 it is measured on its filesystem driver. Set 1 with an S3 server that has that call.
DIST_ON_S3=0
on_s3() { [[ "$BACKEND" == s3 && ( "$1" == atcr || $DIST_ON_S3 -eq 1 ) ]]; } # REGISTRY

# -b s3: one s3s-fs per registry and repetition, over a fresh directory (bucket `atcr`), alive from
# before the push to after the load tests. Sets S3_PID and S3_PORT.
S3_ACCESS_KEY=atcr-bench-key
S3_SECRET_KEY=atcr-bench-secret-0123456789
S3_PID=""
start_s3() { # DIR
    rm -rf "$1"
    mkdir -p "$1/atcr"
    S3_PORT="$(free_port)"
    "$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$1" \
        >>"$WORK/s3s-fs.log" 2>&1 &
    S3_PID=$!
    SERVER_PIDS+=("$S3_PID")
    wait_port s3s-fs "$S3_PID" "$S3_PORT"
}
stop_s3() {
    kill_pid "$S3_PID"
    S3_PID=""
}

# The storage part of each registry's configuration.
atcr_config() { # FILE: atcr.toml for the S3 backend, keys in owner-only files beside it
    local dir
    dir="$(dirname "$1")"
    (umask 077 && printf '%s\n' "$S3_ACCESS_KEY" >"$dir/s3-key-id" && printf '%s\n' "$S3_SECRET_KEY" >"$dir/s3-secret")
    cat >"$1" <<EOF
[storage]
backend = "s3"
bucket = "atcr"
endpoint = "http://127.0.0.1:$S3_PORT"
region = "us-east-1"
root = "atcr"
path_style = true
access_key_id_file = "$dir/s3-key-id"
secret_access_key_file = "$dir/s3-secret"
redirect = $([[ $REDIRECT -eq 1 ]] && echo true || echo false)
redirect_ttl_secs = 900
EOF
}
distribution_storage() { # DATA
    if ! on_s3 distribution; then
        printf '  filesystem:\n    rootdirectory: %s\n' "$1"
        return 0
    fi
    # 2.8.2 has no `forcepathstyle`: with `regionendpoint` set it always uses path-style URLs.
    cat <<EOF
  s3:
    region: us-east-1
    regionendpoint: http://127.0.0.1:$S3_PORT
    bucket: atcr
    accesskey: $S3_ACCESS_KEY
    secretkey: $S3_SECRET_KEY
    secure: false
    v4auth: true
    rootdirectory: /dist
  redirect:
    disable: $([[ $REDIRECT -eq 1 ]] && echo false || echo true)
EOF
}

# Sets SRV_PID and SRV_PORT. REGISTRY is "atcr" or "distribution"; DATA is its state directory
# (and its blobs' with -b fs).
start_server() { # REGISTRY DATA
    local registry="$1" data="$2" config=()
    SRV_PORT="$(free_port)"
    mkdir -p "$data"
    case "$registry" in
        atcr)
            if [[ "$BACKEND" == s3 ]]; then
                atcr_config "$WORK/atcr.toml"
                config=(--config "$WORK/atcr.toml")
            fi
            "$ATCR" serve "${config[@]+"${config[@]}"}" --listen "127.0.0.1:$SRV_PORT" --data-dir "$data" \
                >>"$WORK/atcr.log" 2>&1 &
            SRV_PID=$!
            ;;
        distribution)
            # Not the package's config (all interfaces, htpasswd): loopback, filesystem (or S3)
            # storage, deletes on, the default in-memory blob descriptor cache, no per-request
            # logging.
            cat >"$WORK/distribution.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
$(distribution_storage "$data")
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$SRV_PORT
  headers:
    X-Content-Type-Options: [nosniff]
EOF
            # Its aws-sdk-go panics at start ("unable to load custom CA bundle, HTTPClient's
            # transport unsupported type") when AWS_CA_BUNDLE is set; S3 here is plain HTTP.
            env -u AWS_CA_BUNDLE docker-registry serve "$WORK/distribution.yml" >>"$WORK/distribution.log" 2>&1 &
            SRV_PID=$!
            ;;
        *) die "unknown registry $registry" ;;
    esac
    SERVER_PIDS+=("$SRV_PID")
    # No HTTP request before the idle RSS sample.
    wait_port "$registry" "$SRV_PID" "$SRV_PORT"
}

stop_server() { kill_pid "$SRV_PID"; }

cpu_ticks() { # [PID]: utime+stime of the server (or PID), in clock ticks
    local f
    read -r -a f <<<"$(sed 's/^.*) //' "/proc/${1:-$SRV_PID}/stat")"
    echo $((f[11] + f[12]))
}
status_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SRV_PID/status"; }
now() { date +%s.%N; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; } # REGISTRY METRIC REP VALUE
fcalc() { python3 -c "print($1)"; }

# atcr wants Docker token auth: its first start creates the account `admin` and logs its
# password once; pushes and pulls log in with it, and the load tests send a bearer token (valid
# 5 minutes, longer than any load test). Distribution runs without auth, as before.
ATCR_PW=""
atcr_first_password() { # PREVIOUS: waits for a first-start password other than PREVIOUS
    local pw
    for _ in $(seq 1 200); do
        pw="$(grep -o 'password=[a-z2-7-]*' "$WORK/atcr.log" 2>/dev/null | tail -1 | cut -d= -f2)"
        if [[ -n "$pw" && "$pw" != "$1" ]]; then echo "$pw"; return 0; fi
        sleep 0.05
    done
    die "atcr logged no first-start password"
}
atcr_app_password() { # the account password ($ATCR_PW) traded for an app password, as `atcr login` does
    local jwt
    jwt="$(curl -sSf -H 'Content-Type: application/json' \
        -d "{\"identifier\":\"admin\",\"password\":\"$ATCR_PW\"}" \
        "http://127.0.0.1:$SRV_PORT/xrpc/com.atproto.server.createSession" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessJwt"])')"
    curl -sSf -H 'Content-Type: application/json' -H "Authorization: Bearer $jwt" -d '{"name":"bench"}' \
        "http://127.0.0.1:$SRV_PORT/xrpc/com.atproto.server.createAppPassword" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["password"])'
}
creds() { # REGISTRY src|dest: skopeo's credential flag, if the registry wants one
    if [[ "$1" == atcr ]]; then echo "--$2-creds=admin:$ATCR_PW"; fi
}
AUTH_HEADER=""
set_auth_header() { # REGISTRY SCOPE: AUTH_HEADER for curl and wrk
    AUTH_HEADER="X-No-Auth: 1"
    [[ "$1" == atcr ]] || return 0
    local token
    token="$(curl -sSf -u "admin:$ATCR_PW" "http://127.0.0.1:$SRV_PORT/auth/token?service=localhost:$SRV_PORT&scope=$2" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
    AUTH_HEADER="Authorization: Bearer $token"
}

check_get() { # URL EXPECTED_BYTES [ACCEPT]
    local out
    out="$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' -H "$AUTH_HEADER" ${3:+-H "Accept: $3"} "$1")"
    [[ "$out" == "200 $2" ]] || die "GET $1 gave '$out', expected '200 $2'"
}
check_redirect() { # URL: a 307 to the S3 server (wrk then measures the registry's redirects)
    local out
    out="$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' -H "$AUTH_HEADER" "$1")"
    [[ "$out" == "307 http://127.0.0.1:$S3_PORT/"* ]] || die "GET $1 gave '$out', expected a 307 to port $S3_PORT"
}

# wrk --latency output to "rps p99_ms requests non2xx"
parse_wrk() {
    python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
total = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
nerr = sum(int(x) for x in errors.groups()) if errors else 0
print(rps, ms(*p99.groups()), total, (int(bad.group(1)) if bad else 0) + nerr)
EOF
}

MANIFEST_ACCEPT="application/vnd.oci.image.manifest.v1+json"

# One repetition for one registry: idle RSS, push, pull, two load tests (unless -L).
# shellcheck disable=SC2046 # $(creds …) is no word or one without spaces
measure() { # REGISTRY REP
    local reg="$1" rep="$2" data="$WORK/data-$1" t0 t1 c0 c1 s0 s1
    rm -rf "$data"
    ! on_s3 "$reg" || start_s3 "$WORK/s3-$reg"
    sync

    # Idle RSS, then the push of the big image into the empty registry.
    start_server "$reg" "$data"
    sleep 2
    record "$reg" idle_rss_kib "$rep" "$(status_kib VmRSS)"
    [[ "$reg" == atcr ]] && ATCR_PW="$(atcr_first_password "$ATCR_PW")"
    if [[ "$reg" == atcr && $APP_PASSWORD -eq 1 ]]; then
        ATCR_PW="$(atcr_app_password)"
        stop_server
        start_server "$reg" "$data"
        sleep 0.5
    fi
    set_auth_header "$reg" "repository:admin/small:pull"
    curl -sf -o /dev/null -H "$AUTH_HEADER" "http://127.0.0.1:$SRV_PORT/v2/" || die "$reg: GET /v2/ failed"
    log "$reg rep $rep: push ${SIZE_MIB} MiB"
    [[ -z "$S3_PID" ]] || s0="$(cpu_ticks "$S3_PID")"
    c0="$(cpu_ticks)"; t0="$(now)"
    skopeo_copy --dest-tls-verify=false $(creds "$reg" dest) "oci:$WORK/big:latest" "docker://127.0.0.1:$SRV_PORT/admin/big:latest"
    t1="$(now)"; c1="$(cpu_ticks)"
    [[ -z "$S3_PID" ]] || s1="$(cpu_ticks "$S3_PID")"
    record "$reg" push_wall_s "$rep" "$(fcalc "$t1 - $t0")"
    record "$reg" push_cpu_s "$rep" "$(fcalc "($c1 - $c0) / $CLK_TCK")"
    [[ -z "$S3_PID" ]] || record "$reg" s3_push_cpu_s "$rep" "$(fcalc "($s1 - $s0) / $CLK_TCK")"
    record "$reg" push_hwm_kib "$rep" "$(status_kib VmHWM)"
    skopeo_copy --dest-tls-verify=false $(creds "$reg" dest) "oci:$WORK/small:latest" "docker://127.0.0.1:$SRV_PORT/admin/small:latest"
    stop_server
    sync

    # Pull from a fresh server.
    start_server "$reg" "$data"
    sleep 0.5
    log "$reg rep $rep: pull ${SIZE_MIB} MiB"
    rm -rf "$WORK/pulled"
    [[ -z "$S3_PID" ]] || s0="$(cpu_ticks "$S3_PID")"
    c0="$(cpu_ticks)"; t0="$(now)"
    skopeo_copy --src-tls-verify=false $(creds "$reg" src) "docker://127.0.0.1:$SRV_PORT/admin/big:latest" "oci:$WORK/pulled:latest"
    t1="$(now)"; c1="$(cpu_ticks)"
    [[ -z "$S3_PID" ]] || s1="$(cpu_ticks "$S3_PID")"
    record "$reg" pull_wall_s "$rep" "$(fcalc "$t1 - $t0")"
    record "$reg" pull_cpu_s "$rep" "$(fcalc "($c1 - $c0) / $CLK_TCK")"
    [[ -z "$S3_PID" ]] || record "$reg" s3_pull_cpu_s "$rep" "$(fcalc "($s1 - $s0) / $CLK_TCK")"
    record "$reg" pull_hwm_kib "$rep" "$(status_kib VmHWM)"
    [[ "$(stat -c %s "$WORK/pulled/blobs/sha256/$BIG_LAYER")" == "$BIG_LAYER_SIZE" ]] || die "$reg: pulled layer has the wrong size"
    rm -rf "$WORK/pulled"
    stop_server
    sync
    if [[ $LOAD_TESTS -eq 0 ]]; then
        [[ -z "$S3_PID" ]] || stop_s3
        rm -rf "$data" "$WORK/s3-$reg"
        return 0
    fi

    # Load tests, each from a fresh server: small blob, then manifest by tag.
    local base kind url out rps p99 total bad manifest_size
    manifest_size="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["size"])' "$WORK/small/index.json")"
    for kind in blob manifest; do
        start_server "$reg" "$data"
        sleep 0.5
        base="http://127.0.0.1:$SRV_PORT/v2/admin/small"
        set_auth_header "$reg" "repository:admin/small:pull"
        if [[ $kind == blob ]]; then
            url="$base/blobs/sha256:$SMALL_LAYER"
            if [[ $REDIRECT -eq 1 ]] && on_s3 "$reg"; then
                check_redirect "$url"
            else
                check_get "$url" "$SMALL_LAYER_SIZE"
            fi
        else
            url="$base/manifests/latest"
            check_get "$url" "$manifest_size" "$MANIFEST_ACCEPT"
        fi
        log "$reg rep $rep: $CLIENTS clients GET $kind for ${DURATION}s"
        out="$WORK/wrk-$reg-$kind.txt"
        c0="$(cpu_ticks)"
        wrk -t2 -c"$CLIENTS" -d"${DURATION}s" --timeout 30s --latency -H "Accept: $MANIFEST_ACCEPT" -H "$AUTH_HEADER" "$url" >"$out"
        c1="$(cpu_ticks)"
        read -r rps p99 total bad < <(parse_wrk "$out")
        [[ "$bad" == 0 ]] || log "warning: $reg: $bad failed requests in the $kind load test: $(cat "$out")"
        record "$reg" "${kind}_failed" "$rep" "$bad"
        record "$reg" "${kind}_rps" "$rep" "$rps"
        record "$reg" "${kind}_p99_ms" "$rep" "$p99"
        record "$reg" "${kind}_cpu_us_per_req" "$rep" "$(fcalc "($c1 - $c0) / $CLK_TCK / $total * 1e6")"
        record "$reg" "${kind}_hwm_kib" "$rep" "$(status_kib VmHWM)"
        stop_server
    done
    [[ -z "$S3_PID" ]] || stop_s3
    rm -rf "$data" "$WORK/s3-$reg"
}

MACHINE="$(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r); $("$ATCR" --version), docker-registry $(docker-registry --version | awk '{ print $NF }'), $(skopeo --version), $( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $1, $2 }')"
[[ "$BACKEND" == fs ]] || MACHINE+=", $("$S3S_FS" --version)"
for kv in "size_mib $SIZE_MIB" "layer_bytes $BIG_LAYER_SIZE" "reps $REPS" "clients $CLIENTS" "duration $DURATION" "machine $MACHINE"; do
    record meta "${kv%% *}" 0 "${kv#* }"
done
if [[ "$BACKEND" == s3 ]]; then # only then: an fs run's raw samples stay as they were
    record meta backend 0 s3
    record meta redirect 0 "$REDIRECT"
    record meta dist_backend 0 "$(on_s3 distribution && echo s3 || echo fs)"
fi
log "atcr: $ATCR; distribution: $(docker-registry --version); $REPS reps"
[[ "$BACKEND" == fs ]] || log "blob storage: S3 ($("$S3S_FS" --version)), redirects $([[ $REDIRECT -eq 1 ]] && echo on || echo off)"
log "private blob-info cache: $([[ $PRIVATE_CACHE -eq 1 ]] && echo yes || echo "no (deleting the machine's)")"
for rep in $(seq 1 "$REPS"); do
    if ((rep % 2)); then order=(atcr distribution); else order=(distribution atcr); fi
    for reg in "${order[@]}"; do measure "$reg" "$rep"; done
done

[[ -z "$RAW_OUT" ]] || cp "$RAW" "$RAW_OUT"
report "$RAW"
