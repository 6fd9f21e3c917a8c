"""Device-facing API views: validate, call one service, shape one response."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from ingest.authentication import DeviceKeyAuthentication, IsActiveDevice
from ingest.errors import ApplicationError
from ingest.serializers import EventInputSerializer, ReadingInputSerializer
from ingest.services.ingestion import device_batch_accept


class DeviceApi(APIView):
    authentication_classes = [DeviceKeyAuthentication]
    permission_classes = [IsActiveDevice]


class IngestCreateApi(DeviceApi):
    class InputSerializer(serializers.Serializer):
        readings = ReadingInputSerializer(many=True, required=False, default=list)
        events = EventInputSerializer(many=True, required=False, default=list)

        def validate(self, data):
            total = len(data["readings"]) + len(data["events"])
            limit = settings.INGEST_MAX_RECORDS
            if total == 0:
                raise serializers.ValidationError(
                    {"non_field_errors": ["Send at least one reading or event."]}
                )
            if total > limit:
                raise serializers.ValidationError(
                    {"non_field_errors": [f"At most {limit} records per request; got {total}."]}
                )
            return data

    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField()
        id = serializers.UUIDField()
        readings = serializers.IntegerField()
        events = serializers.IntegerField()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        content_length = int(request.META.get("CONTENT_LENGTH") or 0)
        if content_length > settings.INGEST_MAX_BODY_BYTES:
            raise ApplicationError(
                f"The body is {content_length} bytes; the limit is "
                f"{settings.INGEST_MAX_BODY_BYTES}.",
                code="payload_too_large",
            )

    def post(self, request):
        if not isinstance(request.data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["The body must be a JSON object."]}
            )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        batch = device_batch_accept(device=request.user, **serializer.validated_data)
        output = self.OutputSerializer(
            {
                "status": "queued",
                "id": batch.message_id,
                "readings": len(batch.readings),
                "events": len(batch.events),
            }
        )
        return Response(output.data, status=status.HTTP_202_ACCEPTED)
