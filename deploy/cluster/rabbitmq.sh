#!/usr/bin/env bash
# A local 3-node RabbitMQ cluster on this one machine, for failover tests and demos.
#
# Usage (as root; the nodes themselves run as the `rabbitmq` user):
#   deploy/cluster/rabbitmq.sh start            start the 3 nodes and cluster them (idempotent)
#   deploy/cluster/rabbitmq.sh start NODE       start one stopped or killed node; it rejoins
#   deploy/cluster/rabbitmq.sh stop             stop every node, keeping the data (start resumes it)
#   deploy/cluster/rabbitmq.sh stop --purge     kill every node and remove the data (= clean)
#   deploy/cluster/rabbitmq.sh clean            kill every node and remove the data
#   deploy/cluster/rabbitmq.sh kill NODE        kill -9 one node's Erlang VM (a crash)
#   deploy/cluster/rabbitmq.sh stop_app NODE    rabbitmqctl stop_app on one node (VM stays up)
#   deploy/cluster/rabbitmq.sh start_app NODE   rabbitmqctl start_app on one node
#   deploy/cluster/rabbitmq.sh status           which nodes run, and the cluster status
#   deploy/cluster/rabbitmq.sh run NODE PROGRAM [ARGS]  a RabbitMQ program (rabbitmqctl,
#       rabbitmq-plugins, rabbitmq-diagnostics, rabbitmq-server) with that node's
#       environment, e.g. for deploy/rabbitmq_mqtt.sh's RABBITMQ_CLI
#   deploy/cluster/rabbitmq.sh env              the settings a client needs, e.g.
#       RABBITMQ_HOSTS=127.0.0.1:5701,127.0.0.1:5702,127.0.0.1:5703
#       RABBITMQ_MANAGEMENT_URL=http://127.0.0.1:15701,http://127.0.0.1:15702,http://127.0.0.1:15703
#   NODE is 1, 2 or 3. `export $(deploy/cluster/rabbitmq.sh env)` points a shell at the cluster.
#
# Settings (environment variables, with their defaults):
#   IOT_CARE_RMQ_CLUSTER_DIR=/tmp/iot-care-rabbitmq-cluster  configs, data, logs, pid files
#   IOT_CARE_RMQ_CLUSTER_NAME=iotcare-rmq                    node names: <name>-1@localhost ...
#   IOT_CARE_RMQ_CLUSTER_BASE_PORT=5701                      AMQP 5701-5703, management
#       15701-15703 (base + 10000), Erlang distribution 25701-25703 (base + 20000), CLI
#       distribution 35701-35710 (base + 30000)
#   IOT_CARE_RMQ_CLUSTER_SIZE=3                 nodes (1 to 3); 1 is a lone node, no clustering
#   IOT_CARE_RMQ_PLUGINS=rabbitmq_management    plugins every node enables (space-separated)
#   IOT_CARE_RMQ_EXTRA_CONFIG=                  a file whose lines are appended to every node's
#       rabbitmq.conf (e.g. the MQTT listener and the HTTP auth backend of the MQTT tests)
#   IOT_CARE_RMQ_BIN=/usr/lib/rabbitmq/bin      where rabbitmq-server, rabbitmqctl ... are
#   IOT_CARE_RMQ_VM_APPEAR_SECONDS=15           how long a VM may take to appear after
#       `rabbitmq-server -detached` returned before the node counts as crashed
# Several clusters (parallel test runs) coexist when each has its own dir, name and base port.
# Users are the broker defaults (guest/guest, which RabbitMQ allows from loopback only).
#
# Why it looks like this on this machine: the machine's own broker (rabbit@localhost,
# 127.0.0.1:5672/15672) takes its settings from /etc/rabbitmq, so every node here gets its
# own config file, plugins file, env file, node name, data/log dirs and ports, all loopback
# only, and shares only epmd (port 4369) with it. The 3 nodes and every CLI call share one
# Erlang cookie kept in this cluster's own HOME (<dir>/home/.erlang.cookie), never the
# machine broker's cookie in /var/lib/rabbitmq.
#
# On real hosts (one node per host) the same design changes as follows:
#   - each host runs one node under systemd with the stock paths and ports (5672, 15672,
#     25672); the node name is rabbit@<hostname>, and the listeners bind the private
#     interface instead of 127.0.0.1;
#   - all hosts get the same Erlang cookie (/var/lib/rabbitmq/.erlang.cookie, mode 400,
#     owned by rabbitmq), distributed by configuration management, never generated per host;
#   - the cluster forms at first boot from rabbitmq.conf instead of join_cluster:
#         cluster_formation.peer_discovery_backend = classic_config
#         cluster_formation.classic_config.nodes.1 = rabbit@mq1
#         cluster_formation.classic_config.nodes.2 = rabbit@mq2
#         cluster_formation.classic_config.nodes.3 = rabbit@mq3
#         cluster_partition_handling = pause_minority
#   - the memory watermark is relative (the default 0.4 of RAM) and disk_free_limit is at
#     least the RAM size, instead of the small absolute figures used here;
#   - the firewall opens 4369 (epmd), 25672 (distribution) between the nodes, and 5672 /
#     15672 to the clients.
set -euo pipefail

readonly CLUSTER_DIR="${IOT_CARE_RMQ_CLUSTER_DIR:-/tmp/iot-care-rabbitmq-cluster}"
readonly CLUSTER_NAME="${IOT_CARE_RMQ_CLUSTER_NAME:-iotcare-rmq}"
readonly BASE_PORT="${IOT_CARE_RMQ_CLUSTER_BASE_PORT:-5701}"
readonly CLUSTER_SIZE="${IOT_CARE_RMQ_CLUSTER_SIZE:-3}"
[[ $CLUSTER_SIZE =~ ^[1-3]$ ]] || {
    echo "rabbitmq.sh: IOT_CARE_RMQ_CLUSTER_SIZE must be 1, 2 or 3" >&2
    exit 2
}
readonly PLUGINS="${IOT_CARE_RMQ_PLUGINS:-rabbitmq_management}"
readonly EXTRA_CONFIG="${IOT_CARE_RMQ_EXTRA_CONFIG:-}"
NODES=()
for ((number = 1; number <= CLUSTER_SIZE; number++)); do NODES+=("$number"); done
readonly NODES
# Where the RabbitMQ programs are (the Debian package's place unless told otherwise).
readonly RABBITMQ_BIN=${IOT_CARE_RMQ_BIN:-/usr/lib/rabbitmq/bin}
# A node boots in a few seconds; a cluster member waiting for its peers' tables takes longer.
readonly BOOT_TIMEOUT_SECONDS=120
# How long `rabbitmq-server -detached` may take to leave a running VM behind (wait_booted).
readonly VM_APPEAR_SECONDS=${IOT_CARE_RMQ_VM_APPEAR_SECONDS:-15}
# Written by a clean `stop`: the data is a consistent cluster that `start` may resume.
readonly CLEAN_STOP_MARKER="$CLUSTER_DIR/stopped-cleanly"

die() {
    echo "rabbitmq.sh: $*" >&2
    exit 2
}

log() {
    echo "rabbitmq.sh: $*" >&2
}

usage() {
    # The usage block at the top of this file: from "Usage" to the next empty comment line.
    sed -n '4,/^#$/p' "$0" | sed -e '/^#$/d' -e 's/^# \{0,1\}//' >&2
}

node_name() { echo "$CLUSTER_NAME-$1@localhost"; }
amqp_port() { echo $((BASE_PORT + $1 - 1)); }
management_port() { echo $((BASE_PORT + 10000 + $1 - 1)); }
distribution_port() { echo $((BASE_PORT + 20000 + $1 - 1)); }
node_dir() { echo "$CLUSTER_DIR/node$1"; }
pid_file() { echo "$(node_dir "$1")/rabbitmq.pid"; }

# The nodes in words: "1, 2 and 3", "1 and 2", "1".
nodes_in_words() {
    case $CLUSTER_SIZE in
        1) echo "node 1" ;;
        2) echo "nodes 1 and 2" ;;
        *) echo "nodes 1, 2 and 3" ;;
    esac
}

require_node() {
    [[ -n ${1:-} ]] || die "this subcommand needs a node number ($(nodes_in_words))"
    [[ $1 =~ ^[1-3]$ && $1 -le $CLUSTER_SIZE ]] ||
        die "unknown node '$1': the cluster has $(nodes_in_words)"
}

require_root() {
    # The nodes must run as `rabbitmq` (the Debian package's files belong to it) and the
    # data dirs must belong to it, which only root can arrange.
    [[ $(id -u) -eq 0 ]] || die "run as root (the nodes themselves run as the rabbitmq user)"
}

ensure_rabbitmq_installed() {
    if [[ ! -x $RABBITMQ_BIN/rabbitmq-server ]]; then
        log "installing rabbitmq-server (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >&2
    fi
}

# Runs a RabbitMQ program as the rabbitmq user with node N's environment. The programs in
# /usr/sbin are wrappers that `su` to rabbitmq and drop the environment, so the real ones in
# /usr/lib/rabbitmq/bin are called directly.
as_node() {
    local node=$1 program=$2
    shift 2
    local dir
    dir=$(node_dir "$node")
    (
        cd "$CLUSTER_DIR"
        runuser -u rabbitmq -- env \
            HOME="$CLUSTER_DIR/home" \
            RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
            RABBITMQ_NODENAME="$(node_name "$node")" \
            RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
            RABBITMQ_MNESIA_BASE="$dir/mnesia" \
            RABBITMQ_LOG_BASE="$dir/log" \
            RABBITMQ_PID_FILE="$(pid_file "$node")" \
            RABBITMQ_DIST_PORT="$(distribution_port "$node")" \
            RABBITMQ_CTL_DIST_PORT_MIN=$((BASE_PORT + 30000)) \
            RABBITMQ_CTL_DIST_PORT_MAX=$((BASE_PORT + 30009)) \
            ERL_EPMD_ADDRESS=127.0.0.1 \
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-iot_care_rmq_node $(node_name "$node")" \
            "$RABBITMQ_BIN/$program" "$@"
    )
}

ctl() {
    local node=$1
    shift
    as_node "$node" rabbitmqctl -n "$(node_name "$node")" "$@"
}

write_node_files() {
    local node=$1 dir
    dir=$(node_dir "$node")
    mkdir -p "$dir/mnesia" "$dir/log"
    # The management UI/API by default: the tests read queue leaders and members from it.
    echo "[$(echo "$PLUGINS" | xargs | sed 's/ /,/g')]." >"$dir/enabled_plugins"
    # An env file of our own, so the machine broker's /etc/rabbitmq/rabbitmq-env.conf
    # (which names its node rabbit@localhost) is never read by these nodes.
    cat >"$dir/rabbitmq-env.conf" <<EOF
# Node $node of the local test cluster; the real settings come from rabbitmq.sh's environment.
EOF
    cat >"$dir/rabbitmq.conf" <<EOF
# Node $node of the local test cluster (written by deploy/cluster/rabbitmq.sh; edits are lost).
listeners.tcp.1 = 127.0.0.1:$(amqp_port "$node")
management.tcp.ip = 127.0.0.1
management.tcp.port = $(management_port "$node")
distribution.listener.interface = 127.0.0.1
distribution.listener.port_range.min = $(distribution_port "$node")
distribution.listener.port_range.max = $(distribution_port "$node")
# Three nodes share one small machine with its own broker: keep each modest.
vm_memory_high_watermark.absolute = 512MB
disk_free_limit.absolute = 50MB
# A node cut off from the other two stops serving instead of diverging (quorum semantics).
cluster_partition_handling = pause_minority
log.console = false
log.file.level = info
EOF
    if [[ -n $EXTRA_CONFIG ]]; then
        [[ -r $EXTRA_CONFIG ]] || die "IOT_CARE_RMQ_EXTRA_CONFIG: cannot read $EXTRA_CONFIG"
        cat "$EXTRA_CONFIG" >>"$dir/rabbitmq.conf"
    fi
    if [[ $node != 1 ]]; then
        # Nodes 2 and 3 join node 1 by themselves on their first boot (`start` boots them
        # once node 1 runs): faster than booting them alone, then stopping the app, joining
        # and starting the app again. `start` still joins by hand any node left outside.
        cat >>"$dir/rabbitmq.conf" <<EOF
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = $(node_name 1)
cluster_formation.discovery_retry_limit = 120
cluster_formation.discovery_retry_interval = 500
cluster_formation.randomized_startup_delay_range.min = 0
cluster_formation.randomized_startup_delay_range.max = 0
EOF
    fi
}

# The dir is chown'ed and may be removed: refuse one that holds anything but a cluster
# (a mistyped IOT_CARE_RMQ_CLUSTER_DIR=/tmp must not hand /tmp to rabbitmq).
require_cluster_dir() {
    [[ $CLUSTER_DIR == /?* && $CLUSTER_DIR != / ]] || die "IOT_CARE_RMQ_CLUSTER_DIR must be an absolute path below /"
    if [[ -d $CLUSTER_DIR && -n $(ls -A "$CLUSTER_DIR") && ! -d $CLUSTER_DIR/home ]]; then
        die "$CLUSTER_DIR is not empty and holds no cluster: choose another IOT_CARE_RMQ_CLUSTER_DIR"
    fi
}

write_cluster_files() {
    mkdir -p "$CLUSTER_DIR/home"
    chmod 755 "$CLUSTER_DIR"
    local cookie="$CLUSTER_DIR/home/.erlang.cookie"
    if [[ ! -s $cookie ]]; then
        # Erlang refuses a cookie file readable by others, hence mode 400.
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F' >"$cookie"
        chmod 400 "$cookie"
    fi
    for node in "${NODES[@]}"; do
        write_node_files "$node"
    done
    chown -R rabbitmq:rabbitmq "$CLUSTER_DIR"
}

# The pid of node N's Erlang VM if it runs, from its pid file; checked against the VM's
# command line so a recycled pid never gets a signal meant for the node.
node_pid() {
    local pid_path pid
    pid_path=$(pid_file "$1")
    [[ -s $pid_path ]] || return 1
    pid=$(tr -dc '0-9' <"$pid_path")
    [[ -n $pid ]] && is_our_vm "$pid" "$(node_name "$1")" && echo "$pid"
}

is_our_vm() {
    local pid=$1 name=$2
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$name"
}

# The Erlang VMs started for a node name, matched on the marker argument every node gets.
vm_pids_named() {
    pgrep -u rabbitmq -f -- "-iot_care_rmq_node $1( |\$)" || true
}

# Erlang VMs carrying node N's name that are not the one in its pid file: leftovers of a
# crashed run under the same name (its dir may be gone). A node name is unique on a host, so
# such a VM would stop this cluster's node from starting anyway; `start`, `stop` and `clean`
# kill it. Matched on the marker argument every node gets, never on "beam.smp" alone, so the
# machine broker is never touched.
stray_pids() {
    local name own pid
    name=$(node_name "$1")
    own=$(node_pid "$1" || true)
    for pid in $(vm_pids_named "$name"); do
        if [[ $pid != "$own" ]]; then echo "$pid"; fi
    done
}

is_running() { node_pid "$1" >/dev/null; }

kill_node_vm() {
    local node=$1 pid
    if pid=$(node_pid "$node"); then
        kill -9 "$pid"
        # The pid file stays, as after a real crash; wait until the VM is gone (or a zombie
        # waiting for init to reap it) so the caller can count on the node being down.
        while [[ -e /proc/$pid && $(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) != Z ]]; do
            sleep 0.1
        done
        log "node $node ($(node_name "$node"), pid $pid) killed"
    else
        log "node $node is not running"
    fi
}

kill_strays() {
    local node pid
    for node in "${NODES[@]}"; do
        for pid in $(stray_pids "$node"); do
            log "killing a stale VM of $(node_name "$node") (pid $pid) left by an earlier run"
            kill -9 "$pid" || true
        done
    done
}

boot_node() {
    local node=$1
    rm -f "$(pid_file "$node")"
    # -detached: the VM outlives this script. Its stdio goes to a file: a detached VM
    # holding the caller's pipes open would keep `$(rabbitmq.sh start)` or a test's
    # subprocess waiting for as long as the node lives.
    as_node "$node" rabbitmq-server -detached \
        </dev/null >>"$(node_dir "$node")/log/startup.log" 2>&1
}

wait_booted() {
    local node=$1 deadline=$((SECONDS + BOOT_TIMEOUT_SECONDS)) vm_seen=false
    local vm_due=$((SECONDS + VM_APPEAR_SECONDS))
    # The VM writes its pid file early in its boot. A VM that dies before that would leave
    # `rabbitmqctl wait` waiting for the file until its timeout, so watch the VM meanwhile.
    # `-detached` returns before the VM exists (the launcher scripts exec erl, which spawns
    # it; on a loaded machine that takes seconds): no VM yet is not a crash until one was
    # seen, or none came within VM_APPEAR_SECONDS.
    until [[ -s $(pid_file "$node") ]]; do
        if [[ -n $(vm_pids_named "$(node_name "$node")") ]]; then
            vm_seen=true
        elif $vm_seen || ((SECONDS >= vm_due)); then
            die "node $node crashed while booting; see $(node_dir "$node")/log"
        fi
        ((SECONDS < deadline)) || die "node $node did not start; see $(node_dir "$node")/log"
        sleep 0.2
    done
    # `wait` returns once the rabbit app has fully started (or fails if the VM dies).
    if ! ctl "$node" wait --timeout "$BOOT_TIMEOUT_SECONDS" "$(pid_file "$node")" >/dev/null; then
        die "node $node did not start; see $(node_dir "$node")/log"
    fi
}

# The cluster's nodes as NODE sees them (`all` members or the `running` ones), as the Erlang
# list `rabbitmqctl eval` prints, e.g. ['iotcare-rmq-1@localhost','iotcare-rmq-2@localhost'].
cluster_nodes_seen_by() {
    local node=$1 which=$2
    ctl "$node" eval "rabbit_mnesia:cluster_nodes($which)." 2>/dev/null
}

lists_node() {
    local erlang_list=$1 node=$2
    grep -qF "'$(node_name "$node")'" <<<"$erlang_list"
}

# Until every node in the arguments runs and is clustered, as seen from a running node.
wait_clustered() {
    local deadline=$((SECONDS + BOOT_TIMEOUT_SECONDS)) observer running node missing
    while true; do
        missing=()
        for observer in "${NODES[@]}"; do is_running "$observer" && break; done
        running=$(cluster_nodes_seen_by "$observer" running || true)
        for node in "$@"; do
            lists_node "$running" "$node" || missing+=("$node")
        done
        ((${#missing[@]} == 0)) && return 0
        ((SECONDS < deadline)) || die "node(s) ${missing[*]} did not (re)join the cluster"
        sleep 0.5
    done
}

# Runs `ctl NODE ARGS...` on several nodes at once; fails if any of them fails.
ctl_on_nodes_in_parallel() {
    local nodes=$1 node pids=() failed=0
    shift
    for node in $nodes; do
        ctl "$node" "$@" >/dev/null &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    return $failed
}

join_nodes() {
    local nodes=$1 node
    # stop_app spends about 5 s stopping the management statistics: done side by side.
    ctl_on_nodes_in_parallel "$nodes" stop_app
    # One join at a time: each changes the cluster's schema on node 1.
    for node in $nodes; do
        ctl "$node" join_cluster "$(node_name 1)" >/dev/null
        log "node $node joined $(node_name 1)"
    done
    ctl_on_nodes_in_parallel "$nodes" start_app
}

start_cluster() {
    kill_strays
    local node any_running=false
    for node in "${NODES[@]}"; do
        is_running "$node" && any_running=true
    done
    if ! $any_running && [[ -d $CLUSTER_DIR/node1 && ! -e $CLEAN_STOP_MARKER ]]; then
        # Nothing runs, and the data was not left by a clean stop: a crashed run's cluster
        # whose members may never have finished joining. Starting over is faster and
        # more predictable than resuming it.
        log "removing the data of a stale cluster in $CLUSTER_DIR"
        purge_data
    fi
    write_cluster_files
    local booting=() already_running=""
    for node in "${NODES[@]}"; do
        if is_running "$node"; then
            already_running+=" $node"
        else
            booting+=("$node")
        fi
    done
    # A running VM may have its app stopped (stop_app); start_app is a no-op otherwise.
    [[ -z $already_running ]] || ctl_on_nodes_in_parallel "$already_running" start_app
    if [[ ${booting[0]:-} == 1 && ! -d $(node_dir 1)/mnesia/$(node_name 1) ]]; then
        # A new cluster: node 1 finishes booting before 2 and 3 boot and join it. A node
        # that joins while node 1 still migrates its tables to the enabled feature flags
        # fails its schema check (table_attributes_mismatch on rabbit_user) and crashes.
        boot_node 1
        wait_booted 1
        booting=("${booting[@]:1}")
    fi
    # The rest side by side: members resuming after a stop wait for each other's tables,
    # and nodes 2 and 3 take turns joining node 1 (classic_config peer discovery locks).
    for node in "${booting[@]}"; do
        boot_node "$node"
    done
    for node in "${booting[@]}"; do
        wait_booted "$node"
    done
    local members not_joined=""
    members=$(cluster_nodes_seen_by 1 all)
    for node in "${NODES[@]:1}"; do
        lists_node "$members" "$node" || not_joined+=" $node"
    done
    [[ -z $not_joined ]] || join_nodes "$not_joined"
    wait_clustered "${NODES[@]}"
    rm -f "$CLEAN_STOP_MARKER"
    log "cluster running: ${#NODES[@]} node(s) from $(node_name 1)"
}

start_one_node() {
    local node=$1
    [[ -d $(node_dir "$node")/mnesia ]] || die "no cluster in $CLUSTER_DIR: run 'start' first"
    if is_running "$node"; then
        # The VM may be up with the app stopped (stop_app): starting the app is what is meant.
        ctl "$node" start_app >/dev/null
    else
        local other any_other_running=false
        for other in "${NODES[@]}"; do
            [[ $other != "$node" ]] && is_running "$other" && any_other_running=true
        done
        # Alone, a member waits minutes for peers that are not coming.
        $any_other_running || die "no other node runs: use 'start' to start the whole cluster"
        for pid in $(stray_pids "$node"); do kill -9 "$pid" || true; done
        write_node_files "$node"
        chown -R rabbitmq:rabbitmq "$(node_dir "$node")"
        # Still a member: on boot it syncs with the running members, no join needed.
        boot_node "$node"
        wait_booted "$node"
    fi
    wait_clustered "$node"
    log "node $node ($(node_name "$node")) running and clustered"
}

stop_cluster() {
    local node pid pids=()
    [[ -d $CLUSTER_DIR ]] || return 0
    # All nodes stop side by side (each spends ~5 s stopping its statistics collectors).
    # `start` boots them side by side too, so no node waits for a peer that stopped after it.
    for node in "${NODES[@]}"; do
        if pid=$(node_pid "$node"); then
            # `stop <pidfile>` returns only once the VM has exited.
            (ctl "$node" stop "$(pid_file "$node")" >/dev/null ||
                { log "node $node did not stop cleanly; killing it"; kill -9 "$pid" || true; }) &
            pids+=($!)
        fi
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    kill_strays
    touch "$CLEAN_STOP_MARKER"
    log "cluster stopped (data kept in $CLUSTER_DIR)"
}

# Stopping nodes whose data is about to be removed gains nothing: they are killed.
kill_cluster() {
    local node
    for node in "${NODES[@]}"; do
        is_running "$node" && kill_node_vm "$node"
    done
    kill_strays
}

purge_data() {
    require_cluster_dir
    if [[ -d $CLUSTER_DIR ]]; then
        rm -rf "$CLUSTER_DIR"
    fi
}

print_status() {
    local node pid state
    for node in "${NODES[@]}"; do
        if pid=$(node_pid "$node"); then state="running (pid $pid)"; else state="stopped"; fi
        printf 'node %s  %-28s amqp 127.0.0.1:%s  management :%s  %s\n' "$node" \
            "$(node_name "$node")" "$(amqp_port "$node")" "$(management_port "$node")" "$state"
    done
    for node in "${NODES[@]}"; do
        if is_running "$node"; then
            ctl "$node" cluster_status
            return 0
        fi
    done
    echo "no node is running"
}

print_env() {
    local hosts=() urls=() node
    for node in "${NODES[@]}"; do
        hosts+=("127.0.0.1:$(amqp_port "$node")")
        urls+=("http://127.0.0.1:$(management_port "$node")")
    done
    (
        IFS=,
        echo "RABBITMQ_HOSTS=${hosts[*]}"
        echo "RABBITMQ_MANAGEMENT_URL=${urls[*]}"
    )
    echo "RABBITMQ_USER=guest"
    echo "RABBITMQ_PASSWORD=guest"
    echo "RABBITMQ_VHOST=/"
}

main() {
    local command=${1:-}
    shift || true
    case "$command" in
        start)
            require_root
            require_cluster_dir
            ensure_rabbitmq_installed
            if [[ $# -eq 0 ]]; then
                start_cluster
            else
                require_node "$1"
                start_one_node "$1"
            fi
            ;;
        stop)
            require_root
            require_cluster_dir
            case "${1:-}" in
                "") stop_cluster ;;
                --purge) kill_cluster && purge_data ;;
                *) die "unknown option '$1' for stop (only --purge)" ;;
            esac
            ;;
        clean)
            require_root
            require_cluster_dir
            kill_cluster
            purge_data
            ;;
        kill)
            require_root
            require_node "${1:-}"
            kill_node_vm "$1"
            ;;
        stop_app | start_app)
            require_root
            require_node "${1:-}"
            is_running "$1" || die "node $1 is not running"
            ctl "$1" "$command" >/dev/null
            log "node $1: $command done"
            ;;
        status)
            require_root
            print_status
            ;;
        run)
            require_root
            require_node "${1:-}"
            [[ -n ${2:-} ]] || die "run needs a program (rabbitmqctl, rabbitmq-plugins, ...)"
            as_node "$@"
            ;;
        env) print_env ;;
        "" | -h | --help | help)
            usage
            [[ -n $command ]] || exit 2
            ;;
        *)
            usage
            die "unknown subcommand '$command'"
            ;;
    esac
}

main "$@"
