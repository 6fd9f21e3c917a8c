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
# MQTT is opt-in (MQTT_ENABLED in .env; setup configured the local broker, the worker bridges).
mqtt_enabled=$(grep -E '^MQTT_ENABLED=' .env | cut -d= -f2 || true)
mqtt_line=""
case "$(printf '%s' "${MQTT_ENABLED:-$mqtt_enabled}" | tr '[:upper:]' '[:lower:]')" in
  true | 1 | yes)
    mqtt_port=$(grep -E '^MQTT_PORT=' .env | cut -d= -f2 || true)
    mqtt_line="MQTT:     127.0.0.1:${MQTT_PORT:-${mqtt_port:-1883}}, user = device serial, password = its key (README.md, \"Send a reading over MQTT\")
"
    ;;
esac
cat <<MSG

Console:  http://127.0.0.1:$port$console_path  (sign in with the user printed above)
Settings: http://127.0.0.1:$port/admin/  (Django's admin, superusers only)
Try the API (README.md, "Send a reading"), then watch the row arrive in sensor_readings.
${mqtt_line}Stop with Ctrl-C.

MSG
exec .venv/bin/honcho start -f deploy/Procfile -e .env
