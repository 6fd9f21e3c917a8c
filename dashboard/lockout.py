"""Login throttling (django-axes) for the console and the admin: who the client is, and
what a locked-out client sees.

Failed logins are counted per user name and per client address; past
``AXES_FAILURE_LIMIT`` either one is refused for ``AXES_COOLOFF_TIME`` without checking
the password, which also keeps a login flood from tying up the web workers in password
hashing.
"""

from __future__ import annotations

import ipaddress
import math

from django.conf import settings
from django.shortcuts import render


def _is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for trusted in settings.TRUSTED_PROXY_ADDRESSES:
        if trusted == "*":
            return True
        try:
            if ip in ipaddress.ip_network(trusted, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_address(request) -> str:
    """The client's address: the peer, or what a trusted proxy (Caddy) says it saw.

    Caddy appends the address it was connected from to ``X-Forwarded-For``; everything to
    the left of it was written by the client and proves nothing. So the address taken is
    the right-most one that is not itself a trusted proxy, and only when the peer is one.
    """
    peer = request.META.get("REMOTE_ADDR", "")
    if not _is_trusted_proxy(peer):
        return peer
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for address in reversed([part for part in forwarded if part]):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return peer  # a proxy we trust never writes garbage: do not guess past it
        if not _is_trusted_proxy(address):
            return address
    return peer


def lockout_response(request, original_response=None, credentials=None):
    """The console's login page saying why, with 429 and how long to wait."""
    cooloff_seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    response = render(
        request,
        "dashboard/login.html",
        {"locked_out": True, "cooloff_minutes": math.ceil(cooloff_seconds / 60)},
        status=429,
    )
    response["Retry-After"] = str(cooloff_seconds)
    return response
