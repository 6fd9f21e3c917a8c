#!/usr/bin/env python
"""Profile the ingest API inside one process: the WSGI app called directly, no server.

Shows where a request's CPU time goes (Django, DRF, key check, rate limit, publish) without
the noise of a load generator. Uses the bench database and queue of bench/ingest_bench.py.

    .venv/bin/python bench/web_profile.py --requests 2000 [--sort tottime] [--top 40]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import bench_setup, one_reading_body, reset_state  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()
    bench_setup()
    _, keys = reset_state()
    from config.wsgi import application  # what gunicorn serves

    body = one_reading_body().encode()

    def call() -> str:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/v1/ingest/",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Api-Key {keys[0]}",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        answer = []
        response = application(environ, lambda status, headers: answer.append(status))
        b"".join(response)
        response.close()
        return answer[0]

    for _ in range(50):  # warm: connections, caches, imports
        status = call()
    assert status.startswith("202"), status
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(args.requests):
        call()
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(
        f"{args.requests} requests in {elapsed:.2f} s under the profiler: {elapsed / args.requests * 1e6:,.0f} µs each"
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(args.requests):
        call()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(
        f"without the profiler: {elapsed / args.requests * 1e6:,.0f} µs each, of which CPU "
        f"{cpu / args.requests * 1e6:,.0f} µs (the rest waits on the broker and Redis; one thread)"
    )
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
