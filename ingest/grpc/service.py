"""The ``IngestStream`` servicer: many chunks in flight, answers in the order sent.

A reader thread takes the client's chunks as they arrive; whatever has arrived goes, as
one group (one rate count, one ledger query, every message in flight at once), to the
process's pool of publishing threads, which validate it and hand it to the broker. The
next group is prepared while earlier ones await their confirms: up to GRPC_STREAM_WINDOW
chunks are unanswered at a time. The call's own thread waits for each group's confirms
and answers its chunks strictly in order: a chunk is answered only once every earlier
one was, so "acknowledged up to N" is all a client has to remember to resume after a
disconnect.

A stream ends with a status only for what concerns the whole stream: a bad key
(UNAUTHENTICATED), an inactive device (PERMISSION_DENIED), a chunk without an id
(INVALID_ARGUMENT), the device's rate (RESOURCE_EXHAUSTED, ``retry-after`` in the
trailers), the broker or database not confirming (UNAVAILABLE). Chunks answered before
that are durable; the ones after it were not acknowledged and are simply sent again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from core.errors import ApplicationError
from ingest.grpc import ingest_stream_pb2 as pb
from ingest.grpc import ingest_stream_pb2_grpc as pb_grpc
from ingest.grpc.access import CallRefused, call_device, device_chunks_admit
from ingest.grpc.chunks import (
    ChunkIdMissing,
    StreamChunksPublishing,
    chunk_errors,
    chunk_key,
    stream_chunks_publish,
)
from ingest.models import Device
from ingest.services.ingestion import CHUNKS_PER_GROUP

logger = logging.getLogger(__name__)

_CALL_REFUSED_STATUS = {
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "rate": grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# Groups of chunks of one stream dispatched and not yet answered (see _dispatch): one being
# answered while the next is validated and confirmed.
GROUPS_UNANSWERED = 2
# How often waiting threads look whether the call is still alive.
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class _StreamEnd:
    """Where the stream's chunks end: the end of input, or a refusal (a chunk without an id,
    the device's rate)."""

    status: grpc.StatusCode | None = None
    message: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class _GroupAnswer:
    """A group's answers, in order, to be given once ``publishing`` is confirmed."""

    results: list[pb.ChunkResult]
    publishing: StreamChunksPublishing


def _publish_in_pool(sender: Device, chunks: list[pb.IngestChunk]) -> _GroupAnswer:
    # Pool threads keep their database connection between groups, like a web thread
    # between requests: drop it when it has aged or broken.
    close_old_connections()
    publishing = stream_chunks_publish(sender=sender, chunks=chunks)
    results = []
    for chunk, outcome in zip(chunks, publishing.outcomes, strict=True):
        result = pb.ChunkResult()
        if chunk.WhichOneof("chunk_id") == "seq":
            result.seq = chunk.seq
        else:
            result.id = chunk.id
        if outcome.errors is not None:
            result.errors.CopyFrom(chunk_errors(outcome.errors))
        else:
            result.message_id = str(outcome.message_id)
        results.append(result)
    return _GroupAnswer(results, publishing)


class IngestStreamServicer(pb_grpc.IngestStreamServicer):
    def __init__(self, *, publish_threads: int | None = None, window: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(
            max_workers=publish_threads or settings.GRPC_PUBLISH_THREADS, thread_name_prefix="grpc-publish"
        )
        self.window = window or settings.GRPC_STREAM_WINDOW

    def close(self) -> None:
        """Stop the pool, closing the database connection each of its threads opened."""
        threads = self.pool._max_workers
        # Django's connections belong to the thread that opened them: one task per pool
        # thread (they all wait at the barrier, so no thread runs two) closes its own.
        barrier = threading.Barrier(threads)

        def close_own_connections() -> None:
            connections.close_all()
            try:
                barrier.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass

        for _ in range(threads):
            self.pool.submit(close_own_connections)
        self.pool.shutdown(wait=True)

    def Stream(self, request_iterator, context):  # noqa: N802 (the RPC's name)
        try:
            sender = call_device(metadata=context.invocation_metadata())
        except CallRefused as refusal:
            context.abort(_CALL_REFUSED_STATUS[refusal.kind], refusal.message)
        except DatabaseError:
            context.abort(grpc.StatusCode.UNAVAILABLE, "The database is unavailable; retry later.")
        finally:
            # This thread serves the stream from here on without the database: a
            # connection kept open by each of GRPC_MAX_STREAMS threads would only idle.
            connections.close_all()
        yield from _OrderedStream(self, sender, request_iterator, context).answers()


class _OrderedStream:
    """Three threads per stream: the reader takes chunks off the wire; the dispatcher counts
    whatever chunks have arrived against the rate and hands them, as one group, to the
    publishing pool, which validates them and hands them to the broker; the call's own
    thread waits for each group's confirms and answers its chunks in order."""

    def __init__(self, servicer: IngestStreamServicer, sender: Device, request_iterator, context) -> None:
        self.servicer = servicer
        self.sender = sender
        self.requests = request_iterator
        self.context = context
        # Chunks read and not answered yet: the reader waits while a window's worth is.
        self.window = threading.Semaphore(servicer.window)
        self.arrived: queue.Queue[pb.IngestChunk | _StreamEnd] = queue.Queue()
        # Groups' futures in the order the chunks came, then one _StreamEnd.
        self.pending: queue.Queue[Future | _StreamEnd] = queue.Queue()
        self.stopped = threading.Event()
        self.groups_unanswered = threading.Semaphore(GROUPS_UNANSWERED)
        remaining = context.time_remaining()
        limit = settings.GRPC_STREAM_MAX_SECONDS
        self.deadline = time.monotonic() + (min(remaining, limit) if remaining is not None else limit)

    def answers(self):
        for target, name in ((self._read, "grpc-stream-reader"), (self._dispatch, "grpc-stream-dispatch")):
            threading.Thread(target=target, name=name, daemon=True).start()
        try:
            while True:
                item = self._next_pending()
                if isinstance(item, _StreamEnd):
                    if item.status is not None:
                        if item.retry_after is not None:
                            self.context.set_trailing_metadata((("retry-after", f"{item.retry_after:.0f}"),))
                        self.context.abort(item.status, item.message)
                    return
                answer = self._answer_of(item)
                for result in answer.results:
                    yield result
                    self.window.release()
                self.groups_unanswered.release()
        finally:
            self.stopped.set()

    def _next_pending(self) -> Future | _StreamEnd:
        while True:
            if time.monotonic() >= self.deadline:
                return _StreamEnd(
                    grpc.StatusCode.DEADLINE_EXCEEDED, "The stream's time is up; resume on a new one."
                )
            if not self.context.is_active():
                return _StreamEnd()  # cancelled or timed out: gRPC already told the client
            try:
                return self.pending.get(
                    timeout=min(_POLL_SECONDS, max(0.0, self.deadline - time.monotonic()))
                )
            except queue.Empty:
                continue

    def _answer_of(self, future: Future) -> _GroupAnswer:
        try:
            answer = future.result(timeout=max(0.0, self.deadline - time.monotonic()) + _POLL_SECONDS)
            # Bounded by the publisher's own timeout (RABBITMQ_PUBLISH_TIMEOUT_SECONDS).
            answer.publishing.confirmed()
            return answer
        except ApplicationError as error:
            # broker_unavailable (no confirm) or database_unavailable: retry later, as a 503.
            self.context.set_trailing_metadata((("retry-after", str(error.retry_after or 5)),))
            self.context.abort(grpc.StatusCode.UNAVAILABLE, error.message)
        except DatabaseError:
            self.context.abort(grpc.StatusCode.UNAVAILABLE, "The database is unavailable; retry later.")
        except TimeoutError:
            self.context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "No confirm before the stream's deadline.")

    def _read(self) -> None:
        end = _StreamEnd()
        try:
            for chunk in self.requests:
                if self.stopped.is_set():
                    return
                try:
                    chunk_key(chunk)
                except ChunkIdMissing as error:
                    end = _StreamEnd(grpc.StatusCode.INVALID_ARGUMENT, f"chunk_id: {error}")
                    break
                while not self.window.acquire(timeout=_POLL_SECONDS):
                    if self.stopped.is_set():
                        return
                self.arrived.put(chunk)
        except grpc.RpcError:
            return  # the call was cancelled or its deadline passed: nobody to answer
        except Exception:
            logger.exception("reading a gRPC ingest stream failed")
            end = _StreamEnd(grpc.StatusCode.INTERNAL, "The server failed reading the stream.")
        self.arrived.put(end)

    def _dispatch(self) -> None:
        # Few groups unanswered at once: chunks that arrive meanwhile wait and go out as one
        # larger group, so a fast client gets large groups (one rate count, one ledger query
        # and one pipelined publish for many chunks) and a slow one is answered chunk by
        # chunk. Bounding groups until they are answered, not just until they are handed
        # to the broker, matters: answering is the slowest step (one gRPC send per chunk),
        # and chunks dispatched as soon as a confirm freed room would go out one by one,
        # each paying a whole group's round trips.
        while not self.stopped.is_set():
            if not self.groups_unanswered.acquire(timeout=_POLL_SECONDS):
                continue
            try:
                item = self.arrived.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                self.groups_unanswered.release()
                continue
            group: list[pb.IngestChunk] = []
            while not isinstance(item, _StreamEnd):
                group.append(item)
                if len(group) >= CHUNKS_PER_GROUP:
                    break
                try:
                    item = self.arrived.get_nowait()
                except queue.Empty:
                    break
            # Each chunk counts as one request against the device's rate before anything of
            # it is queued; the group's chunks in one round trip, here, so that they are
            # counted in the order sent and none after a refused one is admitted.
            admitted, refusal = 0, None
            try:
                if group:
                    admitted, refusal = device_chunks_admit(device=self.sender, chunks=len(group))
            except Exception:
                logger.exception("counting a gRPC stream's chunks against the device rate failed")
                item = _StreamEnd(grpc.StatusCode.INTERNAL, "The server failed counting the chunks.")
            if admitted:
                future = self.servicer.pool.submit(_publish_in_pool, self.sender, group[:admitted])
                self.pending.put(future)
            else:
                self.groups_unanswered.release()
            if refusal is not None:
                item = _StreamEnd(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message, refusal.retry_after)
            if isinstance(item, _StreamEnd):
                self.pending.put(item)
                return
