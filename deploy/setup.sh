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

# --- MQTT through RabbitMQ (opt-in: MQTT_ENABLED=true in .env) ---------------------------
# Enables rabbitmq_mqtt and rabbitmq_auth_backend_http on the LOCAL broker and points the
# broker's auth at this web tier (docs/api.md, "MQTT"). Off by default because it changes
# the machine's broker: its rabbitmq.conf gets a marked block and the broker is restarted
# once when that block changes. A remote broker is configured by its own operators with
# the same lines (printed here).
mqtt_enabled=$(printf '%s' "${MQTT_ENABLED:-false}" | tr '[:upper:]' '[:lower:]')
if [ "$mqtt_enabled" = true ] || [ "$mqtt_enabled" = 1 ] || [ "$mqtt_enabled" = yes ]; then
  if [ -z "${BROKER_AUTH_SECRET:-}" ]; then
    log "adding a fresh BROKER_AUTH_SECRET to .env"
    BROKER_AUTH_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')
    export BROKER_AUTH_SECRET
    if grep -q '^BROKER_AUTH_SECRET=' .env; then
      sed -i "s|^BROKER_AUTH_SECRET=.*|BROKER_AUTH_SECRET=$BROKER_AUTH_SECRET|" .env
    else
      echo "BROKER_AUTH_SECRET=$BROKER_AUTH_SECRET" >> .env
    fi
  fi
  auth_base="http://127.0.0.1:${WEB_PORT:-8000}/internal/broker-auth/$BROKER_AUTH_SECRET"
  mqtt_block="# iot_care MQTT begin (deploy/setup.sh rewrites this block)
auth_backends.1 = internal
auth_backends.2 = http
auth_http.http_method = post
auth_http.user_path = $auth_base/user
auth_http.vhost_path = $auth_base/vhost
auth_http.resource_path = $auth_base/resource
auth_http.topic_path = $auth_base/topic
mqtt.listeners.tcp.1 = 0.0.0.0:${MQTT_PORT:-1883}
mqtt.allow_anonymous = false
mqtt.vhost = ${MQTT_VHOST:-/}
mqtt.exchange = amq.topic
# iot_care MQTT end"
  if [ "$RABBITMQ_HOST" != 127.0.0.1 ] && [ "$RABBITMQ_HOST" != localhost ]; then
    log "MQTT: the broker is remote; give it the plugins rabbitmq_mqtt rabbitmq_auth_backend_http and:"
    printf '%s\n' "$mqtt_block" | sed "s|127.0.0.1:${WEB_PORT:-8000}|<this web host>:${WEB_PORT:-8000}|" >&2
  elif [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
    log "MQTT: run setup as root (or with sudo) to configure the local broker"; exit 1
  else
    conf=${RABBITMQ_CONFIG_FILE:-/etc/rabbitmq/rabbitmq.conf}
    current=$(as_root sed -n '/^# iot_care MQTT begin/,/^# iot_care MQTT end/p' "$conf" 2>/dev/null || true)
    if [ "$current" != "$mqtt_block" ]; then
      log "MQTT: writing the broker's auth and listener settings to $conf"
      as_root touch "$conf"
      as_root sed -i '/^# iot_care MQTT begin/,/^# iot_care MQTT end/d' "$conf"
      printf '%s\n' "$mqtt_block" | as_root tee -a "$conf" >/dev/null
      as_root rabbitmq-plugins enable --offline rabbitmq_mqtt rabbitmq_auth_backend_http >/dev/null
      # rabbitmq.conf is read at boot only: restart the broker once to apply the block.
      log "MQTT: restarting the local RabbitMQ to apply it"
      as_root rabbitmqctl stop >/dev/null 2>&1 || true
      as_root rabbitmq-server -detached || true
      wait_for_port "$RABBITMQ_HOST" "$RABBITMQ_PORT" RabbitMQ
    fi
    wait_for_port 127.0.0.1 "${MQTT_PORT:-1883}" "RabbitMQ's MQTT listener"
  fi
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
