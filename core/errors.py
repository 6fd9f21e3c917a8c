"""The application's one error type; ``exception_handler`` maps its code to HTTP."""

from __future__ import annotations


class ApplicationError(Exception):
    """A refusal the caller should see, with a machine-readable code and a human message."""

    def __init__(
        self, message: str, *, code: str, retry_after: int | None = None, fields: dict | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after
        self.fields = fields or {}
