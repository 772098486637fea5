"""A Python load generator on uvloop + aiohttp: closed-loop workers, latency and time to first token.

Used where wrk cannot help (time to first token, N concurrent slow streams opened at once)
and in place of wrk where wrk is not installed. Prints one JSON object on stdout.

Closed loop: `--concurrency C --duration S`, each worker sends its next request when the
previous one ended. One shot: `--once`, each of C workers sends exactly one request, all
at once (the memory rounds). A stream counts as an error unless it ends with `[DONE]`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.stats import summarize_latencies_ms


@dataclass(slots=True)
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    ttfts_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_sample: str = ""

    def fail(self, why: str) -> None:
        self.errors += 1
        if not self.error_sample:
            self.error_sample = why[:300]


async def one_request(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], stream: bool, tally: Tally
) -> None:
    perf = time.perf_counter
    started = perf()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                tally.fail(f"HTTP {response.status}: {(await response.read())[:200]!r}")
                return
            if stream:
                first_at = math.nan
                tail = b""
                async for chunk in response.content.iter_any():
                    if first_at != first_at:  # NaN: first chunk
                        first_at = perf()
                    tail = (tail + chunk)[-64:]
                if b"[DONE]" not in tail:
                    tally.fail(f"stream ended without [DONE]: {tail!r}")
                    return
                tally.ttfts_s.append(first_at - started)
            else:
                await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        tally.fail(f"{type(e).__name__}: {e}")
        return
    tally.latencies_s.append(perf() - started)


async def drive(
    url: str,
    body: bytes,
    key: str,
    *,
    stream: bool,
    concurrency: int,
    duration_s: float,
    once: bool,
    timeout_s: float,
) -> dict[str, object]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker() -> None:
            if once:
                await one_request(session, url, body, headers, stream, tally)
                return
            while time.perf_counter() < deadline:
                await one_request(session, url, body, headers, stream, tally)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed_s = time.perf_counter() - started
    done = len(tally.latencies_s)
    result: dict[str, object] = {
        "requests": done,
        "errors": tally.errors,
        "error_sample": tally.error_sample,
        "elapsed_s": elapsed_s,
        "rps": done / elapsed_s if elapsed_s > 0 else math.nan,
        **summarize_latencies_ms(tally.latencies_s, "lat"),
    }
    if stream:
        result.update(summarize_latencies_ms(tally.ttfts_s, "ttft"))
    return result


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--key", default="none")
    parser.add_argument("--stream", action="store_true", help="read SSE, measure time to first token")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds (closed loop)")
    parser.add_argument("--once", action="store_true", help="each worker sends one request, all at once")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds allowed per request")
    args = parser.parse_args()
    raise_fd_limit()
    with open(args.body_file, "rb") as f:
        body = f.read()
    import uvloop

    result = uvloop.run(
        drive(
            args.url,
            body,
            args.key,
            stream=args.stream,
            concurrency=args.concurrency,
            duration_s=args.duration,
            once=args.once,
            timeout_s=args.timeout,
        )
    )
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
