"""Publishing with publisher confirms: a message counts as queued only once RabbitMQ says so.

Each process has one ``ConfirmedPublisher``: one broker connection, owned by one I/O
thread that runs pika's ``SelectConnection``. Callers (request threads, a bulk requeue)
hand messages over and wait; the I/O thread publishes whatever is waiting at once and
resolves each caller when the broker's confirm for its message arrives. Many messages
are in flight on the connection together, so a caller waits for one round trip, not for
the round trips of everybody queued before it.

What a caller is told, and what it means:

* ``publish`` returns: the broker confirmed the message (it is on a durable queue).
* ``BrokerUnavailable``: the broker nacked it (queue full), returned it as unroutable,
  the connection was lost before its confirm, or no confirm came within
  ``RABBITMQ_PUBLISH_TIMEOUT_SECONDS``. The message may or may not be queued; a copy
  that is, is harmless (the worker's ledger dedupes by message id). Nothing the broker
  did not confirm is ever reported confirmed.

pika connections are not thread-safe: only the I/O thread touches the connection; other
threads only append to a deque and wake the loop with ``add_callback_threadsafe`` (the
one thread-safe IOLoop method). A forked child never uses its parent's thread or socket:
the publisher notices the new pid and starts its own.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pika
import pika.exceptions
from django.conf import settings
from pika.adapters.select_connection import IOLoop
from pika.spec import Basic

from .connection import (
    Backoff,
    BrokerNode,
    BrokerUnavailable,
    broker_nodes,
    connection_parameters,
    node_rotation,
)
from .topology import Topology

logger = logging.getLogger(__name__)

# The connection is serviced by its own thread even when the process is idle, so the
# heartbeats are answered at any time: they keep an idle connection from being dropped
# by the broker or a NAT/proxy, and a connection that silently died while idle is
# noticed within ~HEARTBEAT + 5 s instead of costing the next request its full publish
# timeout. (A blocking connection, serviced only while publishing, had to turn them off.)
HEARTBEAT_SECONDS = 20
# How often the I/O thread looks for confirms and connection attempts past their deadline.
DEADLINE_CHECK_SECONDS = 0.05
# A caller waits this much longer than the deadline the I/O thread enforces, so that the
# I/O thread's own answer (with its reason) wins; past it, the I/O thread is presumed stuck.
CALLER_GRACE_SECONDS = 1.0
# Messages one ``publish_many`` keeps in flight at once: enough to keep the connection
# busy for a whole broker round trip at full rate, small enough to bound memory and the
# number of copies that may be duplicated when a connection drops.
PUBLISH_MANY_WINDOW = 4000
# After every node of the cluster refused a connection, callers are answered at once for
# this long (growing while it lasts) instead of each one knocking on every node again.
# A nack may come from a channel that can no longer publish at all: RabbitMQ 3.10 keeps
# nacking a quorum queue's publishes on a channel whose enqueuer was registered with a
# leader that died, for as long as the channel lives (measured here: over a minute; a new
# channel publishes within 0.5 s). So after a nack the connection is retired, at most this
# often: nothing more is sent on it, the messages in flight get their own confirms (a
# broker may nack later messages before it acks earlier ones it is writing to disk), and
# then the waiting messages go out on a new connection. A queue that is really full
# (reject-publish) costs one reconnect a second.
NACK_RECONNECT_EVERY_SECONDS = 1.0
RECONNECT_BACKOFF_INITIAL_SECONDS = 0.1
RECONNECT_BACKOFF_CAP_SECONDS = 2.0


@dataclass(frozen=True)
class OutgoingMessage:
    message_id: str
    body: bytes
    message_type: str
    headers: dict = field(default_factory=dict)
    # Where it goes when not to the main queue: (exchange, routing key). Only a message
    # going back to where it first came from (a device's MQTT topic) has one.
    destination: tuple[str, str] | None = None

    def properties(self) -> pika.BasicProperties:
        """Persistent (survives a broker restart), with the stable id the ledger dedupes on."""
        return pika.BasicProperties(
            message_id=self.message_id,
            type=self.message_type,
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            headers=self.headers,
        )


# Called exactly once, in the I/O thread: (pending, None) when confirmed, else the reason.
_Outcome = Callable[["_Pending", str | None], None]


class _Pending:
    """One message handed to the I/O thread, until its outcome is known."""

    __slots__ = ("message", "deadline", "on_outcome", "returned")

    def __init__(self, message: OutgoingMessage, deadline: float, on_outcome: _Outcome) -> None:
        self.message = message
        self.deadline = deadline
        self.on_outcome = on_outcome
        self.returned: str | None = None  # set when the broker returned it as unroutable


class ConfirmedPublisher:
    """One connection per process, many confirmed publishes in flight on it.

    Thread-safe and fork-safe: ``publish`` and ``publish_many`` may be called from any
    thread; the I/O thread starts on first use in each process.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: _ConnectionLoop | None = None

    # --- callers' side ---------------------------------------------------------------

    def publish(self, message: OutgoingMessage) -> None:
        """Publish to the main queue and wait for the broker's confirm of this message.

        Raises BrokerUnavailable if the broker is unreachable, refuses the message (nack,
        e.g. the queue is full), returns it as unroutable, loses the connection before
        confirming, or does not confirm within RABBITMQ_PUBLISH_TIMEOUT_SECONDS.
        """
        timeout = settings.RABBITMQ_PUBLISH_TIMEOUT_SECONDS
        answered = threading.Event()
        outcome: list[str | None] = []

        def on_outcome(pending: _Pending, error: str | None) -> None:
            outcome.append(error)
            answered.set()

        self._running_loop().submit([_Pending(message, time.monotonic() + timeout, on_outcome)])
        if not answered.wait(timeout + CALLER_GRACE_SECONDS):
            raise BrokerUnavailable(f"the publisher did not answer within {timeout:g} s")
        if outcome[0] is not None:
            raise BrokerUnavailable(outcome[0])

    def publish_many(
        self, messages: Iterable[OutgoingMessage], *, window: int = PUBLISH_MANY_WINDOW
    ) -> tuple[set[str], BrokerUnavailable | None]:
        """Publish every message with up to ``window`` in flight; return the confirmed ids and the first error.

        After the first failure nothing more is handed over (the broker is refusing or
        gone: the rest would only fail too); the ones already in flight are waited for.
        The caller acts only on the ids returned: those, and only those, were confirmed.
        """
        return self.publish_many_start(messages, window=window).wait()

    def publish_many_start(
        self, messages: Iterable[OutgoingMessage], *, window: int = PUBLISH_MANY_WINDOW
    ) -> PendingConfirms:
        """``publish_many`` without the wait: the first ``window`` messages are handed over now.

        The caller goes on (validating the next records, say) while the broker confirms,
        and calls ``wait()`` on the result, which hands over the rest and returns what
        ``publish_many`` returns. Nothing is confirmed to anyone before ``wait()`` says so.
        """
        pending = PendingConfirms(self._running_loop(), iter(messages), window)
        pending.hand_over()
        return pending

    def close(self) -> None:
        """Stop the I/O thread; messages still waiting get BrokerUnavailable."""
        with self._lock:
            loop, self._loop = self._loop, None
            owned = self._pid == os.getpid()
        if loop is not None and owned:
            loop.stop()

    def _running_loop(self) -> _ConnectionLoop:
        with self._lock:
            if self._pid != os.getpid():
                # Inherited from a parent process: its thread does not exist here and its
                # socket belongs to the parent's session. Never touch either.
                self._loop = None
                self._pid = os.getpid()
            if self._loop is None or not self._loop.is_alive():
                self._loop = _ConnectionLoop(self.topology)
            return self._loop


class PendingConfirms:
    """Messages of one ``publish_many``: handed to the I/O thread in slices, then their confirms awaited."""

    def __init__(self, loop: _ConnectionLoop, messages: Iterator[OutgoingMessage], window: int) -> None:
        self._loop = loop
        self._messages = messages
        self._window = window
        self._timeout = settings.RABBITMQ_PUBLISH_TIMEOUT_SECONDS
        # Hand messages over in slices as the window frees up: one wake-up of the I/O
        # thread per slice, not per message.
        self._refill_at = max(0, window - max(1, window // 4))
        self._changed = threading.Condition()
        self._in_flight = 0
        self._confirmed: set[str] = set()
        self._error: str | None = None
        self._exhausted = False
        self._latest_deadline = time.monotonic()

    def _on_outcome(self, pending: _Pending, error: str | None) -> None:
        with self._changed:
            self._in_flight -= 1
            if error is None:
                self._confirmed.add(pending.message.message_id)
            elif self._error is None:
                self._error = error
            # Wake the waiter only when what it waits for may have come: room for the next
            # slice, or, once everything was handed over, the last outcome.
            if self._in_flight == 0 or (not self._exhausted and self._in_flight <= self._refill_at):
                self._changed.notify()

    def hand_over(self) -> None:
        """Hand over as many more messages as the window has room for (none after a failure)."""
        with self._changed:
            if self._error is not None:
                self._exhausted = True
                return
            room = self._window - self._in_flight
        self._latest_deadline = time.monotonic() + self._timeout
        batch = []
        for message in self._messages:
            batch.append(_Pending(message, self._latest_deadline, self._on_outcome))
            if len(batch) >= room:
                break
        else:
            self._exhausted = True
        if batch:
            with self._changed:
                self._in_flight += len(batch)
            self._loop.submit(batch)

    def wait(self) -> tuple[set[str], BrokerUnavailable | None]:
        """Hand over the rest as confirms free the window; return the confirmed ids and the first error."""
        while not self._exhausted:
            with self._changed:
                if not self._wait_for(lambda: self._in_flight <= self._refill_at):
                    break
            self.hand_over()
        with self._changed:
            self._wait_for(lambda: self._in_flight == 0)
            error = self._error
            confirmed = set(self._confirmed)
        return confirmed, (BrokerUnavailable(error) if error is not None else None)

    def _wait_for(self, ready: Callable[[], bool]) -> bool:
        """Wait (holding ``_changed``) until ``ready()``; False if the I/O thread went quiet."""
        while not ready():
            remaining = self._latest_deadline + CALLER_GRACE_SECONDS - time.monotonic()
            if remaining <= 0:
                if self._error is None:
                    self._error = "the publisher did not answer in time"
                return False
            self._changed.wait(remaining)
        return True


class _ConnectionLoop:
    """The I/O thread: owns the connection and every message between hand-over and outcome.

    Everything below except ``submit``, ``stop`` and ``is_alive`` runs in that thread.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._ioloop = IOLoop()
        self._handed_over: collections.deque[_Pending] = collections.deque()
        self._wake_requested = False
        self._stopping = False
        # I/O thread state.
        self._waiting: collections.deque[_Pending] = collections.deque()  # not yet sent
        self._in_flight: collections.OrderedDict[int, _Pending] = collections.OrderedDict()
        self._connection: pika.SelectConnection | None = None
        self._node: BrokerNode | None = None  # the node of ``_connection``
        self._nodes_refused = 0  # nodes that refused in a row, this round
        self._round_started = 0.0  # when this round of connection attempts began
        self._reconnect_backoff = Backoff(
            initial=RECONNECT_BACKOFF_INITIAL_SECONDS, cap=RECONNECT_BACKOFF_CAP_SECONDS
        )
        self._reconnect_not_before = 0.0
        self._nack_reconnected_at = float("-inf")
        self._retiring = False  # the connection takes no new messages; replaced once drained
        self._channel = None  # set once confirm mode is on and the topology declared
        self._next_tag = 1
        self._thread = threading.Thread(target=self._run, name="broker-publisher", daemon=True)
        self._thread.start()

    # --- any thread ------------------------------------------------------------------

    def submit(self, pendings: list[_Pending]) -> None:
        self._handed_over.extend(pendings)
        # One wake-up per burst: the I/O thread clears the flag before it drains, so a
        # message appended after the drain began always finds the flag clear.
        if not self._wake_requested:
            self._wake_requested = True
            try:
                self._ioloop.add_callback_threadsafe(self._take_handed_over)
            except (OSError, ValueError, AttributeError):
                # The loop stopped in the meantime (a reset from another thread).
                for pending in pendings:
                    self._answer(pending, "the publisher stopped")

    def stop(self, *, join_timeout: float = 5.0) -> None:
        self._ioloop.add_callback_threadsafe(self._shutdown)
        if threading.current_thread() is not self._thread:
            self._thread.join(join_timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    # --- the I/O thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._ioloop.call_later(DEADLINE_CHECK_SECONDS, self._check_deadlines)
            self._ioloop.start()
        except Exception:
            logger.exception("the broker publisher's I/O thread failed")
        finally:
            self._stopping = True
            self._abort_connection("the publisher stopped")
            self._fail_all("the publisher stopped")
            self._ioloop.close()

    def _take_handed_over(self) -> None:
        self._wake_requested = False
        handed_over = self._handed_over
        while handed_over:
            self._waiting.append(handed_over.popleft())
        if self._stopping:
            self._fail_all("the publisher stopped")
            return
        self._send_waiting()

    def _send_waiting(self) -> None:
        if not self._waiting:
            return
        if self._retiring:
            return  # sent on the next connection, once what is in flight is answered
        if self._channel is None:
            if self._connection is None:
                self._connect()
            return
        channel = self._channel
        main_queue = (self.topology.exchange, self.topology.routing_key)
        waiting, in_flight = self._waiting, self._in_flight
        while waiting:
            pending = waiting[0]
            message = pending.message
            exchange, routing_key = message.destination or main_queue
            try:
                channel.basic_publish(
                    exchange=exchange,
                    routing_key=routing_key,
                    body=message.body,
                    properties=message.properties(),
                    mandatory=True,
                )
            except Exception as error:
                if channel.is_open and self._connection is not None and self._connection.is_open:
                    # Nothing was written: the message itself cannot be encoded (a header
                    # value AMQP has no type for). Only its caller is told.
                    waiting.popleft()
                    self._answer(pending, f"the message cannot be published: {error!r}")
                    continue
                # The channel or connection broke under us; its close callback may not
                # have run yet. What was sent is lost with it; what was not is tried on a
                # new one.
                reason = f"broker connection lost while publishing: {error!r}"
                self._abort_connection(reason)
                self._connection_lost(reason, fail_waiting=False)
                self._connect()
                return
            waiting.popleft()
            in_flight[self._next_tag] = pending
            self._next_tag += 1

    # Connection and channel set-up, one step per broker answer.

    def _connect(self) -> None:
        wait = self._reconnect_not_before - time.monotonic()
        if wait > 0:
            self._fail_waiting(f"broker unreachable on every node; trying again in {wait:.1f} s")
            return
        self._node = node_rotation.ordered()[0]
        if self._nodes_refused == 0:
            self._round_started = time.monotonic()
        try:
            self._connection = pika.SelectConnection(
                # Bounded set-up: connection_attempts=1, socket_timeout and stack_timeout
                # (TCP connect, then the whole AMQP handshake) are the publish timeout.
                connection_parameters(self._node, heartbeat=HEARTBEAT_SECONDS, role="publisher"),
                on_open_callback=self._on_connection_open,
                on_open_error_callback=self._on_connection_open_error,
                on_close_callback=self._on_connection_closed,
                custom_ioloop=self._ioloop,
            )
        except Exception as error:  # bad parameters or host: nothing will ever answer
            self._connection = None
            self._fail_waiting(f"broker unreachable: {error!r}")

    def _on_connection_open(self, connection) -> None:
        if connection is not self._connection:
            connection.close()  # an attempt given up on that opened after all
            return
        node_rotation.reached(self._node)
        self._nodes_refused = 0
        self._reconnect_backoff.reset()
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel) -> None:
        if channel.connection is not self._connection:
            return
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(
            ack_nack_callback=self._on_confirm,
            callback=lambda _frame: self._declare(channel, iter(self.topology.declarations())),
        )

    def _declare(self, channel, declarations) -> None:
        """The topology, once per connection, each declaration after the previous one's answer."""
        if channel.connection is not self._connection or not channel.is_open:
            return
        declaration = next(declarations, None)
        if declaration is None:
            self._channel = channel
            self._next_tag = 1  # delivery tags count from 1 after Confirm.Select
            self._send_waiting()
            return
        getattr(channel, declaration.method)(
            **declaration.arguments, callback=lambda _frame: self._declare(channel, declarations)
        )

    def _on_connection_open_error(self, connection, error) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        node_rotation.failed(self._node)
        self._nodes_refused += 1
        if self._nodes_refused < len(broker_nodes()):
            # A cluster: the next node may well answer, within the same callers' deadlines.
            logger.warning("broker node %s unreachable (%r): trying the next one", self._node, error)
            self._connect()
            return
        self._nodes_refused = 0
        # Rounds begin at most once per backoff delay: a round that failed fast (refused
        # everywhere) is followed by a pause; one that took its timeouts, by none.
        delay = self._reconnect_backoff.next_delay()
        self._reconnect_not_before = self._round_started + delay
        logger.warning(
            "broker unreachable on every node: %r (%d message(s) waiting; next attempt in %.1f s)",
            error,
            len(self._waiting),
            max(0.0, self._reconnect_not_before - time.monotonic()),
        )
        self._fail_waiting(f"broker unreachable: {error!r}")

    def _on_connection_closed(self, connection, reason) -> None:
        if connection is not self._connection:
            return
        self._connection_lost(f"broker connection lost: {reason!r}", fail_waiting=True)

    def _on_channel_closed(self, channel, reason) -> None:
        connection = channel.connection
        if connection is not self._connection:
            return
        # One channel per connection: a closed channel (a refused declaration, a broker
        # error) ends the connection; the next publish opens a fresh one.
        self._connection_lost(f"broker channel closed: {reason!r}", fail_waiting=True)
        if connection.is_open:
            connection.close()

    # Confirms and returns.

    def _on_return(self, channel, method, properties, body) -> None:
        # RabbitMQ sends basic.return before the basic.ack of the same message, and in
        # publish order: the oldest unreturned in-flight message with this id is it.
        if channel is not self._channel:
            return
        for pending in self._in_flight.values():
            if pending.returned is None and pending.message.message_id == properties.message_id:
                pending.returned = (
                    f"broker returned the message as unroutable ({method.reply_code} {method.reply_text})"
                )
                return

    def _on_confirm(self, frame) -> None:
        if self._channel is None or frame.channel_number != self._channel.channel_number:
            return
        method = frame.method
        refused = None if isinstance(method, Basic.Ack) else "broker refused the message (nack)"
        in_flight = self._in_flight
        if method.multiple:
            upto = method.delivery_tag or self._next_tag  # tag 0 with multiple: everything
            while in_flight:
                tag = next(iter(in_flight))
                if tag > upto:
                    break
                self._resolve(in_flight.pop(tag), refused)
        else:
            pending = in_flight.pop(method.delivery_tag, None)
            if pending is not None:
                self._resolve(pending, refused)
        if refused and time.monotonic() - self._nack_reconnected_at >= NACK_RECONNECT_EVERY_SECONDS:
            self._nack_reconnected_at = time.monotonic()
            self._retiring = True
        if self._retiring and not in_flight:
            reason = "the broker refused a message (nack): publishing on a new connection"
            self._abort_connection(reason)
            self._connection_lost(reason, fail_waiting=False)
            self._send_waiting()

    def _resolve(self, pending: _Pending, refused: str | None) -> None:
        self._answer(pending, refused or pending.returned)

    # Deadlines and failures.

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        if self._in_flight:
            # The oldest message in flight was sent first and has (within the moment it
            # took to hand over) the earliest deadline.
            oldest = next(iter(self._in_flight.values()))
            if oldest.deadline <= now:
                timeout = settings.RABBITMQ_PUBLISH_TIMEOUT_SECONDS
                reason = f"no confirm from the broker within {timeout:g} s"
                # A broker that stops answering (half-open TCP, a hung node) would hold
                # every later message too: drop the connection, reconnect on demand.
                self._abort_connection(reason)
                self._connection_lost(reason, fail_waiting=False)
                self._send_waiting()
        if self._waiting and self._waiting[0].deadline <= now:
            timeout = settings.RABBITMQ_PUBLISH_TIMEOUT_SECONDS
            still_waiting = collections.deque()
            for pending in self._waiting:
                if pending.deadline <= now:
                    self._answer(pending, f"broker connection not ready within {timeout:g} s")
                else:
                    still_waiting.append(pending)
            self._waiting = still_waiting
            if self._channel is None and self._connection is not None:
                # A connection attempt that outlived a caller's deadline is not waited for
                # by the next caller: that one gets a fresh attempt.
                self._abort_connection("connection not ready in time")
                node_rotation.failed(self._node)  # a node that hangs: try the next one
                self._connection = None
                self._send_waiting()
        if not self._stopping:
            self._ioloop.call_later(DEADLINE_CHECK_SECONDS, self._check_deadlines)

    def _connection_lost(self, reason: str, *, fail_waiting: bool) -> None:
        """Forget the connection; fail what was in flight on it (and, if asked, what waits)."""
        if self._connection is not None:
            # The node went away, hung or broke the channel: the next connection starts at
            # the next node of a cluster (with one node, at the same one).
            node_rotation.failed(self._node)
        self._connection = None
        self._channel = None
        self._retiring = False
        in_flight, self._in_flight = self._in_flight, collections.OrderedDict()
        if in_flight or (fail_waiting and self._waiting):
            logger.warning(
                "%s: %d message(s) in flight and %d waiting get BrokerUnavailable",
                reason,
                len(in_flight),
                len(self._waiting) if fail_waiting else 0,
            )
        for pending in in_flight.values():
            self._answer(pending, reason)
        if fail_waiting:
            self._fail_waiting(reason)

    def _abort_connection(self, reason: str) -> None:
        connection = self._connection
        if connection is None or connection.is_closed:
            return
        try:
            if connection.is_open or connection.is_closing:
                # A graceful close waits for the broker's Close-Ok, which a half-open
                # connection never sends; pika (pinned in requirements) has no public
                # abort, and this is what its own heartbeat checker calls.
                connection._terminate_stream(BrokerUnavailable(reason))
            # Still opening: it is only forgotten (the caller sets ``_connection`` aside).
            # Closing it now makes pika abort the connection workflow, and pika 1.4
            # asserts on that abort inside the I/O loop, which would end this thread. The
            # attempt ends by itself within the publish timeout (stack_timeout), and if it
            # opens after all, ``_on_connection_open`` closes it.
        except Exception:
            logger.debug("ignoring an error while dropping a broker connection", exc_info=True)

    def _fail_waiting(self, reason: str) -> None:
        waiting, self._waiting = self._waiting, collections.deque()
        for pending in waiting:
            self._answer(pending, reason)

    def _fail_all(self, reason: str) -> None:
        self._connection_lost(reason, fail_waiting=True)
        while self._handed_over:
            self._answer(self._handed_over.popleft(), reason)

    @staticmethod
    def _answer(pending: _Pending, error: str | None) -> None:
        try:
            pending.on_outcome(pending, error)
        except Exception:
            logger.exception("a publish caller's outcome handler failed")

    def _shutdown(self) -> None:
        self._stopping = True
        self._abort_connection("the publisher stopped")
        self._fail_all("the publisher stopped")
        self._ioloop.stop()


_publisher: ConfirmedPublisher | None = None
_publisher_lock = threading.Lock()


def _publisher_forget_in_child() -> None:
    # A lock another thread held at fork() stays held forever in the child: that goes for
    # the module's lock and for the inherited publisher's own, so the child starts afresh
    # with both (its publisher has no thread or connection in this process anyway).
    global _publisher, _publisher_lock
    _publisher = None
    _publisher_lock = threading.Lock()


os.register_at_fork(after_in_child=_publisher_forget_in_child)


def get_publisher() -> ConfirmedPublisher:
    """The process-wide publisher for the configured topology."""
    global _publisher
    topology = Topology.from_settings()
    with _publisher_lock:
        if _publisher is None or _publisher.topology != topology:
            if _publisher is not None:
                _publisher.close()
            _publisher = ConfirmedPublisher(topology)
        return _publisher


def publish_many_start(messages: Iterable[OutgoingMessage]) -> PendingConfirms:
    """Hand many messages to the process's connection and return at once; see ``ConfirmedPublisher.publish_many_start``."""
    return get_publisher().publish_many_start(messages)


def publish_many_confirmed(messages: Iterable[OutgoingMessage]) -> tuple[set[str], BrokerUnavailable | None]:
    """Publish many messages, pipelined on the process's connection; see ``ConfirmedPublisher.publish_many``.

    Returns the ids the broker confirmed and the first error, if any: the caller acts
    only on what was confirmed.
    """
    return get_publisher().publish_many(messages)


def publisher_reset() -> None:
    """Drop the process's publisher (settings changed, a fork, or a test wants a fresh one)."""
    global _publisher
    with _publisher_lock:
        publisher, _publisher = _publisher, None
    if publisher is not None:
        publisher.close()


__all__ = [
    "BrokerUnavailable",
    "ConfirmedPublisher",
    "OutgoingMessage",
    "PendingConfirms",
    "get_publisher",
    "publish_many_confirmed",
    "publish_many_start",
    "publisher_reset",
]
