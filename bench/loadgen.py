"""The load generators: Debian's wrk (C, epoll, a Lua script for POST bodies) or the Python driver.

Both answer the same figures: `rps`, `lat_p50_ms`, `lat_p99_ms`, `errors` (and the driver
`ttft_p50_ms`, `ttft_p99_ms` for streams).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.processes import BenchError, run_pinned

WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")


@dataclass(frozen=True, slots=True)
class Load:
    """One run of a load generator against one URL."""

    url: str
    body_file: Path
    key: str
    concurrency: int
    duration_s: float
    stream: bool = False
    once: bool = False  # each connection sends one request, all at once (the driver only)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run_wrk(load: Load, cpus: str | None) -> dict[str, float]:
    wrk = wrk_path()
    if wrk is None:
        raise BenchError("wrk is not installed")
    duration = max(1, round(load.duration_s))
    argv = [
        wrk,
        "-t1",
        f"-c{load.concurrency}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "-s",
        str(WRK_SCRIPT),
        load.url,
        "--",
        str(load.body_file),
        load.key,
    ]
    done = run_pinned(argv, cpus, timeout_s=duration + 60)
    lines = [line for line in done.stdout.decode(errors="replace").splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    raw = orjson.loads(lines[-1])
    errors = sum(raw[k] for k in ("errors_connect", "errors_read", "errors_write", "errors_status", "errors_timeout"))
    seconds = raw["duration_us"] / 1e6
    good = raw["requests"] - raw["errors_status"]
    return {
        "rps": good / seconds if seconds > 0 else math.nan,
        "lat_p50_ms": raw["lat_p50_us"] / 1000.0,
        "lat_p99_ms": raw["lat_p99_us"] / 1000.0,
        "requests": float(raw["requests"]),
        "errors": float(errors),
    }


def run_driver(load: Load, cpus: str | None) -> dict[str, float]:
    argv = [
        sys.executable,
        "-m",
        "bench.driver",
        "--url",
        load.url,
        "--body-file",
        str(load.body_file),
        "--key",
        load.key,
        "--concurrency",
        str(load.concurrency),
        "--duration",
        f"{load.duration_s:g}",
        "--timeout",
        "60",
    ]
    if load.stream:
        argv.append("--stream")
    if load.once:
        argv.append("--once")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    )
    done = run_pinned(argv, cpus, timeout_s=load.duration_s + 90, env=env)
    if done.returncode != 0:
        raise BenchError(f"the Python driver failed ({done.returncode}): {done.stderr.decode(errors='replace')[-800:]}")
    raw = orjson.loads(done.stdout.strip().splitlines()[-1])
    figures = {k: (math.nan if v is None else float(v)) for k, v in raw.items() if k != "error_sample"}
    if raw.get("error_sample"):
        print(f"    ! {int(raw['errors'])} errors, e.g. {raw['error_sample']}", file=sys.stderr)
    return figures
