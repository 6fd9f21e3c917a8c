"""Models of the ingest app.

``customer`` maps the customer's tables (``db/schema.sql``) and is never migrated;
``app`` holds the tables this application owns and migrates.
"""

from .app import (
    AlertOrigin,
    DeadLetter,
    DeadLetterAction,
    DeadLetterRecorder,
    DeviceAPIKey,
    IngestMessage,
    MessageKind,
    WebhookSource,
)
from .customer import (
    Alert,
    AlertStatus,
    Device,
    DeviceEvent,
    DeviceStatus,
    DeviceType,
    Resident,
    SensorReading,
    WebhookEvent,
)

__all__ = [
    "AlertOrigin",
    "DeadLetter",
    "DeadLetterAction",
    "DeadLetterRecorder",
    "IngestMessage",
    "MessageKind",
    "WebhookSource",
    "Alert",
    "AlertStatus",
    "Device",
    "DeviceAPIKey",
    "DeviceEvent",
    "DeviceStatus",
    "DeviceType",
    "Resident",
    "SensorReading",
    "WebhookEvent",
]
