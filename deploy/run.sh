#!/usr/bin/env bash
# Set everything up (deploy/setup.sh), then run the web server and the worker in the
# foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/setup.sh
.venv/bin/python manage.py collectstatic --no-input -v 0
.venv/bin/python manage.py setup_demo
port=$(grep -E '^WEB_PORT=' .env | cut -d= -f2); port=${WEB_PORT:-${port:-8000}}
cat <<MSG

Console: http://127.0.0.1:$port/admin/
Try the API (README.md, "Send a reading"), then watch the row arrive in sensor_readings.
Stop with Ctrl-C.

MSG
exec .venv/bin/honcho start -f deploy/Procfile -e .env
