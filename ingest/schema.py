"""OpenAPI descriptions the code cannot infer: the device key scheme, and shared responses."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class DeviceKeyScheme(OpenApiAuthenticationExtension):
    target_class = "ingest.authentication.DeviceKeyAuthentication"
    name = "DeviceApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "The device's key, as `Api-Key <key>` (issued once by create_device_key or the console).",
        }


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable reason, e.g. invalid, broker_unavailable")
    message = serializers.CharField()
    fields = serializers.DictField(required=False, help_text="field errors by name (lists by index)")


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


RECORD_DEVICE_HELP = (
    "a gateway only: the serial number of the active device of its household this record is for "
    "(left out: the gateway's own record)"
)


class ReadingDocSerializer(serializers.Serializer):
    """Documentation of one reading (validated by ``ingest.record_validation.reading_validate``)."""

    metric = serializers.RegexField(r"^[a-z][a-z0-9_]{0,31}$")
    value = serializers.FloatField(help_text="a finite JSON number")
    unit = serializers.CharField(max_length=16, required=False, allow_null=True)
    measured_at = serializers.DateTimeField(help_text="ISO 8601 with a zone; not in the future, not too old")
    device = serializers.CharField(max_length=64, required=False, help_text=RECORD_DEVICE_HELP)
