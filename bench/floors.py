"""Bare pass-through proxies: the floor a Python proxy on this stack cannot go below.

No accounting, no routing, no checks: read the body, POST it upstream through one shared
aiohttp session (no connection cap), and relay the answer (a stream chunk by chunk).

- `starlette`    Starlette + uvicorn (uvloop, httptools) + aiohttp client: the gateway's own
                 stack, and the floor of issue 5 that ratios are taken against
- `aiohttp-web`  aiohttp.web server + aiohttp client on uvloop, for reference
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp

UPSTREAM_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench-upstream"}


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    )


def starlette_app(upstream: str) -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    sessions: list[aiohttp.ClientSession] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sessions.append(new_session())
        yield
        await sessions[0].close()

    async def forward(request: Request) -> Response:
        body = await request.body()
        upstream_response = await sessions[0].post(upstream + request.url.path, data=body, headers=UPSTREAM_HEADERS)
        if upstream_response.content_type == "text/event-stream":

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in upstream_response.content.iter_any():
                        yield chunk
                finally:
                    upstream_response.release()

            return StreamingResponse(relay(), upstream_response.status, media_type="text/event-stream")
        data = await upstream_response.read()
        upstream_response.release()
        return Response(data, upstream_response.status, media_type=upstream_response.content_type)

    return Starlette(routes=[Route("/v1/{path:path}", forward, methods=["POST"])], lifespan=lifespan)


def serve_starlette(upstream: str, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(
        starlette_app(upstream),  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


def serve_aiohttp_web(upstream: str, host: str, port: int) -> None:
    import uvloop
    from aiohttp import web

    async def on_startup(app: web.Application) -> None:
        app["session"] = new_session()

    async def on_cleanup(app: web.Application) -> None:
        await app["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(upstream + request.path, data=body, headers=UPSTREAM_HEADERS) as upstream_response:
            if upstream_response.content_type == "text/event-stream":
                response = web.StreamResponse(status=upstream_response.status)
                response.content_type = "text/event-stream"
                await response.prepare(request)
                async for chunk in upstream_response.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
            data = await upstream_response.read()
            return web.Response(body=data, status=upstream_response.status, content_type=upstream_response.content_type)

    app = web.Application()
    app.router.add_post("/v1/{path:.*}", forward)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(app, host=host, port=port, access_log=None, print=None, backlog=4096, loop=loop)


FLOORS = {"starlette": serve_starlette, "aiohttp-web": serve_aiohttp_web}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(FLOORS))
    parser.add_argument("--upstream", required=True, help="base URL of the upstream, e.g. http://127.0.0.1:9000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    FLOORS[args.kind](args.upstream.rstrip("/"), args.host, args.port)


if __name__ == "__main__":
    main()
