"""A scriptable fake OpenAI-compatible upstream that speaks real HTTP/1.1 over TCP.

It is written on raw asyncio streams rather than a web framework because the tests
need behaviour that frameworks hide: a socket reset before any header, a chunked body
cut in the middle, a stream that stalls with the connection open, and a count of the
clients that went away while a reply was still in flight.

Tests are synchronous, so the server runs its own event loop in a daemon thread:

    with FakeUpstream() as fake:
        fake.enqueue(Reply.error(429, headers={"retry-after": "2"}), Reply.ok(content="Hi"))
        ...  # point the code under test at fake.url
        assert fake.post_hits == 2
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http
import itertools
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

CREATED_TS = 1_700_000_000  # a fixed "created" stamp keeps answers deterministic
EMBEDDING_DIMENSIONS = 8
START_TIMEOUT_S = 5.0

ReplyKind = Literal["ok", "error", "hang", "reset", "raw"]
Route = Literal["chat", "completions", "embeddings", "responses", "models"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer; build it with Reply.ok(), .error(), .hang(), .reset() or .raw()."""

    kind: ReplyKind
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    delay_s: float = 0.0  # before the status line
    # "ok" answers: the body is shaped after the request's path and "stream" flag.
    content: str = "Hello!"
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    model: str | None = None  # None: echo the request's model
    finish_reason: str = "stop"
    # Stream shaping; event counts include [DONE] and any garbage event.
    chunks: int = 3
    chunk_delay_s: float = 0.0
    first_chunk_delay_s: float = 0.0
    cut_after: int | None = None
    stall_after: int | None = None
    done: bool = True
    garbage_event_at: int | None = None
    cumulative_usage: bool = False
    first_event_error: Mapping[str, Any] | None = None

    @classmethod
    def ok(
        cls,
        content: str = "Hello!",
        prompt_tokens: int = 10,
        completion_tokens: int = 5,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        model: str | None = None,
        delay_s: float = 0.0,
        *,
        headers: Mapping[str, str] | None = None,
        finish_reason: str = "stop",
        chunks: int = 3,
        chunk_delay_s: float = 0.0,
        first_chunk_delay_s: float = 0.0,
        cut_after: int | None = None,
        stall_after: int | None = None,
        done: bool = True,
        garbage_event_at: int | None = None,
        cumulative_usage: bool = False,
        first_event_error: Mapping[str, Any] | None = None,
    ) -> Reply:
        """A successful answer shaped after the request (JSON body, or SSE if it asked to stream).

        cut_after=N closes the socket after N events without ending the chunked body;
        stall_after=N stops after N events and holds the connection open; done=False
        omits [DONE]; garbage_event_at=N puts an invalid-JSON event at index N;
        cumulative_usage puts a running usage object on every chunk (as vLLM does);
        first_event_error makes the whole stream one `data: {"error": ...}` event.
        """
        return cls(
            kind="ok",
            headers=tuple((headers or {}).items()),
            delay_s=delay_s,
            content=content,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
            model=model,
            finish_reason=finish_reason,
            chunks=max(1, chunks),
            chunk_delay_s=chunk_delay_s,
            first_chunk_delay_s=first_chunk_delay_s,
            cut_after=cut_after,
            stall_after=stall_after,
            done=done,
            garbage_event_at=garbage_event_at,
            cumulative_usage=cumulative_usage,
            first_event_error=first_event_error,
        )

    @classmethod
    def error(
        cls,
        status: int,
        message: str = "Fake upstream error",
        type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | bytes | None = None,
        delay_s: float = 0.0,
    ) -> Reply:
        """An OpenAI-shaped error JSON, or `body` (a dict or literal bytes) instead of it."""
        if body is None:
            error_type = type or _default_error_type(status)
            body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        raw_body = body if isinstance(body, bytes) else _json_bytes(body)
        all_headers = {"content-type": "application/json", **_lower_keys(headers or {})}
        return cls(kind="error", status=status, headers=tuple(all_headers.items()), body=raw_body, delay_s=delay_s)

    @classmethod
    def hang(cls) -> Reply:
        """Read the request and never answer, until the client goes away or the fake stops."""
        return cls(kind="hang")

    @classmethod
    def reset(cls, delay_s: float = 0.0) -> Reply:
        """Read the request, then reset the connection (RST) before any header."""
        return cls(kind="reset", delay_s=delay_s)

    @classmethod
    def raw(cls, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> Reply:
        """Send exactly this status, these headers and body (Content-Length is added if missing)."""
        return cls(kind="raw", status=status, headers=tuple((headers or {}).items()), body=body)


@dataclass(frozen=True)
class Recorded:
    """A request as the fake received it; header names are lowercase."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    at: float  # time.monotonic() when the request had been read
    connection: int = 0  # ordinal of the TCP connection it arrived on (1, 2, ...)


class FakeUpstream:
    """A fake OpenAI-compatible server on 127.0.0.1 with scripted replies; see the module docstring."""

    def __init__(self) -> None:
        self.default: Reply = Reply.ok()
        self.models: list[str] = ["gpt-4o-mini"]
        self.models_reply: Reply | None = None
        self._changed = threading.Condition()  # guards everything below it and wakes waiters
        self._queue: deque[Reply] = deque()
        self._requests: list[Recorded] = []
        self._post_hits = 0
        self._disconnects = 0
        self._connection_ids = itertools.count(1)
        self._request_ids = itertools.count(1)  # numbers the ids in answers (chatcmpl-fake1, ...)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: dict[asyncio.Task[None], asyncio.Task[None]] = {}  # handler -> its serving task
        self._port: int | None = None
        self._start_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeUpstream:
        """Listen on a free port in a background thread; returns once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream is already running")
        started = threading.Event()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, args=(started,), name="fake-upstream", daemon=True)
        self._thread.start()
        if not started.wait(START_TIMEOUT_S):
            raise RuntimeError(f"FakeUpstream did not start within {START_TIMEOUT_S}s")
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("FakeUpstream failed to start") from self._start_error
        return self

    def stop(self) -> None:
        """Close every connection (hanging ones included) and end the thread. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already have ended
                loop.call_soon_threadsafe(stopping.set)
        thread.join(START_TIMEOUT_S)
        self._thread = self._loop = self._stopping = None
        self._port = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeUpstream is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Base URL in the form OpenAI clients expect: http://127.0.0.1:PORT/v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting and records (thread-safe) -----------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies for the next POST requests, in order; `default` answers once it is empty."""
        with self._changed:
            self._queue.extend(replies)

    @property
    def queued(self) -> int:
        """Replies still waiting in the queue."""
        with self._changed:
            return len(self._queue)

    @property
    def requests(self) -> list[Recorded]:
        with self._changed:
            return list(self._requests)

    @property
    def hits(self) -> int:
        """Requests received on any path, GET /v1/models included."""
        with self._changed:
            return len(self._requests)

    @property
    def post_hits(self) -> int:
        with self._changed:
            return self._post_hits

    @property
    def disconnects(self) -> int:
        """Times a client closed its connection while a reply was still delayed, hanging or streaming."""
        with self._changed:
            return self._disconnects

    def wait_for_disconnect(self, timeout: float = 2.0, count: int = 1) -> bool:
        """Block until `disconnects` reaches `count`; False on timeout (seconds)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._disconnects >= count, timeout)

    def wait_for_hits(self, count: int, timeout: float = 2.0) -> bool:
        """Block until `hits` reaches `count`; False on timeout (seconds)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._requests) >= count, timeout)

    def reset_records(self) -> None:
        """Forget recorded requests, hits and disconnects (the queue is kept)."""
        with self._changed:
            self._requests.clear()
            self._post_hits = 0
            self._disconnects = 0

    def _accept(self, request: Recorded) -> tuple[Reply, int]:
        """Record a request; choose its reply and the number used in the answer's ids."""
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()
            seq = next(self._request_ids)
            if request.method == "GET" and _route(request.path) == "models":
                return self.models_reply or Reply.ok(), seq
            if request.method != "POST":
                return Reply.error(404, f"No route for {request.method} {request.path}"), seq
            self._post_hits += 1
            return (self._queue.popleft() if self._queue else self.default), seq

    def _client_left(self) -> bool:
        with self._changed:
            self._disconnects += 1
            self._changed.notify_all()
        return False

    # -- the event loop thread -------------------------------------------------

    def _run(self, started: threading.Event) -> None:
        try:
            asyncio.run(self._main(started))
        except BaseException as exc:  # handed to start(), which raises it in the test thread
            self._start_error = exc
            started.set()

    async def _main(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._serve_connection, "127.0.0.1", 0)
        self._port = server.sockets[0].getsockname()[1]
        started.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            await asyncio.sleep(0)  # let just-accepted connections register themselves
            for serving in list(self._connections.values()):
                serving.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The work runs in an inner task that shutdown cancels: on Python 3.11, start_server
        # logs an error for a handler task that itself ends cancelled (it calls task.exception()).
        handler = asyncio.current_task()
        assert handler is not None
        serving = asyncio.create_task(self._serve_requests(reader, writer))
        self._connections[handler] = serving
        try:
            await asyncio.wait({serving})
        finally:
            del self._connections[handler]

    async def _serve_requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = next(self._connection_ids)
        try:
            while await self._serve_request(reader, writer, connection):
                pass
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away between requests, or sent something that is not HTTP
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: int) -> bool:
        """Answer one request; True if the connection can carry another."""
        request = await _read_request(reader, connection)
        if request is None:
            return False
        reply, seq = self._accept(request)
        exchange = _Exchange(reader, writer)
        try:
            is_reusable = await self._answer(exchange, request, reply, seq)
        finally:
            await exchange.stop_watching()
        return is_reusable and request.headers.get("connection", "").lower() != "close"

    async def _answer(self, exchange: _Exchange, request: Recorded, reply: Reply, seq: int) -> bool:
        if reply.delay_s > 0 and not await exchange.pause(reply.delay_s):
            return self._client_left()
        if reply.kind == "reset":
            exchange.reset()
            return False
        if reply.kind == "hang":
            await exchange.pause(None)
            return self._client_left()
        if reply.kind in ("error", "raw"):
            return await exchange.send(_response_head(reply.status, dict(reply.headers), reply.body) + reply.body)
        route = _route(request.path)
        if route is None:
            missing = Reply.error(404, f"The fake has no route for {request.path}")
            return await exchange.send(_response_head(404, dict(missing.headers), missing.body) + missing.body)
        request_json = request.json if isinstance(request.json, dict) else {}
        if request_json.get("stream") is True and route in ("chat", "completions", "responses"):
            return await self._stream(exchange, reply, _stream_events(route, reply, request_json, seq))
        if route == "models":
            with self._changed:
                payload: dict[str, Any] = _models_body(self.models)
        else:
            payload = _json_body(route, reply, request_json, seq)
        body = _json_bytes(payload)
        headers = {"content-type": "application/json", **_lower_keys(dict(reply.headers))}
        return await exchange.send(_response_head(200, headers, body) + body)

    async def _stream(self, exchange: _Exchange, reply: Reply, events: list[bytes]) -> bool:
        headers = {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
            **_lower_keys(dict(reply.headers)),
        }
        if not await exchange.send(_response_head(200, headers)):
            return self._client_left()
        # One position past the last event too, so cut_after/stall_after can drop the terminator alone.
        for sent in range(len(events) + 1):
            if sent == reply.cut_after:
                exchange.writer.close()  # FIN after what was sent, with the chunked body unfinished
                return False
            if sent == reply.stall_after:
                await exchange.pause(None)
                return self._client_left()
            if sent == len(events):
                break
            pause_s = reply.first_chunk_delay_s if sent == 0 else reply.chunk_delay_s
            if pause_s > 0 and not await exchange.pause(pause_s):
                return self._client_left()
            if not await exchange.send(_chunk(events[sent])):
                return self._client_left()
        # A client that closes right after the last event is not counted as a disconnect.
        await exchange.send(b"0\r\n\r\n")
        return True


class _Exchange:
    """One request being answered: writes, and notices when the client goes away."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._client_gone: asyncio.Task[None] | None = None

    async def pause(self, seconds: float | None) -> bool:
        """Wait `seconds` (None: forever); False as soon as the client closes the connection."""
        if self._client_gone is None:
            self._client_gone = asyncio.create_task(self._read_until_eof())
        done, _ = await asyncio.wait({self._client_gone}, timeout=seconds)
        return not done

    async def send(self, data: bytes) -> bool:
        """Write and flush; False if the client is gone."""
        if self._client_gone is not None and self._client_gone.done():
            return False
        self.writer.write(data)
        try:
            await self.writer.drain()
        except OSError:
            return False
        return True

    def reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def stop_watching(self) -> None:
        # Awaited, so the reader has no pending waiter when the next request is read.
        if self._client_gone is not None:
            self._client_gone.cancel()
            await asyncio.wait({self._client_gone})

    async def _read_until_eof(self) -> None:
        # HTTP clients do not pipeline, so anything read while a reply is in flight is discarded.
        with contextlib.suppress(OSError):
            while await self.reader.read(65536):
                pass


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound for an instant, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- HTTP/1.1 framing ----------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader, connection: int) -> Recorded | None:
    """Read one request; None if the client closed an idle connection."""
    line = await reader.readline()
    while line in (b"\r\n", b"\n"):  # RFC 9112 §2.2: ignore empty lines before a request
        line = await reader.readline()
    if not line:
        return None
    method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked_body(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    parsed = None
    if body:
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
    return Recorded(method, target, headers, body, parsed, time.monotonic(), connection)


async def _read_chunked_body(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)  # CRLF after each chunk
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass  # trailer fields
    return b"".join(parts)


def _response_head(status: int, headers: Mapping[str, str], body: bytes | None = None) -> bytes:
    """Status line and headers; adds Content-Length for `body` unless framing is already set."""
    fields = dict(headers)
    framing = {name.lower() for name in fields} & {"content-length", "transfer-encoding"}
    if body is not None and not framing:
        fields["content-length"] = str(len(body))
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in fields.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _json_bytes(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _default_error_type(status: int) -> str:
    if status == 429:
        return "requests"
    return "server_error" if status >= 500 else "invalid_request_error"


# "/chat/completions" also ends with "/completions", so it comes first.
_ROUTE_SUFFIXES: tuple[tuple[str, Route], ...] = (
    ("/chat/completions", "chat"),
    ("/completions", "completions"),
    ("/embeddings", "embeddings"),
    ("/responses", "responses"),
    ("/models", "models"),
)


def _route(target: str) -> Route | None:
    path = target.split("?", 1)[0].rstrip("/")
    return next((route for suffix, route in _ROUTE_SUFFIXES if path.endswith(suffix)), None)


# -- OpenAI-shaped bodies ------------------------------------------------------


def _model(reply: Reply, request_json: Mapping[str, Any]) -> str:
    return reply.model or str(request_json.get("model") or "fake-model")


def _split(text: str, parts: int) -> list[str]:
    """Exactly `parts` consecutive pieces of `text` (some empty if it is shorter)."""
    bounds = [round(i * len(text) / parts) for i in range(parts + 1)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def _usage(reply: Reply, completion_tokens: int | None = None) -> dict[str, Any]:
    completion = reply.completion_tokens if completion_tokens is None else completion_tokens
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
    }


def _models_body(models: list[str]) -> dict[str, Any]:
    data = [{"id": model, "object": "model", "created": CREATED_TS, "owned_by": "fake"} for model in models]
    return {"object": "list", "data": data}


def _json_body(route: Route, reply: Reply, request_json: Mapping[str, Any], seq: int) -> dict[str, Any]:
    model = _model(reply, request_json)
    if route == "chat":
        message = {"role": "assistant", "content": reply.content, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
        return {
            "id": f"chatcmpl-fake{seq}",
            "object": "chat.completion",
            "created": CREATED_TS,
            "model": model,
            "choices": [choice],
            "usage": _usage(reply),
            "system_fingerprint": None,
        }
    if route == "completions":
        choice = {"index": 0, "text": reply.content, "logprobs": None, "finish_reason": reply.finish_reason}
        return {
            "id": f"cmpl-fake{seq}",
            "object": "text_completion",
            "created": CREATED_TS,
            "model": model,
            "choices": [choice],
            "usage": _usage(reply),
        }
    if route == "embeddings":
        return _embeddings_body(reply, request_json, model)
    return _response_object(reply, request_json, seq, "completed")


def embedding_vector(index: int) -> list[float]:
    """The vector the fake returns for input item `index` (exact in float32)."""
    return [(index + 1) + k / 8 for k in range(EMBEDDING_DIMENSIONS)]


def _embeddings_body(reply: Reply, request_json: Mapping[str, Any], model: str) -> dict[str, Any]:
    items = request_json.get("input")
    is_token_array = isinstance(items, list) and bool(items) and all(isinstance(x, int) for x in items)
    count = len(items) if isinstance(items, list) and not is_token_array else 1
    data = []
    for index in range(count):
        vector: list[float] | str = embedding_vector(index)
        if request_json.get("encoding_format") == "base64":  # openai-python's default
            vector = base64.b64encode(struct.pack(f"<{EMBEDDING_DIMENSIONS}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    usage = {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.prompt_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def _response_message(seq: int, text: str | None, status: str) -> dict[str, Any]:
    """The assistant message item; text None gives the empty item that opens a stream."""
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": f"msg_fake{seq}", "type": "message", "status": status, "role": "assistant", "content": content}


def _response_object(reply: Reply, request_json: Mapping[str, Any], seq: int, status: str) -> dict[str, Any]:
    """A Responses API object; in progress it has no output and no usage yet."""
    is_done = status == "completed"
    usage = {
        "input_tokens": reply.prompt_tokens,
        "input_tokens_details": {"cached_tokens": reply.cached_tokens},
        "output_tokens": reply.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
    return {
        "id": f"resp_fake{seq}",
        "object": "response",
        "created_at": CREATED_TS,
        "status": status,
        "completed_at": CREATED_TS if is_done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": request_json.get("instructions"),
        "max_output_tokens": request_json.get("max_output_tokens"),
        "model": _model(reply, request_json),
        "output": [_response_message(seq, reply.content, "completed")] if is_done else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage if is_done else None,
        "user": None,
        "metadata": {},
    }


# -- SSE streams ---------------------------------------------------------------


def _sse(payload: object, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    return prefix.encode() + b"data: " + _json_bytes(payload) + b"\n\n"


def _stream_events(route: Route, reply: Reply, request_json: Mapping[str, Any], seq: int) -> list[bytes]:
    """Every SSE event of a streamed answer, in order, each one a complete `...\\n\\n` block."""
    if reply.first_event_error is not None:
        return [_sse({"error": dict(reply.first_event_error)})]
    if route == "responses":
        events = _responses_events(reply, request_json, seq)
    else:
        events = [_sse(payload) for payload in _chunk_payloads(route, reply, request_json, seq)]
        if reply.done:
            events.append(b"data: [DONE]\n\n")
    if reply.garbage_event_at is not None:
        events.insert(reply.garbage_event_at, b"data: {not json\n\n")
    return events


def _chunk_payloads(route: Route, reply: Reply, request_json: Mapping[str, Any], seq: int) -> list[dict[str, Any]]:
    """Chat or legacy-completion chunks: content pieces, the finish chunk, then the usage chunk if asked."""
    include_usage = bool((request_json.get("stream_options") or {}).get("include_usage"))
    pieces = _split(reply.content, reply.chunks)
    common = {
        "id": f"chatcmpl-fake{seq}" if route == "chat" else f"cmpl-fake{seq}",
        "object": "chat.completion.chunk" if route == "chat" else "text_completion",
        "created": CREATED_TS,
        "model": _model(reply, request_json),
    }

    def choice(text: str | None, finish_reason: str | None, is_first: bool) -> dict[str, Any]:
        if route == "chat":
            delta: dict[str, Any] = {} if text is None else {"content": text}
            if is_first:
                delta = {"role": "assistant", **delta}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}

    def payload(choices: list[dict[str, Any]], completion_tokens: int) -> dict[str, Any]:
        chunk: dict[str, Any] = {**common, "choices": choices}
        if reply.cumulative_usage:
            chunk["usage"] = _usage(reply, completion_tokens)
        elif include_usage:
            chunk["usage"] = None
        return chunk

    chunks = [
        payload([choice(piece, None, index == 0)], round(reply.completion_tokens * (index + 1) / len(pieces)))
        for index, piece in enumerate(pieces)
    ]
    chunks.append(payload([choice(None, reply.finish_reason, False)], reply.completion_tokens))
    if include_usage:
        chunks.append({**common, "choices": [], "usage": _usage(reply)})
    return chunks


def _responses_events(reply: Reply, request_json: Mapping[str, Any], seq: int) -> list[bytes]:
    """The Responses API event sequence for one assistant message (no [DONE]: that API sends none)."""
    item_id = f"msg_fake{seq}"
    part = {"type": "output_text", "text": reply.content, "annotations": [], "logprobs": []}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    in_progress = _response_object(reply, request_json, seq, "in_progress")
    bodies: list[dict[str, Any]] = [
        {"type": "response.created", "response": in_progress},
        {"type": "response.in_progress", "response": in_progress},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": _response_message(seq, None, "in_progress"),
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        *(
            {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
            for piece in _split(reply.content, reply.chunks)
        ),
        {"type": "response.output_text.done", **where, "text": reply.content, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": _response_message(seq, reply.content, "completed"),
        },
        {"type": "response.completed", "response": _response_object(reply, request_json, seq, "completed")},
    ]
    return [_sse({**body, "sequence_number": number}, event=body["type"]) for number, body in enumerate(bodies)]
