"""The pure parts of bench/readings_layout_bench.py: partition ranges, medians, arguments."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import readings_layout_bench as bench  # noqa: E402 - the bench folder is not a package


def test_monthly_partitions_cover_the_span_without_gaps_and_one_month_ahead():
    first = datetime(2026, 8, 17, 5, tzinfo=UTC)
    last = datetime(2026, 11, 25, 12, tzinfo=UTC)

    bounds = bench.partition_bounds(first, last, "month")

    assert bounds[0][0] == datetime(2026, 8, 1, tzinfo=UTC)
    assert all(end == next_start for (_, end), (next_start, _) in zip(bounds, bounds[1:], strict=False))
    assert bounds[-2] == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert bounds[-1] == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def test_weekly_partitions_start_on_mondays():
    bounds = bench.partition_bounds(
        datetime(2026, 11, 4, 13, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC), "week"
    )

    assert [start.weekday() for start, _ in bounds] == [0] * len(bounds)
    assert bounds[0][0] == datetime(2026, 11, 2, tzinfo=UTC)
    assert bounds[-1][0] > datetime(2026, 11, 20, tzinfo=UTC)


def test_median_of_rounds_takes_each_numbers_median_and_keeps_the_first_plan():
    rounds = [
        {"insert": {"rows_per_second": 10}, "query": {"p50_ms": 3.0, "plan": ["Seq Scan"]}},
        {"insert": {"rows_per_second": 30}, "query": {"p50_ms": 1.0, "plan": ["Index Scan"]}},
        {"insert": {"rows_per_second": 20}, "query": {"p50_ms": 2.0, "plan": ["Index Scan"]}},
    ]

    merged = bench.median_of(rounds)

    assert merged == {"insert": {"rows_per_second": 20}, "query": {"p50_ms": 2.0, "plan": ["Seq Scan"]}}


def test_an_unknown_partition_unit_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["readings_layout_bench.py", "--partition", "day"])

    with pytest.raises(SystemExit) as exit_info:
        bench.main()

    assert exit_info.value.code == 2
    assert "invalid choice: 'day'" in capsys.readouterr().err
