"""Broker probes answered from memory for a few seconds, per process.

Health checks, the console's live overview and Prometheus scrapes all ask the broker
how it is. Each answer costs a new AMQP connection (TCP, handshake, authentication);
a few clients polling every second would open hundreds a minute. A result younger than
its setting's number of seconds is reused instead, success or failure alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from django.conf import settings

Value = TypeVar("Value")


class RecentResults(Generic[Value]):
    def __init__(self, *, seconds_setting: str) -> None:
        self.seconds_setting = seconds_setting
        self._results: dict[Hashable, tuple[float, Value]] = {}
        # One probe at a time: threads arriving meanwhile wait for its result.
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        max_age = getattr(settings, self.seconds_setting)
        with self._lock:
            stored = self._results.get(key)
            if stored is not None and time.monotonic() - stored[0] < max_age:
                return stored[1]
            value = compute()
            self._results[key] = (time.monotonic(), value)
            return value

    def clear(self) -> None:
        with self._lock:
            self._results.clear()
