"""Relaying an upstream SSE stream to the client as it arrives, with usage read on the way.

Rules (DESIGN 4, rules 7 and 10): events go out as they come, never buffered; an event
that is not valid JSON is dropped and counted; the usage-only chunk is stripped when the
client did not ask for it; the last usage object wins; a cut or stalled upstream ends
with an explicit SSE error event and no `[DONE]`; a client that goes away closes the
upstream at once and what was used is still recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson
from starlette.types import Receive, Scope, Send

from gateway.errors import error_body
from gateway.usage import SSEEvent, SSEParser, Usage, is_usage_only_chunk, usage_from_event

_DONE = b"data: [DONE]\n\n"
# Terminal events of the Responses API, which ends a stream with one of them instead of [DONE].
_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


@dataclass(slots=True)
class StreamTally:
    """What the relay saw; read by the finisher when the stream ends, however it ends."""

    usage: Usage | None = None
    invalid_events: int = 0
    chunks_out: int = 0  # JSON chunks relayed to the client (for a usage estimate if the stream ends early)
    saw_done: bool = False
    saw_finish: bool = False
    error: str | None = None
    # How the upstream failed after the first event, as an attempt kind (gateway.records.ATTEMPT_KINDS):
    # "connect" (cut), "timeout" (stalled), "stream_error" (ended unfinished); None if it did not.
    upstream_failure: str | None = None
    client_gone: bool = False
    bytes_out: int = 0


def stream_error_event(message: str, code: str) -> bytes:
    return b"data: " + error_body(message, "upstream_error", None, code) + b"\n\n"


class StreamRelay:
    """An ASGI response that relays `response` after the events already read (`first_events`)."""

    def __init__(
        self,
        *,
        endpoint: str,
        response: aiohttp.ClientResponse,
        parser: SSEParser,
        first_events: list[SSEEvent],
        wants_usage: bool,
        headers: list[tuple[bytes, bytes]],
        on_end: Callable[[StreamTally], None],
        idle_timeout_s: float,
    ) -> None:
        self.endpoint = endpoint
        self.idle_timeout_s = idle_timeout_s
        self.response = response
        self.parser = parser
        self.first_events = first_events
        self.wants_usage = wants_usage
        self.raw_headers = headers
        self.on_end = on_end
        self.tally = StreamTally()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.ensure_future(self._relay(send))
        watch = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait((relay, watch), return_when=asyncio.FIRST_COMPLETED)
            if not relay.done():
                self.tally.client_gone = True
                relay.cancel()
                await asyncio.gather(relay, return_exceptions=True)
            elif relay.exception() is not None:
                self.tally.client_gone = True  # writing to a closed client failed
        finally:
            watch.cancel()
            self.response.close()  # an unfinished upstream stream is closed, not drained
            if self.tally.client_gone and self.tally.error is None:
                self.tally.error = "client disconnected"
            self.on_end(self.tally)

    async def _relay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await self._forward(send, self.first_events)
        content = self.response.content
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as idle:
                while True:
                    # Only the wait on the upstream counts as silence; a slow client is not a stall.
                    idle.reschedule(loop.time() + self.idle_timeout_s)
                    chunk = await content.readany()
                    idle.reschedule(None)
                    if not chunk:
                        break
                    await self._forward(send, self.parser.feed(chunk))
            tail = self.parser.flush()
            if tail is not None:
                await self._forward(send, [tail])
            sends_done = self.endpoint != "responses"  # the Responses API ends with an event instead
            if not (self.tally.saw_finish or (sends_done and self.tally.saw_done)):
                # Ended cleanly but unfinished: say so, never a truncated answer that looks complete.
                self.tally.error = "upstream stream ended before the answer was complete"
                self.tally.upstream_failure = "stream_error"
                await self._send(send, stream_error_event(self.tally.error, "stream_incomplete"))
            elif sends_done and not self.tally.saw_done:
                # Finished without [DONE]: finalise at once so the client does not wait for it.
                await self._send(send, _DONE)
        except TimeoutError:
            self.tally.error = "upstream stream stalled past stream_idle_timeout"
            self.tally.upstream_failure = "timeout"
            await self._send(send, stream_error_event(self.tally.error, "stream_stalled"))
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
            # Whole events the upstream sent before the cut still belong to the client.
            await self._forward(send, self.parser.feed(_salvage(self.response.content)))
            self.tally.error = f"upstream stream was cut ({type(e).__name__})"
            self.tally.upstream_failure = "connect"
            await self._send(send, stream_error_event(self.tally.error, "stream_cut"))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _forward(self, send: Send, events: list[SSEEvent]) -> None:
        """Filter complete events and send what is left, if anything."""
        if events:
            out = self._filter(events)
            if out:
                await self._send(send, out)

    async def _send(self, send: Send, data: bytes) -> None:
        self.tally.bytes_out += len(data)
        await send({"type": "http.response.body", "body": data, "more_body": True})

    def _filter(self, events: list[SSEEvent]) -> bytes:
        tally = self.tally
        parts: list[bytes] = []
        for event in events:
            data = event.data
            if data is None:  # comments and keep-alives pass through
                parts.append(event.raw)
                continue
            if data == b"[DONE]":
                tally.saw_done = True
                parts.append(event.raw)
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                tally.invalid_events += 1
                continue
            if type(chunk) is dict:
                # Only a chunk that mentions usage can carry it; skip the lookups otherwise.
                if b'"usage"' in data:
                    usage = usage_from_event(self.endpoint, chunk)
                    if usage is not None:
                        tally.usage = usage  # the last one wins: some upstreams send running totals
                        if not self.wants_usage and is_usage_only_chunk(chunk):
                            continue
                if b'"finish_reason":"' in data or b'"finish_reason": "' in data:
                    tally.saw_finish = True
                elif self.endpoint == "responses" and event.event in _RESPONSE_ENDS:
                    tally.saw_finish = True
                if "error" in chunk and tally.error is None:
                    tally.error = "upstream sent an error event mid-stream"
                tally.chunks_out += 1
            parts.append(event.raw)
        return b"".join(parts)


def _salvage(content: aiohttp.StreamReader) -> bytes:
    """Bytes already buffered when the connection broke.

    aiohttp's readany() raises the stored error before returning what it had buffered
    (aiohttp/streams.py), so the last events before a cut would be lost without this.
    `_read_nowait` is private; if it ever goes away we only lose that tail again.
    """
    read_nowait = getattr(content, "_read_nowait", None)
    if read_nowait is None:
        return b""
    try:
        data = read_nowait(-1)
    except (aiohttp.ClientError, RuntimeError):
        return b""
    return data if isinstance(data, bytes) else b""


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def elapsed_ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0
