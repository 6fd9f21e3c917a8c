"""One DRF exception handler: every refusal has the shape ``{"code", "message", "fields"?}``."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError, IntegrityError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ApplicationError

APPLICATION_ERROR_STATUS = {
    "broker_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "database_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "payload_too_large": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    "device_not_active": status.HTTP_403_FORBIDDEN,
    "not_found": status.HTTP_404_NOT_FOUND,
    "expired": status.HTTP_410_GONE,
    "conflict": status.HTTP_409_CONFLICT,
    "invalid_signature": status.HTTP_401_UNAUTHORIZED,
}


def _count_refusal(code: str) -> None:
    from ingest.metrics import REQUESTS

    REQUESTS.labels(outcome=code).inc()


REFUSALS_RECORDED = {
    status.HTTP_401_UNAUTHORIZED,
    status.HTTP_403_FORBIDDEN,
    status.HTTP_429_TOO_MANY_REQUESTS,
}


def _record_refusal(exc, context, response: Response) -> Response:
    if response.status_code in REFUSALS_RECORDED and (request := context.get("request")) is not None:
        from ingest.refusals import api_refusal_record

        body = response.data if isinstance(response.data, dict) else {}
        api_refusal_record(
            exc=exc,
            request=request,
            status=response.status_code,
            code=str(body.get("code", "")),
            message=str(body.get("message", "")),
        )
    return response


def application_exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = ApplicationError("request body is too large", code="payload_too_large")
    if isinstance(exc, DatabaseError) and not isinstance(exc, IntegrityError | DataError):
        # Keys are checked in the database: without it nothing can be accepted, but that is
        # an outage to retry, not a server bug to show as a 500.
        exc = ApplicationError(
            "The database is unavailable; nothing was queued. Retry later.",
            code="database_unavailable",
            retry_after=5,
        )
    if isinstance(exc, ApplicationError):
        body = {"code": exc.code, "message": exc.message}
        if exc.fields:
            body["fields"] = exc.fields
        response = Response(body, status=APPLICATION_ERROR_STATUS.get(exc.code, 400))
        if exc.retry_after is not None:
            response["Retry-After"] = str(exc.retry_after)
        _count_refusal(exc.code)
        return _record_refusal(exc, context, response)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    _count_refusal(str(getattr(exc, "default_code", "error")))
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "code": "invalid",
            "message": "The request has invalid fields; see 'fields'.",
            "fields": response.data,
        }
    elif isinstance(exc, exceptions.APIException):
        response.data = {
            "code": getattr(exc.detail, "code", None) or exc.default_code,
            "message": str(exc.detail),
        }
    return _record_refusal(exc, context, response)
