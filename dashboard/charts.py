"""Tiny server-side SVG line charts: no JavaScript library, no CDN."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    points: str  # the SVG polyline "x,y x,y ..."
    peak: int
    latest: int


def line_chart(values: list[int], *, width: int = 600, height: int = 120) -> LineChart:
    peak = max(values, default=0)
    scale = (height - 4) / peak if peak else 0
    step = width / max(1, len(values) - 1)
    points = " ".join(
        f"{index * step:.1f},{height - 2 - value * scale:.1f}" for index, value in enumerate(values)
    )
    return LineChart(width, height, points, peak, values[-1] if values else 0)
