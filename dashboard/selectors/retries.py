"""The retry tiers, browsable: what waits in each, why it failed, and when it comes due.

Read from the ledger, not from the tier queues. A tier is a RabbitMQ queue with a TTL
and no consumer; looking inside it means taking messages off and putting them back,
which reorders nothing in a classic queue but holds them (unacked, not expiring) while
looked at, and costs a broker round trip per message on every page view. The worker
already notes each failed attempt in the ledger (``ingest_message_note_failure``): the
attempts, the error, when it failed and when its tier gives it back (``retry_due_at``,
cleared when the message is dead-lettered, left behind once it is stored). The tier is
derived from the attempts, as the failure router chose it. The broker's own count per
tier is shown beside the ledger's, so a difference (a ledger note that failed, a
message published twice) is visible rather than hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Count
from django.utils import timezone

from ingest.broker.monitoring import QueueDepth
from ingest.broker.topology import Topology
from ingest.models import IngestMessage

MESSAGES_PER_TIER = 100


@dataclass(frozen=True)
class RetryingMessage:
    message_id: UUID
    kind: str
    device_id: int | None
    attempts: int
    error: str
    failed_at: datetime | None
    due_at: datetime
    relayed_devices: int = 0  # a gateway's message: the other devices it carries records for

    @property
    def error_class(self) -> str:
        return self.error.split(": ", 1)[0]

    @property
    def error_message(self) -> str:
        return self.error.split(": ", 1)[1] if ": " in self.error else ""

    @property
    def due_in_seconds(self) -> float:
        return (self.due_at - timezone.now()).total_seconds()

    @property
    def due_relative(self) -> str:
        """When it comes (or came) due, from now: "in 4 min 10 s", "12 s ago"."""
        seconds = round(self.due_in_seconds)
        minutes, rest = divmod(abs(seconds), 60)
        span = f"{minutes} min {rest} s" if minutes else f"{rest} s"
        return f"in {span}" if seconds > 0 else f"{span} ago"


@dataclass(frozen=True)
class RetryTier:
    queue: str
    delay_seconds: float
    after_failures: str  # which failed attempts send a message here: "1", "3 and later"
    on_broker: int | None  # ready on the tier queue; None: unknown (broker unreachable)
    waiting: int  # noted in the ledger
    messages: list[RetryingMessage]

    @property
    def more(self) -> int:
        return max(0, self.waiting - len(self.messages))


@dataclass(frozen=True)
class RetryOverview:
    tiers: list[RetryTier]
    # Their tier gave them back: on the due queue, or being tried again right now.
    came_due: list[RetryingMessage]
    came_due_count: int
    due_queue: str
    due_on_broker: int | None


def _retrying_rows():
    # Exactly the condition of the partial index ``ingestmessage_retry_waiting``.
    return IngestMessage.objects.filter(status=IngestMessage.Status.PENDING, retry_due_at__isnull=False)


def _retrying_message(row: IngestMessage) -> RetryingMessage:
    return RetryingMessage(
        row.message_id,
        row.kind,
        row.device_id,
        row.attempts,
        row.last_error,
        row.last_failed_at,
        row.retry_due_at,
        row.relayed_devices,
    )


def retry_overview(
    *, queues: list[QueueDepth] | None, topology: Topology | None = None, per_tier: int = MESSAGES_PER_TIER
) -> RetryOverview:
    """Each tier's waiting messages, soonest due first, and those that already came due."""
    topology = topology or Topology.from_settings()
    now = timezone.now()
    ready = {queue.name: queue.ready for queue in queues or []}
    last_tier = len(topology.retry_delays)
    counts_by_tier: dict[str, int] = {}
    waiting = _retrying_rows().filter(retry_due_at__gt=now)
    for attempts, count in (
        waiting.values_list("attempts").annotate(n=Count("pk")).values_list("attempts", "n")
    ):
        tier = topology.retry_queue(max(1, attempts))
        counts_by_tier[tier] = counts_by_tier.get(tier, 0) + count
    tiers = []
    for number, delay in enumerate(topology.retry_delays, start=1):
        queue = topology.retry_queue(number)
        attempts_filter = {"attempts__gte": number} if number == last_tier else {"attempts": number}
        rows = waiting.filter(**attempts_filter).order_by("retry_due_at")[:per_tier]
        tiers.append(
            RetryTier(
                queue=queue,
                delay_seconds=delay,
                after_failures=f"{number} and later" if number == last_tier and number > 1 else str(number),
                on_broker=ready.get(queue),
                waiting=counts_by_tier.get(queue, 0),
                messages=[_retrying_message(row) for row in rows],
            )
        )
    came_due = _retrying_rows().filter(retry_due_at__lte=now)
    return RetryOverview(
        tiers=tiers,
        came_due=[_retrying_message(row) for row in came_due.order_by("retry_due_at")[:per_tier]],
        came_due_count=came_due.count(),
        due_queue=topology.due_queue,
        due_on_broker=ready.get(topology.due_queue),
    )


def retrying_message_count() -> int:
    """Messages waiting for a retry (in a tier, or come due and not yet tried), per the ledger."""
    return _retrying_rows().count()
