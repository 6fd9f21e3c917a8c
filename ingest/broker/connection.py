"""Connections to RabbitMQ, built from settings: one node or a cluster's list of nodes.

``RABBITMQ_HOSTS`` (``host:port,host:port,…``) names the nodes of a cluster; without it,
``RABBITMQ_HOST``/``RABBITMQ_PORT`` name the one broker. Every process that talks to the
broker (the publisher of the web tier and the scheduler, the worker, the dead-letter
recorder, the console's monitoring) connects through here, so all of them fail over the
same way:

* nodes are tried in the listed order, starting from the node this process last reached
  (the list's order is a preference: give each host a different first node to spread
  connections);
* a node that refuses or drops a connection is moved past: the next attempt starts from
  the node after it, so a process never waits on a dead node while a live one is listed;
* a process that reached none of them waits before the next round (``Backoff``) instead
  of hammering a cluster that is down.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import pika
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class BrokerUnavailable(Exception):
    """The broker could not be reached or did not confirm a message."""


@dataclass(frozen=True)
class BrokerNode:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _node_parse(entry: str, default_port: int) -> BrokerNode:
    """``host``, ``host:port`` or ``[ipv6]:port``."""
    text = entry.strip()
    host, port = text, str(default_port)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ImproperlyConfigured(f"RABBITMQ_HOSTS: {entry!r} is not host:port")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(f"RABBITMQ_HOSTS: {entry!r} is not host:port with a port from 1 to 65535")
    return BrokerNode(host, int(port))


def broker_nodes() -> tuple[BrokerNode, ...]:
    """The configured nodes, in preference order (read from settings on every call: tests change them)."""
    hosts = settings.RABBITMQ_HOSTS
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    entries = [entry for entry in hosts if entry.strip()]
    if not entries:
        return (BrokerNode(settings.RABBITMQ_HOST, int(settings.RABBITMQ_PORT)),)
    return tuple(dict.fromkeys(_node_parse(entry, int(settings.RABBITMQ_PORT)) for entry in entries))


class NodeRotation:
    """Which node a process tries first: the one it last reached, else the one after a failed one.

    Shared by every connection of the process (thread-safe); a forked child inherits the
    preference, which is harmless (it is only an order).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first: BrokerNode | None = None

    def ordered(self) -> list[BrokerNode]:
        nodes = list(broker_nodes())
        with self._lock:
            first = self._first
        if first in nodes:
            start = nodes.index(first)
            nodes = nodes[start:] + nodes[:start]
        return nodes

    def reached(self, node: BrokerNode) -> None:
        with self._lock:
            self._first = node

    def failed(self, node: BrokerNode) -> None:
        """Start the next attempt past ``node`` (unless another thread already moved on)."""
        nodes = list(broker_nodes())
        with self._lock:
            if node in nodes and self._first in (None, node):
                self._first = nodes[(nodes.index(node) + 1) % len(nodes)]


node_rotation = NodeRotation()


@dataclass
class Backoff:
    """Capped exponential backoff: 0.5 s, 1 s, 2 s ... up to ``cap``."""

    initial: float = 0.5
    cap: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.initial * (2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def connection_parameters(
    node: BrokerNode | None = None, *, heartbeat: int | None = None, role: str = "client"
) -> pika.ConnectionParameters:
    """Parameters for one node (the first in the rotation unless given)."""
    node = node or node_rotation.ordered()[0]
    timeout = settings.RABBITMQ_PUBLISH_TIMEOUT_SECONDS
    return pika.ConnectionParameters(
        host=node.host,
        port=node.port,
        virtual_host=settings.RABBITMQ_VHOST,
        credentials=pika.PlainCredentials(settings.RABBITMQ_USER, settings.RABBITMQ_PASSWORD),
        connection_attempts=1,
        socket_timeout=timeout,
        stack_timeout=timeout,
        # A broker under a memory or disk alarm blocks publishers: give up instead of hanging.
        blocked_connection_timeout=timeout,
        heartbeat=heartbeat,
        # Shown by RabbitMQ (rabbitmqctl list_connections name): which process holds what.
        client_properties={"connection_name": f"iot_care {role} pid={os.getpid()}"},
    )


def open_connection(*, heartbeat: int | None = None, role: str = "client") -> pika.BlockingConnection:
    """A blocking connection to the first node of the rotation that answers.

    pika tries the nodes in order, once each, without pausing between them; when none
    answers it raises ``AMQPConnectionError`` and the caller's own backoff applies.
    """
    nodes = node_rotation.ordered()
    try:
        connection = pika.BlockingConnection(
            [connection_parameters(node, heartbeat=heartbeat, role=role) for node in nodes]
        )
    except Exception:
        node_rotation.failed(nodes[0])
        raise
    node_rotation.reached(connection_node(connection))
    return connection


def connection_node(connection: pika.BlockingConnection) -> BrokerNode:
    """The node a blocking connection is open to: the parameters pika connected with."""
    params = connection._impl.params
    return BrokerNode(params.host, params.port)
