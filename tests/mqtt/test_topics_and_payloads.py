"""The pure parts of the MQTT path: routing keys and payload shapes."""

from __future__ import annotations

import pytest

from ingest.mqtt.payloads import mqtt_payload_records
from ingest.mqtt.topics import DeviceTopic, device_topic_of


def test_device_topics_are_read_from_routing_keys():
    assert device_topic_of("devices.SN-1.readings") == DeviceTopic("SN-1", "readings")
    assert device_topic_of("devices.SN-1.events").mqtt_topic == "devices/SN-1/events"
    for routing_key in (
        "devices.SN-1.commands",
        "devices..readings",
        "devices.a.b.readings",
        "other.SN-1.events",
    ):
        assert device_topic_of(routing_key) is None, routing_key
    assert device_topic_of("devices.*.readings") is None  # a wildcard names no device


def test_relay_topics_name_the_device_and_the_gateway_that_sent_them():
    relayed = device_topic_of("devices.SN-1.readings.via.GW-1")
    assert relayed == DeviceTopic("SN-1", "readings", via="GW-1")
    assert relayed.sender_serial_no == "GW-1"
    assert relayed.mqtt_topic == "devices/SN-1/readings/via/GW-1"
    assert relayed.routing_key == "devices.SN-1.readings.via.GW-1"
    assert device_topic_of("devices.SN-1.events").sender_serial_no == "SN-1"
    for routing_key in (
        "devices.SN-1.readings.via",
        "devices.SN-1.readings.from.GW-1",
        "devices.SN-1.readings.via.*",
        "devices.SN-1.readings.via.SN-1",  # a device relays nothing for itself
        "devices.SN-1.readings.via.GW-1.more",
    ):
        assert device_topic_of(routing_key) is None, routing_key


def test_payloads_are_the_apis_body_or_bare_records_of_the_topics_kind():
    body = b'{"readings": [{"metric": "m"}], "events": []}'
    assert mqtt_payload_records(body, kind="events") == {"readings": [{"metric": "m"}], "events": []}
    assert mqtt_payload_records(b'{"metric": "m"}', kind="readings") == {"readings": [{"metric": "m"}]}
    assert mqtt_payload_records(b'[{"event_type": "e"}]', kind="events") == {"events": [{"event_type": "e"}]}


@pytest.mark.parametrize("payload", [b"not json", b'"text"', b"42", b"\xff\xfe", b'{"value": NaN}'])
def test_other_payloads_are_refused_with_a_reason(payload):
    with pytest.raises(ValueError) as refusal:
        mqtt_payload_records(payload, kind="readings")
    assert str(refusal.value)


def test_payloads_over_the_apis_body_limit_are_refused(settings):
    settings.INGEST_MAX_BODY_BYTES = 100
    with pytest.raises(ValueError, match="the limit is 100"):
        mqtt_payload_records(b'{"metric": "m", "padding": "' + b"x" * 100 + b'"}', kind="readings")
