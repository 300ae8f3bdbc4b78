"""The figures the benchmarks report: nearest-rank percentiles and timed calls."""

from __future__ import annotations

from toka.core.bench.stats import measure, percentile


def test_percentile_is_always_a_measured_sample():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(samples, 0.0) == 1.0
    assert percentile(samples, 0.5) == 3.0
    assert percentile(samples, 1.0) == 5.0
    assert percentile([1.0, 2.0], 0.5) in (1.0, 2.0)
    assert percentile([7.0], 0.99) == 7.0


def test_measure_warms_up_then_times_each_call():
    calls: list[int] = []
    figures = measure(lambda: calls.append(1), calls=20, warmup=3)
    assert len(calls) == 23
    assert figures["calls"] == 20
    assert set(figures) == {"calls", "p50_ms", "p99_ms", "calls_per_s"}
    assert 0 <= figures["p50_ms"] <= figures["p99_ms"]
    assert figures["calls_per_s"] > 0
