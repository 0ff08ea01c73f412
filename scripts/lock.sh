#!/usr/bin/env bash
# Re-pin every dependency, transitive ones included, from the direct requirements below.
# Run after changing a direct dependency; review the diff of requirements*.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNTIME=(
  Flask==3.1.3 Werkzeug==3.1.9 Flask-Login==0.6.3 Flask-WTF==1.3.0 WTForms==3.3.2 email-validator==2.4.0
  Flask-SQLAlchemy==3.1.1 SQLAlchemy==2.1.9 Flask-Migrate==4.1.0 alembic==1.20.1 htmx-flask==0.1.0
  flask-babel==4.0.0 Flask-Limiter==4.1.1 redis==8.1.0 bcrypt==5.0.0 PyOTP==2.12.1 segno==1.6.6
  cryptography==50.0.2 boto3==1.44.8 filetype==1.2.0 weasyprint==70.0 APScheduler==3.11.3
  gunicorn==27.0.1 "psycopg[binary]==3.3.9" httpx==0.28.1 Authlib==1.9.6 requests==2.34.2
)
DEV=(pytest==9.2.0 oidc-provider-mock==0.3.4 pytest-xdist==3.8.0 aiosmtpd==1.4.6 playwright==1.65.2 "moto[server]==5.2.5" schemathesis==4.32.5 ruff==0.17.6)
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q "${RUNTIME[@]}"
"$work/venv/bin/pip" freeze > "$work/runtime"
"$work/venv/bin/pip" install -q "${DEV[@]}"
"$work/venv/bin/pip" freeze > "$work/dev"
{ echo "# Runtime dependencies, every one pinned (direct ones first in scripts/lock.sh; regenerate with it)."; cat "$work/runtime"; } > "$ROOT/requirements.txt"
{ echo "# Test and tooling dependencies, pinned, on top of requirements.txt (regenerate with scripts/lock.sh)."
  echo "-r requirements.txt"; comm -13 <(sort "$work/runtime") <(sort "$work/dev"); } > "$ROOT/requirements-dev.txt"
