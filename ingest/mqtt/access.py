"""The broker's questions about MQTT devices, answered with the product's device keys.

rabbitmq_auth_backend_http asks these (``views``) for users the broker's own user
database does not know: the product's AMQP user (RABBITMQ_USER) is checked by the broker
itself first (``auth_backends.1 = internal``), so every user asked about here is a device.

* log in: username = serial, password = one of the device's keys, checked like the API's
  ``Api-Key`` (hashed keys, revoked and expired keys refused, active devices only). The
  broker asks on every connect, so a key revoked is refused at the device's next connect
  (within DEVICE_KEY_CACHE_SECONDS);
* publish: only to ``devices/<own serial>/readings|events``, and for a gateway also to
  the topics of its household's (same resident's) active devices, naming itself:
  ``devices/<device>/readings|events/via/<own serial>`` (``topics``). A gateway may not
  publish to a household device's bare topic: the records would be stored as that
  device's own, and the ledger could not say which gateway relayed them;
* anything else (subscribing, declaring queues, other exchanges) is refused.
"""

from __future__ import annotations

from django.conf import settings

from ingest.device_key_cache import device_key_cache
from ingest.device_key_usage import device_key_usage
from ingest.models import Device, DeviceStatus, DeviceType
from ingest.mqtt.topics import MQTT_EXCHANGE, device_topic_of


def broker_user_allowed(*, username: str, password: str) -> bool:
    """Whether ``password`` is a usable key of the active device whose serial is ``username``."""
    if not username or not password:
        return False
    api_key = device_key_cache.key_of(password)
    if api_key is None or api_key.has_expired:
        return False
    device = api_key.device
    if device.serial_no != username or device.status != DeviceStatus.ACTIVE:
        return False
    device_key_usage.key_used(api_key)
    return True


def broker_vhost_allowed(*, vhost: str) -> bool:
    return vhost == settings.MQTT_VHOST


def broker_resource_allowed(*, vhost: str, resource: str, name: str, permission: str) -> bool:
    """Devices write to the MQTT exchange; they configure and read nothing (no subscriptions)."""
    return (
        broker_vhost_allowed(vhost=vhost)
        and resource == "exchange"
        and name == MQTT_EXCHANGE
        and permission == "write"
    )


def broker_topic_allowed(*, username: str, vhost: str, name: str, permission: str, routing_key: str) -> bool:
    """Whether device ``username`` may publish with ``routing_key`` (see the module's rules)."""
    if not broker_resource_allowed(vhost=vhost, resource="exchange", name=name, permission=permission):
        return False
    topic = device_topic_of(routing_key)
    if topic is None or topic.sender_serial_no != username:
        return False
    if topic.via is None:
        return Device.objects.filter(serial_no=username, status=DeviceStatus.ACTIVE).exists()
    return topic.serial_no in gateway_household_serials(serial_no=username)


def gateway_household_serials(*, serial_no: str) -> set[str]:
    """The serials of the other active devices of gateway ``serial_no``'s household.

    Empty when ``serial_no`` is not an active gateway assigned to a resident.
    """
    gateway = Device.objects.filter(
        serial_no=serial_no, status=DeviceStatus.ACTIVE, device_type=DeviceType.GATEWAY
    ).first()
    if gateway is None or gateway.resident_id is None:
        return set()
    household = Device.objects.filter(resident_id=gateway.resident_id, status=DeviceStatus.ACTIVE)
    return set(household.exclude(pk=gateway.pk).values_list("serial_no", flat=True))
