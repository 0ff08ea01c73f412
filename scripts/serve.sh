#!/usr/bin/env bash
# Set up and start Coffre on its embedded defaults: SQLite, local storage and generated
# keys under instance/, on http://127.0.0.1:5000. Safe to run again.
set -euo pipefail
source "$(dirname "$0")/_env.sh"
cd "$ROOT"
ensure_venv requirements.txt
export FLASK_APP=wsgi
flask db upgrade
flask demo-data
echo
echo "Coffre is starting on http://127.0.0.1:${COFFRE_PORT:-5000} (Ctrl+C to stop)."
exec flask run --host 127.0.0.1 --port "${COFFRE_PORT:-5000}"
