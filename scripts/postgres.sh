#!/usr/bin/env bash
# Install and start a PostgreSQL server from Debian's packages for the tests
# (trust auth on 127.0.0.1, database "test"). Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v pg_ctlcluster >/dev/null || [[ -z "$(ls /etc/postgresql 2>/dev/null)" ]]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
ver=$(ls /etc/postgresql | sort -V | tail -n 1)
hba="/etc/postgresql/$ver/main/pg_hba.conf"
if ! grep -q "autocall-test" "$hba"; then
  sed -i '1i host all all 127.0.0.1/32 trust # autocall-test\nlocal all all trust # autocall-test' "$hba"
fi
pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || \
  pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done
psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 || \
  psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test"
