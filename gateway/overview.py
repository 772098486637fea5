"""The overview's view model: today's cards against yesterday, three charts, live backend state.

The page renders it and `GET /api/overview` serves it as JSON, so both show the same numbers.
It reads hour buckets for today, yesterday and the last 24 hours, the daily rollup for the
30-day and 365-day views, and the latency histograms for percentiles.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway import charts, formats, queries, reports
from gateway.histogram import percentile
from gateway.records import iso_ts
from gateway.status import backend_status

if TYPE_CHECKING:
    from gateway.app import Gateway

HOUR_FMT = "%Y-%m-%dT%H:00:00Z"
STATE_LABELS = {
    "ok": "ok",
    "cooling": "cooling down",
    "circuit_open": "circuit open",
    "credential_rejected": "credential rejected",
    "quota_exhausted": "quota exhausted",
}


def _card(card_id: str, label: str, today: float | None, yesterday: float | None, fmt: str) -> dict[str, Any]:
    display = {
        "count": formats.count,
        "compact": formats.compact,
        "usd": formats.usd,
        "percent": formats.percent,
        "ms": formats.duration_ms,
    }[fmt]
    pct, change_display = formats.change(today, yesterday)
    trend = "" if pct is None or change_display.startswith("\u00b1") else ("up" if pct > 0 else "down")
    return {
        "id": card_id,
        "label": label,
        "value": today,
        "display": display(today),
        "previous": yesterday,
        "previous_display": display(yesterday),
        "change_pct": None if pct is None else round(pct, 1),
        "change_display": change_display,
        "trend": trend,
    }


def _cards(today: dict[str, Any], yday: dict[str, Any], lat: dict[str, Any], lat_y: dict[str, Any]) -> list[Any]:
    def rate(s: dict[str, Any]) -> float | None:
        return s["failed_requests"] / s["requests"] if s["requests"] else None

    return [
        _card("requests", "Requests", today["requests"], yday["requests"], "count"),
        _card(
            "tokens",
            "Tokens",
            today["prompt_tokens"] + today["completion_tokens"],
            yday["prompt_tokens"] + yday["completion_tokens"],
            "count",
        ),
        _card("cost_usd", "Cost", today["cost_usd"], yday["cost_usd"], "usd"),
        _card("error_rate", "Error rate", rate(today), rate(yday), "percent"),
        _card("errors_429", "429s from upstreams", today["errors_429"], yday["errors_429"], "count"),
        _card("fallbacks", "Served by fallback", today["fallbacks"], yday["fallbacks"], "count"),
        _card(
            "latency_p50_ms", "Median latency", percentile(lat["latency"], 0.5), percentile(lat_y["latency"], 0.5), "ms"
        ),
        _card(
            "latency_p95_ms", "p95 latency", percentile(lat["latency"], 0.95), percentile(lat_y["latency"], 0.95), "ms"
        ),
        _card(
            "ttft_p50_ms",
            "Median time to first token",
            percentile(lat["ttft"], 0.5),
            percentile(lat_y["ttft"], 0.5),
            "ms",
        ),
        _card(
            "ttft_p95_ms",
            "p95 time to first token",
            percentile(lat["ttft"], 0.95),
            percentile(lat_y["ttft"], 0.95),
            "ms",
        ),
    ]


def _bucket_display(row: dict[str, Any]) -> str:
    """What is left in the backend's token buckets: requests (RPM) and tokens (TPM)."""
    parts = []
    if row["tokens_left"] is not None:
        parts.append(f"{formats.count(row['tokens_left'])} req")
    if row.get("tpm_tokens_left") is not None:
        parts.append(f"{formats.compact(row['tpm_tokens_left'])} tok")
    return " \u00b7 ".join(parts) or "no limit"


def backend_states(gateway: Gateway, attempts: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    wall_now = time.time()
    rows = []
    for row in backend_status(gateway):
        tried, failed = attempts.get(row["name"], (0, 0))
        remaining_s = None
        if row["cooldown_until"]:
            remaining_s = max(0.0, formats.parse_iso(row["cooldown_until"]).timestamp() - wall_now)
        state = row["state"] if row["enabled"] else "disabled"
        rows.append(
            {
                **row,
                "state": state,
                "state_label": STATE_LABELS.get(state, state),
                "remaining_s": None if remaining_s is None else round(remaining_s, 1),
                "remaining_display": formats.countdown(remaining_s) if remaining_s else "",
                "attempts_24h": tried,
                "success_rate_24h": None if not tried else round((tried - failed) / tried, 4),
                "success_display": formats.percent((tried - failed) / tried) if tried else formats.DASH,
                "tokens_left_display": _bucket_display(row),
            }
        )
    return rows


async def _charts(gateway: Gateway, end: datetime, today: datetime, stack: str) -> dict[str, Any]:
    conn = gateway.reader
    start_24h = end - timedelta(hours=24)
    hours = [(start_24h + timedelta(hours=i)).strftime(HOUR_FMT) for i in range(24)]
    per_hour: dict[str, list[float]] = {}
    for r in await reports.hourly_by(conn, stack, start_24h.strftime(HOUR_FMT), end.strftime(HOUR_FMT)):
        if r["requests"]:
            name = r["name"] or "(refused by the gateway)"
            per_hour.setdefault(name, [0.0] * 24)[hours.index(r["hour"])] += r["requests"]
    hourly = charts.stacked_bars(
        "hourly",
        f"Requests per hour, last 24 hours, by {stack}",
        [h[11:16] for h in hours],
        per_hour,
        value_format=lambda v: formats.plural(v, "request"),
        axis_format=formats.compact,
        tick_every=3,
        integer=True,
        width=1200,
        height=240,
    )
    days = [(today - timedelta(days=29 - i)).strftime("%Y-%m-%d") for i in range(30)]
    per_model: dict[str, list[float]] = {}
    tomorrow = (today + timedelta(days=1)).strftime("%Y-%m-%d")
    for r in await reports.daily_by_model(conn, days[0], tomorrow):
        if r["cost_usd"]:
            per_model.setdefault(r["model"] or "(none)", [0.0] * 30)[days.index(r["day"])] += r["cost_usd"]
    daily_cost = charts.stacked_bars(
        "daily_cost",
        "Cost per day, last 30 days, by model",
        days,
        per_model,
        value_format=formats.usd,
        axis_format=formats.usd_short,
        tick_every=5,
        tick_label=lambda d: d[5:],
    )
    first_day = today - timedelta(days=364)
    cells = {
        r["day"]: (float(r["requests"]), float(r["cost_usd"]))
        for r in await reports.daily_totals(conn, first_day.strftime("%Y-%m-%d"), tomorrow)
    }
    activity = charts.heatmap("heatmap", "Requests per day, last 365 days", today.date(), 365, cells)
    return {"hourly": hourly, "daily_cost": daily_cost, "heatmap": activity}


async def build_overview(gateway: Gateway, wall_now: float, stack: str = "backend") -> dict[str, Any]:
    """Everything the overview shows; times are UTC and "today" is the UTC day so far."""
    conn = gateway.reader
    hour = datetime.fromtimestamp(wall_now, UTC).replace(minute=0, second=0, microsecond=0)
    end = hour + timedelta(hours=1)
    today = hour.replace(hour=0)
    # Yesterday up to the same hour, so a morning is compared with a morning.
    y_start, y_end = today - timedelta(days=1), end - timedelta(days=1)
    t_range = (today.strftime(HOUR_FMT), end.strftime(HOUR_FMT))
    y_range = (y_start.strftime(HOUR_FMT), y_end.strftime(HOUR_FMT))
    summary_today = await queries.usage_summary(conn, *t_range)
    summary_yday = await queries.usage_summary(conn, *y_range)
    cards = _cards(
        summary_today,
        summary_yday,
        await reports.latency_counts(conn, *t_range),
        await reports.latency_counts(conn, *y_range),
    )
    month_start = today.replace(day=1).strftime("%Y-%m-%d")
    month_cost = await reports.cost_since(conn, month_start)
    attempts = await reports.attempts_by_backend(conn, (end - timedelta(hours=24)).strftime(HOUR_FMT), t_range[1])
    in_flight = [{"backend": name, "in_flight": n} for name, n in sorted(gateway.routing.in_flight.items()) if n > 0]
    stats = gateway.recorder.stats
    return {
        "generated_at": iso_ts(wall_now),
        "stack": stack,
        "window": {"today": list(t_range), "yesterday": list(y_range)},
        "today": summary_today,
        "yesterday": summary_yday,
        "cards": cards,
        "month": {"month": month_start[:7], "cost_usd": month_cost, "display": formats.usd(month_cost)},
        "unpriced_today": summary_today["unpriced"],
        "charts": await _charts(gateway, end, today, stack),
        "backends": backend_states(gateway, attempts),
        "in_flight": {"total": sum(r["in_flight"] for r in in_flight), "by_backend": in_flight},
        "recorder": {"pending": gateway.recorder.backlog, "dropped": stats.dropped, "last_error": stats.last_error},
    }
