#!/usr/bin/env python3
"""Time the dashboard's pages, server side, on a data directory (see scripts/make_demo_data.py).

    .venv/bin/python scripts/measure_dashboard.py --data-dir /tmp/gw-year

Starts the gateway on a free port, logs in, asks each page `--runs` times and prints the
best, median, p95 and max of the server's own render time (its Server-Timing header) and the
client's median. The budget, checked on the server's median: 150 ms for the overview, 300 ms for
every other page. On a busy machine p95 and max mostly measure the other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn

from gateway.app import create_app
from gateway.config import Settings

TOKEN = "measure-admin-token-0123456789"
BUDGET_MS = {"/": 150.0, "/?by=pool": 150.0}
DEFAULT_BUDGET_MS = 300.0


def serve(data_dir: Path) -> tuple[uvicorn.Server, str]:
    app = create_app(Settings(data_dir=data_dir, admin_token=TOKEN))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the gateway did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="demo-data")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    server, url = serve(Path(args.data_dir))
    try:
        client = httpx.Client(base_url=url, timeout=60)
        token = re.search(r'name="login_token" value="([^"]+)"', client.get("/login").text)
        assert token is not None
        client.post(
            "/login", data={"login_token": token.group(1), "token": TOKEN, "next": "/"}, headers={"origin": url}
        )
        year_ago = (datetime.now(UTC) - timedelta(days=364)).date().isoformat()
        first = client.get("/api/requests?limit=1").json()["data"]
        model = first[0]["model"] if first else "gpt-4o"
        pages = [
            "/",
            "/?by=pool",
            "/backends",
            "/keys",
            "/usage",
            "/usage?group_by=key",
            f"/usage?group_by=backend&start={year_ago}",
            f"/usage?group_by=pool&start={year_ago}&sort=requests",
            "/requests",
            f"/requests?model={model}&offset=200",
            "/pricing",
            "/usage.csv",
        ]
        if first:
            pages.append(f"/requests/{first[0]['request_id']}")
        print(f"{'page':<58} {'best':>8} {'median':>8} {'p95':>8} {'max':>8} {'client median':>14}  budget (median)")
        failed = False
        for page in pages:
            server_ms, client_ms = [], []
            for _ in range(args.runs + 1):
                started = time.perf_counter()
                response = client.get(page)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (page, response.status_code, response.text[:300])
                timing = re.search(r"dur=([\d.]+)", response.headers.get("server-timing", ""))
                server_ms.append(float(timing.group(1)) if timing else elapsed)
                client_ms.append(elapsed)
            server_ms, client_ms = server_ms[1:], client_ms[1:]  # the first run compiles templates
            budget = BUDGET_MS.get(page, DEFAULT_BUDGET_MS)
            ok = statistics.median(server_ms) < budget
            failed |= not ok
            verdict = "ok" if ok else "OVER"
            print(
                f"{page[:58]:<58} {min(server_ms):>5.1f} ms {statistics.median(server_ms):>5.1f} ms"
                f" {percentile(server_ms, 0.95):>5.1f} ms"
                f" {max(server_ms):>5.1f} ms {statistics.median(client_ms):>11.1f} ms  <{budget:.0f} {verdict}"
            )
        return 1 if failed else 0
    finally:
        server.should_exit = True


if __name__ == "__main__":
    raise SystemExit(main())
