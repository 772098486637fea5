"""A fake OpenAI upstream fast enough never to be the bottleneck: raw asyncio protocol on uvloop.

No framework: it finds the end of the head, reads Content-Length bytes, and writes canned
bytes. The model name in the request body scripts the answer, so one backend (one
base_url) serves every workload and the pass-through proxies need not parse anything:

- `bench`            answer at once
- `bench-d200`       wait 200 ms before the response head (any number of ms)
- `bench-d200-j50`   wait 200 ms +/- up to 50 ms, uniformly (a real model's spread)
- `bench-g100`       a stream whose chunks are 100 ms apart (slow streams for the memory test)
- `bench-d200-g100`  both

A request with `"stream": true` gets 20 SSE chunks (the last one with finish_reason),
then a usage-only chunk when `stream_options.include_usage` is true, then `[DONE]`.
Otherwise a chat.completion JSON with usage. `GET /healthz` answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import socket
from dataclasses import dataclass

import orjson

STREAM_CHUNKS = 20
PROMPT_TOKENS = 12
COMPLETION_TOKENS = STREAM_CHUNKS
CREATED = 1_700_000_000

_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_INCLUDE_USAGE = re.compile(rb'"include_usage"\s*:\s*true')
_DELAY = re.compile(r"-d(\d+)")
_GAP = re.compile(r"-g(\d+)")
_JITTER = re.compile(r"-j(\d+)")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
}

_HEALTHZ = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_LAST_CHUNK = b"0\r\n\r\n"


def chat_completion_body(model: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                    "finish_reason": "stop",
                }
            ],
            "usage": _USAGE,
        }
    )


def stream_events(model: str, include_usage: bool) -> list[bytes]:
    """The SSE events of one stream, each already framed as an HTTP/1.1 chunk."""
    events: list[bytes] = []
    for i in range(STREAM_CHUNKS):
        last = i == STREAM_CHUNKS - 1
        delta: dict[str, str] = {"role": "assistant", "content": "Hello"} if i == 0 else {"content": " word"}
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "delta": {} if last else delta, "finish_reason": "stop" if last else None}],
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    if include_usage:
        usage_chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [],
            "usage": _USAGE,
        }
        events.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in events]


@dataclass(frozen=True, slots=True)
class Script:
    """What to answer, decided from the request body once per (model, stream, usage)."""

    delay_s: float
    jitter_s: float  # the delay is drawn from delay_s +/- jitter_s
    gap_s: float
    head_and_body: bytes  # a complete non-stream response
    chunks: tuple[bytes, ...]  # stream chunks (framed); empty for a non-stream answer


class Scripts:
    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bool, bool], Script] = {}

    def for_body(self, body: bytes) -> Script:
        found = _MODEL.search(body)
        model = found.group(1) if found else b"bench"
        stream = _STREAM.search(body) is not None
        include_usage = stream and _INCLUDE_USAGE.search(body) is not None
        key = (model, stream, include_usage)
        script = self._cache.get(key)
        if script is None:
            script = self._cache[key] = _build_script(model.decode(), stream, include_usage)
        return script


def _build_script(model: str, stream: bool, include_usage: bool) -> Script:
    delay = _DELAY.search(model)
    gap = _GAP.search(model)
    jitter = _JITTER.search(model)
    delay_s = int(delay.group(1)) / 1000.0 if delay else 0.0
    jitter_s = min(delay_s, int(jitter.group(1)) / 1000.0) if jitter else 0.0
    gap_s = int(gap.group(1)) / 1000.0 if gap else 0.0
    if stream:
        return Script(delay_s, jitter_s, gap_s, b"", tuple(stream_events(model, include_usage)))
    body = chat_completion_body(model)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    return Script(delay_s, jitter_s, gap_s, head + body, ())


class UpstreamProtocol(asyncio.Protocol):
    """One connection: HTTP/1.1 keep-alive, requests answered in order (pipelining tolerated)."""

    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts
        self.buffer = bytearray()
        self.busy = False  # a delayed or streaming answer is under way
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve_buffered()

    def _serve_buffered(self) -> None:
        buffer = self.buffer
        while not self.busy and not self.closed:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            found = _CONTENT_LENGTH.search(head)
            if found is None and b"\r\ntransfer-encoding:" in head.lower():
                self._write(_BAD_REQUEST)  # the proxies under test send Content-Length
                assert self.transport is not None
                self.transport.close()
                return
            total = end + 4 + (int(found.group(1)) if found else 0)
            if len(buffer) < total:
                return
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        if head.startswith(b"GET "):
            self._write(_HEALTHZ if head.startswith(b"GET /healthz") else _NOT_FOUND)
            return
        script = self.scripts.for_body(body)
        if script.delay_s > 0:
            self.busy = True
            delay_s = script.delay_s + random.uniform(-script.jitter_s, script.jitter_s)
            self.timer = asyncio.get_running_loop().call_later(delay_s, self._respond, script)
        else:
            self._respond(script)

    def _respond(self, script: Script) -> None:
        self.timer = None
        if self.closed:
            return
        if not script.chunks:
            self._write(script.head_and_body)
            self._done()
            return
        self._write(_STREAM_HEAD)
        if script.gap_s > 0:
            self.busy = True
            self._write(script.chunks[0])
            self._schedule_chunk(script, 1)
            return
        for chunk in script.chunks:  # one write each: the proxy sees separate events, as from a model
            self._write(chunk)
        self._write(_LAST_CHUNK)
        self._done()

    def _schedule_chunk(self, script: Script, index: int) -> None:
        self.timer = asyncio.get_running_loop().call_later(script.gap_s, self._send_chunk, script, index)

    def _send_chunk(self, script: Script, index: int) -> None:
        self.timer = None
        if self.closed:
            return
        self._write(script.chunks[index])
        if index + 1 < len(script.chunks):
            self._schedule_chunk(script, index + 1)
        else:
            self._write(_LAST_CHUNK)
            self._done()

    def _done(self) -> None:
        if self.busy:
            self.busy = False
            self._serve_buffered()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    scripts = Scripts()
    server = await loop.create_server(lambda: UpstreamProtocol(scripts), host, port, backlog=4096, reuse_address=True)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
