#!/usr/bin/env bash
# Quick start (a): set up and run the main job, a demo campaign on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/autocall demo "$@"
