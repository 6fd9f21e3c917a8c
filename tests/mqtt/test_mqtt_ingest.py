"""Devices over MQTT through RabbitMQ's own plugin, end to end with a real client (paho-mqtt).

The module's stack (conftest): a RabbitMQ node of its own with rabbitmq_mqtt and
rabbitmq_auth_backend_http, gunicorn answering its auth questions, and a worker running
the bridge. The machine's broker is never touched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import ApplicationError
from dashboard.roles import OPERATORS
from ingest.broker.publisher import publisher_reset
from ingest.models import (
    DeadLetter,
    DeviceEvent,
    DeviceType,
    IngestMessage,
    SensorReading,
)
from ingest.mqtt.payloads import MQTT_PUBLISH
from ingest.services.dead_letters import dead_letter_requeue, dead_letters_requeue_many
from ingest.services.devices import device_key_issue, device_keys_revoke
from tests.factories import DeviceFactory, ResidentFactory, UserFactory
from tests.mqtt.conftest import BRIDGE_CLOCK_SKEW_SECONDS
from tests.mqtt.node import DeviceConnection
from tests.workers import wait_until

pytestmark = [pytest.mark.usefixtures("committed_db"), pytest.mark.timeout(300)]


def recent(minutes: int = 5) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def connected(stack, device, key: str) -> DeviceConnection:
    connection = DeviceConnection(port=stack.mqtt_port, serial_no=device.serial_no, key=key)
    assert connection.connect(), f"login refused (CONNACK {connection.connack})"
    return connection


def test_a_device_with_a_good_key_publishes_readings_and_events_that_are_stored_once(mqtt_stack):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    body = json.dumps({"readings": [{"metric": "heart_rate", "value": 71, "measured_at": recent()}]})
    bare_event = json.dumps({"event_type": "sos", "severity": 3, "occurred_at": recent(2)})
    connection = connected(mqtt_stack, device, key)
    try:
        assert connection.publish(f"devices/{device.serial_no}/readings", body)
        assert connection.publish(f"devices/{device.serial_no}/events", bare_event)
        # The same publish again (a resend after a lost PUBACK): the ledger absorbs it.
        assert connection.publish(f"devices/{device.serial_no}/readings", body)
    finally:
        connection.close()

    assert wait_until(
        lambda: (
            SensorReading.objects.filter(device=device).exists()
            and DeviceEvent.objects.filter(device=device).exists()
        ),
        timeout=30,
    ), mqtt_stack.worker_log.read_text()[-3000:]
    # Both copies of the readings message were handled before the count is final.
    assert wait_until(
        lambda: (
            IngestMessage.objects.filter(device=device, status=IngestMessage.Status.PROCESSED).count() == 2
        ),
        timeout=15,
    )
    assert SensorReading.objects.filter(device=device).count() == 1
    assert DeviceEvent.objects.get(device=device).event_type == "sos"


def test_a_gateway_publishes_for_a_device_of_its_household_and_the_ledger_names_the_gateway(mqtt_stack):
    resident = ResidentFactory()
    gateway = DeviceFactory(resident=resident, device_type=DeviceType.GATEWAY)
    sensor = DeviceFactory(resident=resident)
    _, key = device_key_issue(device=gateway)
    reading = json.dumps({"metric": "spo2", "value": 97, "measured_at": recent()})
    events = json.dumps([{"event_type": "motion", "occurred_at": recent(3)}])
    connection = connected(mqtt_stack, gateway, key)
    try:
        assert connection.publish(f"devices/{sensor.serial_no}/readings/via/{gateway.serial_no}", reading)
        assert connection.publish(f"devices/{sensor.serial_no}/events/via/{gateway.serial_no}", events)
    finally:
        connection.close()

    def relayed_messages():
        return IngestMessage.objects.filter(device=gateway, status=IngestMessage.Status.PROCESSED)

    assert wait_until(lambda: relayed_messages().count() == 2, timeout=30), mqtt_stack.worker_log.read_text()[
        -3000:
    ]
    assert SensorReading.objects.get(device=sensor).value == 97
    assert DeviceEvent.objects.get(device=sensor).event_type == "motion"
    assert not SensorReading.objects.filter(device=gateway).exists()
    # the ledger's message is the gateway's, carrying one other device's records
    assert sorted(relayed_messages().values_list("relayed_devices", flat=True)) == [1, 1]
    assert not IngestMessage.objects.filter(device=sensor).exists()


def test_a_gateway_publishes_the_apis_body_naming_each_relayed_device_on_its_own_topic(mqtt_stack):
    resident = ResidentFactory()
    gateway = DeviceFactory(resident=resident, device_type=DeviceType.GATEWAY)
    sensor = DeviceFactory(resident=resident)
    _, key = device_key_issue(device=gateway)
    body = json.dumps(
        {
            "readings": [
                {"metric": "temperature", "value": 21.5, "measured_at": recent()},
                {"device": sensor.serial_no, "metric": "spo2", "value": 98, "measured_at": recent()},
            ]
        }
    )
    connection = connected(mqtt_stack, gateway, key)
    try:
        assert connection.publish(f"devices/{gateway.serial_no}/readings", body)
    finally:
        connection.close()

    assert wait_until(
        lambda: IngestMessage.objects.filter(device=gateway, status=IngestMessage.Status.PROCESSED).exists(),
        timeout=30,
    ), mqtt_stack.worker_log.read_text()[-3000:]
    assert SensorReading.objects.get(device=gateway).metric == "temperature"
    assert SensorReading.objects.get(device=sensor).value == 98
    assert IngestMessage.objects.get(device=gateway).relayed_devices == 1


def test_a_gateway_may_not_publish_on_a_household_devices_own_topic(mqtt_stack):
    """Stored from there, the records would look like the device's own: the broker refuses."""
    resident = ResidentFactory()
    gateway = DeviceFactory(resident=resident, device_type=DeviceType.GATEWAY)
    sensor = DeviceFactory(resident=resident)
    _, key = device_key_issue(device=gateway)
    connection = connected(mqtt_stack, gateway, key)
    try:
        reading = json.dumps({"metric": "spo2", "value": 96, "measured_at": recent()})
        assert not connection.publish(f"devices/{sensor.serial_no}/readings", reading, timeout=5)
        assert connection.disconnected.wait(10)
    finally:
        connection.close()
    assert not wait_until(lambda: SensorReading.objects.filter(device=sensor).exists(), timeout=3)


def test_a_wrong_key_is_refused_at_connect(mqtt_stack):
    device, other = DeviceFactory(), DeviceFactory()
    _, key = device_key_issue(device=device)
    _, other_key = device_key_issue(device=other)
    for wrong in (key + "x", other_key):
        connection = DeviceConnection(port=mqtt_stack.mqtt_port, serial_no=device.serial_no, key=wrong)
        try:
            assert not connection.connect()
            assert connection.connack not in (None, 0)  # 4 or 5: bad login, not authorised
        finally:
            connection.close()


def test_another_devices_topic_is_refused(mqtt_stack):
    device, other = DeviceFactory(), DeviceFactory()
    _, key = device_key_issue(device=device)
    body = json.dumps({"readings": [{"metric": "heart_rate", "value": 99, "measured_at": recent()}]})
    connection = connected(mqtt_stack, device, key)
    try:
        delivered = connection.publish(f"devices/{other.serial_no}/readings", body, timeout=5)
        # RabbitMQ closes a connection that publishes where it may not: no PUBACK.
        assert not delivered
        assert connection.disconnected.wait(10)
    finally:
        connection.close()
    # And a subscription is no way in either: a fresh session may not read the topic.
    listener = connected(mqtt_stack, device, key)
    try:
        result, _ = listener.client.subscribe(f"devices/{device.serial_no}/readings", qos=1)
        assert listener.disconnected.wait(10) or result != 0
    finally:
        listener.close()
    assert not wait_until(lambda: SensorReading.objects.filter(device=other).exists(), timeout=3)


def test_a_bad_payload_becomes_a_failed_message_with_its_field_errors(mqtt_stack):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    bad = json.dumps({"readings": [{"metric": "heart_rate", "value": "fast", "measured_at": recent()}]})
    connection = connected(mqtt_stack, device, key)
    try:
        assert connection.publish(f"devices/{device.serial_no}/readings", bad)
        assert connection.publish(f"devices/{device.serial_no}/readings", b"not json")
    finally:
        connection.close()

    assert wait_until(lambda: DeadLetter.objects.filter(kind=MQTT_PUBLISH).count() == 2, timeout=30), (
        mqtt_stack.worker_log.read_text()[-3000:]
    )
    letters = {bytes(letter.body): letter for letter in DeadLetter.objects.filter(kind=MQTT_PUBLISH)}
    invalid = letters[bad.encode()]
    assert invalid.original_routing_key == f"devices.{device.serial_no}.readings"
    assert invalid.original_queue == f"{mqtt_stack.topology.queue}.mqtt"
    fields = json.loads(invalid.error_message)["fields"]
    assert "value" in fields["readings"]["0"]
    assert "Not JSON" in letters[b"not json"].error_message
    assert not SensorReading.objects.filter(device=device).exists()


def test_a_relayed_record_naming_another_device_than_the_topics_is_a_failed_message(mqtt_stack):
    resident = ResidentFactory()
    gateway = DeviceFactory(resident=resident, device_type=DeviceType.GATEWAY)
    sensor, other_sensor = DeviceFactory(resident=resident), DeviceFactory(resident=resident)
    _, key = device_key_issue(device=gateway)
    body = json.dumps(
        {
            "readings": [
                {"metric": "spo2", "value": 95, "measured_at": recent()},
                {"device": other_sensor.serial_no, "metric": "spo2", "value": 94, "measured_at": recent()},
            ]
        }
    )
    connection = connected(mqtt_stack, gateway, key)
    try:
        assert connection.publish(f"devices/{sensor.serial_no}/readings/via/{gateway.serial_no}", body)
    finally:
        connection.close()

    assert wait_until(lambda: DeadLetter.objects.filter(kind=MQTT_PUBLISH).exists(), timeout=30), (
        mqtt_stack.worker_log.read_text()[-3000:]
    )
    letter = DeadLetter.objects.get(kind=MQTT_PUBLISH)
    assert letter.original_routing_key == f"devices.{sensor.serial_no}.readings.via.{gateway.serial_no}"
    assert json.loads(letter.error_message)["fields"] == {
        "readings": {"1": {"device": [f"Must be {sensor.serial_no}, the device this topic relays for."]}}
    }
    # the whole publish is refused, as the API refuses a request with one bad record
    assert not SensorReading.objects.filter(device__in=[sensor, other_sensor]).exists()


@pytest.fixture
def publishing_to_the_stacks_node(mqtt_stack, settings):
    """This process (the console's requeue) is a web server of the stack: MQTT on, its node."""
    settings.RABBITMQ_HOSTS = mqtt_stack.node.hosts
    settings.MQTT_ENABLED = True
    publisher_reset()
    yield
    publisher_reset()


def _refused_publish(mqtt_stack, device, key: str, topic: str, payload: str) -> DeadLetter:
    connection = connected(mqtt_stack, device, key)
    try:
        assert connection.publish(topic, payload)
    finally:
        connection.close()
    assert wait_until(lambda: DeadLetter.objects.filter(body=payload.encode()).exists(), timeout=30), (
        mqtt_stack.worker_log.read_text()[-3000:]
    )
    return DeadLetter.objects.get(body=payload.encode())


def test_a_refused_publish_edited_in_the_console_goes_back_to_its_topic_and_is_stored(
    mqtt_stack, publishing_to_the_stacks_node
):
    resident = ResidentFactory()
    gateway = DeviceFactory(resident=resident, device_type=DeviceType.GATEWAY)
    sensor = DeviceFactory(resident=resident)
    _, key = device_key_issue(device=gateway)
    topic = f"devices/{sensor.serial_no}/readings/via/{gateway.serial_no}"
    measured_at = recent()
    letter = _refused_publish(
        mqtt_stack,
        gateway,
        key,
        topic,
        json.dumps({"metric": "spo2", "value": "ninety", "measured_at": measured_at}),
    )
    operator = UserFactory(username="mqtt-operator", role=OPERATORS)

    # As it is, it goes back to its topic and the bridge refuses it again: the same failed
    # message is dead again (not a second one), with a second failure.
    dead_letter_requeue(dead_letter_id=letter.pk, actor=operator)
    assert wait_until(
        lambda: DeadLetter.objects.filter(pk=letter.pk, status=DeadLetter.Status.DEAD).exists(), timeout=30
    ), mqtt_stack.worker_log.read_text()[-3000:]
    assert DeadLetter.objects.filter(kind=MQTT_PUBLISH, body=letter.body).count() == 1

    # An edit the bridge would refuse again is refused here, naming the field; nothing is sent.
    still_bad = json.dumps({"metric": "spo2", "value": "ninety-six", "measured_at": measured_at})
    with pytest.raises(ApplicationError) as refused:
        dead_letter_requeue(dead_letter_id=letter.pk, actor=operator, reason="typo", edited_body=still_bad)
    assert "value" in refused.value.fields["readings"][0]
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.DEAD

    fixed = json.dumps({"metric": "spo2", "value": 96, "measured_at": measured_at})
    dead_letter_requeue(
        dead_letter_id=letter.pk, actor=operator, reason="value sent as text", edited_body=fixed
    )

    assert wait_until(lambda: SensorReading.objects.filter(device=sensor).exists(), timeout=30), (
        mqtt_stack.worker_log.read_text()[-3000:]
    )
    assert SensorReading.objects.get(device=sensor).value == 96
    # back through the bridge as the gateway's relay: the ledger still names the gateway
    assert IngestMessage.objects.get(device=gateway).relayed_devices == 1
    letter.refresh_from_db()
    assert (letter.status, bytes(letter.body)) == (DeadLetter.Status.REQUEUED, fixed.encode())


def test_a_publish_refused_as_ahead_of_the_clock_is_stored_when_requeued_as_it_is_later(
    mqtt_stack, publishing_to_the_stacks_node
):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    lead = BRIDGE_CLOCK_SKEW_SECONDS + 10
    measured_at = datetime.now(UTC) + timedelta(seconds=lead)
    payload = json.dumps({"metric": "heart_rate", "value": 64, "measured_at": measured_at.isoformat()})
    letter = _refused_publish(mqtt_stack, device, key, f"devices/{device.serial_no}/readings", payload)
    assert "measured_at" in json.loads(letter.error_message)["fields"]["readings"]["0"]

    # Once the reading is no longer ahead of the bridge's clock, the same payload is valid.
    time.sleep(max(0.0, (measured_at - datetime.now(UTC)).total_seconds() - BRIDGE_CLOCK_SKEW_SECONDS + 1))
    operator = UserFactory(username="mqtt-operator-2", role=OPERATORS)
    assert dead_letters_requeue_many(dead_letter_ids=[letter.pk], actor=operator) == 1

    assert wait_until(lambda: SensorReading.objects.filter(device=device).exists(), timeout=30), (
        mqtt_stack.worker_log.read_text()[-3000:]
    )
    assert SensorReading.objects.get(device=device).value == 64
    assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetter.Status.REQUEUED


def test_a_revoked_key_is_refused_at_the_next_connect(mqtt_stack):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    connected(mqtt_stack, device, key).close()
    device_keys_revoke(device=device)
    connection = DeviceConnection(port=mqtt_stack.mqtt_port, serial_no=device.serial_no, key=key)
    try:
        assert not connection.connect()
    finally:
        connection.close()


def test_the_products_own_amqp_user_still_logs_in_and_the_endpoints_refuse_a_wrong_secret(mqtt_stack):
    from tests.web import http_request

    connection = mqtt_stack.node.node.connection(1)  # guest: the broker's internal users come first
    assert connection.is_open
    connection.close()
    path = "/internal/broker-auth/{}/user"
    fields = "username=x&password=y"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert http_request(mqtt_stack.web_port, "POST", path.format("wrong"), fields, headers)[0] == 404
    status, _, answer = http_request(
        mqtt_stack.web_port, "POST", path.format(mqtt_stack.secret), fields, headers
    )
    assert (status, answer) == (200, b"deny")


@pytest.mark.skipif(not shutil.which("mosquitto_pub"), reason="Debian's mosquitto-clients is not installed")
def test_mosquitto_pub_as_docs_api_md_shows_it(mqtt_stack):
    device = DeviceFactory()
    _, key = device_key_issue(device=device)
    reading = json.dumps({"metric": "heart_rate", "value": 72.5, "unit": "bpm", "measured_at": recent()})

    def mosquitto_pub(password: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mqtt_stack.mqtt_port), "-V", "mqttv311", "-q", "1"]
            + ["-i", device.serial_no, "-u", device.serial_no, "-P", password]
            + ["-t", f"devices/{device.serial_no}/readings", "-m", reading],
            capture_output=True,
            text=True,
            timeout=30,
        )

    refused = mosquitto_pub(key + "x")
    assert refused.returncode != 0 and "bad user name or password" in refused.stderr, refused.stderr
    published = mosquitto_pub(key)
    assert published.returncode == 0, published.stderr
    assert wait_until(lambda: SensorReading.objects.filter(device=device).exists(), timeout=30)
