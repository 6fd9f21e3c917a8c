"""The pipelined publisher against the real broker: confirms, refusals, lost and half-open connections.

Each caller is told exactly what the broker did with its own message: confirmed, or
``BrokerUnavailable`` (nack, unroutable, connection lost, no answer in time). The
faults are real: a policy that makes RabbitMQ nack, a binding removed, a connection
closed through the management API, a TCP proxy that stops forwarding.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import pytest
from django.utils import timezone

from ingest.broker.connection import BrokerUnavailable, open_connection
from ingest.broker.publisher import OutgoingMessage, get_publisher, publish_many_confirmed, publisher_reset
from ingest.messages import DEVICE_BATCH
from tests.broker import (
    broker_connections_close,
    broker_refusing_publishes_to,
    management_api_available,
    queue_depth,
    queued_messages,
)
from tests.tcp_proxy import TcpProxy
from tests.workers import wait_until

needs_management = pytest.mark.skipif(
    not management_api_available(), reason="needs RabbitMQ's management API (RABBITMQ_MANAGEMENT_URL)"
)


def _message(number: int = 0) -> OutgoingMessage:
    return OutgoingMessage(str(uuid.uuid4()), f'{{"n": {number}}}'.encode(), DEVICE_BATCH)


def _queued_ids(queue: str) -> list[str]:
    return [properties.message_id for properties, _ in queued_messages(queue)]


def test_many_threads_publishing_at_once_are_each_confirmed_and_queued_once(ingest_queue):
    confirmed: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def publish_some(thread: int) -> None:
        for number in range(50):
            message = _message(thread * 1000 + number)
            try:
                get_publisher().publish(message)
            except BaseException as error:
                failures.append(error)
                return
            with lock:
                confirmed.append(message.message_id)

    threads = [threading.Thread(target=publish_some, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not failures
    assert len(confirmed) == 400
    queued = _queued_ids(ingest_queue.queue)
    assert sorted(queued) == sorted(confirmed)  # every one, and each exactly once


def test_publish_many_returns_exactly_the_confirmed_ids(ingest_queue):
    messages = [_message(number) for number in range(2000)]

    confirmed, failure = publish_many_confirmed(messages)

    assert failure is None
    assert confirmed == {message.message_id for message in messages}
    assert sorted(_queued_ids(ingest_queue.queue)) == sorted(confirmed)


def test_publish_many_of_nothing_publishes_nothing(ingest_queue):
    assert publish_many_confirmed([]) == (set(), None)
    assert queue_depth(ingest_queue.queue) == 0


@needs_management
def test_the_messages_the_broker_nacks_fail_and_only_those(ingest_queue):
    messages = [_message(number) for number in range(20)]

    with broker_refusing_publishes_to(ingest_queue.queue, keep=5):
        confirmed, failure = publish_many_confirmed(messages)
        with pytest.raises(BrokerUnavailable, match="nack"):
            get_publisher().publish(_message(99))

    # The queue took five, then refused: exactly those five are reported confirmed.
    assert isinstance(failure, BrokerUnavailable) and "nack" in str(failure)
    assert confirmed == {message.message_id for message in messages[:5]}
    assert sorted(_queued_ids(ingest_queue.queue)) == sorted(confirmed)


def test_an_unroutable_message_fails_and_the_next_routable_one_is_confirmed(ingest_queue):
    first = _message()
    get_publisher().publish(first)  # an open, declared channel first
    admin = open_connection()
    channel = admin.channel()
    channel.queue_unbind(ingest_queue.queue, ingest_queue.exchange, ingest_queue.routing_key)
    try:
        with pytest.raises(BrokerUnavailable, match="unroutable"):
            get_publisher().publish(_message())
        confirmed, failure = publish_many_confirmed([_message(number) for number in range(10)])
    finally:
        channel.queue_bind(ingest_queue.queue, ingest_queue.exchange, ingest_queue.routing_key)
        admin.close()
    assert confirmed == set() and "unroutable" in str(failure)

    last = _message()
    get_publisher().publish(last)
    assert _queued_ids(ingest_queue.queue) == [first.message_id, last.message_id]


@needs_management
def test_a_connection_closed_mid_stream_fails_the_messages_in_flight_and_the_next_publish_reconnects(
    ingest_queue,
):
    publisher_name = f"iot_care publisher pid={os.getpid()}"
    get_publisher().publish(_message())
    messages = [_message(number) for number in range(30_000)]
    outcome: list = []
    single_callers: dict[str, list[str]] = {"confirmed": [], "refused": []}
    stop = threading.Event()

    def publish_one_at_a_time() -> None:
        while not stop.is_set():
            message = _message()
            try:
                get_publisher().publish(message)
            except BrokerUnavailable:
                single_callers["refused"].append(message.message_id)
            else:
                single_callers["confirmed"].append(message.message_id)

    bulk = threading.Thread(target=lambda: outcome.append(publish_many_confirmed(messages)))
    singles = [threading.Thread(target=publish_one_at_a_time) for _ in range(4)]
    for thread in [bulk, *singles]:
        thread.start()
    try:
        assert wait_until(lambda: queue_depth(ingest_queue.queue) > 1000, timeout=30)
        # The management API lists a new connection after a moment: close it once it does.
        assert wait_until(lambda: broker_connections_close(publisher_name) > 0, timeout=30)
        bulk.join(30)
        settled = len(single_callers["confirmed"])
        assert wait_until(lambda: len(single_callers["confirmed"]) > settled + 50), (
            "the publisher did not reconnect"
        )
    finally:
        stop.set()
        for thread in [bulk, *singles]:
            thread.join(30)
    assert not any(thread.is_alive() for thread in [bulk, *singles]), "a caller hung"

    [(confirmed, failure)] = outcome
    assert isinstance(failure, BrokerUnavailable), "the close came after the last confirm: publish more"
    assert 0 < len(confirmed) < len(messages)
    queued = _queued_ids(ingest_queue.queue)
    # Never reported confirmed what was not queued; each message is on the queue at most once.
    assert confirmed <= set(queued)
    assert set(single_callers["confirmed"]) <= set(queued)
    assert len(queued) == len(set(queued))
    get_publisher().publish(_message())


def test_a_forked_child_publishes_on_its_own_connection(ingest_queue):
    before_fork = _message(1)
    get_publisher().publish(before_fork)
    in_child = _message(2)

    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            get_publisher().publish(in_child)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    after_fork = _message(3)
    get_publisher().publish(after_fork)  # the parent's connection was never touched by the child

    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(_queued_ids(ingest_queue.queue)) == sorted(
        [before_fork.message_id, in_child.message_id, after_fork.message_id]
    )


def test_a_child_forked_while_another_thread_held_the_publisher_lock_still_publishes(ingest_queue):
    # Regression: the child kept the inherited publisher, whose lock a parent thread held
    # at fork(): held forever in the child, so its first publish never returned.
    publisher = get_publisher()
    publisher.publish(_message(1))
    in_child = _message(2)
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with publisher._lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    holding.wait(5)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            signal.alarm(10)  # a hang ends the child instead of the test run
            get_publisher().publish(in_child)
            code = 0
        finally:
            os._exit(code)
    release.set()
    holder.join()
    _, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert in_child.message_id in _queued_ids(ingest_queue.queue)


# --- half-open broker: a TCP proxy that stops forwarding --------------------------------

PUBLISH_TIMEOUT = 1.5
MARGIN = 1.5


@pytest.fixture
def broker_behind_proxy(settings):
    """The publisher connects through a proxy in front of RabbitMQ, with a short timeout."""
    proxy = TcpProxy((settings.RABBITMQ_HOST, settings.RABBITMQ_PORT))
    settings.RABBITMQ_HOST, settings.RABBITMQ_PORT = "127.0.0.1", proxy.port
    settings.RABBITMQ_PUBLISH_TIMEOUT_SECONDS = PUBLISH_TIMEOUT
    publisher_reset()
    try:
        yield proxy
    finally:
        publisher_reset()
        proxy.close()


def _reading_post(client):
    reading = {
        "metric": "heart_rate",
        "value": 72.5,
        "unit": "bpm",
        "measured_at": timezone.now().isoformat(),
    }
    started = time.monotonic()
    response = client.post(
        "/api/v1/ingest/", data=json.dumps({"readings": [reading]}), content_type="application/json"
    )
    return response, time.monotonic() - started


def test_a_broker_that_stops_answering_gives_503_within_the_timeout_then_202_once_it_answers(
    device_client, ingest_queue, broker_behind_proxy
):
    accepted, _ = _reading_post(device_client)
    assert accepted.status_code == 202

    broker_behind_proxy.stop_forwarding()  # half-open: sockets stay up, nothing comes back
    refused, waited = _reading_post(device_client)
    assert refused.status_code == 503
    assert refused.json()["code"] == "broker_unavailable"
    assert refused.headers["Retry-After"]
    assert waited < PUBLISH_TIMEOUT + MARGIN, f"answered after {waited:.1f} s"
    # Still half-open: the next request opens a new connection, which does not answer either.
    refused_again, waited = _reading_post(device_client)
    assert refused_again.status_code == 503
    assert waited < PUBLISH_TIMEOUT + MARGIN, f"answered after {waited:.1f} s"

    broker_behind_proxy.resume_forwarding()
    accepted_again, _ = _reading_post(device_client)
    assert accepted_again.status_code == 202
    # The first and the last are on the queue; the refused ones never reached the broker
    # (the proxy dropped their bytes), and their callers were never told they were queued.
    assert queue_depth(ingest_queue.queue) == 2


def test_a_broker_that_stops_answering_fails_publish_many_within_the_timeout(
    ingest_queue, broker_behind_proxy
):
    get_publisher().publish(_message())
    broker_behind_proxy.stop_forwarding()
    started = time.monotonic()
    confirmed, failure = publish_many_confirmed([_message(number) for number in range(500)])
    assert time.monotonic() - started < PUBLISH_TIMEOUT + MARGIN
    assert confirmed == set()
    assert isinstance(failure, BrokerUnavailable)
    broker_behind_proxy.resume_forwarding()
    confirmed, failure = publish_many_confirmed([_message(number) for number in range(10)])
    assert failure is None and len(confirmed) == 10


def test_publish_many_start_returns_before_the_confirms_and_wait_reports_them(
    ingest_queue, broker_behind_proxy
):
    first = _message()
    get_publisher().publish(first)  # the connection's set-up is not what is timed
    broker_behind_proxy.delay = 0.1
    messages = [_message(number) for number in range(10)]

    started = time.monotonic()
    pending = get_publisher().publish_many_start(messages, window=4)
    handed_over_in = time.monotonic() - started
    confirmed, failure = pending.wait()
    waited = time.monotonic() - started

    assert handed_over_in < 0.2, f"publish_many_start took {handed_over_in:.2f} s"
    assert waited >= 0.2  # a confirm's round trip through the proxy, at the least
    assert failure is None
    assert confirmed == {message.message_id for message in messages}
    assert sorted(_queued_ids(ingest_queue.queue)) == sorted([first.message_id, *confirmed])


def test_a_broker_that_stops_answering_fails_what_publish_many_start_handed_over(
    ingest_queue, broker_behind_proxy
):
    get_publisher().publish(_message())
    broker_behind_proxy.stop_forwarding()
    pending = get_publisher().publish_many_start([_message(number) for number in range(20)], window=8)

    confirmed, failure = pending.wait()

    assert confirmed == set()
    assert isinstance(failure, BrokerUnavailable)


def test_a_message_that_cannot_be_encoded_fails_alone(ingest_queue):
    unencodable = OutgoingMessage(str(uuid.uuid4()), b"{}", DEVICE_BATCH, headers={"x-bad": object()})
    good = [_message(number) for number in range(5)]

    confirmed, failure = publish_many_confirmed([good[0], good[1], unencodable, good[2]])
    with pytest.raises(BrokerUnavailable, match="cannot be published"):
        get_publisher().publish(unencodable)
    get_publisher().publish(good[3])

    assert "cannot be published" in str(failure)
    assert confirmed == {message.message_id for message in good[:3]}
    assert sorted(_queued_ids(ingest_queue.queue)) == sorted(message.message_id for message in good[:4])


def test_a_connection_attempt_given_up_on_leaves_the_publisher_running(ingest_queue, broker_behind_proxy):
    # The attempt used to be closed while opening; when that close lands in the AMQP
    # handshake, pika 1.4 reports the abort with an exception class instead of an instance
    # and asserts inside the I/O loop (connection_workflow.py, ConnectionOpenAborted), so
    # the thread died under the next caller: a 503 after the broker was back (seen under
    # load; the timing is not reproducible on demand, so this checks the recovery).
    broker_behind_proxy.stop_forwarding()  # no connection yet: the first one never opens
    publisher = get_publisher()
    with pytest.raises(BrokerUnavailable):
        publisher.publish(_message())
    io_thread_loop = publisher._loop
    time.sleep(PUBLISH_TIMEOUT)  # the given-up attempt ends meanwhile
    assert io_thread_loop.is_alive(), "the I/O thread died"

    broker_behind_proxy.resume_forwarding()
    publisher.publish(_message())
    assert queue_depth(ingest_queue.queue) == 1
