"""Request and message ids on every log line, the logging set-up (the app's and gunicorn's,
plain or JSON), the request-id middleware, and the metrics folder of several processes.

The ids live in context variables: set by the middleware for a web request and by the
worker for the message(s) it is handling, read by ``ContextFilter`` for each record.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

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
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            entry.update(_access_fields(record.args))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _access_fields(atoms: Mapping) -> dict:
    """gunicorn's access-log atoms as fields, so that a log shipper need not parse the line."""
    request_id = atoms["{x-request-id}o"]
    return {
        "request_id": request_id if request_id != "-" else atoms["{x-request-id}i"],
        "http": {
            "method": atoms["m"],
            "path": atoms["U"],
            "query": atoms["q"],
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["B"],
            "duration_ms": atoms["M"],
            "remote_addr": atoms["h"],
            "user_agent": atoms["a"],
        },
    }


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


PLAIN_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s %(process)d rid=%(request_id)s mid=%(message_id)s %(message)s"
)
LOG_FILE_NAME = "iot_care.log"


def logging_config(*, level: str, log_dir: Path | None, json_format: bool) -> dict:
    """Console (stderr) always; a shared file under ``log_dir`` only when one is asked for.

    Many processes (gunicorn workers, consumers, the scheduler) may write the same file, so
    none of them rotates it: each appends whole lines and reopens the file once an outside
    rotator (logrotate, see deploy/logrotate/iot_care) has moved it away
    (``WatchedFileHandler``). A rotating handler per process would rename the file under
    the others and lose their lines.
    """
    handlers = {"console": {"class": "logging.StreamHandler", "formatter": "main", "filters": ["context"]}}
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers["file"] = {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": str(log_dir / LOG_FILE_NAME),
            "formatter": "main",
            "filters": ["context"],
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "config.observability.ContextFilter"}},
        "formatters": {"main": _formatter(json_format)},
        "handlers": handlers,
        "root": {"handlers": list(handlers), "level": level},
        "loggers": {
            # pika logs every refused connection attempt as ERROR with a traceback; the
            # publisher and worker log their own one-line account of broker trouble instead.
            "pika": {"level": "CRITICAL"},
        },
    }


def gunicorn_logging_config(*, level: str, json_format: bool) -> dict:
    """gunicorn's error lines to stderr and access lines to stdout, in the app's format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "config.observability.ContextFilter"}},
        "formatters": {"main": _formatter(json_format)},
        "handlers": {
            "error_console": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "filters": ["context"],
                "stream": "ext://sys.stderr",
            },
            "access_console": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "filters": ["context"],
                "stream": "ext://sys.stdout",
            },
        },
        # Until Django's own settings take over in each worker.
        "root": {"level": level, "handlers": ["error_console"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access_console"], "propagate": False},
        },
    }


def _formatter(json_format: bool) -> dict:
    return {"()": "config.observability.JsonFormatter"} if json_format else {"format": PLAIN_FORMAT}


def metrics_directory_prepare(directory: str) -> str:
    """Make sure PROMETHEUS_MULTIPROC_DIR exists when it is set.

    prometheus_client writes every process's counters there and fails at the first metric
    if the folder is missing. gunicorn empties and recreates it at start; any other process
    (``manage.py`` commands, consumers) that inherits the variable creates it here instead
    of crashing.
    """
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
    return directory


def metrics_directory_clear_stale(directory: str) -> None:
    """Remove the metrics files of processes that no longer run; keep those of live ones.

    The folder may be shared by every process of the host (web servers, consumers): a
    server that emptied it at start would unlink the files the running processes keep
    writing to, and their counts would never be read again. prometheus_client names each
    file ``<kind>_<pid>.db``.
    """
    for path in Path(directory).glob("*_*.db"):
        pid = path.stem.rsplit("_", 1)[1]
        if pid.isdigit() and not _process_running(int(pid)):
            path.unlink(missing_ok=True)


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
