"""Micro-benchmark: how many usage records per second the recorder takes and writes.

    .venv/bin/python -m bench.usage_writer [--events 100000] [--batch 20000]

Feeds records as a busy request path would (record() is synchronous, no I/O), flushing as
the background writer does, into a real SQLite file in WAL mode; prints records/second for
record() alone and for record()+flush end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from gateway import db
from gateway.recorder import UsageRecorder
from gateway.records import Attempt, RequestRecord
from gateway.usage import Usage


def make_records(n: int, start_wall: float) -> list[RequestRecord]:
    rng = random.Random(7)
    backends = [f"backend-{i}" for i in range(10)]
    models = [f"model-{i}" for i in range(30)]
    keys = [f"key-{i}" for i in range(20)]
    out = []
    for i in range(n):
        backend, model = rng.choice(backends), rng.choice(models)
        out.append(
            RequestRecord(
                request_id=f"req_{i:012d}",
                wall_ts=start_wall + i * 0.001,
                endpoint="chat",
                api_key=rng.choice(keys),
                requested_model=model,
                model=model,
                backend=backend,
                pool="primary",
                usage=Usage(rng.randint(10, 2000), rng.randint(1, 500), 0, 0),
                cost_usd=0.0001,
                latency_ms=12.5,
                attempts=[Attempt(backend, model, 200, "ok", 11.0)],
            )
        )
    return out


async def run(events: int, batch: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        conn = await db.open_db(Path(tmp) / "bench.db")
        recorder = UsageRecorder(conn, flush_interval_s=1.0, max_pending=events + 1)
        records = make_records(events, time.time())
        t0 = time.perf_counter()
        for rec in records:
            recorder.record(rec)
        record_s = time.perf_counter() - t0
        recorder2 = UsageRecorder(conn, flush_interval_s=1.0, max_pending=events + 1)
        records = make_records(events, time.time() + 10)
        for r in records:
            r.request_id += "b"
        t0 = time.perf_counter()
        for start in range(0, events, batch):
            for rec in records[start : start + batch]:
                recorder2.record(rec)
            assert await recorder2.flush()
        total_s = time.perf_counter() - t0
        written = await db.scalar(conn, "SELECT COUNT(*) FROM request_log")
        assert written == events, written
        await conn.close()
    return events / record_s, events / total_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20_000, help="records per flush (a second's worth at 20k/s)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = [asyncio.run(run(args.events, args.batch)) for _ in range(args.repeat)]
    only = statistics.median(r[0] for r in results)
    written = statistics.median(r[1] for r in results)
    print(f"record() only:            {only:>12,.0f} records/s (median of {args.repeat})")
    print(f"record() + batched write: {written:>12,.0f} records/s (median of {args.repeat})")


if __name__ == "__main__":
    main()
