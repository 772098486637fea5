#!/usr/bin/env python3
"""Generate a year of hourly usage for 10 backends, 30 models and 20 client keys into a data directory.

    .venv/bin/python scripts/make_demo_data.py --data-dir /tmp/gw-year
    GATEWAY_ADMIN_TOKEN=... .venv/bin/gateway serve --data-dir /tmp/gw-year   # then open the dashboard

The database is created (or extended) with the gateway's own schema and write path, so the
daily rollup and latency histograms agree with the hour buckets. scripts/measure_dashboard.py
times the dashboard's pages on it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import db
from gateway.demo_data import BackendDef, describe, make_routes, write_config, write_history
from gateway.pricing import BUILTIN_PRICES

UNPRICED_MODELS = ("local-llama-8b", "local-qwen-14b")  # show the "no price" flags


def plan(backends: int, models: int, keys: int, rng: random.Random) -> tuple[list[BackendDef], list[str]]:
    names = sorted(BUILTIN_PRICES)[: max(0, models - len(UNPRICED_MODELS))] + list(UNPRICED_MODELS)[:models]
    defs = []
    for i in range(backends):
        served = {names[(i * 3 + j) % len(names)] for j in range(max(3, len(names) // backends * 2))}
        pool = "fallback" if i >= backends * 0.6 else "primary"
        defs.append(BackendDef(f"backend-{i + 1:02d}", pool, tuple(sorted(served))))
    return defs, [f"key-{i + 1:02d}" for i in range(keys)]


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    backends, keys = plan(args.backends, args.models, args.keys, rng)
    conn = await db.open_db(Path(args.data_dir) / "gateway.db")
    try:
        await write_config(conn, backends, keys)
        routes = make_routes(backends, keys, rng, per_key=args.routes_per_key)
        end = time.time()
        start = end - args.days * 86400
        started = time.perf_counter()
        rows = await write_history(
            conn, routes, start, end, rng, log_since_ts=end - args.log_days * 86400, log_per_hour=args.log_per_hour
        )
        print(
            f"{args.data_dir}: {len(backends)} backends, {len(keys)} keys, {len(routes)} routes; "
            + describe(rows, time.perf_counter() - started)
        )
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="demo-data")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--models", type=int, default=30)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--routes-per-key", type=int, default=5)
    parser.add_argument("--log-days", type=int, default=30, help="days of sampled request log")
    parser.add_argument("--log-per-hour", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
