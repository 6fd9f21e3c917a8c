"""factory-boy factories for the customer's tables and the app's own."""

import json
import uuid
from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from dashboard.roles import roles_ensure
from ingest.models import (
    Alert,
    DeadLetter,
    Device,
    DeviceStatus,
    DeviceType,
    IngestMessage,
    Resident,
    SensorReading,
)
from ingest.services.dead_letters import body_text_of, error_fingerprint


class ResidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Resident

    full_name = factory.Faker("name")
    phone = factory.Faker("numerify", text="+44 7### ######")


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    serial_no = factory.Sequence(lambda n: f"DEV-{n:06d}")
    device_type = DeviceType.VITAL
    resident = factory.SubFactory(ResidentFactory)
    status = DeviceStatus.ACTIVE


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True
    password = factory.django.Password("console-pw-1")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        """``UserFactory(role="Console operators")`` puts the user in that group."""
        if create and extracted:
            roles_ensure(Group, Permission)  # transactional tests flush the groups away
            self.groups.add(Group.objects.get(name=extracted))


class IngestMessageFactory(factory.django.DjangoModelFactory):
    """A ledger row as the worker writes it (stored, or an attempt failed)."""

    class Meta:
        model = IngestMessage
        django_get_or_create = ("message_id",)

    message_id = factory.LazyFunction(uuid.uuid4)
    kind = "device_batch"
    device = None
    received_at = factory.LazyFunction(timezone.now)


class DeadLetterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeadLetter

    message_id = factory.LazyFunction(uuid.uuid4)
    kind = "device_batch"
    device_id = None
    original_queue = "ingest"
    original_routing_key = "ingest"
    headers = factory.LazyFunction(dict)
    error_class = "django.db.utils.IntegrityError"
    error_message = factory.Sequence(lambda n: f'Key (device_id)=({n}) is not present in table "devices".')
    fingerprint = factory.LazyAttribute(
        lambda letter: error_fingerprint(error_class=letter.error_class, error_message=letter.error_message)
    )
    traceback = "Traceback (most recent call last):\n  ...\nIntegrityError"
    attempts = 4
    first_failed_at = factory.LazyFunction(timezone.now)
    last_failed_at = factory.LazyFunction(timezone.now)

    @factory.lazy_attribute
    def body(self):
        return json.dumps(
            {
                "schema_version": 1,
                "kind": "device_batch",
                "message_id": str(self.message_id),
                "device_id": self.device_id or 987654,
                "accepted_at": timezone.now().isoformat(),
                "readings": [
                    {
                        "metric": "heart_rate",
                        "value": 70.0,
                        "unit": "bpm",
                        "measured_at": timezone.now().isoformat(),
                    }
                ],
                "events": [],
            }
        ).encode()

    body_text = factory.LazyAttribute(lambda letter: body_text_of(letter.body))


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    device = factory.SubFactory(DeviceFactory)
    resident = factory.LazyAttribute(lambda alert: alert.device.resident)
    alert_type = "fall_detected"
    message = "Critical event fall_detected"


class SensorReadingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SensorReading

    device = factory.SubFactory(DeviceFactory)
    metric = "heart_rate"
    value = 70.0
    unit = "bpm"
    measured_at = factory.Sequence(lambda n: timezone.now() - timedelta(seconds=n))


def reading_record(minutes_ago: int = 1) -> dict:
    """One reading as a device message carries it (a heart rate, ``minutes_ago`` old)."""
    return {
        "metric": "heart_rate",
        "value": 70.0,
        "unit": "bpm",
        "measured_at": timezone.now() - timedelta(minutes=minutes_ago),
    }
