"""Token usage from upstream answers, an incremental SSE splitter, and hour buckets.

Pure: no I/O and no clock reads. The proxy feeds it bytes and parsed JSON; the
caller passes wall time in when it needs a bucket.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

ENDPOINTS = frozenset({"chat", "completions", "embeddings", "responses"})

# Responses API streams end with exactly one of these; each carries `response.usage`.
RESPONSES_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})

_SECONDS_PER_HOUR = 3600

# Names per field, in order of preference. Upstreams mix the Chat Completions names
# (prompt_tokens) and the Responses API names (input_tokens), so both are accepted.
_CHAT_NAMES = (
    ("prompt_tokens", "input_tokens"),
    ("completion_tokens", "output_tokens"),
    ("prompt_tokens_details", "input_tokens_details"),
    ("completion_tokens_details", "output_tokens_details"),
)
_RESPONSES_NAMES = tuple((second, first) for first, second in _CHAT_NAMES)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one answer; every count is a non-negative int."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # part of prompt_tokens served from the provider's prompt cache
    reasoning_tokens: int = 0  # part of completion_tokens spent on hidden reasoning

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _count(value: object) -> int | None:
    """A token count, or None for anything that is not a non-negative whole number."""
    # `type(...) is` on purpose: bool is an int subclass and True is not one token.
    if type(value) is int:
        return value if value >= 0 else None
    if type(value) is float and value.is_integer() and value >= 0:  # is_integer() is False for nan/inf
        return int(value)
    return None


def _first_count(usage: dict[object, object], names: tuple[str, str]) -> int:
    for name in names:
        count = _count(usage.get(name))
        if count is not None:
            return count
    return 0


def _detail_count(usage: dict[object, object], names: tuple[str, str], field: str) -> int | None:
    for name in names:
        details = usage.get(name)
        if isinstance(details, dict):
            count = _count(details.get(field))
            if count is not None:
                return count
    return None


def _usage_from_dict(endpoint: str, usage: dict[object, object]) -> Usage:
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(ENDPOINTS)}")
    prompt_names, completion_names, prompt_details, completion_details = (
        _RESPONSES_NAMES if endpoint == "responses" else _CHAT_NAMES
    )
    prompt = _first_count(usage, prompt_names)
    cached = _detail_count(usage, prompt_details, "cached_tokens")
    if cached is None:
        # DeepSeek reports its cache hits at the top level.
        cached = _count(usage.get("prompt_cache_hit_tokens")) or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=_first_count(usage, completion_names),
        cached_tokens=min(cached, prompt),
        reasoning_tokens=_detail_count(usage, completion_details, "reasoning_tokens") or 0,
    )


def usage_from_body(endpoint: str, body: object) -> Usage | None:
    """Usage of a non-streamed JSON answer, or None when it has no `usage` object.

    `endpoint` is one of ENDPOINTS (ValueError otherwise). Counts that are not
    non-negative whole numbers read as 0; `cached_tokens` never exceeds `prompt_tokens`.
    """
    if not isinstance(body, dict):
        return None
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    return _usage_from_dict(endpoint, usage)


def usage_from_event(endpoint: str, event: object) -> Usage | None:
    """Usage carried by one parsed SSE event, or None when it carries none.

    Chat/completions chunks carry a top-level `usage` object (normally only the last,
    usage-only chunk); Responses API streams carry `response.usage` in their terminal
    event (`response.completed`, `.incomplete` or `.failed`).

    Usage in a stream is CUMULATIVE: some upstreams (vLLM's continuous usage stats)
    attach the running total to every chunk. The caller keeps the LAST value seen and
    never sums them.
    """
    if not isinstance(event, dict):
        return None
    if event.get("type") in RESPONSES_TERMINAL_EVENTS:
        return usage_from_body(endpoint, event.get("response"))
    return usage_from_body(endpoint, event)


def is_usage_only_chunk(event: object) -> bool:
    """Whether a parsed chunk is the one `stream_options.include_usage` adds: no choices, a usage object."""
    return isinstance(event, dict) and event.get("choices") == [] and isinstance(event.get("usage"), dict)


@dataclass(slots=True)
class SSEEvent:
    """One server-sent event.

    `raw` is the exact bytes received, terminating blank line included, so it can be
    forwarded unchanged. `data` joins the `data:` lines with b"\\n" (None when there
    is none); `event` is the `event:` field.
    """

    raw: bytes
    data: bytes | None = None
    event: str | None = None

    @property
    def is_done(self) -> bool:
        """Whether this is OpenAI's end-of-stream sentinel `data: [DONE]`."""
        return self.data == b"[DONE]"


# A line ending (CRLF, LF or lone CR) followed by a second one: the blank line that ends
# an event (https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream).
# `\r(?!\n)` keeps a CRLF from counting as two line endings.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")
# The longest event end is b"\r\n\r\n"; one ending in data already scanned starts at most
# this many bytes before the new data.
_EVENT_END_LOOKBACK = 3
_UTF8_BOM = b"\xef\xbb\xbf"


def _parse_fields(raw: bytes, body: bytes) -> SSEEvent:
    """The general case: several lines, comments, `event:` fields, any line endings."""
    data_lines: list[bytes] = []
    event_type: str | None = None
    for line in body.splitlines():  # bytes.splitlines() splits on exactly LF, CR and CRLF
        if not line or line.startswith(b":"):
            continue
        name, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data_lines.append(value)
        elif name == b"event":
            event_type = value.decode("utf-8", "replace")
    data = b"\n".join(data_lines) if data_lines else None
    return SSEEvent(raw=raw, data=data, event=event_type)


def _event_from(raw: bytes, body_size: int) -> SSEEvent:
    """The event in `raw`, whose first `body_size` bytes precede the terminating blank line."""
    # The common case, a single `data:` line, without slicing the body or looping over lines.
    if raw.startswith(b"data:") and raw.find(b"\n", 5, body_size) < 0 and raw.find(b"\r", 5, body_size) < 0:
        return SSEEvent(raw, raw[6:body_size] if raw.startswith(b" ", 5) else raw[5:body_size])
    return _parse_fields(raw, raw[:body_size])


def _without_bom(event: SSEEvent) -> SSEEvent:
    """The first event of a stream, parsed again without a leading byte order mark (the spec ignores one)."""
    if not event.raw.startswith(_UTF8_BOM):
        return event
    return _parse_fields(event.raw, event.raw[len(_UTF8_BOM) :].rstrip(b"\r\n"))


class SSEParser:
    """Split a byte stream into SSE events, whatever the chunk boundaries.

    `feed()` returns the events completed by a chunk; `flush()` returns the unterminated
    tail at the end of the stream. Events split the same way however the bytes arrive.
    """

    __slots__ = ("_buffer", "_scan_from", "_at_stream_start")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan_from = 0  # bytes before this hold no event end (in the unconsumed buffer)
        self._at_stream_start = True

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer
        buffer += chunk
        events: list[SSEEvent] = []
        event_start = 0
        scan_from = self._scan_from
        # Checked once per chunk, not per event, to stay linear in the chunk size.
        if buffer.find(b"\r", scan_from) < 0:
            while (end_start := buffer.find(b"\n\n", scan_from)) >= 0:
                scan_from = end_start + 2
                raw = bytes(buffer[event_start:scan_from])
                body_size = end_start - event_start
                # _event_from() inlined for the hottest case: one `data:` line, no CR to look for.
                if raw.startswith(b"data:") and raw.find(b"\n", 5, body_size) < 0:
                    data = raw[6:body_size] if raw.startswith(b" ", 5) else raw[5:body_size]
                    events.append(SSEEvent(raw, data))
                else:
                    events.append(_parse_fields(raw, raw[:body_size]))
                event_start = scan_from
        else:
            size = len(buffer)
            while (match := _EVENT_END.search(buffer, scan_from)) is not None:
                # A final CR may be the first half of a CRLF still in flight: wait for the next byte.
                if match.end() == size and buffer[-1] == 0x0D:
                    break
                scan_from = match.end()
                events.append(_event_from(bytes(buffer[event_start:scan_from]), match.start() - event_start))
                event_start = scan_from
        if self._at_stream_start and events:
            self._at_stream_start = False
            events[0] = _without_bom(events[0])
        if event_start:
            del buffer[:event_start]  # bytearray deletes from the front without copying the rest
        self._scan_from = max(0, len(buffer) - _EVENT_END_LOOKBACK)
        return events

    def flush(self) -> SSEEvent | None:
        """The event left at the end of the stream without its blank line, if it is not blank."""
        raw = bytes(self._buffer)
        self._buffer.clear()
        self._scan_from = 0
        body = raw.rstrip(b"\r\n")
        if not body:
            return None
        event = _event_from(raw, len(body))
        if self._at_stream_start:
            self._at_stream_start = False
            event = _without_bom(event)
        return event


def _hour_start_s(wall_now: float) -> int:
    # Floor in integers: rounding a float to microseconds could turn 14:59:59.9999999 into 15:00.
    return math.floor(wall_now) // _SECONDS_PER_HOUR * _SECONDS_PER_HOUR


def hour_bucket(wall_now: float) -> str:
    """The UTC hour holding a POSIX timestamp, as stored in usage_hourly.hour: "2026-11-22T14:00:00Z"."""
    return datetime.fromtimestamp(_hour_start_s(wall_now), UTC).strftime("%Y-%m-%dT%H:00:00Z")


def day_of(wall_now: float) -> str:
    """The UTC date of a POSIX timestamp: "2026-11-22"."""
    return datetime.fromtimestamp(math.floor(wall_now), UTC).strftime("%Y-%m-%d")
