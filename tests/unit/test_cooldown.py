from __future__ import annotations

import math
import random

import pytest

from gateway.cooldown import (
    MAX_RETRY_HINT_S,
    Cooldowns,
    CooldownState,
    CooldownStatus,
    draw_jitter,
    parse_reset_duration,
    parse_retry_after,
    parse_retry_after_ms,
    parse_retry_delay,
    retry_hint_s,
)

DATE_WALL = 1_795_356_000.0  # Sun, 22 Nov 2026 14:00:00 GMT

GARBAGE = [None, "", "   ", "abc", "-5", "1e999", "NaN", "nan", "inf", "-inf", "0x10", "1,5", "5 s", "٣", "9" * 100]


# --- Retry-After -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 3 ", 3.0),
        ("0.5", 0.5),
        ("1.25", 1.25),
        ("99999999999", MAX_RETRY_HINT_S),
    ],
)
def test_retry_after_delta_seconds(value, expected):
    assert parse_retry_after(value, wall_now=DATE_WALL) == pytest.approx(expected)


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 22 Nov 2026 14:00:00 GMT",  # IMF-fixdate
        "Sunday, 22-Nov-26 14:00:00 GMT",  # obsolete RFC 850
        "Sun Nov 22 14:00:00 2026",  # obsolete asctime, no zone: GMT
    ],
)
def test_retry_after_http_date_in_the_future(value):
    assert parse_retry_after(value, wall_now=DATE_WALL - 30.0) == pytest.approx(30.0)


def test_retry_after_http_date_in_the_past_is_zero():
    assert parse_retry_after("Sun, 22 Nov 2026 14:00:00 GMT", wall_now=DATE_WALL + 3600.0) == 0.0


def test_retry_after_http_date_far_away_is_capped():
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", wall_now=DATE_WALL) == MAX_RETRY_HINT_S


@pytest.mark.parametrize(
    "value",
    [*GARBAGE, "Sun, 32 Nov 2026 14:00:00 GMT", "Sun, 22 Foo 2026", "Sun, 22 Nov 99999 14:00:00 GMT", "x" * 500],
)
def test_retry_after_garbage_is_none(value):
    assert parse_retry_after(value, wall_now=DATE_WALL) is None


# --- retry-after-ms, x-ratelimit-reset-* -------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1500", 1.5), ("250.5", 0.2505), ("0", 0.0), ("999999999999", MAX_RETRY_HINT_S)],
)
def test_retry_after_ms(value, expected):
    assert parse_retry_after_ms(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [*GARBAGE, "Sun, 22 Nov 2026 14:00:00 GMT", "20ms"])
def test_retry_after_ms_garbage_is_none(value):
    assert parse_retry_after_ms(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("250ms", 0.25),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("2m59.56s", 179.56),
        ("1m", 60.0),
        ("20us", 0.00002),
        ("7", 7.0),
        ("0.25", 0.25),
        ("0s", 0.0),
        ("48h", MAX_RETRY_HINT_S),
    ],
)
def test_reset_duration(value, expected):
    assert parse_reset_duration(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [*GARBAGE, "s", "1x", "1h 2m", "-1s", "1d", "ms5", "1S"])
def test_reset_duration_garbage_is_none(value):
    assert parse_reset_duration(value) is None


# --- retryDelay in the body --------------------------------------------------------


def test_retry_delay_google_style():
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
            ],
        }
    }
    assert parse_retry_delay(body) == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"retryDelay": "1.5s"}, 1.5),
        ({"retry_delay": 3}, 3.0),
        ({"retry_delay": 2.5}, 2.5),
        ({"error": {"retry_delay": "250ms"}}, 0.25),
        ([{"retryDelay": "2s"}, {"retryDelay": "9s"}], 9.0),  # the largest wins
        ({"retryDelay": "bogus", "error": {"retryDelay": "4s"}}, 4.0),
        ({"retryDelay": 10**12}, MAX_RETRY_HINT_S),
    ],
)
def test_retry_delay_forms(body, expected):
    assert parse_retry_delay(body) == pytest.approx(expected)


@pytest.mark.parametrize(
    "body",
    [
        None,
        "retryDelay: 7s",
        b'{"retryDelay": "7s"}',
        42,
        [],
        {},
        {"error": "rate limited"},
        {"retryDelay": None},
        {"retryDelay": True},
        {"retryDelay": -3},
        {"retryDelay": math.nan},
        {"retryDelay": math.inf},
        {"retryDelay": "soon"},
        {"retryDelay": {"seconds": 7}},
        {"retryDelay": ["7s"]},
    ],
)
def test_retry_delay_absent_or_garbage_is_none(body):
    assert parse_retry_delay(body) is None


def test_retry_delay_nested_too_deep_is_ignored():
    body: object = {"retryDelay": "7s"}
    for _ in range(20):
        body = {"wrap": body}
    assert parse_retry_delay(body) is None


# --- retry_hint_s ------------------------------------------------------------------


def test_retry_hint_without_signals_is_none():
    assert retry_hint_s({}, None, wall_now=DATE_WALL) is None
    assert retry_hint_s({"content-type": "application/json"}, {"error": {}}, wall_now=DATE_WALL) is None


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"retry-after": "7"}, None, 7.0),
        ({"retry-after": "Sun, 22 Nov 2026 14:00:20 GMT"}, None, 20.0),
        ({"retry-after-ms": "1500"}, None, 1.5),
        ({"x-ratelimit-reset-requests": "1s"}, None, 1.0),
        ({"x-ratelimit-reset-tokens": "6m0s"}, None, 360.0),
        ({}, {"error": {"details": [{"retryDelay": "7s"}]}}, 7.0),
    ],
)
def test_retry_hint_single_signal(headers, body, expected):
    assert retry_hint_s(headers, body, wall_now=DATE_WALL) == pytest.approx(expected)


def test_retry_hint_takes_the_largest_signal():
    headers = {"retry-after": "2", "retry-after-ms": "1500", "x-ratelimit-reset-tokens": "3.5s"}
    assert retry_hint_s(headers, {"retryDelay": "3s"}, wall_now=DATE_WALL) == pytest.approx(3.5)
    assert retry_hint_s(headers, {"retryDelay": "9s"}, wall_now=DATE_WALL) == pytest.approx(9.0)


def test_retry_hint_ignores_garbage_beside_a_valid_signal():
    headers = {"retry-after": "abc", "retry-after-ms": "NaN", "x-ratelimit-reset-tokens": "soon"}
    assert retry_hint_s(headers, {"retryDelay": "1e999"}, wall_now=DATE_WALL) is None
    headers["x-ratelimit-reset-requests"] = "2s"
    assert retry_hint_s(headers, "not json", wall_now=DATE_WALL) == pytest.approx(2.0)


def test_reset_requests_counts_only_when_no_requests_remain():
    headers = {"x-ratelimit-reset-requests": "20s", "x-ratelimit-reset-tokens": "1s"}
    remaining = {**headers, "x-ratelimit-remaining-requests": "59"}
    exhausted = {**headers, "x-ratelimit-remaining-requests": "0"}
    unreadable = {**headers, "x-ratelimit-remaining-requests": "many"}
    assert retry_hint_s(remaining, None, wall_now=DATE_WALL) == pytest.approx(1.0)
    assert retry_hint_s(exhausted, None, wall_now=DATE_WALL) == pytest.approx(20.0)
    assert retry_hint_s(unreadable, None, wall_now=DATE_WALL) == pytest.approx(20.0)
    assert retry_hint_s(headers, None, wall_now=DATE_WALL) == pytest.approx(20.0)


# --- Cooldowns: 429 back-off -------------------------------------------------------


def test_backoff_doubles_per_consecutive_429_and_is_capped():
    cooldowns = Cooldowns()
    now = 0.0
    waits = []
    for _ in range(9):
        until = cooldowns.on_rate_limited("a", now, hint_s=None, jitter=0.0)
        waits.append(until - now)
        now = until
    assert waits == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0])
    assert cooldowns.state_of("a") == CooldownState(until=now, consecutive_429=9, reason="rate_limited", since=now - 60)


def test_backoff_jitter_stretches_the_wait():
    cooldowns = Cooldowns()
    assert cooldowns.on_rate_limited("a", 10.0, hint_s=None, jitter=0.2) == pytest.approx(11.2)
    assert cooldowns.on_rate_limited("a", 11.2, hint_s=None, jitter=0.1) == pytest.approx(13.4)


def test_backoff_jitter_is_applied_after_the_cap():
    cooldowns = Cooldowns(backoff_cap_s=60.0)
    cooldowns.state_of("a")  # a read creates nothing
    for _ in range(7):
        cooldowns.on_rate_limited("a", 0.0, hint_s=None, jitter=0.0)
    assert cooldowns.on_rate_limited("a", 0.0, hint_s=None, jitter=0.2) == pytest.approx(72.0)


@pytest.mark.parametrize(("jitter", "expected"), [(5.0, 1.25), (-1.0, 1.0), (math.nan, 1.0), (math.inf, 1.0)])
def test_out_of_range_jitter_is_clamped(jitter, expected):
    assert Cooldowns().on_rate_limited("a", 0.0, hint_s=None, jitter=jitter) == pytest.approx(expected)


def test_backoff_does_not_overflow_after_many_429s():
    cooldowns = Cooldowns()
    for _ in range(2000):
        until = cooldowns.on_rate_limited("a", 0.0, hint_s=None, jitter=0.0)
    assert until == pytest.approx(60.0)


def test_constructor_sets_backoff_parameters():
    cooldowns = Cooldowns(backoff_base_s=0.5, backoff_cap_s=3.0)
    waits = [cooldowns.on_rate_limited("a", 100.0 * i, hint_s=None, jitter=0.0) - 100.0 * i for i in range(5)]
    assert waits == pytest.approx([0.5, 1.0, 2.0, 3.0, 3.0])


def test_a_hint_is_used_as_the_wait_without_jitter():
    cooldowns = Cooldowns()
    assert cooldowns.on_rate_limited("a", 100.0, hint_s=7.0, jitter=0.2) == pytest.approx(107.0)
    assert cooldowns.is_cooling("a", now=106.9)
    assert not cooldowns.is_cooling("a", now=107.0)
    assert cooldowns.remaining_s("a", now=104.0) == pytest.approx(3.0)
    assert cooldowns.remaining_s("a", now=200.0) == 0.0


def test_a_hint_of_zero_does_not_cool_down_but_counts():
    cooldowns = Cooldowns()
    assert cooldowns.on_rate_limited("a", 100.0, hint_s=0.0, jitter=0.0) == pytest.approx(100.0)
    assert not cooldowns.is_cooling("a", now=100.0)
    assert cooldowns.state_of("a").consecutive_429 == 1


@pytest.mark.parametrize(("hint_s", "expected"), [(-5.0, 0.0), (1e12, MAX_RETRY_HINT_S), (math.nan, 1.0)])
def test_odd_hints_are_clamped_or_ignored(hint_s, expected):
    assert Cooldowns().on_rate_limited("a", 0.0, hint_s=hint_s, jitter=0.0) == pytest.approx(expected)


def test_a_new_429_extends_and_never_shortens():
    cooldowns = Cooldowns()
    assert cooldowns.on_rate_limited("a", 0.0, hint_s=30.0, jitter=0.0) == pytest.approx(30.0)
    assert cooldowns.on_rate_limited("a", 1.0, hint_s=5.0, jitter=0.0) == pytest.approx(30.0)
    assert cooldowns.on_rate_limited("a", 2.0, hint_s=None, jitter=0.0) == pytest.approx(30.0)  # back-off 4s
    assert cooldowns.on_rate_limited("a", 3.0, hint_s=60.0, jitter=0.0) == pytest.approx(63.0)
    assert cooldowns.remaining_s("a", now=3.0) == pytest.approx(60.0)


def test_backends_are_independent():
    cooldowns = Cooldowns()
    cooldowns.on_rate_limited("a", 0.0, hint_s=10.0, jitter=0.0)
    assert not cooldowns.is_cooling("b", now=1.0)
    assert cooldowns.remaining_s("b", now=1.0) == 0.0
    assert cooldowns.state_of("b") == CooldownState()


# --- Cooldowns: success ------------------------------------------------------------


def test_success_resets_the_backoff():
    cooldowns = Cooldowns()
    for now in (0.0, 10.0, 20.0):
        cooldowns.on_rate_limited("a", now, hint_s=None, jitter=0.0)
    cooldowns.on_success("a")
    assert cooldowns.state_of("a") == CooldownState()
    assert not cooldowns.is_cooling("a", now=20.5)
    assert cooldowns.on_rate_limited("a", 30.0, hint_s=None, jitter=0.0) == pytest.approx(31.0)


def test_success_of_a_request_sent_before_the_429_changes_nothing():
    cooldowns = Cooldowns()
    cooldowns.on_rate_limited("a", 10.0, hint_s=30.0, jitter=0.0)
    cooldowns.on_success("a", started_at=9.0)
    assert cooldowns.is_cooling("a", now=11.0)
    assert cooldowns.state_of("a").consecutive_429 == 1
    cooldowns.on_success("a", started_at=10.0)
    assert cooldowns.state_of("a") == CooldownState()


def test_success_of_another_backend_changes_nothing():
    cooldowns = Cooldowns()
    cooldowns.on_quota_exhausted("a", 0.0)
    cooldowns.on_success("b")
    cooldowns.on_success("never-seen")
    assert cooldowns.status("a", now=1.0) == "quota_exhausted"


# --- Cooldowns: long cooldowns -----------------------------------------------------


def test_quota_exhausted_is_a_long_labelled_cooldown():
    cooldowns = Cooldowns()
    assert cooldowns.on_quota_exhausted("a", 100.0) == pytest.approx(3700.0)
    assert cooldowns.state_of("a") == CooldownState(
        until=3700.0, consecutive_429=0, reason="quota_exhausted", since=100
    )
    assert cooldowns.status("a", now=3699.0) == "quota_exhausted"
    assert cooldowns.status("a", now=3700.0) == "ok"


def test_credential_rejected_is_a_long_labelled_cooldown():
    cooldowns = Cooldowns()
    assert cooldowns.on_credential_rejected("a", 100.0) == pytest.approx(700.0)
    assert cooldowns.state_of("a").reason == "credential_rejected"
    assert cooldowns.status("a", now=699.0) == "credential_rejected"


def test_long_cooldowns_take_their_length_from_the_constructor():
    cooldowns = Cooldowns(quota_cooldown_s=50.0, credential_cooldown_s=20.0)
    assert cooldowns.on_quota_exhausted("a", 0.0) == pytest.approx(50.0)
    assert cooldowns.on_credential_rejected("b", 0.0) == pytest.approx(20.0)


def test_a_short_429_keeps_the_label_of_a_longer_cooldown():
    cooldowns = Cooldowns()
    cooldowns.on_quota_exhausted("a", 0.0)
    assert cooldowns.on_rate_limited("a", 1.0, hint_s=5.0, jitter=0.0) == pytest.approx(3600.0)
    assert cooldowns.status("a", now=10.0) == "quota_exhausted"
    assert cooldowns.state_of("a").consecutive_429 == 1


def test_a_long_cooldown_relabels_a_shorter_429():
    cooldowns = Cooldowns()
    cooldowns.on_rate_limited("a", 0.0, hint_s=5.0, jitter=0.0)
    assert cooldowns.status("a", now=1.0) == "cooling"
    cooldowns.on_credential_rejected("a", 1.0)
    assert cooldowns.status("a", now=2.0) == "credential_rejected"
    assert cooldowns.remaining_s("a", now=2.0) == pytest.approx(599.0)


def test_a_long_cooldown_never_shortens_a_longer_one():
    cooldowns = Cooldowns()
    cooldowns.on_quota_exhausted("a", 0.0)
    assert cooldowns.on_credential_rejected("a", 10.0) == pytest.approx(3600.0)
    assert cooldowns.status("a", now=11.0) == "quota_exhausted"


def test_success_clears_a_long_cooldown():
    cooldowns = Cooldowns()
    cooldowns.on_credential_rejected("a", 0.0)
    cooldowns.on_success("a", started_at=5.0)
    assert not cooldowns.is_cooling("a", now=6.0)
    assert cooldowns.status("a", now=6.0) == "ok"


# --- Cooldowns: status, persistence ------------------------------------------------


def test_snapshot_converts_until_to_wall_clock():
    cooldowns = Cooldowns()
    cooldowns.on_rate_limited("a", 10.0, hint_s=20.0, jitter=0.0)
    cooldowns.on_quota_exhausted("b", 10.0)
    cooldowns.on_rate_limited("c", 0.0, hint_s=1.0, jitter=0.0)
    assert cooldowns.snapshot(now=20.0, wall_now=1000.0) == {
        "a": CooldownStatus(state="cooling", until_wall=1010.0, consecutive_429=1),
        "b": CooldownStatus(state="quota_exhausted", until_wall=4590.0, consecutive_429=0),
        "c": CooldownStatus(state="ok", until_wall=None, consecutive_429=1),
    }


def test_state_of_is_a_copy():
    cooldowns = Cooldowns()
    cooldowns.on_rate_limited("a", 0.0, hint_s=5.0, jitter=0.0)
    cooldowns.state_of("a").until = 0.0
    assert cooldowns.is_cooling("a", now=1.0)


def test_forget():
    cooldowns = Cooldowns()
    cooldowns.on_rate_limited("a", 0.0, hint_s=5.0, jitter=0.0)
    cooldowns.forget("a")
    cooldowns.forget("never-seen")
    assert not cooldowns.is_cooling("a", now=1.0)
    assert cooldowns.snapshot(now=1.0, wall_now=1.0) == {}


def test_to_rows_keeps_only_active_cooldowns_and_counters():
    cooldowns = Cooldowns()
    cooldowns.on_rate_limited("b-limited", 1000.0, hint_s=30.0, jitter=0.0)
    cooldowns.on_rate_limited("b-limited", 1000.0, hint_s=None, jitter=0.0)
    cooldowns.on_quota_exhausted("a-quota", 1000.0)
    cooldowns.on_rate_limited("c-expired", 900.0, hint_s=1.0, jitter=0.0)
    cooldowns.on_rate_limited("d-fine", 900.0, hint_s=1.0, jitter=0.0)
    cooldowns.on_success("d-fine")
    assert cooldowns.to_rows(now=1000.0, wall_now=1_700_000_000.0) == [
        ("a-quota", 1_700_003_600.0, 0, "quota_exhausted"),
        ("b-limited", 1_700_000_030.0, 2, "rate_limited"),
        ("c-expired", 0.0, 1, "rate_limited"),
    ]


def test_rows_survive_a_restart_with_another_monotonic_origin():
    before = Cooldowns()
    before.on_rate_limited("limited", 1000.0, hint_s=30.0, jitter=0.0)
    before.on_rate_limited("limited", 1000.0, hint_s=None, jitter=0.0)
    before.on_credential_rejected("rejected", 1000.0)
    before.on_rate_limited("expired", 900.0, hint_s=1.0, jitter=0.0)
    rows = before.to_rows(now=1000.0, wall_now=1_700_000_000.0)

    after = Cooldowns()  # the new process: monotonic clock near 5, ten wall seconds later
    after.load_rows(rows, now=5.0, wall_now=1_700_000_010.0)

    assert after.remaining_s("limited", now=5.0) == pytest.approx(20.0)
    assert after.status("limited", now=5.0) == "cooling"
    assert after.state_of("limited").consecutive_429 == 2
    assert after.remaining_s("rejected", now=5.0) == pytest.approx(590.0)
    assert after.status("rejected", now=5.0) == "credential_rejected"
    assert not after.is_cooling("expired", now=5.0)
    # The back-off goes on from the stored count: third 429, 4 s.
    assert after.on_rate_limited("expired", 10.0, hint_s=None, jitter=0.0) == pytest.approx(12.0)
    assert after.to_rows(now=5.0, wall_now=1_700_000_010.0)[1:] == [
        ("limited", 1_700_000_030.0, 2, "rate_limited"),
        ("rejected", 1_700_000_600.0, 0, "credential_rejected"),
    ]


def test_a_cooldown_that_ended_during_the_restart_is_over():
    cooldowns = Cooldowns()
    cooldowns.load_rows([("a", 1_700_000_030.0, 1, "rate_limited")], now=5.0, wall_now=1_700_000_100.0)
    assert not cooldowns.is_cooling("a", now=5.0)
    assert cooldowns.state_of("a").consecutive_429 == 1


def test_load_rows_caps_odd_values():
    cooldowns = Cooldowns()
    rows = [("far", 9e18, 1, "rate_limited"), ("nan", math.nan, -3, "rate_limited"), ("inf", math.inf, 0, "")]
    cooldowns.load_rows(rows, now=5.0, wall_now=1_700_000_000.0)
    assert cooldowns.remaining_s("far", now=5.0) == pytest.approx(MAX_RETRY_HINT_S)
    assert cooldowns.state_of("nan") == CooldownState(until=0.0, consecutive_429=0, reason="rate_limited", since=5.0)
    assert not cooldowns.is_cooling("inf", now=5.0)


def test_a_success_after_a_restart_clears_a_loaded_cooldown():
    cooldowns = Cooldowns()
    cooldowns.load_rows([("a", 1_700_000_030.0, 3, "rate_limited")], now=5.0, wall_now=1_700_000_000.0)
    cooldowns.on_success("a", started_at=6.0)
    assert cooldowns.state_of("a") == CooldownState()


def test_draw_jitter_is_deterministic_and_in_range():
    values = [draw_jitter(random.Random(seed)) for seed in range(200)]
    assert values[7] == pytest.approx(random.Random(7).random() * 0.25)
    assert all(0.0 <= value < 0.25 for value in values)
