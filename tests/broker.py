"""Helpers for tests that look at what really is on this run's queues."""

from __future__ import annotations

from ingest.broker.connection import open_connection


def queued_messages(queue: str) -> list[tuple]:
    """Take every message off the queue: ``[(properties, body), ...]``."""
    connection = open_connection()
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
