"""Standard Webhooks in tests: signing deliveries as a partner does, and an on-call receiver verifying ours."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

# "whsec_" + base64 of 32 bytes, as the admin asks for.
TEST_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw8rX7ghW5p0E="


def partner_signature(*, secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The scheme written out from the specification, independently of the code under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = delivery_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(
    body: bytes,
    *,
    secret: str = TEST_SECRET,
    delivery_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three headers a partner sends, for Django's test client (``HTTP_...`` keys)."""
    delivery_id = delivery_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = partner_signature(secret=secret, delivery_id=delivery_id, timestamp=timestamp, body=body)
    return {
        "HTTP_WEBHOOK_ID": delivery_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(timestamp),
        "HTTP_WEBHOOK_SIGNATURE": signature,
    }


def webhook_post(body: bytes, headers: dict[str, str], *, source: str = "carelink", **extra):
    return APIClient().post(
        f"/api/v1/webhooks/{source}/", data=body, content_type="application/json", **headers, **extra
    )


def signed_webhook_post(body: bytes, *, source: str = "carelink", secret: str = TEST_SECRET, **extra):
    return webhook_post(body, signed_headers(body, secret=secret), source=source, **extra)


class OnCallReceiver:
    """An on-call system's webhook endpoint: answers with the given statuses, in turn."""

    def __init__(self, statuses: list[int | str]) -> None:
        self.statuses = list(statuses)
        self.deliveries: list[dict] = []
        self.redirected_gets: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                # Raises if the signature does not verify: the receiver then answers 401.
                try:
                    payload = Webhook(TEST_SECRET).verify(body, headers)
                    verified = True
                except Exception:
                    payload, verified = json.loads(body), False
                receiver.deliveries.append({"headers": headers, "payload": payload, "verified": verified})
                status = (receiver.statuses.pop(0) if receiver.statuses else 200) if verified else 401
                if status == "garbage":  # not HTTP at all: a broken proxy in front of the hook
                    self.wfile.write(b"NONSENSE\r\n\r\n")
                    self.close_connection = True
                    return
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/hooks/moved")
                    self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):  # noqa: N802 - http.server's naming
                # Where a followed redirect would land: a bodiless GET that "succeeds".
                receiver.redirected_gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/on-call?token=s3cret"

    @contextmanager
    def running(self) -> Iterator[OnCallReceiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
