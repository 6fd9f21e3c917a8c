"""Per-device request rate (429 with Retry-After above ``INGEST_DEVICE_RATE``)."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from ingest.models import Device


class DeviceRateThrottle(SimpleRateThrottle):
    scope = "device"

    def get_rate(self) -> str:
        return settings.INGEST_DEVICE_RATE

    def get_cache_key(self, request, view) -> str | None:
        device = request.user
        if not isinstance(device, Device):
            return None
        return self.cache_format % {"scope": self.scope, "ident": device.pk}
