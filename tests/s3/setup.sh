#!/usr/bin/env bash
# A real S3 server for the tests: s3s-fs from crates.io, built into tests/s3/bin only when
# missing. 0.14.1 is the newest release that builds with rustc 1.95 (0.17 needs 1.96). s3s-fs
# checks every signature, presigned URLs included; moto[server] does not, so CI does not use it
# (tests/s3/moto-check.sh runs a node against it by hand).
set -euo pipefail
cd "$(dirname "$0")"
if [ -x bin/s3s-fs ]; then
  exit 0
fi
echo "== installing s3s-fs 0.14.1 into tests/s3/bin"
cargo install --locked --root . s3s-fs@0.14.1 --features binary
