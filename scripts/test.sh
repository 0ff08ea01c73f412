#!/usr/bin/env bash
# Set up and run the whole test suite: ruff, then pytest on SQLite and on PostgreSQL
# (when a server answers on 127.0.0.1:5432). Installs Chromium for the browser tests.
# Safe to run again. Extra arguments are passed to pytest.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
cd "$ROOT"
apt_install chromium fonts-dejavu-core poppler-utils
ensure_venv requirements-dev.txt

echo "== ruff"
ruff check .
ruff format --check .

workers=()
if [ "$(nproc)" -gt 1 ]; then workers=(-n "$(nproc)"); fi

echo "== pytest on SQLite"
COFFRE_TEST_DATABASE=sqlite pytest -q "${workers[@]}" "$@"

if python - <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
except OSError:
    sys.exit(1)
PY
then
  echo "== pytest on PostgreSQL"
  COFFRE_TEST_DATABASE=postgresql pytest -q "${workers[@]}" "$@"
else
  echo "== PostgreSQL not reachable on 127.0.0.1:5432: the PostgreSQL run was skipped"
  if [ "${CI:-}" = "true" ]; then echo "CI needs PostgreSQL" >&2; exit 1; fi
fi
