"""Names and idempotent declaration of the exchange and queues.

    publish ──▶ <q>.exchange ──(routing key <q>)──▶ <q>            main queue, consumed in batches
    a message that failed ──▶ <q>.retry.<n>s ──(TTL n s, dead-letter exchange)──▶ <q>.due
    <q>.due (no length limit) is consumed by the worker like <q>: a retry that comes due
    is never refused because the main queue is full (broker dead-lettering cannot be
    confirmed, so into a bounded queue with reject-publish it could silently drop).
    a message out of attempts ──▶ <q>.dead                       recorded in the DeadLetter table

Who gives up on a message: the product. The worker counts a message's failed attempts
(``INGEST_MAX_ATTEMPTS``) and sends it to ``<q>.dead`` with its error. A quorum queue
also counts deliveries that were never acked (a worker killed while holding it) and, past
``x-delivery-limit``, dead-letters the message by itself; RabbitMQ 4.x sets that limit to
20 when a queue names none, and a queue with no dead-letter route then drops it. So the
limit is always set here, as a backstop far above anything the product's own retries do
(``RABBITMQ_DELIVERY_LIMIT``), and what reaches it goes to ``<q>.dead`` like any failure
(at-least-once dead-lettering): only a message that kills its worker every time gets
there, and the console shows it with the broker's reason. ``<q>.dead`` itself has no
route onwards, so its limit is set out of reach (``DEAD_QUEUE_DELIVERY_LIMIT``).

Everything is derived from ``RABBITMQ_QUEUE_NAME`` so that a test run can use names of
its own (``settings.test``) without touching the real ones. Queue arguments cannot be
changed on an existing queue: a different type, length or delay needs new names.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from pika.adapters.blocking_connection import BlockingChannel

QUEUE_TYPES = ("classic", "quorum")
# Deliveries without an ack after which the dead-letter queue's own messages would be
# dropped (it has nowhere to send them): a recorder would have to die holding the same
# letter this many times. Positive on purpose: RabbitMQ 3.x reads -1 as "already over".
DEAD_QUEUE_DELIVERY_LIMIT = 1_000_000


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
    delivery_limit: int = 50

    def __post_init__(self) -> None:
        if self.queue_type not in QUEUE_TYPES:
            raise ValueError(f"RABBITMQ_QUEUE_TYPE must be one of {QUEUE_TYPES}, not {self.queue_type!r}")
        if not self.retry_delays:
            raise ValueError("at least one retry delay is needed")
        if self.delivery_limit < 1:
            raise ValueError(f"RABBITMQ_DELIVERY_LIMIT must be at least 1, not {self.delivery_limit}")

    @classmethod
    def from_settings(cls) -> Topology:
        return cls(
            queue=settings.RABBITMQ_QUEUE_NAME,
            queue_type=settings.RABBITMQ_QUEUE_TYPE,
            max_length=settings.RABBITMQ_QUEUE_MAX_LENGTH,
            retry_delays=tuple(settings.INGEST_RETRY_DELAYS_SECONDS),
            delivery_limit=settings.RABBITMQ_DELIVERY_LIMIT,
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

    def _quorum_arguments(self, *, delivery_limit: int, dead_letter_routing_key: str | None) -> dict:
        """A quorum queue's explicit delivery limit, and where what exceeds it goes.

        At-least-once dead-lettering (the broker keeps the message until the target
        queue confirms it) needs reject-publish overflow on the source queue.
        """
        arguments: dict = {"x-delivery-limit": delivery_limit}
        if dead_letter_routing_key is not None:
            arguments |= {
                "x-dead-letter-exchange": self.exchange,
                "x-dead-letter-routing-key": dead_letter_routing_key,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        return arguments

    def queue_arguments(self) -> dict[str, dict]:
        """Every queue's declared arguments, by queue name."""
        quorum = self.queue_type == "quorum"
        main = {**self.type_arguments, "x-max-length": self.max_length, "x-overflow": "reject-publish"}
        due = dict(self.type_arguments)
        dead = dict(self.type_arguments)
        if quorum:
            # Consumed by the worker: a message that kills it every time ends in <q>.dead.
            for arguments in (main, due):
                arguments |= self._quorum_arguments(
                    delivery_limit=self.delivery_limit, dead_letter_routing_key=self.dead_queue
                )
            dead |= self._quorum_arguments(
                delivery_limit=DEAD_QUEUE_DELIVERY_LIMIT, dead_letter_routing_key=None
            )
        arguments_by_queue = {self.queue: main}
        for delay in self.retry_delays:
            # Nobody consumes a tier: its messages expire into <q>.due. (The console's
            # "retry now" reads one and returns the rest; were a message returned past the
            # limit, it would only go to <q>.due early.)
            tier = {
                **self.type_arguments,
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": self.exchange,
                "x-dead-letter-routing-key": self.due_queue,
            }
            if quorum:
                # Quorum queues dead-letter at most once unless told otherwise: a retried
                # message must not vanish in transit.
                tier |= self._quorum_arguments(
                    delivery_limit=self.delivery_limit, dead_letter_routing_key=self.due_queue
                )
            arguments_by_queue[self._retry_queue_name(delay)] = tier
        arguments_by_queue[self.due_queue] = due
        arguments_by_queue[self.dead_queue] = dead
        return arguments_by_queue

    def declarations(self) -> list[Declaration]:
        """Exchange, queues and bindings as channel calls, in order.

        The same list serves a blocking channel (``topology_declare``) and the
        publisher's asynchronous one, so both always declare the same topology.
        """
        declarations = [
            Declaration(
                "exchange_declare", {"exchange": self.exchange, "exchange_type": "direct", "durable": True}
            )
        ]
        # Routed by name on the exchange: the main queue by publishers, the due queue by
        # expiring tiers, the dead queue by the broker's own dead-lettering (quorum).
        bound = {
            self.queue: self.routing_key,
            self.due_queue: self.due_queue,
            self.dead_queue: self.dead_queue,
        }
        for queue, arguments in self.queue_arguments().items():
            declarations.append(
                Declaration("queue_declare", {"queue": queue, "durable": True, "arguments": arguments})
            )
            if queue in bound:
                declarations.append(
                    Declaration(
                        "queue_bind", {"queue": queue, "exchange": self.exchange, "routing_key": bound[queue]}
                    )
                )
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
