"""Per-backend cooldowns after 429, exhausted quota or a rejected upstream key.

Pure: times are monotonic seconds (`now`) except where a value crosses a wall-clock
boundary (an HTTP-date, a persisted row), which take `wall_now` as well. Jitter is an
argument, so tests are exact; the shell draws it with `draw_jitter(rng)`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

# The longest wait any upstream hint may impose. A larger value is more likely a bug
# (milliseconds sent as seconds, a date in the wrong year) than a real instruction,
# and a day is still long enough that the fallback pool takes over.
MAX_RETRY_HINT_S = 86_400.0

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
QUOTA_COOLDOWN_S = 3600.0
CREDENTIAL_COOLDOWN_S = 600.0
MAX_JITTER = 0.25  # back-off is stretched by a factor in [1, 1 + MAX_JITTER)

RATE_LIMITED = "rate_limited"
QUOTA_EXHAUSTED = "quota_exhausted"
CREDENTIAL_REJECTED = "credential_rejected"

# delta-seconds (RFC 9110 §10.2.3) is 1*DIGIT; a fraction is tolerated because some
# upstreams send one. No sign, exponent, "nan" or "inf", all of which float() accepts.
_DECIMAL = re.compile(r"\d+(?:\.\d*)?|\.\d+", re.ASCII)
# Go's time.Duration.String(), which OpenAI uses for x-ratelimit-reset-*: "6m0s", "250ms".
_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|h|m|s)"
_DURATION = re.compile(f"(?:{_DURATION_PART})+", re.ASCII)
_DURATION_PARTS = re.compile(_DURATION_PART, re.ASCII)
_DURATION_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_MAX_HEADER_LEN = 64  # the longest HTTP-date is 29 characters
_MAX_BODY_DEPTH = 8
_RETRY_DELAY_KEYS = ("retryDelay", "retry_delay")


def parse_retry_after(value: str | None, wall_now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP-date.

    A date in the past gives 0. Values are capped at `MAX_RETRY_HINT_S`; anything
    unparseable (including a negative number, which the grammar has no sign for) is None.
    """
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_HEADER_LEN:
        return None
    if _DECIMAL.fullmatch(value):
        return _capped(float(value))
    # Retry-After may be an HTTP-date: RFC 9110 §10.2.3. The parser also accepts the
    # obsolete RFC 850 and asctime forms that §5.6.7 asks recipients to accept.
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # asctime carries no zone; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return _capped(max(0.0, when.timestamp() - wall_now))


def parse_retry_after_ms(value: str | None) -> float | None:
    """Seconds to wait from a `retry-after-ms` value (milliseconds, as OpenAI and Azure send)."""
    if value is None:
        return None
    value = value.strip()
    if len(value) > _MAX_HEADER_LEN or not _DECIMAL.fullmatch(value):
        return None
    return _capped(float(value) / 1000.0)


def parse_reset_duration(value: str | None) -> float | None:
    """Seconds from a Go-style duration (`1s`, `6m0s`, `250ms`, `1h2m3.5s`) or a bare number of seconds."""
    if value is None:
        return None
    value = value.strip()
    if len(value) > _MAX_HEADER_LEN:
        return None
    if _DECIMAL.fullmatch(value):
        return _capped(float(value))
    if not _DURATION.fullmatch(value):
        return None
    total_s = sum(float(amount) * _DURATION_UNIT_S[unit] for amount, unit in _DURATION_PARTS.findall(value))
    return _capped(total_s)


def parse_retry_delay(body: object) -> float | None:
    """Seconds from a `retryDelay` (or `retry_delay`) anywhere in a parsed JSON error body.

    Google sends it as `error.details[].retryDelay = "7s"`; others put it at the top
    level, as a duration string or a number of seconds. The largest one found wins.
    """
    return max(_retry_delays(body, depth=0), default=None)


def retry_hint_s(headers: Mapping[str, str], body: object, wall_now: float) -> float | None:
    """The wait an upstream's 429 asks for, from its headers (lower-case names) and parsed body.

    Signals: `retry-after`, `retry-after-ms`, `x-ratelimit-reset-requests`,
    `x-ratelimit-reset-tokens` and a `retryDelay` in the body. The largest one present
    wins: each describes a different limit (requests, tokens, the server's own view),
    a retry fails while any of them is still exhausted, and retrying too early only
    earns another 429 and a longer back-off, while waiting too long merely routes a
    few more seconds of traffic to another backend. `x-ratelimit-reset-requests` is
    ignored while `x-ratelimit-remaining-requests` is above 0, since then the request
    limit is not what refused us (OpenAI sends both headers on every response).
    The tokens header has no such test: tokens may remain and still be too few.
    """
    hints = [
        parse_retry_after(headers.get("retry-after"), wall_now),
        parse_retry_after_ms(headers.get("retry-after-ms")),
        parse_reset_duration(headers.get("x-ratelimit-reset-tokens")),
        parse_retry_delay(body),
    ]
    if not _has_requests_left(headers.get("x-ratelimit-remaining-requests")):
        hints.append(parse_reset_duration(headers.get("x-ratelimit-reset-requests")))
    return max((hint for hint in hints if hint is not None), default=None)


def draw_jitter(rng: random.Random) -> float:
    """A jitter factor in [0, MAX_JITTER) for `Cooldowns.on_rate_limited`."""
    return rng.random() * MAX_JITTER


@dataclass(slots=True)
class CooldownState:
    until: float = 0.0  # monotonic seconds; cooling while until > now
    consecutive_429: int = 0
    reason: str = ""  # RATE_LIMITED, QUOTA_EXHAUSTED or CREDENTIAL_REJECTED
    since: float = 0.0  # monotonic seconds of the latest 429, quota or credential event


@dataclass(frozen=True, slots=True)
class CooldownStatus:
    """One backend's cooldown as `/api/status` shows it."""

    state: str  # "ok", "cooling", "quota_exhausted" or "credential_rejected"
    until_wall: float | None  # wall-clock seconds, None when not cooling
    consecutive_429: int


class Cooldowns:
    """Cooldown state of every backend, keyed by backend name."""

    def __init__(
        self,
        *,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        quota_cooldown_s: float = QUOTA_COOLDOWN_S,
        credential_cooldown_s: float = CREDENTIAL_COOLDOWN_S,
        max_cooldown_s: float = MAX_RETRY_HINT_S,
    ) -> None:
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.quota_cooldown_s = quota_cooldown_s
        self.credential_cooldown_s = credential_cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._states: dict[str, CooldownState] = {}

    def on_rate_limited(self, name: str, now: float, hint_s: float | None, jitter: float) -> float:
        """Cool `name` down after a 429 and answer the new `until` (monotonic seconds).

        With a hint (see `retry_hint_s`) the wait is the hint. Without one it is
        `backoff_base_s * 2**(n-1)`, capped at `backoff_cap_s`, times `1 + jitter`
        (`jitter` in [0, MAX_JITTER), see `draw_jitter`), n counting consecutive 429s.
        A 429 extends a cooldown and never shortens one.
        """
        state = self._states.setdefault(name, CooldownState())
        state.consecutive_429 += 1
        if hint_s is not None and math.isfinite(hint_s):
            wait_s = min(max(0.0, hint_s), self.max_cooldown_s)
        else:
            jitter = min(max(jitter, 0.0), MAX_JITTER) if math.isfinite(jitter) else 0.0
            exponent = min(state.consecutive_429 - 1, 62)  # 2.0**1024 would overflow
            wait_s = min(self.backoff_cap_s, self.backoff_base_s * 2.0**exponent) * (1.0 + jitter)
        self._extend(state, now, wait_s, RATE_LIMITED)
        return state.until

    def on_quota_exhausted(self, name: str, now: float) -> float:
        """Cool `name` down for `quota_cooldown_s` after an `insufficient_quota` 429; answer `until`."""
        state = self._states.setdefault(name, CooldownState())
        self._extend(state, now, self.quota_cooldown_s, QUOTA_EXHAUSTED)
        return state.until

    def on_credential_rejected(self, name: str, now: float) -> float:
        """Cool `name` down for `credential_cooldown_s` after an upstream 401/403; answer `until`."""
        state = self._states.setdefault(name, CooldownState())
        self._extend(state, now, self.credential_cooldown_s, CREDENTIAL_REJECTED)
        return state.until

    def on_success(self, name: str, started_at: float | None = None) -> None:
        """Clear `name`'s cooldown and back-off: a success shows its key, quota and limits are fine.

        `started_at` (monotonic seconds the request was sent) guards against a race: a
        request sent before the latest 429/401/quota event says nothing about the
        backend since, so its success changes nothing. Without it, the success counts.
        """
        state = self._states.get(name)
        if state is None:
            return
        if started_at is not None and started_at < state.since:
            return
        del self._states[name]

    def is_cooling(self, name: str, now: float) -> bool:
        state = self._states.get(name)
        return state is not None and state.until > now

    def remaining_s(self, name: str, now: float) -> float:
        """Seconds until `name` may be used again; 0 when it is not cooling."""
        state = self._states.get(name)
        return 0.0 if state is None else max(0.0, state.until - now)

    def state_of(self, name: str) -> CooldownState:
        """A copy of `name`'s state (a fresh default for a backend never limited)."""
        state = self._states.get(name)
        return CooldownState() if state is None else dataclasses.replace(state)

    def status(self, name: str, now: float) -> str:
        """The state `/api/status` shows: "ok", "cooling", "quota_exhausted" or "credential_rejected"."""
        state = self._states.get(name)
        if state is None or state.until <= now:
            return "ok"
        return "cooling" if state.reason == RATE_LIMITED else state.reason

    def snapshot(self, now: float, wall_now: float) -> dict[str, CooldownStatus]:
        """Every known backend's status, with `until` converted to wall-clock seconds."""
        return {
            name: CooldownStatus(
                state=self.status(name, now),
                until_wall=wall_now + (state.until - now) if state.until > now else None,
                consecutive_429=state.consecutive_429,
            )
            for name, state in self._states.items()
        }

    def forget(self, name: str) -> None:
        """Drop `name`'s state (the backend was deleted)."""
        self._states.pop(name, None)

    def to_rows(self, now: float, wall_now: float) -> list[tuple[str, float, int, str]]:
        """`(name, until_wall, consecutive_429, reason)` for backends cooling or with a 429 count.

        Monotonic time does not survive a restart, so `until` is stored as wall-clock
        seconds; `until_wall` is 0.0 for a cooldown that has already ended.
        """
        rows = []
        for name, state in sorted(self._states.items()):
            active = state.until > now
            if active or state.consecutive_429 > 0:
                until_wall = wall_now + (state.until - now) if active else 0.0
                rows.append((name, until_wall, state.consecutive_429, state.reason))
        return rows

    def load_rows(self, rows: Iterable[tuple[str, float, int, str]], now: float, wall_now: float) -> None:
        """Restore rows from `to_rows`, taken in an earlier process, into this clock's time.

        A remaining time is capped at the longest cooldown this object sets, against a
        wall clock that jumped back while the gateway was down.
        """
        longest_s = max(self.max_cooldown_s, self.quota_cooldown_s, self.credential_cooldown_s)
        for name, until_wall, consecutive_429, reason in rows:
            remaining_s = min(until_wall - wall_now, longest_s) if math.isfinite(until_wall) else 0.0
            self._states[name] = CooldownState(
                until=now + remaining_s if remaining_s > 0 else 0.0,
                consecutive_429=max(0, consecutive_429),
                reason=reason,
                since=now,
            )

    def _extend(self, state: CooldownState, now: float, wait_s: float, reason: str) -> None:
        state.since = now
        until = now + wait_s
        # The reason follows whichever cooldown ends last: a short 429 does not relabel
        # an hour-long quota cooldown, but a long quota one does relabel a 429.
        if until >= state.until:
            state.until = max(state.until, until)
            state.reason = reason


def _capped(seconds: float) -> float:
    return min(seconds, MAX_RETRY_HINT_S)


def _has_requests_left(remaining: str | None) -> bool:
    if remaining is None:
        return False
    try:
        return float(remaining) > 0
    except ValueError:
        return False


def _retry_delays(node: object, depth: int) -> Iterator[float]:
    # Depth-limited so a hostile or odd body cannot recurse without end.
    if depth > _MAX_BODY_DEPTH:
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in _RETRY_DELAY_KEYS:
                delay_s = _delay_seconds(value)
                if delay_s is not None:
                    yield delay_s
            else:
                yield from _retry_delays(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            yield from _retry_delays(item, depth + 1)


def _delay_seconds(value: object) -> float | None:
    if isinstance(value, str):
        return parse_reset_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 and math.isfinite(value):
        return _capped(float(value))
    return None
