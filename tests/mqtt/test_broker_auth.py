"""The endpoints RabbitMQ's HTTP auth backend calls for MQTT devices, asked as the broker asks."""

from __future__ import annotations

import pytest
from django.test import override_settings

from ingest.models import DeviceStatus, DeviceType
from ingest.services.devices import device_key_issue, device_keys_revoke
from tests.factories import DeviceFactory, ResidentFactory

pytestmark = pytest.mark.django_db

SECRET = "broker-secret-for-tests"


@pytest.fixture(autouse=True)
def broker_secret():
    with override_settings(BROKER_AUTH_SECRET=SECRET, MQTT_VHOST="/"):
        yield


def ask(client, question: str, secret: str = SECRET, **fields) -> tuple[int, str]:
    response = client.post(f"/internal/broker-auth/{secret}/{question}", fields)
    return response.status_code, response.content.decode()


def topic_fields(username: str, routing_key: str, permission: str = "write") -> dict:
    return {
        "username": username,
        "vhost": "/",
        "resource": "topic",
        "name": "amq.topic",
        "permission": permission,
        "routing_key": routing_key,
        "variable_map.client_id": username,
    }


def test_a_device_logs_in_with_its_serial_and_key(client):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    assert ask(client, "user", username=device.serial_no, password=key) == (200, "allow")
    assert ask(client, "vhost", username=device.serial_no, vhost="/", ip="127.0.0.1") == (200, "allow")


def test_wrong_keys_other_devices_keys_revoked_keys_and_inactive_devices_are_refused(client):
    device, other = DeviceFactory(), DeviceFactory()
    _, key = device_key_issue(device=device)
    _, other_key = device_key_issue(device=other)
    assert ask(client, "user", username=device.serial_no, password=key + "x") == (200, "deny")
    assert ask(client, "user", username=device.serial_no, password=other_key) == (200, "deny")
    assert ask(client, "user", username=device.serial_no, password="") == (200, "deny")
    assert ask(client, "vhost", username=device.serial_no, vhost="other") == (200, "deny")
    device_keys_revoke(device=device)
    assert ask(client, "user", username=device.serial_no, password=key) == (200, "deny")
    other.status = DeviceStatus.INACTIVE
    other.save()
    assert ask(client, "user", username=other.serial_no, password=other_key) == (200, "deny")


def test_a_device_publishes_to_its_own_readings_and_events_only(client):
    device, other = DeviceFactory(), DeviceFactory()
    serial = device.serial_no
    assert ask(client, "topic", **topic_fields(serial, f"devices.{serial}.readings")) == (200, "allow")
    assert ask(client, "topic", **topic_fields(serial, f"devices.{serial}.events")) == (200, "allow")
    for routing_key in (
        f"devices.{other.serial_no}.readings",
        f"devices.{serial}.commands",
        f"devices.{serial}",
        "devices.*.readings",
        "other",
    ):
        assert ask(client, "topic", **topic_fields(serial, routing_key)) == (200, "deny"), routing_key
    # Subscribing (read) is refused, as is anything but writing to the MQTT exchange.
    assert ask(client, "topic", **topic_fields(serial, f"devices.{serial}.readings", "read")) == (200, "deny")
    resource = {"username": serial, "vhost": "/", "resource": "exchange", "name": "amq.topic"}
    assert ask(client, "resource", **resource, permission="write") == (200, "allow")
    assert ask(client, "resource", **resource, permission="read") == (200, "deny")
    assert ask(
        client,
        "resource",
        **{**resource, "resource": "queue", "name": "mqtt-subscription-x"},
        permission="configure",
    ) == (200, "deny")  # noqa: E501


def test_a_gateway_also_publishes_to_its_households_active_devices_naming_itself(client):
    resident = ResidentFactory()
    gateway = DeviceFactory(resident=resident, device_type=DeviceType.GATEWAY)
    sensor = DeviceFactory(resident=resident)
    retired = DeviceFactory(resident=resident, status=DeviceStatus.RETIRED)
    neighbour = DeviceFactory()

    def answer(username: str, routing_key: str) -> str:
        status, decision = ask(client, "topic", **topic_fields(username, routing_key))
        assert status == 200
        return decision

    for kind in ("readings", "events"):
        assert (
            answer(gateway.serial_no, f"devices.{sensor.serial_no}.{kind}.via.{gateway.serial_no}") == "allow"
        )
    # the device's bare topic would store the records as the device's own: the ledger could
    # not say which gateway relayed them
    assert answer(gateway.serial_no, f"devices.{sensor.serial_no}.readings") == "deny"
    for device in (retired, neighbour):
        assert (
            answer(gateway.serial_no, f"devices.{device.serial_no}.readings.via.{gateway.serial_no}")
            == "deny"
        )
    # a relay topic is only for the gateway it names
    other_gateway = DeviceFactory(resident=resident, device_type=DeviceType.GATEWAY)
    assert (
        answer(other_gateway.serial_no, f"devices.{sensor.serial_no}.readings.via.{gateway.serial_no}")
        == "deny"
    )
    # the sensor itself is no gateway: it relays for nobody, and only publishes as itself
    assert answer(sensor.serial_no, f"devices.{gateway.serial_no}.readings.via.{sensor.serial_no}") == "deny"
    assert answer(sensor.serial_no, f"devices.{gateway.serial_no}.readings") == "deny"
    assert answer(sensor.serial_no, f"devices.{sensor.serial_no}.readings") == "allow"
    # a gateway with no resident has no household
    lone_gateway = DeviceFactory(device_type=DeviceType.GATEWAY)
    assert (
        answer(lone_gateway.serial_no, f"devices.{sensor.serial_no}.readings.via.{lone_gateway.serial_no}")
        == "deny"
    )


def test_the_endpoints_refuse_a_wrong_or_missing_secret(client):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    for question in ("user", "vhost", "resource", "topic"):
        assert ask(client, question, secret="wrong", username=device.serial_no, password=key)[0] == 404
    assert client.post("/internal/broker-auth/user", {"username": device.serial_no}).status_code == 404
    with override_settings(BROKER_AUTH_SECRET=""):
        # No secret configured: nobody is let in, whatever is sent.
        assert ask(client, "user", secret="", username=device.serial_no, password=key)[0] == 404
        assert ask(client, "user", username=device.serial_no, password=key)[0] == 404
    assert client.get(f"/internal/broker-auth/{SECRET}/user").status_code == 405
