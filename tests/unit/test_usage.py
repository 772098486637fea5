from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
import pytest

from gateway.usage import (
    SSEEvent,
    SSEParser,
    Usage,
    day_of,
    hour_bucket,
    is_usage_only_chunk,
    usage_from_body,
    usage_from_event,
)

# --- non-streamed bodies -------------------------------------------------------------


def test_usage_total_is_prompt_plus_completion():
    assert Usage(prompt_tokens=7, completion_tokens=5, cached_tokens=3, reasoning_tokens=2).total_tokens == 12
    assert Usage().total_tokens == 0


def test_chat_body_reads_counts_and_details():
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 45,
            "total_tokens": 165,
            "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 30, "audio_tokens": 0},
        },
    }
    assert usage_from_body("chat", body) == Usage(
        prompt_tokens=120, completion_tokens=45, cached_tokens=64, reasoning_tokens=30
    )


def test_completions_body_without_details():
    body = {"object": "text_completion", "usage": {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21}}
    assert usage_from_body("completions", body) == Usage(prompt_tokens=5, completion_tokens=16)


def test_embeddings_body_has_no_completion_tokens():
    body = {"object": "list", "data": [], "usage": {"prompt_tokens": 8, "total_tokens": 8}}
    assert usage_from_body("embeddings", body) == Usage(prompt_tokens=8, completion_tokens=0)


def test_responses_body_uses_input_and_output_names():
    body = {
        "object": "response",
        "status": "completed",
        "usage": {
            "input_tokens": 300,
            "input_tokens_details": {"cached_tokens": 128},
            "output_tokens": 90,
            "output_tokens_details": {"reasoning_tokens": 64},
            "total_tokens": 390,
        },
    }
    assert usage_from_body("responses", body) == Usage(
        prompt_tokens=300, completion_tokens=90, cached_tokens=128, reasoning_tokens=64
    )


def test_chat_body_with_responses_names_is_accepted():
    body = {"usage": {"input_tokens": 11, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 2}}}
    assert usage_from_body("chat", body) == Usage(prompt_tokens=11, completion_tokens=4, cached_tokens=2)


def test_responses_body_with_chat_names_is_accepted():
    body = {
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 3,
            "completion_tokens_details": {"reasoning_tokens": 1},
        }
    }
    assert usage_from_body("responses", body) == Usage(prompt_tokens=9, completion_tokens=3, reasoning_tokens=1)


def test_preferred_name_wins_when_both_are_present():
    usage = {"usage": {"prompt_tokens": 10, "input_tokens": 20, "completion_tokens": 1, "output_tokens": 2}}
    assert usage_from_body("chat", usage) == Usage(prompt_tokens=10, completion_tokens=1)
    assert usage_from_body("responses", usage) == Usage(prompt_tokens=20, completion_tokens=2)


def test_garbage_preferred_name_falls_back_to_the_other_name():
    body = {"usage": {"prompt_tokens": None, "input_tokens": 20, "completion_tokens": "x", "output_tokens": 2}}
    assert usage_from_body("chat", body) == Usage(prompt_tokens=20, completion_tokens=2)


def test_deepseek_cache_hit_tokens_count_as_cached():
    body = {"usage": {"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 60}}
    assert usage_from_body("chat", body) == Usage(prompt_tokens=100, completion_tokens=5, cached_tokens=60)


@pytest.mark.parametrize(
    "body",
    [
        None,
        "usage",
        [],
        {},
        {"usage": None},
        {"usage": []},
        {"usage": "12"},
        {"choices": []},
    ],
)
def test_body_without_usage_object_gives_none(body):
    assert usage_from_body("chat", body) is None


@pytest.mark.parametrize(
    "garbage",
    ["12", 1.5, True, False, -3, -1.0, None, float("nan"), float("inf"), [], {}, b"7"],
)
def test_garbage_counts_read_as_zero(garbage):
    body = {
        "usage": {
            "prompt_tokens": garbage,
            "completion_tokens": garbage,
            "prompt_tokens_details": {"cached_tokens": garbage},
            "completion_tokens_details": {"reasoning_tokens": garbage},
        }
    }
    assert usage_from_body("chat", body) == Usage()


def test_garbage_details_objects_read_as_zero():
    body = {"usage": {"prompt_tokens": 4, "prompt_tokens_details": "x", "completion_tokens_details": [1]}}
    assert usage_from_body("chat", body) == Usage(prompt_tokens=4)


def test_integral_floats_are_counts():
    body = {"usage": {"prompt_tokens": 12.0, "completion_tokens": 3.0}}
    usage = usage_from_body("completions", body)
    assert usage == Usage(prompt_tokens=12, completion_tokens=3)
    assert usage is not None and type(usage.prompt_tokens) is int


def test_cached_tokens_are_clamped_to_prompt_tokens():
    body = {"usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 50}}}
    assert usage_from_body("chat", body) == Usage(prompt_tokens=10, cached_tokens=10)


def test_unknown_endpoint_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown endpoint 'audio'"):
        usage_from_body("audio", {"usage": {"prompt_tokens": 1}})


# --- streamed events -----------------------------------------------------------------


def _chunk(content: str | None, usage: object = None, *, choices: bool = True) -> dict[str, object]:
    chunk: dict[str, object] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}}] if choices else [],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _last_usage(endpoint: str, events: list[object]) -> Usage | None:
    """What the proxy does: keep the last usage seen."""
    last = None
    for event in events:
        usage = usage_from_event(endpoint, event)
        if usage is not None:
            last = usage
    return last


def test_chat_chunks_without_usage_give_none():
    assert usage_from_event("chat", _chunk("Hel")) is None
    explicit_null = _chunk("lo")
    explicit_null["usage"] = None  # OpenAI sends "usage": null on every chunk with include_usage
    assert usage_from_event("chat", explicit_null) is None


def test_chat_stream_usage_comes_from_the_usage_only_chunk():
    final = _chunk(None, {"prompt_tokens": 13, "completion_tokens": 2, "total_tokens": 15}, choices=False)
    events: list[object] = [_chunk("Hel"), _chunk("lo"), final]
    assert _last_usage("chat", events) == Usage(prompt_tokens=13, completion_tokens=2)


def test_cumulative_usage_in_every_chunk_keeps_the_last_not_the_sum():
    # vLLM's continuous usage stats: each chunk carries the running total.
    events: list[object] = [
        _chunk("a", {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21}),
        _chunk("b", {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}),
        _chunk("c", {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}),
        _chunk(None, {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}, choices=False),
    ]
    per_event = [usage_from_event("chat", event) for event in events]
    assert [u.completion_tokens for u in per_event if u is not None] == [1, 2, 3, 3]
    assert _last_usage("chat", events) == Usage(prompt_tokens=20, completion_tokens=3)


def test_completions_stream_usage_chunk():
    final = {"object": "text_completion", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 9}}
    assert usage_from_event("completions", final) == Usage(prompt_tokens=4, completion_tokens=9)


def _response_event(event_type: str, usage: object) -> dict[str, object]:
    return {"type": event_type, "sequence_number": 7, "response": {"id": "resp_1", "usage": usage}}


RESPONSES_USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"cached_tokens": 10},
    "output_tokens": 25,
    "output_tokens_details": {"reasoning_tokens": 5},
    "total_tokens": 75,
}


@pytest.mark.parametrize("event_type", ["response.completed", "response.incomplete", "response.failed"])
def test_responses_terminal_events_carry_usage(event_type):
    assert usage_from_event("responses", _response_event(event_type, RESPONSES_USAGE)) == Usage(
        prompt_tokens=50, completion_tokens=25, cached_tokens=10, reasoning_tokens=5
    )


def test_responses_stream_usage_is_taken_from_the_terminal_event_only():
    events: list[object] = [
        _response_event("response.created", None),
        _response_event("response.in_progress", None),
        {"type": "response.output_text.delta", "delta": "Hi", "sequence_number": 3},
        # A non-terminal event with a usage object (an upstream quirk) is not the final count.
        _response_event("response.in_progress", {"input_tokens": 1, "output_tokens": 1}),
        _response_event("response.completed", RESPONSES_USAGE),
    ]
    assert [usage_from_event("responses", e) is not None for e in events] == [False, False, False, False, True]
    assert _last_usage("responses", events) == Usage(
        prompt_tokens=50, completion_tokens=25, cached_tokens=10, reasoning_tokens=5
    )


def test_responses_terminal_event_without_response_object_gives_none():
    assert usage_from_event("responses", {"type": "response.completed"}) is None
    assert usage_from_event("responses", {"type": "response.failed", "response": "oops"}) is None
    assert usage_from_event("responses", _response_event("response.completed", None)) is None


@pytest.mark.parametrize("event", [None, "[DONE]", 3, [], {"error": {"message": "boom"}}])
def test_events_that_are_not_chunks_give_none(event):
    assert usage_from_event("chat", event) is None


def test_usage_only_chunk_detection():
    assert is_usage_only_chunk(_chunk(None, {"prompt_tokens": 1}, choices=False)) is True
    assert is_usage_only_chunk(_chunk("a", {"prompt_tokens": 1})) is False  # continuous usage: keep it
    assert is_usage_only_chunk(_chunk(None, None, choices=False)) is False
    assert is_usage_only_chunk({"choices": [], "usage": "12"}) is False
    assert is_usage_only_chunk({"usage": {"prompt_tokens": 1}}) is False  # no choices key at all
    assert is_usage_only_chunk({"choices": (), "usage": {}}) is False
    assert is_usage_only_chunk([{"choices": [], "usage": {}}]) is False


# --- SSE splitting -------------------------------------------------------------------

SAMPLE_STREAM = (
    b": connected\n\n"
    + b"event: message\ndata: "
    + orjson.dumps({"choices": [{"delta": {"content": "h\u00e9llo \U0001f600"}}]})
    + b"\n\n"
    + b'data: {"a":1}\r\n\r\n'
    + b"data:line one\r\ndata: line two\r\n: a comment\r\n\r\n"
    + b"data: cr only\r\r"
    + b"id: 7\nretry: 1000\ndata: \xe2\x82\xac\n\n"
    + b"data: [DONE]\n\n"
    + b"data: tail without blank line\n"
)


def _parse_in_pieces(stream: bytes, cuts: list[int]) -> tuple[list[SSEEvent], SSEEvent | None]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    bounds = [0, *cuts, len(stream)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        events.extend(parser.feed(stream[start:end]))
    return events, parser.flush()


def test_sample_stream_parsed_whole():
    events, tail = _parse_in_pieces(SAMPLE_STREAM, [])
    assert [(e.event, e.data) for e in events] == [
        (None, None),
        ("message", b'{"choices":[{"delta":{"content":"h\xc3\xa9llo \xf0\x9f\x98\x80"}}]}'),
        (None, b'{"a":1}'),
        (None, b"line one\nline two"),
        (None, b"cr only"),
        (None, "€".encode()),
        (None, b"[DONE]"),
    ]
    assert events[0].raw == b": connected\n\n"
    assert events[2].raw == b'data: {"a":1}\r\n\r\n'
    assert events[4].raw == b"data: cr only\r\r"
    assert [e.is_done for e in events] == [False] * 6 + [True]
    assert tail == SSEEvent(raw=b"data: tail without blank line\n", data=b"tail without blank line")
    # Forwarding every raw event and the tail reproduces the stream byte for byte.
    assert b"".join(e.raw for e in events) + tail.raw == SAMPLE_STREAM


def test_splitting_at_every_offset_gives_the_same_events():
    whole = _parse_in_pieces(SAMPLE_STREAM, [])
    for cut in range(1, len(SAMPLE_STREAM)):
        assert _parse_in_pieces(SAMPLE_STREAM, [cut]) == whole, f"cut at {cut}"


def test_splitting_at_every_pair_of_offsets_gives_the_same_events():
    whole = _parse_in_pieces(SAMPLE_STREAM, [])
    size = len(SAMPLE_STREAM)
    for first in range(1, size, 3):
        for second in range(first + 1, size, 5):
            assert _parse_in_pieces(SAMPLE_STREAM, [first, second]) == whole, f"cuts at {first}, {second}"


def test_feeding_one_byte_at_a_time_gives_the_same_events():
    assert _parse_in_pieces(SAMPLE_STREAM, list(range(1, len(SAMPLE_STREAM)))) == _parse_in_pieces(SAMPLE_STREAM, [])


def test_event_is_returned_as_soon_as_its_blank_line_arrives():
    parser = SSEParser()
    assert parser.feed(b"data: one\n") == []
    assert parser.feed(b"\ndata: tw") == [SSEEvent(raw=b"data: one\n\n", data=b"one")]
    assert parser.feed(b"o\n\n") == [SSEEvent(raw=b"data: two\n\n", data=b"two")]
    assert parser.flush() is None


def test_trailing_cr_waits_for_a_possible_lf():
    parser = SSEParser()
    assert parser.feed(b"data: a\r\n\r") == []  # the next byte may be the LF of a CRLF
    assert parser.feed(b"\ndata: b\r\n\r\n") == [
        SSEEvent(raw=b"data: a\r\n\r\n", data=b"a"),
        SSEEvent(raw=b"data: b\r\n\r\n", data=b"b"),
    ]


def test_crlf_is_one_line_ending_not_a_blank_line():
    parser = SSEParser()
    assert parser.feed(b"data: a\r\ndata: b\r\n") == []
    assert parser.feed(b"\r\n") == [SSEEvent(raw=b"data: a\r\ndata: b\r\n\r\n", data=b"a\nb")]


def test_cr_cr_separator():
    parser = SSEParser()
    assert parser.feed(b"data: a\r\rdata: b\r\rdata") == [
        SSEEvent(raw=b"data: a\r\r", data=b"a"),
        SSEEvent(raw=b"data: b\r\r", data=b"b"),
    ]
    assert parser.flush() == SSEEvent(raw=b"data", data=b"")  # a "data" line without a colon is empty data


def test_trailing_cr_at_end_of_stream_is_flushed_as_a_complete_event():
    parser = SSEParser()
    assert parser.feed(b"data: a\r\r") == []
    assert parser.flush() == SSEEvent(raw=b"data: a\r\r", data=b"a")
    assert parser.flush() is None


def test_comment_only_event_keeps_raw_and_has_no_data():
    parser = SSEParser()
    assert parser.feed(b": keep-alive\n\n: ping\r\n\r\n") == [
        SSEEvent(raw=b": keep-alive\n\n", data=None, event=None),
        SSEEvent(raw=b": ping\r\n\r\n", data=None, event=None),
    ]


def test_field_parsing_rules():
    parser = SSEParser()
    events = parser.feed(
        b"data:no space\n\n"
        b"data:  two spaces\n\n"
        b"data\n\n"
        b"data:\ndata:\n\n"
        b"event: delta\nevent: update\nid: 3\ndata: x\n\n"
        b"data: a:b:c\n\n"
        b"event:done\n\n"
    )
    assert [(e.event, e.data) for e in events] == [
        (None, b"no space"),
        (None, b" two spaces"),  # only one space is stripped
        (None, b""),
        (None, b"\n"),
        ("update", b"x"),  # the last event field wins
        (None, b"a:b:c"),
        ("done", None),
    ]


def test_extra_blank_lines_are_kept_in_raw():
    parser = SSEParser()
    events = parser.feed(b"data: a\n\n\n\ndata: b\n\n\ndata: c\n\n")
    assert [e.data for e in events] == [b"a", None, b"b", b"c"]
    assert b"".join(e.raw for e in events) == b"data: a\n\n\n\ndata: b\n\n\ndata: c\n\n"


def test_flush_of_blank_tail_is_none():
    parser = SSEParser()
    assert parser.feed(b"data: a\n\n\n") == [SSEEvent(raw=b"data: a\n\n", data=b"a")]
    assert parser.flush() is None
    assert SSEParser().flush() is None


def test_tail_with_several_lines():
    parser = SSEParser()
    assert parser.feed(b"event: x\r\ndata: 1\r\ndata: 2") == []
    assert parser.flush() == SSEEvent(raw=b"event: x\r\ndata: 1\r\ndata: 2", data=b"1\n2", event="x")


def test_leading_bom_is_ignored_once():
    parser = SSEParser()
    events = parser.feed(b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n")
    assert events[0] == SSEEvent(raw=b"\xef\xbb\xbfdata: a\n\n", data=b"a")
    assert events[1].data is None  # a BOM later in the stream is part of a field name


def test_multibyte_utf8_split_inside_a_character():
    euro = "€".encode()
    parser = SSEParser()
    assert parser.feed(b"event: " + euro[:1]) == []
    assert parser.feed(euro[1:] + b"\ndata: " + euro[:2]) == []
    assert parser.feed(euro[2:] + b"\n\n") == [
        SSEEvent(raw=b"event: " + euro + b"\ndata: " + euro + b"\n\n", data=euro, event="€")
    ]


def test_many_events_in_one_chunk():
    stream = b"".join(b"data: %d\n\n" % i for i in range(1000))
    events = SSEParser().feed(stream)
    assert [e.data for e in events] == [b"%d" % i for i in range(1000)]


# --- hour buckets --------------------------------------------------------------------


def _ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_hour_bucket_formats_the_utc_hour():
    assert hour_bucket(_ts(2026, 11, 22, 14, 37, 5)) == "2026-11-22T14:00:00Z"
    assert hour_bucket(0.0) == "1970-01-01T00:00:00Z"


def test_hour_bucket_at_the_hour_boundary():
    top_of_hour = _ts(2026, 11, 22, 15)
    assert hour_bucket(top_of_hour - 0.001) == "2026-11-22T14:00:00Z"
    # The last float before the hour: rounding it to microseconds (as datetime does) gives 15:00.
    assert hour_bucket(math.nextafter(top_of_hour, -math.inf)) == "2026-11-22T14:00:00Z"
    assert hour_bucket(top_of_hour) == "2026-11-22T15:00:00Z"
    assert hour_bucket(top_of_hour + 0.5) == "2026-11-22T15:00:00Z"


def test_hour_bucket_at_the_day_and_year_boundary():
    new_year = _ts(2027, 1, 1)
    assert hour_bucket(new_year - 0.001) == "2026-12-31T23:00:00Z"
    assert hour_bucket(new_year) == "2027-01-01T00:00:00Z"


def test_day_of_at_midnight():
    midnight = _ts(2026, 11, 23)
    assert day_of(midnight - 0.001) == "2026-11-22"
    assert day_of(math.nextafter(midnight, -math.inf)) == "2026-11-22"
    assert day_of(midnight) == "2026-11-23"
    assert day_of(_ts(2024, 2, 29, 12)) == "2024-02-29"
