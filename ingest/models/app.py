"""Tables this application owns (created by migrations)."""

from django.db import models
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager

from .customer import Device


class DeviceAPIKeyManager(BaseAPIKeyManager):
    def get_usable_keys(self):
        # Authentication needs the device right after the key: one query, not two.
        return super().get_usable_keys().select_related("device")


class DeviceAPIKey(AbstractAPIKey):
    """A device's API key; only its SHA-512 hash is stored, the key is shown once."""

    objects = DeviceAPIKeyManager()
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="api_keys")

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "device API key"
        verbose_name_plural = "device API keys"


class ProcessedMessage(models.Model):
    """Ledger of broker messages whose records were committed.

    Written in the same transaction as the records: a redelivered message finds its
    id here and inserts nothing twice.
    """

    message_id = models.UUIDField(primary_key=True)
    device = models.ForeignKey(
        Device, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    accepted_at = models.DateTimeField()
    processed_at = models.DateTimeField(db_index=True)
    readings = models.PositiveIntegerField()
    events = models.PositiveIntegerField()

    class Meta:
        verbose_name = "processed message"

    def __str__(self) -> str:
        return str(self.message_id)
