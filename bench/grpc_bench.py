#!/usr/bin/env python
"""One gRPC stream against HTTP requests of the same chunk size, in the same run.

Both send N chunks of --chunk readings as one device, end to end to the broker: a chunk
counts once the broker confirmed it (the gRPC answer carries its message id; the HTTP
answer is 202). HTTP posts one chunk per request, one after another on one kept-alive
connection to gunicorn (gunicorn.conf.py); gRPC sends them all on one stream to
``serve_grpc``, which keeps up to GRPC_STREAM_WINDOW in flight and answers in order.
No worker runs: what is measured is accepting, not storing. Numbers are printed, never
asserted: each round's, then the median of each side (and the best), with the load
average, since a shared machine's noise is worth seeing beside them.

    .venv/bin/python bench/grpc_bench.py --chunks 200 --chunk 1000

It uses a database and queue of its own (``iot_care_bench_grpc``, ``bench-grpc``),
emptied here; BENCH_DATABASE_NAME, BENCH_QUEUE_NAME and BENCH_PORT move it elsewhere.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("BENCH_DATABASE_NAME", "iot_care_bench_grpc")
os.environ.setdefault("BENCH_QUEUE_NAME", "bench-grpc")
os.environ.setdefault("BENCH_PORT", "8766")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest_bench as common  # noqa: E402 - the bench folder is not a package


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    common.stop(process)
    raise SystemExit(f"{what} did not start")


def _grpc_chunks(count: int, size: int, base: datetime, first_seq: int, *, first_offset: int | None = None):
    from ingest.grpc import ingest_stream_pb2 as pb

    chunks = []
    for number in range(count):
        offset = ((first_seq if first_offset is None else first_offset) + number) * size
        chunks.append(
            pb.IngestChunk(
                seq=first_seq + number,
                readings=[
                    pb.Reading(
                        metric="heart_rate",
                        value=60 + index % 40,
                        unit="bpm",
                        measured_at=(base + timedelta(milliseconds=offset + index)).isoformat(),
                    )
                    for index in range(size)
                ],
            )
        )
    return chunks


def http_run(bodies: list[bytes], key: str) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", common.PORT, timeout=60)
    started = time.monotonic()
    for body in bodies:
        status = common.ingest_post(connection, body, key)
        if status != 202:
            raise SystemExit(f"HTTP answered {status}")
    elapsed = time.monotonic() - started
    connection.close()
    return elapsed


def grpc_run(port: int, chunks, key: str) -> float:
    import grpc

    from ingest.grpc import ingest_stream_pb2_grpc as pb_grpc
    from ingest.grpc.client import StreamTarget, stream_channel

    channel = stream_channel(StreamTarget.parse(f"grpc://127.0.0.1:{port}"))
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = pb_grpc.IngestStreamStub(channel)
    started = time.monotonic()
    answered = 0
    for result in stub.Stream(iter(chunks), metadata=(("authorization", f"Api-Key {key}"),)):
        if result.WhichOneof("outcome") != "message_id":
            raise SystemExit(f"chunk {result.seq} refused: {result.errors.fields_json[:500]}")
        answered += 1
    elapsed = time.monotonic() - started
    channel.close()
    if answered != len(chunks):
        raise SystemExit(f"{answered} of {len(chunks)} chunks answered")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=200, help="chunks sent by each side")
    parser.add_argument(
        "--chunk", type=int, default=1000, help="readings per chunk (INGEST_MAX_RECORDS at most)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating rounds; the median (and best) of each side is printed",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://iot_care:iot_care@127.0.0.1:5432/iot_care"),
    )
    args = parser.parse_args()

    env = common.bench_environment(args.database_url)
    # The bench database is created by the same user, as ingest_bench.py does.
    common.prepare_database(env, urlsplit(args.database_url)._replace(path="/postgres").geturl())
    common.django_setup(env)
    _, keys = common.reset_state()
    key = keys[0]

    grpc_port = _free_port()
    web = common.start(
        [str(common.BIN / "gunicorn"), "-c", "gunicorn.conf.py", "config.wsgi:application"],
        {**env, "GUNICORN_BIND": f"127.0.0.1:{common.PORT}", "GUNICORN_WORKERS": "2"},
    )
    server = common.start([common.PYTHON, "manage.py", "serve_grpc", "--port", str(grpc_port)], env)
    try:
        common.wait_for_http(common.PORT, "/healthz", web, "gunicorn")
        _wait_for_port(grpc_port, server, "serve_grpc")
        base = datetime.now(UTC) - timedelta(days=1)
        http_rates, grpc_rates = [], []
        print(
            f"load average (1, 5, 15 min) at the start: {', '.join(f'{load:.2f}' for load in os.getloadavg())}"
        )
        # Warm both up (connections, key caches, the publisher) outside the timing.
        http_run([common.readings_body_at(base, args.chunk, 0)], key)
        grpc_run(grpc_port, _grpc_chunks(1, args.chunk, base, 10**9, first_offset=0), key)
        for round_number in range(args.rounds):
            first = round_number * args.chunks
            bodies = [
                common.readings_body_at(base, args.chunk, (first + number) * args.chunk)
                for number in range(args.chunks)
            ]
            chunks = _grpc_chunks(args.chunks, args.chunk, base, first)
            readings = args.chunks * args.chunk
            http_rates.append(readings / http_run(bodies, key))
            grpc_rates.append(readings / grpc_run(grpc_port, chunks, key))
            print(
                f"round {round_number + 1}: HTTP {http_rates[-1]:,.0f} readings/s, "
                f"gRPC {grpc_rates[-1]:,.0f} readings/s",
                flush=True,
            )
        median_http, median_grpc = statistics.median(http_rates), statistics.median(grpc_rates)
        print(
            f"\n{args.chunks} chunks of {args.chunk} readings, confirmed by the broker, "
            f"median of {args.rounds} rounds (best in brackets):\n"
            f"  HTTP, one kept-alive connection: {median_http:,.0f} readings/s "
            f"({median_http / args.chunk:,.1f} requests/s) [{max(http_rates):,.0f}]\n"
            f"  gRPC, one stream:                {median_grpc:,.0f} readings/s "
            f"({median_grpc / args.chunk:,.1f} chunks/s) [{max(grpc_rates):,.0f}]\n"
            f"  gRPC / HTTP: {median_grpc / median_http:.2f}x "
            f"(best {max(grpc_rates) / max(http_rates):.2f}x)\n"
            f"  load average (1, 5, 15 min) at the end: {', '.join(f'{load:.2f}' for load in os.getloadavg())}"
        )
    finally:
        common.stop(server)
        common.stop(web)
        common.reset_state()  # the queue purged: nothing left for anyone's worker


if __name__ == "__main__":
    main()
