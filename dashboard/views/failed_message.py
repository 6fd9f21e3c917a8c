"""One failed message: its page, its body as a download, and requeue with a reviewed edit."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views import View
from django.views.generic import DetailView

from core.errors import ApplicationError
from dashboard.views.access import (
    ConsoleActionView,
    StaffRequiredMixin,
    application_error_status,
    field_errors_flatten,
)
from ingest.models import DeadLetter
from ingest.selectors.dead_letters import dead_letter_failure_times, ingest_message_of
from ingest.selectors.failed_message import (
    body_download_name,
    body_edit_limit,
    diff_lines,
    failed_message_actions,
    failed_message_body,
    failed_message_device,
    failed_message_edit_text,
    failed_message_editable,
    failed_message_headers,
    failed_records,
    is_json_body,
    readings_present,
)
from ingest.services.dead_letters import dead_letter_edit_preview, dead_letter_requeue

REQUEUE = "ingest.requeue_deadletter"
VIEW = "ingest.view_deadletter"


class DeadLetterDetailView(StaffRequiredMixin, DetailView):
    # The searchable copy of the body is never shown: not worth reading megabytes for.
    queryset = DeadLetter.objects.defer("body_text")
    template_name = "dashboard/dead_letter_detail.html"
    context_object_name = "dead_letter"

    def get_context_data(self, **kwargs):
        dead_letter = self.object
        body = failed_message_body(dead_letter)
        ledger = ingest_message_of(dead_letter)
        edit_text = failed_message_edit_text(dead_letter, body)
        return {
            "edit_body": edit_text or "",
            "edit_in_page": edit_text is not None,
            "editable": failed_message_editable(dead_letter),
            **super().get_context_data(**kwargs),
            "body": body,
            "edit_limit": body_edit_limit(),
            "headers_pretty": failed_message_headers(dead_letter),
            "failure_times": dead_letter_failure_times(dead_letter),
            "ledger": ledger,
            "readings_present": readings_present(dead_letter)
            if ledger and ledger.status == "processed"
            else None,
            "device": failed_message_device(dead_letter),
            "failed_records": failed_records(dead_letter),
            "actions": failed_message_actions(dead_letter),
        }


class DeadLetterBodyView(StaffRequiredMixin, View):
    """The whole body, byte for byte, as an attachment (the page shows at most its head)."""

    def get(self, request, pk):
        if not request.user.has_perm(VIEW):
            raise PermissionDenied("Your role may not read failed messages.")
        dead_letter = get_object_or_404(DeadLetter.objects.only("message_id", "body"), pk=pk)
        body = bytes(dead_letter.body)
        is_json = is_json_body(body)
        response = HttpResponse(
            body, content_type="application/json" if is_json else "application/octet-stream"
        )
        name = body_download_name(dead_letter, is_json=is_json)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class DeadLetterRequeueView(ConsoleActionView):
    """Requeue as it is, or with edited records after the operator reviewed the diff.

    An edit is a two-step POST: the first checks it and shows the diff against the
    original (nothing is sent); the confirm sends it, refused if the message changed
    since. A refused edit shows the page again with the operator's body, reason and the
    field errors: a redirect would throw away what they typed.
    """

    permission = REQUEUE

    def post(self, request, pk):
        if not request.POST.get("edit"):
            return super().post(request, pk)
        if request.POST.get("revise"):
            return self.edit_page(request, pk)
        try:
            if not request.POST.get("confirm"):
                return self.preview(request, pk)
            outcome = self.act(request, pk)
        except ApplicationError as error:
            if error.code == "conflict":  # nothing left to edit, or not the version reviewed
                messages.error(request, error.message)
                return self.back(request, pk)
            return self.edit_page(request, pk, error)
        messages.success(request, outcome)
        return self.back(request, pk)

    def act(self, request, pk):
        edit = bool(request.POST.get("edit"))
        dead_letter = dead_letter_requeue(
            dead_letter_id=pk,
            actor=request.user,
            reason=request.POST.get("reason", ""),
            edited_body=request.POST.get("body", "") if edit else None,
            expected_version=request.POST.get("version", "") if edit else None,
        )
        return f"Message {dead_letter.message_id} requeued (the broker confirmed it)."

    def preview(self, request, pk):
        preview = dead_letter_edit_preview(
            dead_letter_id=pk, edited_body=request.POST.get("body", ""), reason=request.POST.get("reason", "")
        )
        context = {
            "dead_letter": get_object_or_404(DeadLetter.objects.only("message_id", "status"), pk=pk),
            "diff": diff_lines(preview.diff),
            "edit_body": request.POST.get("body", ""),
            "edit_reason": request.POST.get("reason", ""),
            "version": preview.version,
        }
        return render(request, "dashboard/dead_letter_edit_preview.html", context)

    def edit_page(self, request, pk, error: ApplicationError | None = None):
        detail = DeadLetterDetailView(request=request, kwargs={"pk": pk})
        detail.object = detail.get_object()
        context = detail.get_context_data(
            object=detail.object,
            edit_body=request.POST.get("body", ""),
            edit_reason=request.POST.get("reason", ""),
            edit_error=error.message if error else "",
            edit_field_errors=field_errors_flatten(error.fields) if error else [],
        )
        status = application_error_status(error) if error else 200
        return render(request, detail.template_name, context, status=status)
