"""HTTP API views: validate, call one service or selector, shape one response."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from ingest.authentication import DeviceKeyAuthentication, IsActiveDevice
from ingest.metrics import REQUESTS
from ingest.record_validation import DeviceRecordsSerializer
from ingest.schema import error
from ingest.selectors.message_status import (
    DEVICE_ERROR_CODES,
    DEVICE_ERROR_OTHER,
    MESSAGE_STATUS_EXPIRED,
    ingest_message_status,
)
from ingest.selectors.readiness import dependencies_unreachable
from ingest.services.ingestion import device_batch_accept
from ingest.services.webhooks import webhook_receive
from ingest.throttling import DeviceRateThrottle


def _refuse_large_body(request, limit: int) -> None:
    """413 before anything reads the body (the proxy enforces the same limit)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not (declared.isascii() and declared.isdigit()):
        raise ApplicationError(f"Content-Length {declared!r} is not a byte count.", code="invalid")
    content_length = int(declared)
    if content_length > limit:
        raise ApplicationError(
            f"The body is {content_length} bytes; the limit is {limit}.", code="payload_too_large"
        )


class DeviceApi(APIView):
    authentication_classes = [DeviceKeyAuthentication]
    permission_classes = [IsActiveDevice]
    throttle_classes = [DeviceRateThrottle]


class IngestCreateApi(DeviceApi):
    InputSerializer = DeviceRecordsSerializer

    @extend_schema_serializer(component_name="IngestAccepted")
    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField()
        id = serializers.UUIDField()
        readings = serializers.IntegerField()
        events = serializers.IntegerField()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        _refuse_large_body(request, settings.INGEST_MAX_BODY_BYTES)

    @extend_schema(
        operation_id="ingest_create",
        summary="Send readings and events",
        request=InputSerializer,
        responses={
            202: OutputSerializer,
            400: error("invalid fields (named in 'fields') or not JSON"),
            401: error("missing, unknown, revoked or expired key"),
            403: error("the device is inactive or retired"),
            413: error("body over INGEST_MAX_BODY_BYTES"),
            415: error("not application/json"),
            429: error("over the device's rate; see Retry-After"),
            503: error("the broker did not confirm: nothing was queued; see Retry-After"),
        },
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise serializers.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
        serializer = self.InputSerializer(data=request.data, context={"device": request.user})
        serializer.is_valid(raise_exception=True)
        batch = device_batch_accept(device=request.user, **serializer.validated_data)
        REQUESTS.labels(outcome="accepted").inc()
        # The shape of OutputSerializer (which documents it), built directly: a serializer
        # instance per request costs more than everything else this view does itself.
        output = {
            "status": "queued",
            "id": str(batch.message_id),
            "readings": len(batch.readings),
            "events": len(batch.events),
        }
        return Response(output, status=status.HTTP_202_ACCEPTED)


class IngestStatusApi(DeviceApi):
    @extend_schema_serializer(component_name="IngestStatus")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        status = serializers.CharField()
        received_at = serializers.DateTimeField()
        processed_at = serializers.DateTimeField(allow_null=True)
        attempts = serializers.IntegerField()
        error = serializers.ChoiceField(
            choices=[*DEVICE_ERROR_CODES.values(), DEVICE_ERROR_OTHER],
            allow_null=True,
            help_text="why the last attempt failed, as a stable code (details are for staff)",
        )

    @extend_schema(
        operation_id="ingest_status",
        summary="Where one of the device's messages is",
        description=(
            "`pending` until the worker stored the message (also while it is being retried), then "
            "`processed`; `failed` once it is a dead letter, `discarded` if staff discarded it. "
            "Message ids say when they were issued and to which device, so a message not yet "
            "stored is `pending` at once. Outcomes are kept for RETENTION_LEDGER_DAYS (30 by "
            "default): after that an id of this device answers 410 with code `expired`."
        ),
        responses={
            200: OutputSerializer,
            401: error("bad key"),
            404: error("not this device's message, or not an id this service issued"),
            410: error(
                "code 'expired': this device's message, older than the ledger's retention; "
                "its outcome is no longer kept"
            ),
        },
    )
    def get(self, request, message_id):
        message_status = ingest_message_status(device=request.user, message_id=message_id)
        if message_status is None:
            raise ApplicationError("No message with this id for this device.", code="not_found")
        if message_status.status == MESSAGE_STATUS_EXPIRED:
            raise ApplicationError(
                f"This message was accepted at {message_status.received_at.isoformat()}, longer ago than "
                f"outcomes are kept ({settings.RETENTION_LEDGER_DAYS} days).",
                code="expired",
            )
        return Response(self.OutputSerializer(message_status).data)


class WebhookReceiveApi(APIView):
    authentication_classes = []
    permission_classes = []
    # The signature covers the raw bytes: the body is read as sent, never re-serialised,
    # and only once the headers and the source passed (see webhook_receive).
    parser_classes = []

    @extend_schema_serializer(component_name="WebhookAccepted")
    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["queued", "already_processed"])
        id = serializers.UUIDField()

    @extend_schema(
        operation_id="webhook_receive",
        summary="A partner system's notification (Standard Webhooks signature)",
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter(
                "webhook-id",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="the delivery's id, the same on every retry (1-255 visible ASCII characters)",
            ),
            OpenApiParameter(
                "webhook-timestamp",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="integer Unix seconds when signed; at most WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS away",
            ),
            OpenApiParameter(
                "webhook-signature",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="v1,<base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}.{body}'>, "
                "several separated by spaces while keys rotate",
            ),
            OpenApiParameter(
                "X-Event-Type", str, OpenApiParameter.HEADER, description="used when the body has no 'type'"
            ),
        ],
        responses={
            202: OutputSerializer,
            400: error("not a JSON object"),
            401: error("missing, malformed, expired or not verifying signature, or unknown source"),
            413: error("body over WEBHOOK_MAX_BODY_BYTES"),
            503: error("the broker did not confirm"),
        },
    )
    def post(self, request, source):
        _refuse_large_body(request, settings.WEBHOOK_MAX_BODY_BYTES)
        receipt = webhook_receive(
            source_name=source,
            headers=request.headers,
            read_body=lambda: request.body,
            header_event_type=request.headers.get("X-Event-Type"),
        )
        REQUESTS.labels(outcome="accepted" if receipt.queued else "already_processed").inc()
        output = self.OutputSerializer(
            {"status": "queued" if receipt.queued else "already_processed", "id": receipt.message.message_id}
        )
        return Response(output.data, status=status.HTTP_202_ACCEPTED)


class HealthApi(APIView):
    """Liveness: answers while the process runs."""

    authentication_classes = []
    permission_classes = []

    @extend_schema(operation_id="healthz", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response({"status": "ok"})


class ReadinessApi(APIView):
    """Readiness: 200 when the database and the broker are reachable, else 503 naming them."""

    authentication_classes = []
    permission_classes = []

    @extend_schema(operation_id="readyz", responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    def get(self, request):
        unreachable = dependencies_unreachable()
        if unreachable:
            return Response(
                {"status": "unavailable", "unreachable": unreachable},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response({"status": "ok"})
