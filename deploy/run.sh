#!/usr/bin/env bash
# Set everything up (deploy/setup.sh), then run the web server, the worker (with the MQTT
# bridge unless MQTT_ENABLED=false), the console's job runner, the scheduler and gRPC
# ingest (deploy/Procfile) in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/setup.sh
.venv/bin/python manage.py collectstatic --no-input -v 0
.venv/bin/python manage.py setup_demo
# A setting as honcho gives it to the processes: .env, else the caller's environment, else
# the default.
setting() {
  local name=$1 default=$2 from_file
  from_file=$(grep -E "^$name=" .env | tail -n 1 | cut -d= -f2- || true)
  printf '%s' "${from_file:-${!name:-$default}}"
}
port=$(setting WEB_PORT 8000)
# Asked of the URL map itself, so the address printed is the one the console answers on.
console_path=$(.venv/bin/python manage.py shell -v 0 -c "from django.urls import reverse; print(reverse('dashboard:overview'))")
# serve_grpc (the Procfile's grpc) listens on GRPC_BIND:GRPC_PORT; 0.0.0.0 is reached on loopback too.
grpc_host=$(setting GRPC_BIND 127.0.0.1); [ "$grpc_host" != 0.0.0.0 ] || grpc_host=127.0.0.1
grpc_line="gRPC:     $grpc_host:$(setting GRPC_PORT 50051), IngestStream in plain HTTP/2 (docs/api.md, \"gRPC streaming\")
"
# MQTT is on unless MQTT_ENABLED=false: setup configured the broker and wrote MQTT_ENABLED
# and MQTT_PORT to .env, from which honcho gives the worker its bridge (the Procfile's worker).
mqtt_line=""
case "$(setting MQTT_ENABLED true | tr '[:upper:]' '[:lower:]')" in
  true | 1 | yes)
    mqtt_line="MQTT:     $(setting RABBITMQ_HOST 127.0.0.1):$(setting MQTT_PORT 1883), user = device serial, password = its key (README.md, \"Send a reading over MQTT\")
"
    ;;
esac
cat <<MSG

Console:  http://127.0.0.1:$port$console_path  (sign in with the user printed above)
Settings: http://127.0.0.1:$port/admin/  (Django's admin, superusers only)
Try the API (README.md, "Send a reading"), then watch the row arrive in sensor_readings.
${grpc_line}${mqtt_line}Stop with Ctrl-C.

MSG
exec .venv/bin/honcho start -f deploy/Procfile -e .env
