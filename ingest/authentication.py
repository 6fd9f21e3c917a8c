"""Device authentication by API key (``Authorization: Api-Key <key>``).

djangorestframework-api-key stores only a SHA-512 hash of each key. Its permission
class answers 403 for a missing key; devices get the 401 the API contract promises,
so the key is checked here, as DRF authentication. Verified keys are kept per process
(ingest/device_key_cache.py): a known key costs no database query, and its use is
stamped at most once a minute (ingest/device_key_usage.py).

A refused key names its device when its prefix is a key of one (revoked, expired or sent
with a wrong secret): the refusal then joins that device's trail (ingest/refusals.py).
"""

from __future__ import annotations

from rest_framework import authentication, exceptions, permissions
from rest_framework_api_key.permissions import KeyParser

from ingest.device_key_cache import device_key_cache
from ingest.device_key_usage import device_key_usage
from ingest.models import Device, DeviceAPIKey, DeviceStatus


class DeviceKeyRefused(exceptions.AuthenticationFailed):
    """A 401 for a key that names a device: the device whose trail records the refusal."""

    def __init__(self, detail: str, *, device_id: int | None, key_prefix: str) -> None:
        super().__init__(detail)
        self.device_id = device_id
        self.key_prefix = key_prefix if device_id is not None else ""


class DeviceKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"
    key_parser = KeyParser()

    def authenticate(self, request):
        key = self.key_parser.get(request)
        if not key:
            raise exceptions.NotAuthenticated("Send the device key as 'Authorization: Api-Key <key>'.")
        api_key = device_key_cache.key_of(key)
        if api_key is None:
            prefix = key.partition(".")[0]
            raise DeviceKeyRefused(
                "Unknown or revoked device key.", device_id=_device_of_prefix(prefix), key_prefix=prefix
            )
        if api_key.has_expired:
            raise DeviceKeyRefused(
                "The device key has expired.", device_id=api_key.device_id, key_prefix=api_key.prefix
            )
        device_key_usage.key_used(api_key)
        return (api_key.device, api_key)

    def authenticate_header(self, request):
        return self.keyword


def _device_of_prefix(prefix: str) -> int | None:
    """The device of the key with this prefix (one indexed query, on the refusal path only)."""
    if not prefix or len(prefix) > DeviceAPIKey._meta.get_field("prefix").max_length:
        return None
    return DeviceAPIKey.objects.filter(prefix=prefix).values_list("device_id", flat=True).first()


class IsActiveDevice(permissions.BasePermission):
    message = "This device is not active; it may not send data."

    def has_permission(self, request, view):
        device = request.user
        return isinstance(device, Device) and device.status == DeviceStatus.ACTIVE
