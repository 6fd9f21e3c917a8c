"""Unmanaged models of the customer's schema (``db/schema.sql``).

The data team owns these tables: Django never creates, alters or drops them
(``managed = False``). ``python manage.py bootstrap_db`` checks that every field
here still matches the live column (name, type, nullability).
"""

from django.db import models
from django.db.models.functions import Now


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class AlertStatusField(models.CharField):
    """The PostgreSQL enum ``alert_status``: a string in Python, the enum in the database."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 12)
        kwargs.setdefault("choices", AlertStatus.choices)
        super().__init__(*args, **kwargs)

    def db_type(self, connection):
        return "alert_status"


class DeviceType(models.TextChoices):
    GATEWAY = "gateway", "Gateway"
    MOTION = "motion", "Motion sensor"
    DOOR = "door", "Door sensor"
    ENVIRONMENT = "environment", "Environment sensor"
    VITAL = "vital", "Vital signs monitor"
    SOS_BUTTON = "sos_button", "SOS button"
    FALL_DETECTOR = "fall_detector", "Fall detector"


class DeviceStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    RETIRED = "retired", "Retired"


class Resident(models.Model):
    id = models.BigAutoField(primary_key=True)
    full_name = models.CharField(max_length=100)
    birth_date = models.DateField(null=True, blank=True)
    phone = models.CharField(max_length=20, null=True, blank=True)
    address = models.TextField(null=True, blank=True)
    emergency_contact = models.CharField(max_length=20, null=True, blank=True)
    is_active = models.BooleanField(default=True, db_default=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "residents"

    def __str__(self) -> str:
        return self.full_name


class Device(models.Model):
    id = models.BigAutoField(primary_key=True)
    serial_no = models.CharField(max_length=64, unique=True)
    device_type = models.CharField(max_length=32, choices=DeviceType.choices)
    resident = models.ForeignKey(
        Resident, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    firmware_version = models.CharField(max_length=32, null=True, blank=True)
    status = models.CharField(
        max_length=16,
        choices=DeviceStatus.choices,
        default=DeviceStatus.ACTIVE,
        db_default=DeviceStatus.ACTIVE,
    )
    installed_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "devices"

    def __str__(self) -> str:
        return self.serial_no


class SensorReading(models.Model):
    # GENERATED ALWAYS AS IDENTITY: the database assigns ids, inserts never send one.
    id = models.BigAutoField(primary_key=True)
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="readings")
    metric = models.CharField(max_length=32)
    value = models.FloatField()
    unit = models.CharField(max_length=16, null=True, blank=True)
    measured_at = models.DateTimeField()
    received_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "sensor_readings"
        constraints = [
            models.UniqueConstraint(
                fields=["device", "metric", "measured_at"], name="uq_sensor_readings_point"
            )
        ]

    def __str__(self) -> str:
        return f"{self.metric}={self.value} @ {self.measured_at:%Y-%m-%d %H:%M:%S}"


class DeviceEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="events")
    event_type = models.CharField(max_length=32)
    severity = models.SmallIntegerField(default=0, db_default=0)
    occurred_at = models.DateTimeField()
    detail = models.JSONField(default=dict)
    received_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "device_events"

    def __str__(self) -> str:
        return f"{self.event_type} (severity {self.severity})"


class Alert(models.Model):
    id = models.BigAutoField(primary_key=True)
    resident = models.ForeignKey(
        Resident, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts"
    )
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts")
    alert_type = models.CharField(max_length=32)
    message = models.TextField()
    status = AlertStatusField(default=AlertStatus.OPEN, db_default=AlertStatus.OPEN)
    created_at = models.DateTimeField(db_default=Now())
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, null=True, blank=True)

    class Meta:
        managed = False
        db_table = "alerts"
        permissions = [("acknowledge_alert", "Can acknowledge alerts")]

    def __str__(self) -> str:
        return f"{self.alert_type} ({self.status})"


class WebhookEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    source = models.CharField(max_length=64)
    event_type = models.CharField(max_length=64, default="unknown", db_default="unknown")
    payload = models.JSONField()
    received_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "webhook_events"

    def __str__(self) -> str:
        return f"{self.source}:{self.event_type}"


CUSTOMER_MODELS = (Resident, Device, SensorReading, DeviceEvent, Alert, WebhookEvent)
