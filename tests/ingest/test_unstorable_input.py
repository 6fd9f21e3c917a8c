"""What the API accepts, the worker can store: values PostgreSQL refuses, and JSON nested
deeper than a parser follows, are a 400 naming the field, on every entrance."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from ingest.json_input import JSON_MAX_DEPTH
from ingest.models import DeadLetter, DeviceEvent, SensorReading, WebhookEvent, WebhookSource
from ingest.record_validation import device_records_split
from ingest.services.file_import import file_import
from tests.broker import publish_raw, queue_depth
from tests.factories import DeviceFactory
from tests.webhooks import TEST_SECRET, signed_webhook_post
from tests.workers import wait_until, worker_thread

INGEST = "/api/v1/ingest/"
DEEP = 1000  # levels: Python's parser gives up (RecursionError) well before this
FEW_HUNDRED = 300  # levels: parsed fine, yet nothing anyone needs; refused as well


def _now() -> str:
    return timezone.now().isoformat()


def _reading(unit: str = '"bpm"', metric: str = '"heart_rate"') -> str:
    return f'{{"metric": {metric}, "value": 72.5, "unit": {unit}, "measured_at": "{_now()}"}}'


def _event(detail: str) -> str:
    return f'{{"event_type": "fall_detected", "occurred_at": "{_now()}", "detail": {detail}}}'


def _post_ingest(client: APIClient, raw: str | bytes):
    return client.post(INGEST, data=raw, content_type="application/json")


def _field_errors(response, *path):
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    errors = response.json()["fields"]
    for key in path:
        errors = errors[key]
    return errors


@pytest.fixture
def webhook_source(db):
    return WebhookSource.objects.create(name="carelink", secret=TEST_SECRET)


def _post_webhook(source: WebhookSource, raw: bytes):
    return signed_webhook_post(raw, source=source.name, secret=source.secret)


# --- accepted, then poison ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        ('{"events": [' + _event('{"x": 1e400}') + "]}", ("events", "0", "detail"), "finite"),
        ('{"events": [' + _event('{"x": [1, -1e400]}') + "]}", ("events", "0", "detail"), "x.1"),
        ('{"events": [' + _event('{"room": "\\ud800"}') + "]}", ("events", "0", "detail"), "surrogate"),
        ('{"events": [' + _event('{"\\udfff": 1}') + "]}", ("events", "0", "detail"), "surrogate"),
        ('{"events": [' + _event('{"a": {"b": "x\\u0000"}}') + "]}", ("events", "0", "detail"), "a.b"),
        ('{"readings": [' + _reading(unit='"\\ud800"') + "]}", ("readings", "0", "unit"), "surrogate"),
        ('{"readings": [' + _reading(metric='"\\ud800"') + "]}", ("readings", "0", "metric"), "lower-case"),
        ('{"readings": [' + _reading(unit='"b\\ud83dpm"') + "]}", ("readings", "0", "unit"), "surrogate"),
    ],
)
def test_values_the_database_cannot_store_are_a_400_naming_the_field(
    device_client, ingest_queue, body, path, reason
):
    [message] = _field_errors(_post_ingest(device_client, body), *path)
    assert reason in message
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.django_db
def test_a_surrogate_encoded_in_the_raw_bytes_is_refused(device_client, ingest_queue):
    body = ('{"readings": [' + _reading(unit='"b\udc00pm"') + "]}").encode("utf-8", "surrogatepass")
    response = _post_ingest(device_client, body)
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (b'{"type": "visit", "reading": 1e400}', "reading", "finite"),
        (b'{"type": "visit", "nested": {"list": [0, 1e400]}}', "nested.list.1", "finite"),
        (b'{"type": "visit", "note": "\\ud800"}', "note", "surrogate"),
        (b'{"type": "visit", "\\ud800": "key"}', "\\ud800", "surrogate"),
        (b'{"type": "visit", "note": "a\\u0000b"}', "note", "NUL"),
        (b'{"type": "visit", "x": NaN}', None, "NaN"),
    ],
)
def test_a_webhook_body_the_database_cannot_store_is_a_400_naming_the_field(
    webhook_source, ingest_queue, body, field, reason
):
    response = _post_webhook(webhook_source, body)
    assert response.status_code == 400, response.content
    answer = response.json()
    if field is None:
        assert answer["code"] == "parse_error"
        assert reason in answer["message"]
    else:
        [message] = answer["fields"][field]
        assert reason in message
    assert queue_depth(ingest_queue.queue) == 0


def test_collection_and_file_import_share_the_refusals():
    data = json.loads(
        '{"readings": [' + _reading(unit='"\\ud800"') + '], "events": [' + _event('{"x": 1e400}') + "]}"
    )
    split = device_records_split(data)
    assert not split.readings and not split.events
    assert "surrogate" in split.rejections[0]["errors"]["unit"][0]
    assert "finite" in str(split.rejections[1]["errors"]["detail"][0])


@pytest.mark.usefixtures("committed_db")
def test_file_import_reports_unstorable_and_deeply_nested_lines_and_imports_the_rest(tmp_path, ingest_queue):
    DeviceFactory(serial_no="VIT-1")
    path = tmp_path / "records.ndjson"
    path.write_text(
        "\n".join(
            [
                _reading(),
                _reading(unit='"\\ud800"'),
                _event('{"x": 1e400}'),
                '{"metric": "heart_rate", "x": ' + _nested(DEEP) + "}",
                _reading(),
            ]
        )
    )
    summary = file_import(path=path, file_format="ndjson", device_serial="VIT-1")
    reasons = dict(summary.bad_lines)
    assert sorted(reasons) == [2, 3, 4]
    assert "surrogate" in reasons[2]
    assert "finite" in reasons[3]
    assert "nested" in reasons[4]
    assert summary.records_published == 2


@pytest.mark.usefixtures("committed_db")
def test_the_worker_dead_letters_a_deeply_nested_body_and_carries_on(ingest_queue):
    deep = publish_raw(_nested(50_000).encode())
    with worker_thread(ingest_queue) as worker:
        assert wait_until(lambda: DeadLetter.objects.filter(message_id=deep).exists())
    assert worker.totals.dead_lettered == 1
    assert "nested" in DeadLetter.objects.get().error_message


@pytest.mark.usefixtures("committed_db")
def test_what_the_api_accepts_the_real_worker_stores(device_client, webhook_source, ingest_queue):
    body = (
        '{"readings": ['
        + _reading(unit='"\\u00b5mol/L \\ud83d\\ude00"')
        + '], "events": ['
        + _event('{"room": "caf\\u00e9", "depth": [[[[1.5e300]]]], "emoji": "\\ud83d\\ude00"}')
        + "]}"
    )
    assert _post_ingest(device_client, body).status_code == 202
    webhook = b'{"type": "visit", "value": 1e300, "note": "\\ud83d\\ude00 caf\\u00e9"}'
    assert _post_webhook(webhook_source, webhook).status_code == 202

    with worker_thread(ingest_queue) as worker:
        assert wait_until(lambda: WebhookEvent.objects.count() == 1 and DeviceEvent.objects.count() == 1)
    assert worker.totals.dead_lettered == 0 and worker.totals.retried == 0
    assert SensorReading.objects.get().unit == "\u00b5mol/L \U0001f600"
    assert float(DeviceEvent.objects.get().detail["depth"][0][0][0][0]) == 1.5e300
    assert WebhookEvent.objects.get().payload["note"] == "\U0001f600 caf\u00e9"


# --- nesting ------------------------------------------------------------------------------


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.django_db
@pytest.mark.parametrize("levels", [FEW_HUNDRED, DEEP, 50_000])
@pytest.mark.parametrize(
    "shape",
    [
        lambda nested: nested,
        lambda nested: '{"readings": [' + nested + "]}",
        lambda nested: '{"readings": [' + _reading() + '], "extra": ' + nested + "}",
        lambda nested: '{"events": [' + _event('{"x": ' + nested + "}") + "]}",
    ],
    ids=["whole body", "a reading", "an unknown field", "an event's detail"],
)
def test_deeply_nested_json_on_ingest_is_a_400_in_the_api_shape(device_client, ingest_queue, levels, shape):
    response = _post_ingest(device_client, shape(_nested(levels)))
    assert response.status_code == 400, response.content[:300]
    answer = response.json()
    assert set(answer) >= {"code", "message"}
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("levels", [FEW_HUNDRED, DEEP, 50_000])
def test_deeply_nested_json_on_a_webhook_is_a_400_in_the_api_shape(webhook_source, ingest_queue, levels):
    response = _post_webhook(webhook_source, ('{"type": "visit", "data": ' + _nested(levels) + "}").encode())
    assert response.status_code == 400, response.content[:300]
    answer = response.json()
    assert set(answer) >= {"code", "message"}
    assert "nested" in answer["message"] or "nested" in json.dumps(answer.get("fields", {}))
    assert queue_depth(ingest_queue.queue) == 0


@pytest.mark.usefixtures("committed_db")
def test_nesting_up_to_the_limit_is_accepted_and_stored(device_client, webhook_source, ingest_queue):
    # Levels are counted over the whole document: body, events list, event, detail = 4.
    def ingest_body(levels: int) -> str:
        return '{"events": [' + _event('{"x": ' + _nested(levels - 4) + "}") + "]}"

    def webhook_body(levels: int) -> bytes:
        return ('{"x": ' + _nested(levels - 1) + "}").encode()

    assert _post_ingest(device_client, ingest_body(JSON_MAX_DEPTH)).status_code == 202
    assert _post_webhook(webhook_source, webhook_body(JSON_MAX_DEPTH)).status_code == 202
    beyond_ingest = _post_ingest(device_client, ingest_body(JSON_MAX_DEPTH + 1))
    assert beyond_ingest.status_code == 400
    assert f"{JSON_MAX_DEPTH} levels" in beyond_ingest.json()["message"]
    assert _post_webhook(webhook_source, webhook_body(JSON_MAX_DEPTH + 1)).status_code == 400

    with worker_thread(ingest_queue) as worker:
        assert wait_until(lambda: WebhookEvent.objects.count() == 1 and DeviceEvent.objects.count() == 1)
    assert worker.totals.dead_lettered == 0 and worker.totals.retried == 0
