#!/usr/bin/env bash
# MQTT through RabbitMQ: the broker's side (docs/api.md, "MQTT"). deploy/setup.sh calls it.
#
# Usage:
#   deploy/rabbitmq_mqtt.sh configure   a local broker (as root): enable rabbitmq_mqtt and
#       rabbitmq_auth_backend_http, write a marked block to its rabbitmq.conf, restart it once
#       when either changed, then check that its MQTT listener answers. A remote broker
#       (RABBITMQ_HOST not 127.0.0.1/localhost): print what its operators must set, change
#       nothing. Prints the MQTT port on stdout, everything else on stderr.
#   deploy/rabbitmq_mqtt.sh block       print the rabbitmq.conf block alone
#
# Settings (environment variables, with their defaults):
#   BROKER_AUTH_SECRET                (required) path segment of the web tier's auth URLs
#   BROKER_AUTH_WEB_URL=http://127.0.0.1:$WEB_PORT   where the broker asks (WEB_PORT=8000)
#   MQTT_PORT=                        the MQTT listener; empty: 1883, or where another program
#       already holds 1883 (Mosquitto often does), the first port from 1884 nothing holds
#   MQTT_VHOST=/                      the vhost devices are let into
#   RABBITMQ_HOST=127.0.0.1           the broker; anything but 127.0.0.1/localhost is remote
#   RABBITMQ_CONFIG_FILE=/etc/rabbitmq/rabbitmq.conf          the broker's rabbitmq.conf
#   RABBITMQ_ENABLED_PLUGINS_FILE=/etc/rabbitmq/enabled_plugins  its enabled_plugins file
#   RABBITMQ_CLI=                     a command that runs a RabbitMQ program (rabbitmqctl,
#       rabbitmq-plugins, rabbitmq-diagnostics, rabbitmq-server) on this broker's node with
#       that node's environment (name, cookie, files, ports), the program and its arguments
#       appended; empty: the installed programs, i.e. the machine's broker. Another node,
#       e.g. one of deploy/cluster/rabbitmq.sh: RABBITMQ_CLI="deploy/cluster/rabbitmq.sh run 1".
#
# Safe to run again: nothing is written and the broker is not restarted when the plugins are
# enabled and the block is already there. A port held by another program is refused before
# anything changes: RabbitMQ does not boot at all when its MQTT listener cannot bind.
set -euo pipefail

readonly PLUGINS=(rabbitmq_mqtt rabbitmq_auth_backend_http)
readonly DEFAULT_MQTT_PORT=1883
# Where 1883 is held by another program, the first free port of this range is taken.
readonly FALLBACK_PORTS=(1884 1885 1886 1887 1888 1889)
readonly CONFIG_FILE=${RABBITMQ_CONFIG_FILE:-/etc/rabbitmq/rabbitmq.conf}
readonly PLUGINS_FILE=${RABBITMQ_ENABLED_PLUGINS_FILE:-/etc/rabbitmq/enabled_plugins}
readonly BLOCK_BEGIN='# iot_care MQTT begin (deploy/rabbitmq_mqtt.sh rewrites this block)'
readonly BLOCK_END='# iot_care MQTT end'
# The block's lines in rabbitmq.conf, matched on their start so that a block of an earlier
# wording is replaced too.
readonly BLOCK_LINES='/^# iot_care MQTT begin/,/^# iot_care MQTT end$/'
# A node boots in a few seconds; a busy machine takes longer.
readonly BOOT_TIMEOUT_SECONDS=120

log() { printf '\033[1m[mqtt]\033[0m %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

# A RabbitMQ program on the broker's node.
rabbitmq() {
    local program=$1
    shift
    if [[ -n ${RABBITMQ_CLI:-} ]]; then
        # Word splitting is the point: the setting is a command and its first arguments.
        # shellcheck disable=SC2086
        $RABBITMQ_CLI "$program" "$@"
    else
        "/usr/sbin/$program" "$@"
    fi
}

is_local_broker() {
    case ${RABBITMQ_HOST:-127.0.0.1} in 127.0.0.1 | localhost) return 0 ;; *) return 1 ;; esac
}

block() {
    local port=$1 web_host=127.0.0.1
    # A remote broker reaches this web tier by an address only its operators know.
    is_local_broker || web_host="<this web host>"
    local auth_base="${BROKER_AUTH_WEB_URL:-http://$web_host:${WEB_PORT:-8000}}/internal/broker-auth/$BROKER_AUTH_SECRET"
    # Internal users first: the product's own AMQP user never reaches the web tier.
    cat <<EOF
$BLOCK_BEGIN
auth_backends.1 = internal
auth_backends.2 = http
auth_http.http_method = post
auth_http.user_path = $auth_base/user
auth_http.vhost_path = $auth_base/vhost
auth_http.resource_path = $auth_base/resource
auth_http.topic_path = $auth_base/topic
mqtt.listeners.tcp.1 = 0.0.0.0:$port
mqtt.allow_anonymous = false
mqtt.vhost = ${MQTT_VHOST:-/}
mqtt.exchange = amq.topic
$BLOCK_END
EOF
}

current_block() { sed -n "${BLOCK_LINES}p" "$CONFIG_FILE" 2>/dev/null || true; }

# The program listening on a TCP port, on any address ("mosquitto (pid 2960)"), or nothing.
port_holder() {
    local port=$1 line
    if ! command -v ss >/dev/null; then
        # Without iproute2's ss: a listener on loopback at least, its program unnamed.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "another program"; fi
        return 0
    fi
    line=$(ss -ltnpH "( sport = :$port )" 2>/dev/null | head -n 1)
    [[ -n $line ]] || return 0
    if [[ $line =~ users:\(\(\"([^\"]+)\",pid=([0-9]+) ]]; then
        echo "${BASH_REMATCH[1]} (pid ${BASH_REMATCH[2]})"
    else
        echo "another program"
    fi
}

broker_listens_on() { rabbitmq rabbitmq-diagnostics -q check_port_listener "$1" >/dev/null 2>&1; }

# Free for the broker's MQTT listener: nothing holds it, or the broker itself does.
port_usable() { [[ -z $(port_holder "$1") ]] || broker_listens_on "$1"; }

choose_port() {
    if [[ -n ${MQTT_PORT:-} ]]; then
        echo "$MQTT_PORT"
        return
    fi
    is_local_broker || {
        echo "$DEFAULT_MQTT_PORT"
        return
    }
    port_usable "$DEFAULT_MQTT_PORT" && {
        echo "$DEFAULT_MQTT_PORT"
        return
    }
    local port
    for port in "${FALLBACK_PORTS[@]}"; do
        if port_usable "$port"; then
            log "port $DEFAULT_MQTT_PORT is held by $(port_holder "$DEFAULT_MQTT_PORT"): MQTT listens on $port instead"
            echo "$port"
            return
        fi
    done
    die "ports $DEFAULT_MQTT_PORT and ${FALLBACK_PORTS[*]} are all held by other programs: set MQTT_PORT to a free port"
}

wait_for_broker() {
    local deadline=$((SECONDS + BOOT_TIMEOUT_SECONDS))
    until rabbitmq rabbitmq-diagnostics -q check_running >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "RabbitMQ did not come back within ${BOOT_TIMEOUT_SECONDS} s; see its log"
        sleep 1
    done
}

restart_broker() {
    if [[ -z ${RABBITMQ_CLI:-} ]] && command -v systemctl >/dev/null &&
        systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
        systemctl restart rabbitmq-server
    else
        # `shutdown` returns once the node's VM has exited, so the new one can take its name.
        rabbitmq rabbitmqctl -q shutdown >/dev/null
        # The detached VM must not hold this script's stdout: `$(… configure)` would wait on it.
        rabbitmq rabbitmq-server -detached </dev/null >/dev/null 2>&1
    fi
    wait_for_broker
}

configure() {
    [[ -n ${BROKER_AUTH_SECRET:-} ]] || die "BROKER_AUTH_SECRET is empty: the broker's auth URLs need it"
    if is_local_broker; then
        # Asked first: the port is chosen by asking the broker which ports it holds.
        [[ $(id -u) -eq 0 ]] || die "run as root: the local broker's files and node belong to root and rabbitmq"
        rabbitmq rabbitmq-diagnostics -q check_running >/dev/null 2>&1 ||
            die "the local RabbitMQ is not running (RABBITMQ_CLI=${RABBITMQ_CLI:-the installed programs})"
    fi
    local port
    port=$(choose_port)
    local wanted
    wanted=$(block "$port")
    if ! is_local_broker; then
        log "the broker ($RABBITMQ_HOST) is remote: give it the plugins ${PLUGINS[*]} and these rabbitmq.conf lines:"
        printf '%s\n' "$wanted" >&2
        echo "$port"
        return
    fi

    local plugins_before block_changed=false
    plugins_before=$(cat "$PLUGINS_FILE" 2>/dev/null || true)
    [[ $(current_block) == "$wanted" ]] || block_changed=true
    local missing_plugins=()
    for plugin in "${PLUGINS[@]}"; do
        grep -qw "$plugin" <<<"$plugins_before" || missing_plugins+=("$plugin")
    done

    if $block_changed || ((${#missing_plugins[@]} > 0)); then
        # Checked before anything is written: the broker would not boot with a listener
        # it cannot bind, and it is left as it was.
        if ! port_usable "$port"; then
            die "port $port is held by $(port_holder "$port"), so RabbitMQ's MQTT listener cannot take it; nothing was changed. Set MQTT_PORT to a free port in .env, or MQTT_ENABLED=false."
        fi
        if $block_changed; then
            log "writing the auth and listener settings to $CONFIG_FILE"
            local others
            others=$(sed "${BLOCK_LINES}d" "$CONFIG_FILE" 2>/dev/null || true)
            # Rewritten in place (not replaced), so the file keeps its owner and mode.
            { [[ -z $others ]] || printf '%s\n' "$others"; printf '%s\n' "$wanted"; } >"$CONFIG_FILE"
        fi
        if ((${#missing_plugins[@]} > 0)); then
            log "enabling ${missing_plugins[*]}"
            rabbitmq rabbitmq-plugins -q enable --offline "${PLUGINS[@]}" >/dev/null
        fi
        # rabbitmq.conf is read at boot only, and the plugins were enabled offline (online,
        # rabbitmq_mqtt would start at once on its default port, 1883).
        log "restarting the local RabbitMQ to apply them"
        restart_broker
    fi
    if ! broker_listens_on "$port"; then
        local holder
        holder=$(port_holder "$port")
        die "RabbitMQ does not listen for MQTT on port $port${holder:+ (held by $holder)}; see its log"
    fi
    log "RabbitMQ listens for MQTT on port $port"
    echo "$port"
}

case ${1:-} in
    configure) configure ;;
    block)
        [[ -n ${BROKER_AUTH_SECRET:-} ]] || die "BROKER_AUTH_SECRET is empty"
        block "${MQTT_PORT:-$DEFAULT_MQTT_PORT}"
        ;;
    *)
        sed -n '4,/^#$/p' "$0" | sed -e '/^#$/d' -e 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
