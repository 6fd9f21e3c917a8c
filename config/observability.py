"""Request and message ids on every log line, JSON logs, and the request-id middleware.

The ids live in context variables: set by the middleware for a web request and by the
worker for the message(s) it is handling, read by ``ContextFilter`` for each record.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import uuid
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
message_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("message_id", default="-")

_SAFE_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
REQUEST_ID_HEADER = "X-Request-ID"


@contextlib.contextmanager
def message_context(message_id: str):
    """Log lines inside carry this message id (or a batch's "first..last")."""
    token = message_id_var.set(message_id)
    try:
        yield
    finally:
        message_id_var.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.message_id = message_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "message_id": getattr(record, "message_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RequestIdMiddleware:
    """Use the proxy's X-Request-ID (if sane) or make one; echo it on the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


def logging_config(*, level: str, log_dir, json_format: bool) -> dict:
    """Console always; a rotating file under ``log_dir`` when it can be written."""
    handlers = {"console": {"class": "logging.StreamHandler", "formatter": "main", "filters": ["context"]}}
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            writable = True
        except OSError:
            writable = False
        if writable:
            handlers["file"] = {
                "class": "logging.handlers.RotatingFileHandler",
                "filename": str(log_dir / "iot_care.log"),
                "maxBytes": 10 * 1024 * 1024,
                "backupCount": 5,
                "formatter": "main",
                "filters": ["context"],
                "delay": True,
            }
    plain = "%(asctime)s %(levelname)s %(name)s %(process)d rid=%(request_id)s mid=%(message_id)s %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "config.observability.ContextFilter"}},
        "formatters": {
            "main": {"()": "config.observability.JsonFormatter"} if json_format else {"format": plain}
        },
        "handlers": handlers,
        "root": {"handlers": list(handlers), "level": level},
        "loggers": {
            # pika logs every refused connection attempt as ERROR with a traceback; the
            # publisher and worker log their own one-line account of broker trouble instead.
            "pika": {"level": "CRITICAL"},
        },
    }
