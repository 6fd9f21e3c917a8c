"""Series handed to the console's chart script (charts.js draws them with uPlot).

A series travels in data attributes (epoch seconds and values as JSON), so the page needs
no inline script and a refreshed panel brings its new data with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class TimeSeries:
    label: str
    times: list[int]  # epoch seconds
    values: list[int | float]

    @property
    def latest(self) -> int | float:
        return self.values[-1] if self.values else 0

    @property
    def peak(self) -> int | float:
        return max(self.values, default=0)

    @property
    def total(self) -> int | float:
        return sum(self.values)

    @property
    def times_json(self) -> str:
        return json.dumps(self.times)

    @property
    def values_json(self) -> str:
        return json.dumps(self.values)
