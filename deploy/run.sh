#!/usr/bin/env bash
# Set everything up (deploy/setup.sh), then run the web server and the worker in the
# foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/setup.sh
.venv/bin/python manage.py collectstatic --no-input -v 0
.venv/bin/python manage.py setup_demo
port=$(grep -E '^WEB_PORT=' .env | cut -d= -f2); port=${WEB_PORT:-${port:-8000}}
# Asked of the URL map itself, so the address printed is the one the console answers on.
console_path=$(.venv/bin/python manage.py shell -v 0 -c "from django.urls import reverse; print(reverse('dashboard:overview'))")
cat <<MSG

Console:  http://127.0.0.1:$port$console_path  (sign in with the user printed above)
Settings: http://127.0.0.1:$port/admin/  (Django's admin, superusers only)
Try the API (README.md, "Send a reading"), then watch the row arrive in sensor_readings.
Stop with Ctrl-C.

MSG
exec .venv/bin/honcho start -f deploy/Procfile -e .env
