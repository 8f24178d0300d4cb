#!/usr/bin/env bash
# Quick start (b): set up and run the whole test suite.
# PostgreSQL: the server at AUTOCALL_TEST_DATABASE_URL when one answers, else one
# installed and started from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export AUTOCALL_TEST_DATABASE_URL="${AUTOCALL_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}"
pg_answers() {
  .venv/bin/python - <<'PY'
import os, sys, psycopg
url = os.environ["AUTOCALL_TEST_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
try:
    psycopg.connect(url, connect_timeout=3).close()
except Exception as exc:
    print(f"test: no PostgreSQL at {url}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
}
if ! pg_answers; then
  bash scripts/postgres.sh
  export AUTOCALL_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test"
  pg_answers
fi
exec .venv/bin/python -m pytest "$@"
