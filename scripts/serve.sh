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
PORT="${COFFRE_PORT:-5000}"
if [ -z "${FEEXPAY_API_KEY:-}" ]; then
  # No FeexPay account: pay plans against the local simulator (FeexPay has no sandbox).
  SIM_PORT="${COFFRE_FEEXPAY_SIMULATOR_PORT:-8765}"
  python -m portal.billing.simulator --port "$SIM_PORT" --settle-after 5 \
    --notify-url "http://127.0.0.1:${PORT}/abonnement/feexpay/notification" &
  SIM_PID=$!
  trap 'kill "$SIM_PID" 2>/dev/null || true' EXIT
  export FEEXPAY_BASE_URL="http://127.0.0.1:${SIM_PORT}"
  export FEEXPAY_API_KEY="fp_$(printf '0%.0s' $(seq 64))"
  export FEEXPAY_SHOP_ID="coffre-demo-shop"
  echo "FeexPay simulator on $FEEXPAY_BASE_URL: any phone number pays after 5 s (…0000 fails, …9999 never answers)."
fi
echo
echo "Coffre is starting on http://127.0.0.1:${PORT} (Ctrl+C to stop)."
flask run --host 127.0.0.1 --port "$PORT"
