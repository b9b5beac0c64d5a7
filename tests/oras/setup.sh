#!/usr/bin/env bash
# Brings what tests/oras_sdk.rs needs, when it is missing: tests/oras/venv/, a Python virtual
# environment with the oras SDK pinned by requirements.txt (PyPI only). Idempotent: a second run
# with the same requirements does nothing.
set -euo pipefail
cd "$(dirname "$0")"

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "== installing python3-venv (Debian)"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq python3-venv >/dev/null
fi

stamp=venv/.atcr-requirements-sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== pip install -r tests/oras/requirements.txt into tests/oras/venv"
  rm -rf venv.partial
  python3 -m venv venv.partial
  venv.partial/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > venv.partial/.atcr-requirements-sha256
  rm -rf venv
  mv venv.partial venv
fi
