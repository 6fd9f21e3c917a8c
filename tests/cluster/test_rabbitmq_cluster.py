"""The local 3-node cluster (deploy/cluster/rabbitmq.sh) forms, keeps a quorum queue
serving through a node crash or a stopped node, and lets the crashed node rejoin.

Each test leaves all three nodes running, whatever it did to them, so the order of the
tests does not matter. Timings are printed (``-s`` shows them)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pika
import pytest

from tests.broker import queued_messages
from tests.rabbitmq_cluster import NODES, SCRIPT, RabbitCluster

pytestmark = pytest.mark.timeout(600)

# A quorum queue elects a new leader within a few seconds of losing the old one; a killed
# node boots and rejoins in well under a minute even on a busy machine.
ELECTION_TIMEOUT_SECONDS = 30
REJOIN_TIMEOUT_SECONDS = 120


def _declare_quorum_queue(cluster: RabbitCluster, name: str, via_node: int) -> None:
    connection = cluster.connection(via_node)
    try:
        connection.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        connection.close()


def _publish_confirmed(cluster: RabbitCluster, queue: str, via_node: int, body: bytes) -> None:
    """Publish with publisher confirms: returns only once the queue's majority has it."""
    connection = cluster.connection(via_node)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            "",
            queue,
            body,
            pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
            mandatory=True,
        )
    finally:
        connection.close()


def _take_all(cluster: RabbitCluster, queue: str, via_node: int) -> list[bytes]:
    return [body for _properties, body in queued_messages(queue, connection=cluster.connection(via_node))]


def _ensure_all_nodes_running(cluster: RabbitCluster) -> None:
    """Undo whatever a test did to a node (the next test expects three running nodes)."""
    down = set(NODES) - cluster.running_nodes()
    for node in sorted(down):
        cluster.restart(node)


@pytest.fixture
def quorum_queue(rabbitmq_cluster):
    """A quorum queue of this test's own, with a replica on every node; deleted after."""
    name = f"test-cluster-{uuid.uuid4().hex[:12]}"
    _declare_quorum_queue(rabbitmq_cluster, name, via_node=1)
    rabbitmq_cluster.wait_until(lambda: rabbitmq_cluster.queue_online_members(name) == {1, 2, 3}, timeout=30)
    yield name
    _ensure_all_nodes_running(rabbitmq_cluster)
    connection = rabbitmq_cluster.connection(1)
    try:
        connection.channel().queue_delete(name)
    finally:
        connection.close()


def test_three_nodes_form_one_cluster(rabbitmq_cluster):
    status = rabbitmq_cluster.status()
    running_section = status.split("Running Nodes", 1)[1].split("Versions", 1)[0]
    for node in NODES:
        assert rabbitmq_cluster.node_name(node) in running_section
    assert rabbitmq_cluster.running_nodes() == {1, 2, 3}

    env = rabbitmq_cluster.run_script("env").stdout.splitlines()
    assert f"RABBITMQ_HOSTS={rabbitmq_cluster.hosts}" in env
    assert f"RABBITMQ_MANAGEMENT_URL={rabbitmq_cluster.management_url}" in env


def test_quorum_queue_has_a_member_on_every_node(rabbitmq_cluster, quorum_queue):
    assert rabbitmq_cluster.queue_members(quorum_queue) == {1, 2, 3}
    assert rabbitmq_cluster.queue_online_members(quorum_queue) == {1, 2, 3}
    assert rabbitmq_cluster.queue_leader(quorum_queue) in NODES


def test_killed_leader_is_replaced_and_rejoins_on_restart(rabbitmq_cluster, quorum_queue):
    cluster = rabbitmq_cluster
    old_leader = cluster.queue_leader(quorum_queue)
    survivors = set(NODES) - {old_leader}

    kill_issued = time.monotonic()
    cluster.kill(old_leader)  # returns once the VM is gone
    killed = time.monotonic()
    new_leader = cluster.wait_until(
        lambda: (leader := cluster.queue_leader(quorum_queue)) in survivors and leader,
        timeout=ELECTION_TIMEOUT_SECONDS,
    )
    print(
        f"\nnew leader seen {time.monotonic() - killed:.1f} s after the VM was gone"
        f" ({killed - kill_issued:.1f} s for the kill command itself)"
    )
    assert cluster.queue_members(quorum_queue) == {1, 2, 3}, "a crash does not remove a member"
    assert cluster.queue_online_members(quorum_queue) == survivors

    publish_node = min(survivors - {new_leader})  # through a node that is not the leader
    _publish_confirmed(cluster, quorum_queue, via_node=publish_node, body=b"while-one-is-down")

    restart_started = time.monotonic()
    cluster.restart(old_leader)
    print(f"node restart until running and clustered: {time.monotonic() - restart_started:.1f} s")
    cluster.wait_until(
        lambda: cluster.queue_online_members(quorum_queue) == {1, 2, 3},
        timeout=REJOIN_TIMEOUT_SECONDS,
    )
    print(f"restart until 3 online members: {time.monotonic() - restart_started:.1f} s")
    assert cluster.running_nodes() == {1, 2, 3}
    # The message confirmed while a node was down is there, read through the restarted node.
    assert _take_all(cluster, quorum_queue, via_node=old_leader) == [b"while-one-is-down"]


def test_two_nodes_serve_while_one_app_is_stopped(rabbitmq_cluster, quorum_queue):
    cluster = rabbitmq_cluster
    cluster.stop_app(3)
    try:
        assert cluster.running_nodes() == {1, 2}
        _publish_confirmed(cluster, quorum_queue, via_node=1, body=b"node-3-app-stopped")
        assert _take_all(cluster, quorum_queue, via_node=2) == [b"node-3-app-stopped"]
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            cluster.connection(3).close()  # its listener went with its app
    finally:
        cluster.start_app(3)
    cluster.wait_until(lambda: cluster.queue_online_members(quorum_queue) == {1, 2, 3}, 60)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["kill", "4"], "unknown node '4': the cluster has nodes 1, 2 and 3"),
        (["start", "0"], "unknown node '0'"),
        (["stop_app"], "needs a node number"),
        (["failover"], "unknown subcommand 'failover'"),
        (["stop", "--everything"], "unknown option '--everything'"),
    ],
)
def test_script_refuses_unknown_nodes_and_subcommands(rabbitmq_cluster, arguments, message):
    result = rabbitmq_cluster.run_script(*arguments, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    # Refused before touching anything: the cluster is whole.
    assert rabbitmq_cluster.running_nodes() == {1, 2, 3}


def test_script_without_a_subcommand_prints_its_usage():
    result = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "start NODE" in result.stderr


def test_a_node_whose_vm_appears_only_after_the_launcher_returned_is_waited_for():
    """`rabbitmq-server -detached` returns before its VM exists; on a loaded machine the VM
    can take seconds to appear. That is a slow boot, not a crash (a crash is a VM that was
    seen and is gone, or none at all for IOT_CARE_RMQ_VM_APPEAR_SECONDS)."""
    real = Path("/usr/lib/rabbitmq/bin")
    # Under /tmp: the nodes run as the rabbitmq user, who cannot read root's pytest dirs.
    slow_bin = Path(tempfile.mkdtemp(prefix="iotcare-slow-launcher-", dir="/tmp"))
    slow_bin.chmod(0o755)
    for program in real.iterdir():
        (slow_bin / program.name).symlink_to(program)
    launcher = slow_bin / "rabbitmq-server"
    launcher.unlink()
    launcher.write_text(f'#!/bin/sh\n( sleep 3; exec {real}/rabbitmq-server "$@" ) &\n')
    launcher.chmod(0o755)
    node = RabbitCluster.for_this_run(size=1, script_settings={"IOT_CARE_RMQ_BIN": str(slow_bin)})
    try:
        started = time.monotonic()
        node.start()
        assert time.monotonic() - started >= 3
        node.connection(1).close()
    finally:
        try:
            node.stop()
        finally:
            shutil.rmtree(slow_bin)
