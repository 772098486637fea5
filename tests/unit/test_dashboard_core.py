"""The dashboard's pure parts: formats, chart geometry, latency histograms, signing, usage parameters."""

from __future__ import annotations

import json
import math
from datetime import date

import pytest

from gateway import charts, formats
from gateway.errors import BadRequest
from gateway.histogram import bucket_ms, bucket_of, fold_latency, percentile
from gateway.records import RequestRecord
from gateway.usage_report import parse_params, to_csv
from gateway.web_auth import SESSION_TTL_S, LoggedOut, Session, Signer

SECRET = b"s" * 32
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


# -- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "$0.00"), (1234.5, "$1,234.50"), (0.042, "$0.04"), (0.0000136, "$0.000014"), (1e-9, "<$0.000001")],
)
def test_usd(value: float, shown: str) -> None:
    assert formats.usd(value) == shown


def test_counts_durations_and_changes() -> None:
    assert formats.count(1234567) == "1,234,567"
    assert formats.count(None) == formats.DASH
    assert formats.compact(12_345) == "12.3k" and formats.compact(950) == "950"
    assert formats.duration_ms(850.4) == "850 ms" and formats.duration_ms(1240) == "1.24 s"
    assert formats.countdown(44.2) == "45 s" and formats.countdown(600) == "10 min"
    assert formats.change(120, 100) == (20.0, "+20%")
    assert formats.change(50, 100) == (-50.0, "\u221250%")
    assert formats.change(5, 0) == (None, "new")
    assert formats.change(0, 0) == (0.0, "\u00b10%")
    assert formats.change(None, 3) == (None, formats.DASH)
    assert formats.ago("2027-01-15T07:55:00Z", NOW) == "5 min ago"
    assert formats.ago(None, NOW) == "never"
    assert formats.plural(1, "request") == "1 request" and formats.plural(2, "request") == "2 requests"


# -- charts -----------------------------------------------------------------------------------


def test_nice_max_rounds_up_to_a_readable_axis_top() -> None:
    assert [charts.nice_max(v) for v in (0, 0.7, 3, 13, 240, 999)] == [1.0, 0.8, 3.2, 16.0, 240.0, 1000.0]
    assert [charts.nice_max(v, integer=True) for v in (0, 1, 3, 5, 13)] == [4.0, 4.0, 4.0, 8.0, 16.0]


def test_stacked_bars_fold_small_series_into_other_and_keep_totals() -> None:
    series = {f"b{i}": [float(i), 0.0, 1.0] for i in range(1, 11)}
    chart = charts.stacked_bars("c", "T", ["a", "b", "c"], series, value_format=str, axis_format=str, tick_every=1)
    names = [item["name"] for item in chart["legend"]]
    assert len(names) == charts.PALETTE_SIZE and names[0] == "b10" and names[-1] == charts.OTHER
    bars = [r for r in chart["rects"] if r["cls"] != "grid"]
    assert len(bars) == charts.PALETTE_SIZE + charts.PALETTE_SIZE  # column "b" is empty
    plot_bottom = chart["height"] - 22  # labels "0" ... "60": the plot starts at x = 30
    first_column = [r for r in bars if r["x"] == bars[0]["x"]]
    assert min(r["y"] for r in first_column) == pytest.approx(10 + (plot_bottom - 10) * (1 - 55 / 60), abs=0.05)
    assert all("total 55" in r["title"] for r in first_column)


def test_heatmap_has_one_cell_per_day_and_shades_by_quartile() -> None:
    cells = {f"2027-01-{d:02d}": (float(d), 0.5) for d in range(1, 15)}
    chart = charts.heatmap("h", "T", date(2027, 1, 15), 365, cells)
    assert len(chart["rects"]) == 365
    levels = {r["title"].split(":")[0]: r["cls"] for r in chart["rects"]}
    assert levels["2027-01-15"] == "h0" and levels["2027-01-01"] == "h1" and levels["2027-01-14"] == "h4"
    assert "2027-01-14: 14 requests, $0.50" in [r["title"] for r in chart["rects"]]


# -- latency histograms -----------------------------------------------------------------------


def test_histogram_buckets_are_within_a_tenth_of_the_value() -> None:
    for ms in (1.5, 37.0, 412.0, 8_000.0, 95_000.0):
        assert abs(bucket_ms(bucket_of(ms)) - ms) / ms < 0.1
    assert bucket_of(0.0) == bucket_of(0.5) == 0


def test_percentiles_from_counts() -> None:
    counts = {bucket_of(100): 90, bucket_of(1000): 10}
    assert percentile(counts, 0.5) == pytest.approx(100, rel=0.1)
    assert percentile(counts, 0.95) == pytest.approx(1000, rel=0.1)
    assert percentile({}, 0.5) is None


def test_fold_latency_counts_successes_and_streams_only() -> None:
    ok = RequestRecord("a", NOW, "chat", "k", "m", model="m", backend="b", latency_ms=100, ttft_ms=20)
    failed = RequestRecord("b", NOW, "chat", "k", "m", model="m", backend="b", status=502, latency_ms=5)
    refused = RequestRecord("c", NOW, "chat", "k", "m", status=401)
    counts = fold_latency([ok, failed, refused])
    assert sorted((metric, n) for (_, metric, _), n in counts.items()) == [("latency", 1), ("ttft", 1)]


# -- signing ----------------------------------------------------------------------------------


def test_session_cookie_round_trip_expiry_tampering_and_binding() -> None:
    signer = Signer(SECRET, "token-hash")
    cookie = signer.new_session_cookie(NOW)
    session = signer.read_session(cookie, NOW + 60)
    assert session is not None and session.expires_at == NOW + SESSION_TTL_S
    assert signer.read_session(cookie, NOW + SESSION_TTL_S) is None
    assert Signer(SECRET, "another-token-hash").read_session(cookie, NOW) is None
    assert Signer(b"t" * 32, "token-hash").read_session(cookie, NOW) is None
    sid, expires, sig = cookie.split(".")
    assert signer.read_session(f"{sid}.{int(expires) + 1}.{sig}", NOW) is None
    assert signer.read_session(None, NOW) is None and signer.read_session("a.b", NOW) is None


def test_csrf_and_login_tokens() -> None:
    signer = Signer(SECRET)
    session = signer.read_session(signer.new_session_cookie(NOW), NOW)
    other = signer.read_session(signer.new_session_cookie(NOW), NOW)
    assert session is not None and other is not None
    token = signer.csrf_token(session)
    assert signer.is_valid_csrf(session, token)
    assert not signer.is_valid_csrf(other, token) and not signer.is_valid_csrf(session, "")
    # A CSRF token is not a session signature, and the reverse: purposes are separate.
    assert not signer.is_valid("session", session.session_id, token)
    login = signer.login_form_token(NOW)
    assert signer.is_valid_login_token(login, NOW + 10)
    assert not signer.is_valid_login_token(login, NOW + 7200)
    assert not signer.is_valid_login_token("123.abc", NOW)
    with pytest.raises(ValueError):
        Signer(b"")


# -- usage page parameters --------------------------------------------------------------------


def test_usage_parameters_default_to_the_last_30_days() -> None:
    chosen = parse_params({}, NOW)
    assert chosen == {
        "group_by": "model",
        "start": "2026-12-17",
        "end": "2027-01-15",
        "sort": "cost_usd",
        "dir": "desc",
    }
    assert parse_params({"sort": "key"}, NOW)["dir"] == "asc"
    for bad in (
        {"group_by": "x"},
        {"start": "2027-02-01"},
        {"end": "soon"},
        {"sort": "nope"},
        {"dir": "up"},
        {"start": "2000-01-01"},
    ):
        with pytest.raises(BadRequest):
            parse_params(bad, NOW)


def test_csv_neutralises_formulas() -> None:
    row = {"key": "=HYPERLINK(1)", "error_rate": None, "avg_latency_ms": 1.0, "avg_ttft_ms": math.nan}
    from gateway.records import HOURLY_COUNTERS

    row.update({c: 0 for c in HOURLY_COUNTERS})
    text = to_csv({"group_by": "model", "data": [row], "totals": {**row, "key": "Total"}})
    assert "\n'=HYPERLINK(1)," in text


def test_logged_out_sessions_round_trip_through_json_less_what_expired() -> None:
    ended = LoggedOut()
    ended.add(Session("old", 100.0))
    ended.add(Session("recent", 5_000.0))
    restored = LoggedOut.from_json(ended.to_json(), wall_now=1_000.0)
    assert Session("recent", 5_000.0) in restored
    assert Session("old", 100.0) not in restored  # its cookie has expired anyway
    assert json.loads(restored.to_json()) == {"recent": 5_000.0}


@pytest.mark.parametrize("saved", [None, "", "not json", "[1, 2]", '{"a": "soon"}', '{"a": null}'])
def test_an_unreadable_saved_logout_set_counts_as_empty(saved: str | None) -> None:
    assert LoggedOut.from_json(saved, wall_now=0.0).to_json() == "{}"
