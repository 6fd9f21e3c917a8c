"""Planning and confirming bulk actions from tests, as the console does."""

from __future__ import annotations

from django.http import QueryDict

from dashboard.filters import bulk_choice_parse
from dashboard.models import BulkJob, BulkPlan
from dashboard.services.bulk_jobs import bulk_plan_confirm, bulk_plan_create


def bulk_plan_for(*, actor, action: str = "requeue", **params) -> BulkPlan:
    """A plan over what the bulk form's ``params`` choose (default: every dead letter)."""
    form = QueryDict(mutable=True)
    form.update({"scope": "filter"})
    for name, value in params.items():
        if isinstance(value, list):
            form.setlist(name, [str(item) for item in value])
        else:
            form[name] = str(value)
    return bulk_plan_create(action=action, choice=bulk_choice_parse(form), actor=actor)


def bulk_job_planned(*, actor, action: str = "requeue", reason: str = "", **params) -> BulkJob:
    """Plan, then confirm with the count, as an operator would."""
    plan = bulk_plan_for(actor=actor, action=action, **params)
    return bulk_plan_confirm(token=plan.token, actor=actor, reason=reason, confirmed_count=str(plan.total))
