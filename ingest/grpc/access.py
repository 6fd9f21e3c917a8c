"""The HTTP API's device key check, active-device rule and rate limit, for gRPC calls.

The DRF classes that own those rules read only a header (``request.META``) and the
authenticated device (``request.user``); a call's metadata is handed to them in that shape
so that both entrances refuse the same keys, devices and rates for the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rest_framework import exceptions

from ingest.authentication import DeviceKeyAuthentication, IsActiveDevice
from ingest.models import Device
from ingest.throttling import device_requests_admit


@dataclass
class _CallAsRequest:
    META: dict = field(default_factory=dict)
    user: Device | None = None


class CallRefused(Exception):
    """The call may not go on: ``kind`` is ``unauthenticated``, ``permission_denied`` or ``rate``."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


def call_device(*, metadata) -> Device:
    """The active device whose key the call carries (``authorization: Api-Key <key>``)."""
    authorization = next((value for key, value in metadata if key == "authorization"), "")
    request = _CallAsRequest(META={"HTTP_AUTHORIZATION": authorization})
    try:
        authenticated = DeviceKeyAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as error:
        raise CallRefused("unauthenticated", str(error.detail)) from None
    except exceptions.NotAuthenticated as error:
        raise CallRefused("unauthenticated", str(error.detail)) from None
    request.user = authenticated[0]
    if not IsActiveDevice().has_permission(request, None):
        raise CallRefused("permission_denied", IsActiveDevice.message)
    return request.user


def device_chunks_admit(*, device: Device, chunks: int) -> tuple[int, CallRefused | None]:
    """Count chunks against the device's rate, each as one HTTP request, in one round trip.

    Returns how many of them (the first ones) were admitted, and the refusal of the rest.
    """
    decision = device_requests_admit(device=device, requests=chunks)
    if decision.allowed:
        return decision.admitted, None
    wait = max(1.0, decision.retry_after_seconds)
    return decision.admitted, CallRefused(
        "rate", f"Over the device's rate; retry in {wait:.0f} s.", retry_after=wait
    )
