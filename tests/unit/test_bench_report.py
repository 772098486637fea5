"""The bench's figures: percentiles, medians of repetitions, the table and the target checks."""

from __future__ import annotations

import math

import pytest

from bench.report import check_targets, fmt_number, render_markdown, render_plain, table_rows
from bench.stats import median, median_figures, percentile, ratio, summarize_latencies_ms


def test_percentile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 99) == pytest.approx(3.97)


def test_percentile_of_nothing_is_nan_and_out_of_range_is_refused() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="0-100"):
        percentile([1.0], 101)


def test_median_skips_failed_repetitions() -> None:
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(median([math.nan]))


def test_median_figures_takes_each_figure_on_its_own() -> None:
    reps = [{"rps": 100.0, "lat_p99_ms": 9.0}, {"rps": 300.0, "lat_p99_ms": 1.0}, {"rps": 200.0, "lat_p99_ms": 5.0}]
    assert median_figures(reps) == {"rps": 200.0, "lat_p99_ms": 5.0}


def test_latencies_are_summarized_in_milliseconds() -> None:
    summary = summarize_latencies_ms([0.001, 0.002, 0.003], "lat")
    assert summary["lat_p50_ms"] == pytest.approx(2.0)
    assert summary["lat_max_ms"] == pytest.approx(3.0)


def test_ratio_is_nan_without_a_floor() -> None:
    assert ratio(50.0, 100.0) == 0.5
    assert math.isnan(ratio(50.0, 0.0))
    assert math.isnan(ratio(50.0, math.nan))


def test_numbers_get_thousands_separators_and_missing_ones_a_dash() -> None:
    assert fmt_number(5113.4, 0) == "5,113"
    assert fmt_number(0.4321, 2) == "0.43"
    assert fmt_number(math.nan, 2) == "-"


RESULTS = {
    "ns1": {
        "floor": {"rps": 2000.0, "lat_p50_ms": 0.40, "lat_p99_ms": 0.9, "peak_rss_mb": 40.0, "errors": 0.0},
        "gateway": {"rps": 1500.0, "lat_p50_ms": 0.60, "lat_p99_ms": 1.8, "peak_rss_mb": 50.0, "errors": 0.0},
    },
    "ns64": {
        "floor": {"rps": 5000.0, "lat_p50_ms": 12.0, "lat_p99_ms": 20.0, "errors": 0.0},
        "gateway": {"rps": 3500.0, "lat_p50_ms": 18.0, "lat_p99_ms": 30.0, "errors": 0.0},
    },
}


def test_table_shows_each_figure_as_a_ratio_to_the_floor() -> None:
    rows = table_rows([("ns1", "non-stream c=1")], [("floor", "floor"), ("gateway", "gateway")], RESULTS, "floor")
    assert rows[0][:3] == ["workload", "proxy", "req/s"]
    assert rows[1][:3] == ["non-stream c=1", "floor", "2,000"]
    assert rows[2][:4] == ["", "gateway", "1,500 (0.75×)", "0.60 (1.50×)"]
    assert rows[2][5] == "-"  # no TTFT for a non-stream workload, and no ratio either
    plain = render_plain(rows)
    assert plain.splitlines()[1].startswith("----")
    assert render_markdown(rows).splitlines()[1].startswith("|---|---|---:")


def test_targets_are_met_not_met_or_not_measured() -> None:
    checks = {c.target: c.met for c in check_targets(RESULTS, {}, "floor", "gateway")}
    assert checks["non-stream c=64: >= 0.6x the floor's req/s"] is True  # 0.70x
    assert checks["c=1: p50 no more than 0.3 ms above the floor's"] is True  # +0.20 ms
    assert checks["streams c=64: >= 0.6x the floor's req/s"] is None  # not run
    assert checks["idle RSS <= 60 MB"] is None


def test_errors_fail_a_throughput_target() -> None:
    broken = {**RESULTS, "ns64": {**RESULTS["ns64"], "gateway": {**RESULTS["ns64"]["gateway"], "errors": 3.0}}}
    checks = {c.target: c.met for c in check_targets(broken, {}, "floor", "gateway")}
    assert checks["non-stream c=64: >= 0.6x the floor's req/s"] is False


def test_memory_targets_read_peak_return_and_growth() -> None:
    memory = {
        "gateway": {
            "idle_mb": 55.0,
            "before_mb": 60.0,
            "peak_mb": 150.0,
            "after_first_mb": 70.0,
            "after_last_mb": 90.0,
            "growth_mb": 20.0,
            "rounds": 10.0,
            "errors": 0.0,
        }
    }
    checks = {c.target.split(" (")[0]: c.met for c in check_targets({}, memory, "floor", "gateway")}
    assert checks["idle RSS <= 60 MB"] is True
    assert checks["1,000 concurrent slow streams: <= 200 MB"] is True
    assert checks["back near idle after the streams end"] is False  # 30 MB above
    assert checks["no growth over the rounds"] is False


def test_back_near_idle_reads_the_settled_rss_when_it_was_measured() -> None:
    gateway = {"before_mb": 60.0, "after_last_mb": 95.0, "growth_mb": 0.0, "rounds": 2.0}
    settled = {"gateway": {**gateway, "settled_mb": 70.0, "settle_s": 31.0}}
    unsettled = {"gateway": gateway}

    def near_idle(memory: dict[str, dict[str, float]]) -> tuple[bool | None, str]:
        check = next(c for c in check_targets({}, memory, "floor", "gateway") if c.target.startswith("back near"))
        return check.met, check.measured

    assert near_idle(settled) == (True, "70.0 MB settled (31 s after, pool closed) vs 60.0 MB before")
    assert near_idle(unsettled) == (False, "95.0 MB after vs 60.0 MB before")


def test_idle_rss_is_checked_without_the_memory_rounds() -> None:
    checks = {c.target: c.met for c in check_targets({}, {}, "floor", "gateway", idle_mb=61.0)}
    assert checks["idle RSS <= 60 MB"] is False


def test_the_bench_upstream_reads_its_script_from_the_model_name() -> None:
    from bench.upstream import Scripts

    scripts = Scripts()
    jittered = scripts.for_body(b'{"model": "bench-d200-j50", "messages": []}')
    assert (jittered.delay_s, jittered.jitter_s, jittered.gap_s, jittered.chunks) == (0.2, 0.05, 0.0, ())
    assert b'"model":"bench-d200-j50"' in jittered.head_and_body
    stream = scripts.for_body(b'{"model": "bench-g100", "stream": true, "stream_options": {"include_usage": true}}')
    assert (stream.delay_s, stream.jitter_s, stream.gap_s, len(stream.chunks)) == (0.0, 0.0, 0.1, 22)  # 20, usage, DONE
    assert scripts.for_body(b'{"model": "bench-d10-j99"}').jitter_s == 0.01  # never a negative delay
