"""Models of the ingest app.

``customer`` maps the customer's tables (``db/schema.sql``) and is never migrated;
``app`` holds the tables this application owns and migrates.
"""

from .app import DeviceAPIKey, ProcessedMessage
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
    "Alert",
    "AlertStatus",
    "Device",
    "DeviceAPIKey",
    "DeviceEvent",
    "DeviceStatus",
    "DeviceType",
    "ProcessedMessage",
    "Resident",
    "SensorReading",
    "WebhookEvent",
]
