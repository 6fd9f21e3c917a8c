"""Helpers for tests that look at what really is on this run's queues."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pika
from django.conf import settings
from django.utils import timezone

from ingest.broker.connection import open_connection
from ingest.broker.monitoring import management_urls
from ingest.broker.publisher import OutgoingMessage, get_publisher
from ingest.messages import DEVICE_BATCH, DeviceBatch


def queued_messages(queue: str, connection: pika.BlockingConnection | None = None) -> list[tuple]:
    """Take every message off the queue: ``[(properties, body), ...]``.

    Through ``connection`` when given (a node of a test cluster), which is closed after.
    """
    connection = connection or open_connection()
    try:
        channel = connection.channel()
        messages = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages.append((properties, body))
    finally:
        connection.close()


def queue_depth(queue: str) -> int:
    connection = open_connection()
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def queue_consumers(queue: str) -> int:
    connection = open_connection()
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    finally:
        connection.close()


def publish_raw(body: bytes, message_id: str | None = None) -> str:
    """Publish a body as it is (with confirms) to this run's main queue; return its id."""
    message_id = message_id or str(uuid.uuid4())
    get_publisher().publish(OutgoingMessage(message_id, body, DEVICE_BATCH))
    return message_id


def publish_device_batch(
    *, device_id: int, readings: list[dict] = (), events: list[dict] = (), message_id=None
) -> DeviceBatch:
    """Publish a device batch straight to the queue, as the API would after validation."""
    batch = DeviceBatch(
        message_id=message_id or uuid.uuid4(),
        device_id=device_id,
        accepted_at=timezone.now(),
        readings=list(readings),
        events=list(events),
    )
    publish_raw(batch.to_body(), str(batch.message_id))
    return batch


def _management_request(method: str, path: str, body: dict | None = None) -> dict | None:
    """A call to RabbitMQ's management API (the HTTP API at ``RABBITMQ_MANAGEMENT_URL``)."""
    base = ([*management_urls(), "http://127.0.0.1:15672"])[0]
    request = urllib.request.Request(
        f"{base}/api/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic "
            + base64.b64encode(f"{settings.RABBITMQ_USER}:{settings.RABBITMQ_PASSWORD}".encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def management_api_available() -> bool:
    try:
        _management_request("GET", "overview")
    except (OSError, ValueError):
        return False
    return True


def _effective_policy(queue: str) -> dict:
    vhost = quote(settings.RABBITMQ_VHOST, safe="")
    return (
        _management_request("GET", f"queues/{vhost}/{quote(queue, safe='')}").get(
            "effective_policy_definition"
        )
        or {}
    )


@contextmanager
def broker_refusing_publishes_to(queue: str, *, keep: int = 0) -> Iterator[None]:
    """Make RabbitMQ refuse (nack) every message published to ``queue``, then undo it.

    A policy scoped to exactly that queue name sets ``max-length`` ``keep`` (0: refuse
    everything; n: take messages until n are ready, refuse the rest) with
    ``overflow: reject-publish``: the broker nacks each publish it refuses, which a
    publisher with confirms sees as an error and a publisher without confirms never
    learns of (RabbitMQ then drops the message). The queue must exist; only this run's
    names are accepted.
    """
    assert queue.startswith("test-"), "policies only on this run's own queues"
    vhost = quote(settings.RABBITMQ_VHOST, safe="")
    name = f"{queue}-refuse-publishes"
    _management_request(
        "PUT",
        f"policies/{vhost}/{quote(name, safe='')}",
        {
            "pattern": f"^{re.escape(queue)}$",
            "definition": {"max-length": keep, "overflow": "reject-publish"},
            "apply-to": "queues",
            "priority": 999,
        },
    )
    try:
        deadline = time.monotonic() + 10
        while _effective_policy(queue).get("max-length") != keep:
            assert time.monotonic() < deadline, f"the broker did not apply the policy to {queue}"
            time.sleep(0.05)
        yield
    finally:
        _management_request("DELETE", f"policies/{vhost}/{quote(name, safe='')}")
        deadline = time.monotonic() + 10
        while "max-length" in _effective_policy(queue):
            assert time.monotonic() < deadline, f"the broker kept the policy on {queue}"
            time.sleep(0.05)


def broker_connections_close(connection_name: str) -> int:
    """Close, through the management API, every connection with this client-given name.

    The broker sends Connection.Close (as on a node shutdown or ``rabbitmqctl
    close_connection``); returns how many it closed.
    """
    closed = 0
    for connection in _management_request("GET", "connections") or []:
        if (connection.get("client_properties") or {}).get("connection_name") == connection_name:
            _management_request(
                "DELETE",
                f"connections/{quote(connection['name'], safe='')}",
            )
            closed += 1
    return closed
