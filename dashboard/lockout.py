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


def _in_trusted_networks(address: str) -> bool:
    """Whether ``address`` is one of the proxies named by address or network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for trusted in settings.TRUSTED_PROXY_ADDRESSES:
        try:
            if trusted != "*" and ip in ipaddress.ip_network(trusted, strict=False):
                return True
        except ValueError:
            continue
    return False


def _peer_is_trusted(peer: str) -> bool:
    return "*" in settings.TRUSTED_PROXY_ADDRESSES or _in_trusted_networks(peer)


def client_address(request) -> str:
    """The client's address: the peer, or what a trusted proxy (Caddy) says it saw.

    Caddy appends the address it was connected from to ``X-Forwarded-For``; everything to
    the left of it was written by the client and proves nothing. So, only when the peer
    is a trusted proxy, the address taken is the right-most one that is not itself a
    named proxy. ``*`` trusts any peer but names no address: with it, the right-most entry
    (the one the peer wrote) is the client. Were ``*`` to match forwarded entries too,
    every client would fall back to the proxy's own address and share one lockout count.
    """
    peer = request.META.get("REMOTE_ADDR", "")
    if not _peer_is_trusted(peer):
        return peer
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for address in reversed([part for part in forwarded if part]):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return peer  # a proxy we trust never writes garbage: do not guess past it
        if not _in_trusted_networks(address):
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
