"""The bench's one table, and the targets of issue 5 checked against it; pure functions, unit-tested."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.stats import ratio

Figures = Mapping[str, float]
# workload id -> proxy name -> figures (medians of the repetitions)
Results = Mapping[str, Mapping[str, Figures]]

COLUMNS = (
    # (header, figure, decimals)
    ("req/s", "rps", 0),
    ("p50 ms", "lat_p50_ms", 2),
    ("p99 ms", "lat_p99_ms", 2),
    ("TTFT p50 ms", "ttft_p50_ms", 2),
    ("peak RSS MB", "peak_rss_mb", 1),
    ("CPU us/req", "cpu_us_per_req", 0),
)


def fmt_number(value: float | None, decimals: int) -> str:
    """Thousands separators; '-' for a missing figure."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{decimals}f}"


def fmt_ratio(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.2f}×"


def table_rows(
    workloads: Sequence[tuple[str, str]],
    proxies: Sequence[tuple[str, str]],
    results: Results,
    floor: str,
) -> list[list[str]]:
    """Header plus one row per (workload, proxy); a non-floor figure carries its ratio to the floor."""
    rows = [["workload", "proxy", *(header for header, _, _ in COLUMNS), "errors"]]
    for workload_id, workload_label in workloads:
        by_proxy = results.get(workload_id, {})
        floor_figures = by_proxy.get(floor, {})
        first = True
        for name, label in proxies:
            figures = by_proxy.get(name)
            if figures is None:
                continue
            row = [workload_label if first else "", label]
            first = False
            for _, key, decimals in COLUMNS:
                value = figures.get(key, math.nan)
                cell = fmt_number(value, decimals)
                if name != floor and cell != "-":
                    shown = fmt_ratio(ratio(value, floor_figures.get(key, math.nan)))
                    if shown:
                        cell += f" ({shown})"
                row.append(cell)
            errors = figures.get("errors", 0.0)
            row.append(fmt_number(errors, 0) if errors else "0")
            rows.append(row)
    return rows


def render_plain(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(rows[0]))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class TargetCheck:
    target: str  # the wording of issue 5
    measured: str
    met: bool | None  # None: not measured in this run


def _get(results: Results, workload: str, proxy: str, key: str) -> float:
    return results.get(workload, {}).get(proxy, {}).get(key, math.nan)


def _check(ok: bool, *values: float) -> bool | None:
    return None if not all(math.isfinite(v) for v in values) else ok


# Thresholds for the memory words of issue 5 ("back near idle", "no growth"), chosen here.
NEAR_IDLE_MB = 20.0
NO_GROWTH_MB = 5.0


def check_targets(
    results: Results, memory: Mapping[str, Figures], floor: str, gateway: str, idle_mb: float = math.nan
) -> list[TargetCheck]:
    """The targets of issue 5, each met, not met, or None when its workload did not run.

    `idle_mb`: the gateway's RSS after warm-up, when the memory rounds (which also record it) did not run.
    """
    checks: list[TargetCheck] = []
    errors = {w: _get(results, w, gateway, "errors") for w in results}

    def clean(workload: str) -> bool:
        return not errors.get(workload, 0.0)

    gw, fl = _get(results, "ns64", gateway, "rps"), _get(results, "ns64", floor, "rps")
    r = ratio(gw, fl)
    checks.append(
        TargetCheck(
            "non-stream c=64: >= 0.6x the floor's req/s",
            f"{fmt_number(gw, 0)} vs {fmt_number(fl, 0)} req/s = {r:.2f}x",
            _check(r >= 0.6 and clean("ns64"), r),
        )
    )

    gw, fl = _get(results, "slow256", gateway, "rps"), _get(results, "slow256", floor, "rps")
    p99 = _get(results, "slow256", gateway, "lat_p99_ms")
    r = ratio(gw, fl)
    checks.append(
        TargetCheck(
            "256 in flight, 200 ms upstream: >= 0.9x the floor's req/s",
            f"{fmt_number(gw, 0)} vs {fmt_number(fl, 0)} req/s = {r:.2f}x",
            _check(r >= 0.9 and clean("slow256"), r),
        )
    )
    checks.append(
        TargetCheck("256 in flight, 200 ms upstream: p99 under 300 ms", f"p99 {p99:.1f} ms", _check(p99 < 300.0, p99))
    )

    gw, fl = _get(results, "ns1", gateway, "lat_p50_ms"), _get(results, "ns1", floor, "lat_p50_ms")
    added = gw - fl
    checks.append(
        TargetCheck(
            "c=1: p50 no more than 0.3 ms above the floor's",
            f"{gw:.2f} vs {fl:.2f} ms = {added:+.2f} ms",
            _check(added <= 0.3 and clean("ns1"), added),
        )
    )

    gw, fl = _get(results, "st64", gateway, "rps"), _get(results, "st64", floor, "rps")
    r = ratio(gw, fl)
    checks.append(
        TargetCheck(
            "streams c=64: >= 0.6x the floor's req/s",
            f"{fmt_number(gw, 0)} vs {fmt_number(fl, 0)} req/s = {r:.2f}x",
            _check(r >= 0.6 and clean("st64"), r),
        )
    )

    gw, fl = _get(results, "st1", gateway, "ttft_p50_ms"), _get(results, "st1", floor, "ttft_p50_ms")
    added = gw - fl
    checks.append(
        TargetCheck(
            "streams c=1: TTFT p50 no more than 0.5 ms above the floor's",
            f"{gw:.2f} vs {fl:.2f} ms = {added:+.2f} ms",
            _check(added <= 0.5 and clean("st1"), added),
        )
    )

    mem = memory.get(gateway, {})
    idle = mem.get("idle_mb", idle_mb)
    checks.append(TargetCheck("idle RSS <= 60 MB", f"{idle:.1f} MB", _check(idle <= 60.0, idle)))
    peak = mem.get("peak_mb", math.nan)
    checks.append(
        TargetCheck(
            "1,000 concurrent slow streams: <= 200 MB",
            f"peak {peak:.1f} MB",
            _check(peak <= 200.0 and not mem.get("errors", 0.0), peak),
        )
    )
    # Settled (the upstream pool closed) where measured; else 1 s after the last round.
    before = mem.get("before_mb", math.nan)
    if "settled_mb" in mem:
        after, when = mem["settled_mb"], f"settled ({mem.get('settle_s', math.nan):.0f} s after, pool closed)"
    else:
        after, when = mem.get("after_last_mb", math.nan), "after"
    checks.append(
        TargetCheck(
            f"back near idle after the streams end (within {NEAR_IDLE_MB:g} MB)",
            f"{after:.1f} MB {when} vs {before:.1f} MB before",
            _check(after - before <= NEAR_IDLE_MB, before, after),
        )
    )
    growth, rounds = mem.get("growth_mb", math.nan), mem.get("rounds", math.nan)
    checks.append(
        TargetCheck(
            f"no growth over the rounds (<= {NO_GROWTH_MB:g} MB from round 1 to the last)",
            f"{growth:+.1f} MB over {fmt_number(rounds, 0)} rounds",
            _check(growth <= NO_GROWTH_MB and rounds >= 2, growth, rounds),
        )
    )
    return checks


def render_checks(checks: Sequence[TargetCheck], markdown: bool = False) -> str:
    rows = [["target (issue 5)", "measured", "status"]]
    for c in checks:
        if c.met is None:
            rows.append([c.target, "-", "not measured"])
        else:
            rows.append([c.target, c.measured, "met" if c.met else "NOT MET"])
    if markdown:
        return "\n".join(
            ["| " + " | ".join(rows[0]) + " |", "|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows[1:]]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def memory_rows(memory: Mapping[str, Figures], proxies: Sequence[tuple[str, str]], floor: str) -> list[list[str]]:
    rows = [
        [
            "proxy",
            "idle MB",
            "before MB",
            "peak MB",
            "after round 1 MB",
            "after last MB",
            "settled MB (s)",
            "growth MB",
            "stream p50 ms",
            "errors",
        ]
    ]
    floor_mem = memory.get(floor, {})
    for name, label in proxies:
        mem = memory.get(name)
        if mem is None:
            continue
        row = [label]
        for key in ("idle_mb", "before_mb", "peak_mb", "after_first_mb", "after_last_mb"):
            cell = fmt_number(mem.get(key, math.nan), 1)
            if name != floor and key == "peak_mb" and cell != "-":
                cell += f" ({fmt_ratio(ratio(mem[key], floor_mem.get(key, math.nan)))})"
            row.append(cell)
        settled = fmt_number(mem.get("settled_mb", math.nan), 1)
        row.append(settled if settled == "-" else f"{settled} ({mem.get('settle_s', math.nan):.0f})")
        growth = mem.get("growth_mb", math.nan)
        row.append("-" if not math.isfinite(growth) else f"{growth:+.1f}")
        row.append(fmt_number(mem.get("lat_p50_ms", math.nan), 0))
        row.append(fmt_number(mem.get("errors", 0.0), 0))
        rows.append(row)
    return rows
