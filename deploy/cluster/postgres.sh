#!/usr/bin/env bash
# A PostgreSQL primary and a streaming read replica on this host, for development, tests
# and benchmarks of the console's read replica (DATABASE_REPLICA_URL).
#
#   deploy/cluster/postgres.sh start     # initdb (first time), start both, print the URLs
#   deploy/cluster/postgres.sh env       # print DATABASE_URL and DATABASE_REPLICA_URL
#   deploy/cluster/postgres.sh status    # which of the two runs, and the replica's state
#   deploy/cluster/postgres.sh lag       # replication lag as the replica sees it
#   deploy/cluster/postgres.sh stop [--purge]   # stop both (--purge: remove their data)
#   deploy/cluster/postgres.sh clean     # = stop --purge
#
# Environment: IOT_CARE_PG_CLUSTER_DIR (default /tmp/iot-care-pg-cluster), IOT_CARE_PG_PRIMARY_PORT
# (5433), IOT_CARE_PG_REPLICA_PORT (5434), IOT_CARE_PG_BIN (/usr/lib/postgresql/15/bin),
# IOT_CARE_PG_APP_USER / IOT_CARE_PG_APP_PASSWORD / IOT_CARE_PG_APP_DATABASE (iot_care).
#
# Run it as root or as postgres (the servers run as postgres). Both listen on 127.0.0.1
# only and trust every local connection: a throwaway pair, never a production setup. The
# machine's own cluster (5432) is not touched. A start after a crash (servers killed, pid
# files left) recovers the same data; a half-made directory is made again.
#
# On a real host the primary needs, in postgresql.conf:
#     wal_level = replica            # the default since PostgreSQL 10
#     max_wal_senders = 10           # one per replica, plus pg_basebackup while it runs
#     wal_keep_size = 512MB          # or a replication slot, so a slow replica can catch up
# a replication role:
#     CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '...';
# and a pg_hba.conf line letting that role stream from the replica's address:
#     hostssl  replication  replicator  10.0.0.12/32  scram-sha-256
# The replica is made with `pg_basebackup -h <primary> -U replicator -D <datadir> -R`
# (-R writes primary_conninfo and standby.signal) and runs with hot_standby = on (the
# default) so that it answers read-only queries. The application's role and database
# are created on the primary only: they reach the replica by replication.
set -euo pipefail

CLUSTER_DIR=${IOT_CARE_PG_CLUSTER_DIR:-/tmp/iot-care-pg-cluster}
PRIMARY_PORT=${IOT_CARE_PG_PRIMARY_PORT:-5433}
REPLICA_PORT=${IOT_CARE_PG_REPLICA_PORT:-5434}
PG_BIN=${IOT_CARE_PG_BIN:-/usr/lib/postgresql/15/bin}
APP_USER=${IOT_CARE_PG_APP_USER:-iot_care}
APP_PASSWORD=${IOT_CARE_PG_APP_PASSWORD:-iot_care}
APP_DATABASE=${IOT_CARE_PG_APP_DATABASE:-iot_care}
PRIMARY_DIR=$CLUSTER_DIR/primary
REPLICA_DIR=$CLUSTER_DIR/replica
SOCKET_DIR=$CLUSTER_DIR/sockets

log() { printf '[postgres-cluster] %s\n' "$*" >&2; }

# The servers run as the postgres user (they refuse to run as root).
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

psql_at() { # psql_at <port> <sql>: one value, as the superuser over the cluster's own socket
  as_postgres "$PG_BIN/psql" -h "$SOCKET_DIR" -p "$1" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$2"
}

is_running() { # is_running <datadir>: its postmaster is alive (a killed one not yet reaped is not)
  [ -f "$1/postmaster.pid" ] || return 1
  local state
  state=$(ps -o stat= -p "$(head -1 "$1/postmaster.pid")" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "${state:0:1}" != Z ]
}

wait_ready() { # wait_ready <port> <what>
  for _ in $(seq 1 100); do
    if as_postgres "$PG_BIN/pg_isready" -q -h "$SOCKET_DIR" -p "$1"; then return 0; fi
    sleep 0.1
  done
  log "$2 on port $1 did not become ready"
  return 1
}

port_taken_by_other() { # port_taken_by_other <port> <datadir>: someone else listens there
  if is_running "$2"; then return 1; fi
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_server() { # start_server <datadir> <port> <what>
  if is_running "$1"; then
    log "$3 already running on port $2"
    return 0
  fi
  if port_taken_by_other "$2" "$1"; then
    log "port $2 is in use by another process: set IOT_CARE_PG_${3^^}_PORT"
    exit 1
  fi
  # A crashed run leaves postmaster.pid behind (its pid may since belong to another
  # process): removed. The killed server's backends take a moment to notice and exit, and
  # until they have, the new one refuses to start on their shared memory: a few tries.
  rm -f "$1/postmaster.pid"
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if as_postgres "$PG_BIN/pg_ctl" -D "$1" -l "$CLUSTER_DIR/$3.log" -w -t 30 \
      -o "-p $2 -k $SOCKET_DIR -c listen_addresses=127.0.0.1" start >/dev/null 2>&1; then
      wait_ready "$2" "$3"
      return 0
    fi
    rm -f "$1/postmaster.pid"
    sleep 0.5
  done
  log "$3 did not start: see $CLUSTER_DIR/$3.log"
  exit 1
}

init_primary() {
  log "initdb primary in $PRIMARY_DIR"
  as_postgres "$PG_BIN/initdb" -D "$PRIMARY_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$PRIMARY_DIR/postgresql.conf" <<EOF

# iot_care primary (deploy/cluster/postgres.sh)
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
wal_keep_size = 256MB
hot_standby = on
fsync = off                    # a throwaway pair: speed over crash safety
full_page_writes = off
EOF
  # Trust on loopback and the cluster's socket only, replication included.
  cat >"$PRIMARY_DIR/pg_hba.conf" <<EOF
local  all          all                  trust
local  replication  all                  trust
host   all          all   127.0.0.1/32   trust
host   replication  all   127.0.0.1/32   trust
EOF
}

create_app_role() {
  psql_at "$PRIMARY_PORT" "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$APP_USER') THEN
        CREATE ROLE $APP_USER LOGIN PASSWORD '$APP_PASSWORD' CREATEDB;
      END IF; END \$\$;"
  if [ -z "$(psql_at "$PRIMARY_PORT" "SELECT 1 FROM pg_database WHERE datname = '$APP_DATABASE'")" ]; then
    psql_at "$PRIMARY_PORT" "CREATE DATABASE $APP_DATABASE OWNER $APP_USER"
  fi
}

init_replica() {
  log "pg_basebackup replica into $REPLICA_DIR"
  as_postgres "$PG_BIN/pg_basebackup" -h "$SOCKET_DIR" -p "$PRIMARY_PORT" -U postgres \
    -D "$REPLICA_DIR" -R -X stream -c fast >/dev/null
  # -R wrote primary_conninfo (with the primary's port) and standby.signal.
}

print_env() {
  echo "DATABASE_URL=postgres://$APP_USER:$APP_PASSWORD@127.0.0.1:$PRIMARY_PORT/$APP_DATABASE"
  echo "DATABASE_REPLICA_URL=postgres://$APP_USER:$APP_PASSWORD@127.0.0.1:$REPLICA_PORT/$APP_DATABASE"
}

cmd_start() {
  mkdir -p "$SOCKET_DIR"
  chown postgres "$CLUSTER_DIR" "$SOCKET_DIR" 2>/dev/null || true
  chmod 700 "$SOCKET_DIR"
  # A half-made primary (initdb interrupted) is redone from scratch.
  if [ -d "$PRIMARY_DIR" ] && [ ! -f "$PRIMARY_DIR/PG_VERSION" ]; then rm -rf "$PRIMARY_DIR"; fi
  if [ ! -d "$PRIMARY_DIR" ]; then init_primary; fi
  start_server "$PRIMARY_DIR" "$PRIMARY_PORT" primary
  create_app_role
  # A replica without standby.signal (an interrupted base backup) is made again.
  if [ -d "$REPLICA_DIR" ] && [ ! -f "$REPLICA_DIR/standby.signal" ]; then
    is_running "$REPLICA_DIR" && as_postgres "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" -m immediate stop >/dev/null
    rm -rf "$REPLICA_DIR"
  fi
  if [ ! -d "$REPLICA_DIR" ]; then init_replica; fi
  start_server "$REPLICA_DIR" "$REPLICA_PORT" replica
  # The app's database exists on the replica once it has replayed its creation.
  for _ in $(seq 1 100); do
    if [ -n "$(psql_at "$REPLICA_PORT" "SELECT 1 FROM pg_database WHERE datname = '$APP_DATABASE'")" ]; then
      print_env
      return 0
    fi
    sleep 0.1
  done
  log "the replica has not replayed the creation of $APP_DATABASE"
  exit 1
}

stop_server() { # stop_server <datadir> <what>
  if is_running "$1"; then
    as_postgres "$PG_BIN/pg_ctl" -D "$1" -m fast -w -t 30 stop >/dev/null
    log "$2 stopped"
  fi
}

cmd_stop() {
  # The replica first: stopped the other way round it would retry the primary meanwhile.
  stop_server "$REPLICA_DIR" replica
  stop_server "$PRIMARY_DIR" primary
  if [ "${1:-}" = "--purge" ]; then
    rm -rf "$CLUSTER_DIR"
    log "removed $CLUSTER_DIR"
  fi
}

cmd_status() {
  local code=0
  for pair in "primary:$PRIMARY_DIR:$PRIMARY_PORT" "replica:$REPLICA_DIR:$REPLICA_PORT"; do
    IFS=: read -r what dir port <<<"$pair"
    if is_running "$dir"; then
      echo "$what: running on 127.0.0.1:$port ($dir), in recovery: $(psql_at "$port" "SELECT pg_is_in_recovery()")"
    else
      echo "$what: stopped ($dir)"
      code=3
    fi
  done
  if is_running "$PRIMARY_DIR"; then
    psql_at "$PRIMARY_PORT" "SELECT 'streaming to ' || coalesce(client_addr::text, 'a local socket') || ': ' || state FROM pg_stat_replication" || true
  fi
  return $code
}

cmd_lag() {
  # Seconds: 0 while everything received is replayed (an idle primary is not a lag).
  psql_at "$REPLICA_PORT" "SELECT 'receive_lsn=' || coalesce(pg_last_wal_receive_lsn()::text, '-')
      || ' replay_lsn=' || coalesce(pg_last_wal_replay_lsn()::text, '-')
      || ' replay_paused=' || pg_is_wal_replay_paused()
      || ' lag_bytes=' || coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text, '-')
      || ' lag_seconds=' || CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN '0'
           ELSE coalesce(round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 3)::text, '-') END"
}

case "${1:-}" in
  start) cmd_start ;;
  env) print_env ;;
  stop) cmd_stop "${2:-}" ;;
  clean) cmd_stop --purge ;;
  status) cmd_status ;;
  lag) cmd_lag ;;
  *)
    echo "usage: $0 start|env|status|lag|stop [--purge]|clean" >&2
    exit 2
    ;;
esac
