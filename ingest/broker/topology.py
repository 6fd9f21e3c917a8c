"""Names and idempotent declaration of the exchange and queues.

    publish ──▶ <q>.exchange ──(routing key <q>)──▶ <q>            main queue, consumed in batches
    a message that failed ──▶ <q>.retry.<n>s ──(TTL n s, dead-letter exchange)──▶ <q>.due
    <q>.due (no length limit) is consumed by the worker like <q>: a retry that comes due
    is never refused because the main queue is full (broker dead-lettering cannot be
    confirmed, so into a bounded queue with reject-publish it could silently drop).
    a message out of attempts ──▶ <q>.dead                       recorded in the DeadLetter table

Everything is derived from ``RABBITMQ_QUEUE_NAME`` so that a test run can use names of
its own (``settings.test``) without touching the real ones. Queue arguments cannot be
changed on an existing queue: a different type, length or delay needs new names.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from pika.adapters.blocking_connection import BlockingChannel

QUEUE_TYPES = ("classic", "quorum")


@dataclass(frozen=True)
class Declaration:
    """One idempotent channel call (``exchange_declare``, ``queue_declare``, ``queue_bind``)."""

    method: str
    arguments: dict


@dataclass(frozen=True)
class Topology:
    queue: str
    queue_type: str = "classic"
    max_length: int = 1_000_000
    retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)

    def __post_init__(self) -> None:
        if self.queue_type not in QUEUE_TYPES:
            raise ValueError(f"RABBITMQ_QUEUE_TYPE must be one of {QUEUE_TYPES}, not {self.queue_type!r}")
        if not self.retry_delays:
            raise ValueError("at least one retry delay is needed")

    @classmethod
    def from_settings(cls) -> Topology:
        return cls(
            queue=settings.RABBITMQ_QUEUE_NAME,
            queue_type=settings.RABBITMQ_QUEUE_TYPE,
            max_length=settings.RABBITMQ_QUEUE_MAX_LENGTH,
            retry_delays=tuple(settings.INGEST_RETRY_DELAYS_SECONDS),
        )

    @property
    def exchange(self) -> str:
        return f"{self.queue}.exchange"

    @property
    def routing_key(self) -> str:
        return self.queue

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"

    def retry_delay(self, failures: int) -> float:
        """The delay after the ``failures``-th failure: each tier waits longer, the last repeats."""
        return self.retry_delays[min(failures, len(self.retry_delays)) - 1]

    def retry_queue(self, failures: int) -> str:
        return self._retry_queue_name(self.retry_delay(failures))

    def _retry_queue_name(self, delay: float) -> str:
        return f"{self.queue}.retry.{delay:g}s"

    @property
    def due_queue(self) -> str:
        return f"{self.queue}.due"

    @property
    def retry_queues(self) -> list[str]:
        return [self._retry_queue_name(delay) for delay in self.retry_delays]

    @property
    def queue_names(self) -> list[str]:
        return [self.queue, *self.retry_queues, self.due_queue, self.dead_queue]

    @property
    def exchange_names(self) -> list[str]:
        return [self.exchange]

    @property
    def type_arguments(self) -> dict:
        return {"x-queue-type": self.queue_type}

    def declarations(self) -> list[Declaration]:
        """Exchange, queues and bindings as channel calls, in order.

        The same list serves a blocking channel (``topology_declare``) and the
        publisher's asynchronous one, so both always declare the same topology.
        """
        main_queue_arguments = {
            **self.type_arguments,
            "x-max-length": self.max_length,
            "x-overflow": "reject-publish",
        }
        declarations = [
            Declaration(
                "exchange_declare", {"exchange": self.exchange, "exchange_type": "direct", "durable": True}
            ),
            Declaration(
                "queue_declare", {"queue": self.queue, "durable": True, "arguments": main_queue_arguments}
            ),
            Declaration(
                "queue_bind",
                {"queue": self.queue, "exchange": self.exchange, "routing_key": self.routing_key},
            ),
        ]
        for delay in self.retry_delays:
            arguments = {
                **self.type_arguments,
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": self.exchange,
                "x-dead-letter-routing-key": self.due_queue,
            }
            if self.queue_type == "quorum":
                # Quorum queues dead-letter at most once unless told otherwise; at-least-once
                # needs reject-publish overflow. A retried message must not vanish in transit.
                arguments |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
            declarations.append(
                Declaration(
                    "queue_declare",
                    {"queue": self._retry_queue_name(delay), "durable": True, "arguments": arguments},
                )
            )
        declarations += [
            Declaration(
                "queue_declare", {"queue": self.due_queue, "durable": True, "arguments": self.type_arguments}
            ),
            Declaration(
                "queue_bind",
                {"queue": self.due_queue, "exchange": self.exchange, "routing_key": self.due_queue},
            ),
            Declaration(
                "queue_declare", {"queue": self.dead_queue, "durable": True, "arguments": self.type_arguments}
            ),
        ]
        return declarations


def topology_declare(*, channel: BlockingChannel, topology: Topology) -> None:
    """Declare exchange, queues and bindings; safe to call from every process at start."""
    for declaration in topology.declarations():
        getattr(channel, declaration.method)(**declaration.arguments)


def topology_delete(*, channel: BlockingChannel, topology: Topology) -> None:
    """Remove everything ``topology_declare`` made (tests clean up their per-run names)."""
    for queue in topology.queue_names:
        channel.queue_delete(queue=queue)
    for exchange in topology.exchange_names:
        channel.exchange_delete(exchange=exchange)
