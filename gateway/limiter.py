"""Token buckets for per-backend and per-key limits (RPM, TPM).

Pure arithmetic: every method takes `now`, monotonic seconds, read once per request
by the shell. Refill is continuous, so a bucket of `capacity` allows a burst of
`capacity` and then `refill_per_s` on average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.usage import Usage

# About four bytes of JSON per token: OpenAI's rule of thumb for English text is four
# characters per token, and the JSON keys and quoting of a chat body add a little on
# top. Text in scripts of several bytes per character (CJK, Cyrillic) comes out lower
# than its real count; the estimate is corrected with real usage afterwards.
BYTES_PER_TOKEN = 4

# Completion tokens assumed when the request sets no `max_tokens`: a typical answer,
# not the model's maximum, so an unbounded request is not refused on a busy bucket.
DEFAULT_COMPLETION_TOKENS = 256


@dataclass(slots=True)
class TokenBucket:
    """A continuously refilling bucket; `tokens` may be negative after `take_debt`."""

    capacity: float
    refill_per_s: float
    tokens: float
    updated_at: float  # monotonic seconds of the last refill

    @classmethod
    def per_minute(cls, limit: float, now: float) -> TokenBucket:
        """A full bucket allowing `limit` per minute, with bursts up to `limit`."""
        if not (math.isfinite(limit) and limit > 0):
            raise ValueError(f"a per-minute limit must be a positive number, not {limit!r}")
        return cls(capacity=limit, refill_per_s=limit / 60.0, tokens=limit, updated_at=now)

    def try_take(self, now: float, cost: float = 1.0) -> bool:
        """Take `cost` if available; a cost above capacity is admitted from a full bucket."""
        self._refill(now)
        if self.tokens < self._needed(cost):
            return False
        # A cost above capacity leaves the bucket in debt, so the long-run rate holds.
        self.tokens -= cost
        return True

    def seconds_until(self, now: float, cost: float = 1.0) -> float:
        """Seconds until `try_take(cost)` would succeed: 0 if now; until full if cost > capacity."""
        self._refill(now)
        missing = self._needed(cost) - self.tokens
        if missing <= 0:
            return 0.0
        if self.refill_per_s <= 0:
            return math.inf
        return missing / self.refill_per_s

    def give_back(self, now: float, amount: float) -> None:
        """Return tokens taken on an over-estimate; never fills beyond capacity."""
        self._refill(now)
        self.tokens = min(self.capacity, self.tokens + max(0.0, amount))

    def take_debt(self, now: float, amount: float) -> None:
        """Take tokens used beyond the estimate; the level may go negative, down to -capacity.

        The floor bounds the wait after one wild under-estimate to two refill periods:
        an upstream's own window has forgotten the excess by then.
        """
        self._refill(now)
        self.tokens = max(-self.capacity, self.tokens - max(0.0, amount))

    def level(self, now: float) -> float:
        """Tokens available at `now` (negative while in debt)."""
        self._refill(now)
        return self.tokens

    def _needed(self, cost: float) -> float:
        return min(cost, self.capacity)

    def _refill(self, now: float) -> None:
        # A `now` older than the last update (two requests that read the clock in one
        # order and reach the bucket in the other) adds nothing and keeps `updated_at`,
        # so no interval is ever counted twice.
        elapsed = now - self.updated_at
        if elapsed <= 0:
            return
        self.tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_s)
        self.updated_at = now


def estimate_tokens(body_len_bytes: int, max_tokens: int | None) -> int:
    """Tokens a request is expected to use, for admission to a TPM bucket.

    Prompt: the request body's size / 4, rounded up (see `BYTES_PER_TOKEN`).
    Completion: `max_tokens` when the client set a positive one (pass
    `max_completion_tokens` or `max_output_tokens` here too), else
    `DEFAULT_COMPLETION_TOKENS`. OpenAI, too, counts `max_tokens` against its TPM
    limit when it admits a request. Once real usage is known, the shell settles the difference with
    `TokenBucket.give_back` or `TokenBucket.take_debt`.
    """
    completion_tokens = max_tokens if max_tokens is not None and max_tokens > 0 else DEFAULT_COMPLETION_TOKENS
    return prompt_tokens_of(body_len_bytes) + completion_tokens


def prompt_tokens_of(body_len_bytes: int) -> int:
    """The prompt's tokens as estimated from the request body's size (`BYTES_PER_TOKEN`), rounded up."""
    return -(-max(0, body_len_bytes) // BYTES_PER_TOKEN)


def estimate_stream_usage(body_len_bytes: int, chunks: int) -> Usage:
    """Usage of a stream that ended before its upstream reported any (a client that left, a cut).

    The prompt as admission estimates it (the request body's size / 4); the completion as one token
    per chunk relayed, as models stream about a token per chunk.
    """
    return Usage(prompt_tokens=prompt_tokens_of(body_len_bytes), completion_tokens=max(0, chunks))
