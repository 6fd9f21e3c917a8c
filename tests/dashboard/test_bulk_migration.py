"""Bulk jobs stored before plans (a JSON selection) are migrated to frozen selections."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from dashboard.models import AuditEntry, BulkJob
from tests.factories import DeadLetterFactory

BEFORE = [("dashboard", "0004_bulkjob_heartbeat"), ("ingest", "0005_dead_letter_indexes_the_console_uses")]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection)  # a fresh loader sees the new state


@pytest.mark.django_db(transaction=True)
def test_old_jobs_become_frozen_selections_and_a_filter_still_to_run_is_refused_not_guessed():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    executor = _migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps
        OldBulkJob = old.get_model("dashboard", "BulkJob")
        OldAuditEntry = old.get_model("dashboard", "AuditEntry")
        group = DeadLetterFactory.create_batch(2)
        chosen = DeadLetterFactory.create_batch(2, error_class="django.db.utils.DataError", error_message="x")
        fields = {"description": "old", "reason": "", "total": 2}
        by_ids = OldBulkJob.objects.create(
            action="requeue", selection={"ids": [chosen[1].pk, chosen[0].pk]}, status="done", **fields
        )
        by_group = OldBulkJob.objects.create(
            action="requeue", selection={"fingerprint": group[0].fingerprint}, status="queued", **fields
        )
        by_filter = OldBulkJob.objects.create(
            action="discard", selection={"filter": {"error_class": "DataError"}}, status="queued", **fields
        )
        OldAuditEntry.objects.create(
            actor_name="olivia", action="created bulk requeue job", target=f"job {by_ids.pk}"
        )
    finally:
        _migrate(latest)

    jobs = {job.pk: job for job in BulkJob.objects.select_related("selection")}
    assert jobs[by_ids.pk].selection.dead_letter_ids == sorted(letter.pk for letter in chosen)
    assert jobs[by_ids.pk].title == "Requeue 2 failed messages: old"
    assert jobs[by_group.pk].selection.dead_letter_ids == sorted(letter.pk for letter in group)
    assert jobs[by_group.pk].status == "queued"
    assert jobs[by_filter.pk].status == "failed"
    assert "Plan it again" in jobs[by_filter.pk].error
    assert jobs[by_filter.pk].selection.dead_letter_ids == []
    assert AuditEntry.objects.get().bulk_job_id == by_ids.pk
