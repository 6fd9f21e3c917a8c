#!/usr/bin/env bash
# Prepare this checkout to run: virtualenv and dependencies, PostgreSQL and RabbitMQ
# (used if reachable, else started, else installed with apt), database, schema, migrations.
# Safe to run again: every step checks before it acts.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  log "installing $* with apt"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
# Sets KEY=VALUE in .env (replacing its line, or appending one) and in this shell.
env_file_set() {
  local key=$1 value=$2
  if grep -q "^$key=" .env; then
    sed -i "s|^$key=.*|$key=$value|" .env
  else
    echo "$key=$value" >> .env
  fi
  export "$key=$value"
}
wait_for_port() {
  local host=$1 port=$2 name=$3
  for _ in $(seq 1 60); do port_open "$host" "$port" && return 0; sleep 1; done
  log "$name did not come up on $host:$port"; return 1
}

# --- Python ------------------------------------------------------------------------------
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { log "Python 3.11+ is required ($PYTHON is $("$PYTHON" -V 2>&1))"; exit 1; }
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  apt_install python3-venv
fi
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PYTHON" -m venv .venv
fi
# Exactly the locked versions, every file checked against its hash (deploy/lock.sh
# regenerates the locks from requirements/*.txt).
REQUIREMENTS=${REQUIREMENTS:-requirements/dev.lock}
STAMP=.venv/.installed-$(cat "$REQUIREMENTS" | sha256sum | cut -c1-16)
if [ ! -f "$STAMP" ]; then
  log "installing $REQUIREMENTS"
  .venv/bin/pip install -q --require-hashes -r "$REQUIREMENTS"
  rm -f .venv/.installed-* && touch "$STAMP"
fi

# --- Tools the tests drive (deploy/test.sh sets NEED_TEST_TOOLS=1): Chromium -----------
# (Caddy comes from the dev lock, the same version the compose files run.)
if [ "${NEED_TEST_TOOLS:-0}" = 1 ]; then
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || apt_install chromium
fi

# --- Configuration -----------------------------------------------------------------------
if [ ! -f .env ]; then
  log "creating .env from .env.example with a fresh secret key"
  secret=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')
  sed "s|^DJANGO_SECRET_KEY=.*|DJANGO_SECRET_KEY=$secret|" .env.example > .env
fi
# .env fills in what the caller's environment does not already set.
while IFS='=' read -r key value; do
  case "$key" in ''|\#*) continue ;; esac
  [ -n "${!key+x}" ] || export "$key=$value"
done < .env
eval "$(.venv/bin/python deploy/env_parts.py)"

# --- PostgreSQL --------------------------------------------------------------------------
if ! port_open "$DB_HOST" "$DB_PORT"; then
  if [ "$DB_HOST" != 127.0.0.1 ] && [ "$DB_HOST" != localhost ]; then
    log "PostgreSQL at $DB_HOST:$DB_PORT is not reachable"; exit 1
  fi
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  log "starting PostgreSQL"
  for version in $(ls /etc/postgresql); do
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  wait_for_port "$DB_HOST" "$DB_PORT" PostgreSQL
fi
command -v psql >/dev/null || apt_install postgresql-client

if ! PGPASSWORD="$DB_PASSWORD" psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" \
     -tAc 'SELECT 1' >/dev/null 2>&1; then
  log "creating role $DB_USER and database $DB_NAME"
  admin_psql() {
    if [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1 \
       && runuser -u postgres -- psql -p "$DB_PORT" -tAc 'SELECT 1' >/dev/null 2>&1; then
      runuser -u postgres -- psql -p "$DB_PORT" -v ON_ERROR_STOP=1 -q "$@"
    elif sudo -n -u postgres psql -p "$DB_PORT" -tAc 'SELECT 1' >/dev/null 2>&1; then
      sudo -n -u postgres psql -p "$DB_PORT" -v ON_ERROR_STOP=1 -q "$@"
    else
      psql -h "$DB_HOST" -p "$DB_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q "$@"
    fi
  }
  admin_psql -v user="$DB_USER" -v password="$DB_PASSWORD" -v db="$DB_NAME" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'user', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
fi

# --- RabbitMQ ----------------------------------------------------------------------------
if ! port_open "$RABBITMQ_HOST" "$RABBITMQ_PORT"; then
  if [ "$RABBITMQ_HOST" != 127.0.0.1 ] && [ "$RABBITMQ_HOST" != localhost ]; then
    log "RabbitMQ at $RABBITMQ_HOST:$RABBITMQ_PORT is not reachable"; exit 1
  fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached || true
  wait_for_port "$RABBITMQ_HOST" "$RABBITMQ_PORT" RabbitMQ
fi

# The console reads ready/unacked counts from the management API when it is there.
if [ -n "${RABBITMQ_MANAGEMENT_URL:-}" ] && command -v rabbitmq-plugins >/dev/null \
   && ! port_open "$RABBITMQ_HOST" 15672 && [ "$(id -u)" -eq 0 ]; then
  log "enabling the RabbitMQ management plugin"
  rabbitmq-plugins enable rabbitmq_management >/dev/null || log "could not enable it; the console shows ready counts only"
fi

# --- MQTT through RabbitMQ (on unless MQTT_ENABLED=false) --------------------------------
# deploy/rabbitmq_mqtt.sh enables rabbitmq_mqtt and rabbitmq_auth_backend_http on a LOCAL
# broker and points its auth at this web tier (docs/api.md, "MQTT"): it writes a marked
# block to the broker's rabbitmq.conf and restarts the broker once when something changed.
# A remote broker is configured by its own operators with the lines it prints. The choices
# made here (on, port, secret) are kept in .env, where run.sh and the worker read them.
mqtt_enabled=$(printf '%s' "${MQTT_ENABLED:-true}" | tr '[:upper:]' '[:lower:]')
if [ "$mqtt_enabled" = true ] || [ "$mqtt_enabled" = 1 ] || [ "$mqtt_enabled" = yes ]; then
  if [ -z "${BROKER_AUTH_SECRET:-}" ]; then
    log "adding a fresh BROKER_AUTH_SECRET to .env"
    BROKER_AUTH_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')
    env_file_set BROKER_AUTH_SECRET "$BROKER_AUTH_SECRET"
  fi
  if [ "$RABBITMQ_HOST" = 127.0.0.1 ] || [ "$RABBITMQ_HOST" = localhost ]; then
    if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
      log "MQTT: run setup as root (or with sudo) to configure the local broker, or set MQTT_ENABLED=false"
      exit 1
    fi
    mqtt_as=as_root
  else
    mqtt_as=  # a remote broker only gets its lines printed
  fi
  # sudo passes no environment: the script is given what it reads, by name.
  mqtt_port=$($mqtt_as env RABBITMQ_HOST="$RABBITMQ_HOST" WEB_PORT="${WEB_PORT:-8000}" \
    BROKER_AUTH_SECRET="$BROKER_AUTH_SECRET" MQTT_PORT="${MQTT_PORT:-}" MQTT_VHOST="${MQTT_VHOST:-/}" \
    ${RABBITMQ_CONFIG_FILE:+RABBITMQ_CONFIG_FILE="$RABBITMQ_CONFIG_FILE"} \
    ${RABBITMQ_ENABLED_PLUGINS_FILE:+RABBITMQ_ENABLED_PLUGINS_FILE="$RABBITMQ_ENABLED_PLUGINS_FILE"} \
    deploy/rabbitmq_mqtt.sh configure)
  # Devices are given this port: once chosen it stays.
  [ -n "${MQTT_PORT:-}" ] || env_file_set MQTT_PORT "$mqtt_port"
  grep -q '^MQTT_ENABLED=' .env || env_file_set MQTT_ENABLED true
fi

# --- Redis (the device rate limit's counters; the tests use it too) ---------------------
if ! port_open 127.0.0.1 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 >/dev/null || true
  wait_for_port 127.0.0.1 6379 Redis
fi

# --- Schema ------------------------------------------------------------------------------
log "checking the customer's schema and migrating the app's own tables"
.venv/bin/python manage.py bootstrap_db
.venv/bin/python manage.py migrate --no-input -v 0
log "ready ($ROOT)"
