"""Device authentication by API key (``Authorization: Api-Key <key>``).

djangorestframework-api-key stores only a SHA-512 hash of each key. Its permission
class answers 403 for a missing key; devices get the 401 the API contract promises,
so the key is checked here, as DRF authentication. Verified keys are kept per process
(ingest/device_key_cache.py): a known key costs no database query.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions, permissions
from rest_framework_api_key.permissions import KeyParser

from ingest.device_key_cache import device_key_cache
from ingest.models import Device, DeviceStatus


class DeviceKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"
    key_parser = KeyParser()

    def authenticate(self, request):
        key = self.key_parser.get(request)
        if not key:
            raise exceptions.NotAuthenticated("Send the device key as 'Authorization: Api-Key <key>'.")
        api_key = device_key_cache.key_of(key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked device key.")
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("The device key has expired.")
        return (api_key.device, api_key)

    def authenticate_header(self, request):
        return self.keyword


class IsActiveDevice(permissions.BasePermission):
    message = "This device is not active; it may not send data."

    def has_permission(self, request, view):
        device = request.user
        return isinstance(device, Device) and device.status == DeviceStatus.ACTIVE
