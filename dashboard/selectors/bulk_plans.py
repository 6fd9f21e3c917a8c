"""Reads for bulk plans: what a plan froze, shown before it is confirmed."""

from __future__ import annotations

from dashboard.models import BulkPlan, BulkSelection
from ingest.models import DeadLetter

PLAN_SAMPLE_SIZE = 5


def bulk_plan_sample(plan: BulkPlan) -> list[DeadLetter]:
    """The first few planned dead letters, to show what the action would touch.

    Only a slice of the frozen id array is read (``dead_letter_ids[1:5]`` in SQL), not
    all of its perhaps 100,000 ids.
    """
    sample_ids = (
        BulkSelection.objects.filter(pk=plan.selection_id)
        .values_list(f"dead_letter_ids__0_{PLAN_SAMPLE_SIZE}", flat=True)
        .get()
    )
    return list(
        DeadLetter.objects.filter(pk__in=sample_ids)
        .only("pk", "message_id", "error_class", "error_message", "device_id", "last_failed_at")
        .order_by("pk")
    )
