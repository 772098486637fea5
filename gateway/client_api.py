"""The OpenAI-compatible client API under /v1: auth, request checks, and the answer."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.errors import (
    BadRequest,
    BodyTooLarge,
    GatewayError,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    Unauthorized,
)
from gateway.limiter import estimate_stream_usage
from gateway.pricing import cost_usd
from gateway.proxy import Call, Served
from gateway.records import RequestRecord
from gateway.registry import ClientKey
from gateway.relay import StreamRelay, StreamTally
from gateway.usage import Usage, usage_from_body
from gateway.web_auth import SECURITY_HEADERS, host_refusal

log = logging.getLogger("gateway")

if TYPE_CHECKING:
    from gateway.app import Gateway

# path -> (endpoint name used for usage parsing, path after the backend's base_url)
ENDPOINTS = {
    "/v1/chat/completions": ("chat", "/chat/completions"),
    "/v1/completions": ("completions", "/completions"),
    "/v1/embeddings": ("embeddings", "/embeddings"),
    "/v1/responses": ("responses", "/responses"),
}
_STREAM_USAGE_ENDPOINTS = ("chat", "completions")  # the ones that take stream_options


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


def authenticate(gateway: Gateway, header: str) -> ClientKey:
    """The client key of an `Authorization` header value."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing client key: send 'Authorization: Bearer <key>'")
    key = gateway.registry.key_for_token(token.strip())
    if key is None or not key.enabled:
        raise Unauthorized("Invalid, disabled or revoked client key")
    return key


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The request body straight from ASGI `receive`, refused past `limit` bytes (413)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"Request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("The client disconnected before the request body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BodyResponse:
    """A complete response sent as two ASGI messages with headers encoded once."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


# orjson silently turns integers beyond 64 bits into floats, which would change the body
# when it is re-serialized (an alias, injected stream_options); 19 digits may already exceed
# a signed 64-bit integer, so digits that long go through the exact standard parser.
_LONG_DIGITS = re.compile(rb"\d{19,}")


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259 §6), though Python's parser accepts them.
    raise ValueError(f"{name} is not a valid JSON value")


def loads_exact(raw: bytes) -> Any:
    """Decode JSON without losing precision; ValueError (or RecursionError) on invalid JSON."""
    if _LONG_DIGITS.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # orjson also refuses some valid JSON, such as a lone surrogate escape
    return json.loads(raw, parse_constant=_refuse_constant)


def parse_payload(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise BadRequest("Request body is empty; expected a JSON object")
    try:
        payload = loads_exact(raw)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"Request body is not valid JSON: {e}") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"Request body must be a JSON object, not {type(payload).__name__}")
    model = payload.get("model")
    if model is None:
        raise BadRequest("Missing required parameter: 'model'", param="model")
    if not isinstance(model, str) or not model.strip():
        raise BadRequest("'model' must be a non-empty string", param="model")
    stream = payload.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", param="stream")
    return payload


class ClientEndpoint:
    """One POST endpoint (chat, completions, embeddings, responses) as a raw ASGI app."""

    def __init__(self, endpoint: str, upstream_path: str) -> None:
        self.endpoint = endpoint
        self.upstream_path = upstream_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatched by GatewayApp before any middleware: the Host check and security headers are done here."""
        gateway: Gateway = scope["app"].state.gateway
        request_id = new_request_id()
        started = time.perf_counter()
        error: GatewayError | None = host_refusal(scope, gateway.allowed_hosts)
        if error is None:
            try:
                response = await self._serve(gateway, scope, receive, request_id, started)
            except GatewayError as e:
                error = e
            except Exception:
                log.exception("request %s failed in the gateway", request_id)
                gateway.active.pop(request_id, None)  # it will never be recorded
                error = GatewayError("The gateway failed; see its log")
        if error is not None:
            response = error_response(error, request_id, started)
            response.raw_headers.extend(SECURITY_HEADERS)
        await response(scope, receive, send)

    async def _serve(self, gateway: Gateway, scope: Scope, receive: Receive, request_id: str, started: float) -> Any:
        try:
            key, raw, payload = await self._admit(gateway, scope, receive)
        except GatewayError as e:
            gateway.metrics.refused.labels(str(e.status)).inc()  # counted in /metrics, never stored
            raise
        model = payload["model"]
        wall_now = time.time()
        record = RequestRecord(request_id, wall_now, self.endpoint, key.name, model)
        stream = bool(payload.get("stream")) and self.endpoint != "embeddings"
        options = payload.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        record.stream = stream
        call = Call(
            request_id=request_id,
            endpoint=self.endpoint,
            path=self.upstream_path,
            key=key,
            payload=payload,
            raw=raw,
            model=model,
            stream=stream,
            wants_usage=wants_usage,
            inject_usage=stream and not wants_usage and self.endpoint in _STREAM_USAGE_ENDPOINTS,
            started=started,
            now=time.monotonic(),
            wall_now=wall_now,
            record=record,
        )
        gateway.active[request_id] = call  # until gateway.record(), even for a stream being relayed
        try:
            gateway.proxy.check_client_key(call, gateway.month_of(wall_now))
            served = await gateway.proxy.route(call, gateway.registry)
        except GatewayError as e:
            record.status = e.status
            record.error = e.message
            record.latency_ms = (time.perf_counter() - started) * 1000.0
            record.overhead_ms = record.latency_ms - call.upstream_ms
            gateway.record(record)
            raise
        except BaseException:  # cancelled (shutdown) or a bug: not recorded, but no longer in flight either
            gateway.active.pop(request_id, None)
            raise
        return self._answer(gateway, call, served)

    async def _admit(self, gateway: Gateway, scope: Scope, receive: Receive) -> tuple[ClientKey, bytes, dict[str, Any]]:
        """The key, raw body and payload of a well-formed request for a served model.

        Bad input (a bad key, body or model) is refused here, before anything is recorded:
        it changes nothing stored.
        """
        authorization = b""
        declared: bytes | None = None
        for name, value in scope["headers"]:  # one pass over the raw headers, no Request object
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                declared = value
        key = authenticate(gateway, authorization.decode("latin-1"))
        raw = await read_body(receive, declared, gateway.settings.max_body_bytes)
        payload = parse_payload(raw)
        model = payload["model"]
        if model not in gateway.registry.serving:
            raise ModelNotFound(f"The model '{model}' does not exist or no enabled backend serves it", param="model")
        return key, raw, payload

    def _answer(self, gateway: Gateway, call: Call, served: Served) -> Any:
        answer, backend = served.answer, served.candidate.backend
        record = call.record
        record.backend, record.pool, record.model = backend.name, backend.pool, served.candidate.upstream_model
        record.status = answer.status
        overhead_ms = (time.perf_counter() - call.started) * 1000.0 - call.upstream_ms
        headers = [
            (b"x-request-id", call.request_id.encode()),
            (b"x-gateway-backend", backend.name.encode()),
            (b"x-gateway-attempts", str(len(record.attempts)).encode()),
            (b"x-gateway-overhead-ms", f"{max(overhead_ms, 0.0):.2f}".encode()),
            *SECURITY_HEADERS,
        ]
        if answer.response is None:  # a complete body: success or an upstream error returned as it is
            if answer.kind == "ok":
                record.usage = _body_usage(self.endpoint, answer.body)
            else:
                record.error = answer.message
            self._finish(gateway, call, backend.name, record.usage, None)
            headers.append((b"content-type", answer.content_type.encode("latin-1")))
            headers.append((b"content-length", str(len(answer.body)).encode()))
            return BodyResponse(answer.status, headers, answer.body)
        if answer.first_token_at is not None:
            record.ttft_ms = (answer.first_token_at - call.started) * 1000.0
        assert answer.parser is not None

        def on_end(tally: StreamTally) -> None:
            gateway.routing.in_flight[backend.name] -= 1
            if tally.invalid_events:
                gateway.metrics.invalid_events.labels(backend.name).inc(tally.invalid_events)
            if tally.upstream_failure is not None:
                # The attempt that answered failed after all: an error of its backend (rule 11), and a
                # failure for its circuit (rule 5), so a backend that cuts every stream is skipped.
                record.attempts[-1].kind = tally.upstream_failure
            gateway.proxy.stream_ended(backend.name, call.attempt_started, tally.upstream_failure, tally.client_gone)
            record.error = tally.error
            usage = tally.usage
            if usage is None and tally.error is not None and tally.chunks_out:
                # Ended before the upstream reported usage (it does so last): what was used is still
                # recorded (rule 10) and billed, so leaving early is no way around a budget.
                usage = estimate_stream_usage(len(call.raw), tally.chunks_out)
                record.error = f"{tally.error}; usage estimated"
            self._finish(gateway, call, backend.name, usage, overhead_ms)

        raw_headers = [
            *headers,
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        return StreamRelay(
            endpoint=self.endpoint,
            response=answer.response,
            parser=answer.parser,
            first_events=answer.first_events,
            wants_usage=call.wants_usage,
            headers=raw_headers,
            on_end=on_end,
            idle_timeout_s=gateway.settings.routing.stream_idle_timeout,
        )

    def _finish(
        self, gateway: Gateway, call: Call, backend: str, usage: Usage | None, overhead_ms: float | None
    ) -> None:
        record = call.record
        record.usage = usage
        record.latency_ms = (time.perf_counter() - call.started) * 1000.0
        record.overhead_ms = record.latency_ms - call.upstream_ms if overhead_ms is None else overhead_ms
        if usage is not None:
            price = gateway.registry.price_for(record.model)
            record.cost_usd = cost_usd(usage, price)
            record.unpriced = price is None and usage.total_tokens > 0
            bucket = gateway.routing.token_buckets.get(backend)
            if bucket is not None:  # correct the admission estimate with what was really used
                estimated = min(call.estimated_tokens, bucket.capacity)
                difference = usage.total_tokens - estimated
                if difference > 0:
                    bucket.take_debt(time.monotonic(), difference)
                else:
                    bucket.give_back(time.monotonic(), -difference)
        gateway.record(record)


def _body_usage(endpoint: str, body: bytes) -> Usage | None:
    if b'"usage"' not in body:
        return None
    try:
        return usage_from_body(endpoint, orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def error_response(error: GatewayError, request_id: str | None = None, started: float | None = None) -> Response:
    """The OpenAI-shaped error. With `started` (perf_counter), also x-gateway-overhead-ms (DESIGN rule 12):
    all of the time taken unless the error already says how much went to upstreams."""
    headers = error.headers()
    if request_id is not None:
        headers["x-request-id"] = request_id
    if started is not None:
        headers.setdefault("x-gateway-overhead-ms", _ms_since(started))
    return Response(error.body(), error.status, headers=headers, media_type="application/json")


def _ms_since(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000.0:.2f}"


async def list_models(request: Request) -> Response:
    started = time.perf_counter()
    gateway: Gateway = request.app.state.gateway
    request_id = new_request_id()
    try:
        authenticate(gateway, request.headers.get("authorization", ""))
    except GatewayError as e:
        return error_response(e, request_id, started)
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "gateway"} for m in gateway.registry.model_names()]
    body = orjson.dumps({"object": "list", "data": data})
    headers = {"x-request-id": request_id, "x-gateway-overhead-ms": _ms_since(started)}
    return Response(body, headers=headers, media_type="application/json")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405: OpenAI-shaped under /v1 and /api (the dashboard keeps its pages)."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if not path.startswith(("/v1/", "/api/")) and path not in ("/v1", "/api"):
        return PlainTextResponse(exc.detail, exc.status_code, headers=exc.headers)  # Starlette's default
    started = time.perf_counter()
    error: GatewayError
    if exc.status_code == 405:
        error = MethodNotAllowed(f"Method {request.method} is not allowed for {path}")
        error.extra_headers.update(exc.headers or {})  # Allow
    elif exc.status_code == 404:
        error = NotFound(f"Invalid URL ({request.method} {path})")
    else:
        error = GatewayError(exc.detail)
        error.status = exc.status_code
    return error_response(error, new_request_id() if path.startswith("/v1") else None, started)


def client_endpoints() -> dict[str, ClientEndpoint]:
    return {path: ClientEndpoint(*spec) for path, spec in ENDPOINTS.items()}


def client_routes(endpoints: dict[str, ClientEndpoint]) -> list[Route]:
    routes = [Route(path, endpoint, methods=["POST"]) for path, endpoint in endpoints.items()]
    routes.append(Route("/v1/models", list_models, methods=["GET"]))
    return routes
