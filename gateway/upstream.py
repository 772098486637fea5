"""One upstream attempt over the shared aiohttp client, and what it answered.

The only module (with relay.py) that touches the upstream client. Exceptions of the
client are translated here, once, into attempt kinds (gateway/records.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import orjson

from gateway.usage import SSEEvent, SSEParser

MAX_ERROR_BODY_BYTES = 1 << 20  # an error body is read only this far


def new_session(max_connections: int = 0) -> aiohttp.ClientSession:
    """The one shared client: keep-alive, no connection cap (0) so thousands may be in flight."""
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        ttl_dns_cache=300,
        keepalive_timeout=30,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        auto_decompress=True,
        # Redirects are never followed: only the operator decides where a backend points.
        requote_redirect_url=False,
        skip_auto_headers=("User-Agent",),
    )


@dataclass(slots=True)
class Answer:
    """The outcome of one attempt. `response` stays open only for a stream being relayed."""

    kind: str  # see gateway.records.ATTEMPT_KINDS
    status: int = 0
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    error_json: object = None
    error_code: str | None = None
    message: str = ""
    retry_same: bool = False  # a reset or a 500/502: worth one more try on the same backend
    response: aiohttp.ClientResponse | None = None
    parser: SSEParser | None = None
    first_events: list[SSEEvent] = field(default_factory=list)
    first_token_at: float | None = None  # perf_counter of the first data event


def classify_status(status: int, error_code: str | None) -> str:
    if 200 <= status < 300:
        return "ok"
    if status == 429:
        return "quota" if error_code == "insufficient_quota" else "429"
    if status in (401, 403):
        return "auth"
    if status >= 500 or status < 400 or status == 408:
        return "5xx"  # 3xx too: redirects are not followed, so the backend is misconfigured
    return "client_error"


def error_details(body: bytes) -> tuple[object, str | None, str]:
    """(parsed body, error code, message) of an upstream error body, tolerating anything."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, body[:300].decode("utf-8", "replace").strip()
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        message = error.get("message")
        return parsed, code if isinstance(code, str) else None, message if isinstance(message, str) else ""
    if isinstance(error, str):
        return parsed, None, error
    return parsed, None, ""


async def send(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    stream: bool,
    header_timeout_s: float,
    first_token_timeout_s: float,
) -> Answer:
    """POST to a backend and classify the answer; a 2xx stream is left open after its first event.

    The wait for headers (and a non-stream body) is bounded by `header_timeout_s`, a stream's
    first event by `first_token_timeout_s`; silence later in a stream is the relay's business.
    No socket read timeout is set: it would cut a slow non-stream answer at the stream idle
    limit, and a slow first token (reasoning models) before `first_token_timeout_s`.
    """
    response: aiohttp.ClientResponse | None = None
    try:
        async with asyncio.timeout(header_timeout_s):
            response = await session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
            )
            status = response.status
            content_type = response.headers.get("content-type", "application/json")
            if not (stream and 200 <= status < 300 and content_type.startswith("text/event-stream")):
                limit = MAX_ERROR_BODY_BYTES if status >= 300 else None
                data = await (response.content.read(limit) if limit else response.read())
                response.release()
                return _finished(status, data, content_type, response.headers)
        return await _first_event(response, first_token_timeout_s)
    except TimeoutError:
        _close(response)
        return Answer("timeout", message=f"no response within {header_timeout_s:g}s")
    except aiohttp.ClientConnectorError as e:
        _close(response)
        return Answer("connect", message=f"cannot connect: {e.os_error.strerror or e.os_error}")
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as e:
        _close(response)
        return Answer("connect", message=f"connection lost: {type(e).__name__}", retry_same=True)
    except aiohttp.ClientError as e:
        _close(response)
        return Answer("connect", message=f"upstream error: {type(e).__name__}")


def _finished(status: int, data: bytes, content_type: str, headers: Mapping[str, str]) -> Answer:
    if 200 <= status < 300:
        return Answer("ok", status, data, content_type, headers)
    parsed, code, message = error_details(data)
    kind = classify_status(status, code)
    return Answer(
        kind,
        status,
        data,
        content_type,
        headers,
        error_json=parsed,
        error_code=code,
        message=message or f"HTTP {status}",
        retry_same=status in (500, 502),
    )


async def _first_event(response: aiohttp.ClientResponse, first_token_timeout_s: float) -> Answer:
    """Read a stream up to its first data event, so an error or a silence there can still fail over."""
    parser = SSEParser()
    events: list[SSEEvent] = []
    try:
        async with asyncio.timeout(first_token_timeout_s):
            while not any(e.data is not None for e in events):
                chunk = await response.content.readany()
                if not chunk:
                    tail = parser.flush()
                    if tail is not None:
                        events.append(tail)
                    break
                events.extend(parser.feed(chunk))
    except TimeoutError:
        _close(response)
        return Answer("timeout", response.status, message=f"no first token within {first_token_timeout_s:g}s")
    first_data = next((e.data for e in events if e.data is not None), None)
    if first_data is None:
        _close(response)
        return Answer("stream_error", response.status, message="stream ended before its first event")
    if first_data.startswith(b"{") and b'"error"' in first_data:
        parsed, code, message = error_details(first_data)
        if isinstance(parsed, dict) and parsed.get("type") == "error" and "error" not in parsed:
            # The Responses API's error event, {"type": "error", "code", "message", "param"}: read (and, if it
            # goes back to the client as a 4xx, answered) in the shape of every other error.
            code = parsed.get("code") if isinstance(parsed.get("code"), str | int) else None
            message = str(parsed.get("message") or "")
            parsed = {"error": {"message": message, "type": "error", "param": parsed.get("param"), "code": code}}
            first_data = orjson.dumps(parsed)
        if isinstance(parsed, dict) and "error" in parsed:
            _close(response)
            status = _status_of_error(parsed)
            kind = classify_status(status, code)
            if kind == "client_error":
                # The upstream blamed the request (rule 6): answered as the 4xx it is, not held against
                # the backend; context_length_exceeded may still move to another model.
                return Answer(
                    "client_error", status, first_data, error_json=parsed, error_code=code, message=message or ""
                )
            return Answer(
                "stream_error" if kind == "ok" else kind,
                response.status,
                first_data,
                error_json=parsed,
                error_code=code,
                message=message or "stream began with an error event",
            )
    return Answer(
        "ok",
        response.status,
        content_type=response.headers.get("content-type", "text/event-stream"),
        headers=response.headers,
        response=response,
        parser=parser,
        first_events=events,
        first_token_at=time.perf_counter(),
    )


_REQUEST_ERROR_CODES = frozenset({"context_length_exceeded", "invalid_request_error", "invalid_prompt"})


def _status_of_error(parsed: dict[str, object]) -> int:
    """The HTTP status an in-stream error stands for.

    Some upstreams put one in it (`error.code: 429`); without one, an error that blames the
    request (OpenAI's `invalid_request_error` type, `context_length_exceeded`) is a 400, else a 500.
    """
    error = parsed.get("error")
    if isinstance(error, dict):
        for key in ("status", "code"):
            value = error.get(key)
            if isinstance(value, int) and 100 <= value < 600:
                return value
        if error.get("type") in _REQUEST_ERROR_CODES or error.get("code") in _REQUEST_ERROR_CODES:
            return 400
        if error.get("code") in ("rate_limit_exceeded", "insufficient_quota"):
            return 429
    return 500


def _close(response: aiohttp.ClientResponse | None) -> None:
    if response is not None:
        response.close()
