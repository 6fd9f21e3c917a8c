"""Streaming a local data file to a remote instance over ``IngestStream``, resuming after disconnects.

The file is read in chunks (the formats ``import_file`` reads, checked line by line by the
API's own rules so that one bad line never costs its chunk), numbered 0, 1, 2… in file
order. Up to ``window`` chunks are in flight; the server answers them in order, so the
client only keeps the chunks not yet answered. When the stream breaks (the server
restarted, the network dropped, the broker did not confirm, the rate was exceeded) the
client opens a new one and sends those chunks again, with the same numbers, before going
on: the server derives each message id from (device, chunk number, records), so a chunk
that did reach the broker the first time is stored once. Running the same file again
stores nothing twice either.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from django.utils import timezone

from ingest.grpc import ingest_stream_pb2 as pb
from ingest.grpc import ingest_stream_pb2_grpc as pb_grpc
from ingest.services.file_import import errors_text, file_open, file_records, record_check

# Codes after which the same chunks are simply sent again on a new stream.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}
BACKOFF_INITIAL_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 5.0


class StreamRefused(Exception):
    """The server refused the stream for good (bad key, inactive device, malformed input)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class StreamTarget:
    address: str  # host:port
    tls: bool

    @classmethod
    def parse(cls, url: str) -> StreamTarget:
        """``grpc://host:port`` (plain HTTP/2) or ``grpcs://host:port`` (TLS, e.g. through Caddy)."""
        parts = urlsplit(url)
        if parts.scheme not in ("grpc", "grpcs") or not parts.hostname or not parts.port:
            raise ValueError(f"{url!r}: expected grpc://HOST:PORT or grpcs://HOST:PORT")
        return cls(address=f"{parts.hostname}:{parts.port}", tls=parts.scheme == "grpcs")


def stream_channel(target: StreamTarget, *, root_certificates: bytes | None = None) -> grpc.Channel:
    options = [
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]
    if target.tls:
        credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        return grpc.secure_channel(target.address, credentials, options=options)
    return grpc.insecure_channel(target.address, options=options)


def record_proto(record: dict) -> pb.Reading | pb.Event:
    """A record as read from the file (already checked) in its protobuf form."""
    if "event_type" in record:
        event = pb.Event(event_type=record["event_type"], occurred_at=str(record["occurred_at"]))
        if "severity" in record:
            event.severity = int(record["severity"])
        if "detail" in record:
            event.detail_json = json.dumps(record["detail"])
        if record.get("device"):
            event.device = str(record["device"])
        return event
    reading = pb.Reading(
        metric=record["metric"], value=float(record["value"]), measured_at=str(record["measured_at"])
    )
    if record.get("unit") is not None:
        reading.unit = str(record["unit"])
    if record.get("device"):
        reading.device = str(record["device"])
    return reading


@dataclass
class _SentChunk:
    chunk: pb.IngestChunk
    lines: list[int]  # file line of each reading, then of each event

    @property
    def size(self) -> int:
        return len(self.chunk.readings) + len(self.chunk.events)


def file_chunks(
    *, path: Path, file_format: str, chunk_size: int, bad_lines: list[tuple[int, str]]
) -> Iterator[_SentChunk]:
    """The file's good records in numbered chunks; bad lines are appended to ``bad_lines``."""
    seq = 0
    readings: list[tuple[int, dict]] = []
    events: list[tuple[int, dict]] = []

    def chunk() -> _SentChunk:
        return _SentChunk(
            chunk=pb.IngestChunk(
                seq=seq,
                readings=[record_proto(record) for _, record in readings],
                events=[record_proto(record) for _, record in events],
            ),
            lines=[line for line, _ in readings] + [line for line, _ in events],
        )

    now = timezone.now()
    with file_open(path=path, file_format=file_format) as handle:
        for count, (line_number, record) in enumerate(file_records(handle=handle, file_format=file_format)):
            if count % 1000 == 0:
                now = timezone.now()
            if isinstance(record, str):
                bad_lines.append((line_number, record))
                continue
            kind, _, errors = record_check(record, now=now)
            if errors:
                bad_lines.append((line_number, errors_text(errors)))
                continue
            (events if kind == "event" else readings).append((line_number, record))
            if len(readings) + len(events) >= chunk_size:
                yield chunk()
                seq += 1
                readings, events = [], []
    if readings or events:
        yield chunk()


@dataclass
class StreamImportSummary:
    records_acknowledged: int = 0
    chunks_acknowledged: int = 0
    streams_opened: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    # Chunks the server refused with field errors: (first line, last line, errors as text).
    refused_chunks: list[tuple[int, int, str]] = field(default_factory=list)


class _Unanswered:
    """Chunks sent and not answered yet, oldest first, and the file's chunks still to send."""

    def __init__(self, source: Iterator[_SentChunk], window: int) -> None:
        self.source = source
        self.window = window
        self.chunks: collections.deque[_SentChunk] = collections.deque()
        self.source_done = False
        self.changed = threading.Condition()

    def requests(self, call_over: threading.Event) -> Iterator[pb.IngestChunk]:
        """One stream's chunks: the unanswered ones again, then new ones while the window allows."""
        with self.changed:
            resend = list(self.chunks)
        for sent in resend:
            yield sent.chunk
        while not call_over.is_set():
            with self.changed:
                # Checked again under the lock: a chunk taken after the call ended would
                # miss the next stream's resend list.
                if call_over.is_set():
                    return
                if len(self.chunks) >= self.window:
                    self.changed.wait(0.2)
                    continue
                sent = None if self.source_done else next(self.source, None)
                if sent is None:
                    self.source_done = True
                    return
                self.chunks.append(sent)
            yield sent.chunk

    def answered(self) -> _SentChunk:
        with self.changed:
            sent = self.chunks.popleft()
            self.changed.notify_all()
            return sent

    def finished(self) -> bool:
        with self.changed:
            return self.source_done and not self.chunks


def file_stream_import(
    *,
    path: Path,
    file_format: str,
    target: str,
    key: str,
    chunk_size: int = 1000,
    window: int = 64,
    root_certificates: bytes | None = None,
    give_up_after_seconds: float = 120.0,
    progress: Callable[[StreamImportSummary], None] | None = None,
) -> StreamImportSummary:
    """Stream the file's records to ``target`` (grpc:// or grpcs://) as the key's device.

    Returns once every chunk was answered. Raises StreamRefused when the server refuses
    the stream for good, and the last RpcError when no chunk was answered for
    ``give_up_after_seconds`` (running the same command again resumes where it stopped:
    answered chunks are absorbed by the ledger).
    """
    summary = StreamImportSummary()
    pending = _Unanswered(
        file_chunks(path=path, file_format=file_format, chunk_size=chunk_size, bad_lines=summary.bad_lines),
        window,
    )
    channel = stream_channel(StreamTarget.parse(target), root_certificates=root_certificates)
    stub = pb_grpc.IngestStreamStub(channel)
    metadata = (("authorization", f"Api-Key {key}"),)
    backoff = BACKOFF_INITIAL_SECONDS
    last_progress = time.monotonic()
    try:
        while not pending.finished():
            call_over = threading.Event()
            summary.streams_opened += 1
            try:
                for result in stub.Stream(pending.requests(call_over), metadata=metadata):
                    _answer_record(summary, pending.answered(), result)
                    last_progress = time.monotonic()
                    backoff = BACKOFF_INITIAL_SECONDS
                    if progress is not None:
                        progress(summary)
            except grpc.RpcError as error:
                code = error.code()
                if code not in RETRYABLE:
                    raise StreamRefused(code, error.details() or "") from None
                if time.monotonic() - last_progress > give_up_after_seconds:
                    raise
                time.sleep(max(backoff, _retry_after(error)))
                backoff = min(backoff * 2, BACKOFF_CAP_SECONDS)
            finally:
                call_over.set()
    finally:
        channel.close()
    return summary


def _answer_record(summary: StreamImportSummary, sent: _SentChunk, result: pb.ChunkResult) -> None:
    if result.WhichOneof("chunk_id") != "seq" or result.seq != sent.chunk.seq:
        raise StreamRefused(
            grpc.StatusCode.INTERNAL, f"answer for chunk {result.seq} where {sent.chunk.seq} was expected"
        )
    if result.WhichOneof("outcome") == "errors":
        reasons = "; ".join(f"{error.field}: {' '.join(error.messages)}" for error in result.errors.fields)
        summary.refused_chunks.append((sent.lines[0], sent.lines[-1], reasons))
        return
    summary.chunks_acknowledged += 1
    summary.records_acknowledged += sent.size


def _retry_after(error: grpc.RpcError) -> float:
    for name, value in error.trailing_metadata() or ():
        if name == "retry-after":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 0.0
