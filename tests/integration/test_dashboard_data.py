"""Rollups and synthetic data behind the dashboard: the 1 -> 2 migration, make_demo_data.py, `gateway demo`."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from gateway import db, queries, reports
from gateway.records import HOURLY_COUNTERS
from tests.dashboard_client import Dashboard
from tests.servers import GatewayServer

REPO = Path(__file__).resolve().parents[2]


async def test_a_version_1_database_gets_its_rollups_backfilled(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    conn = await db.connect(path)
    await conn.executescript(db.SCHEMA_PATH.read_text())
    await conn.executescript(
        "DROP TABLE usage_daily; DROP TABLE usage_monthly; DROP TABLE usage_day_totals; DROP TABLE latency_hourly; "
        "PRAGMA user_version = 1;"
    )
    for hour, backend, requests, cost in (
        ("2026-10-31T23:00:00Z", "a", 1, 0.125),
        ("2026-11-01T10:00:00Z", "a", 2, 0.5),
        ("2026-11-01T11:00:00Z", "b", 3, 0.25),
        ("2026-11-02T00:00:00Z", "a", 7, 1.0),
    ):
        await conn.execute(
            "INSERT INTO usage_hourly (hour, backend, model, api_key, requests, cost_usd) "
            "VALUES (?, ?, 'm', 'k', ?, ?)",
            (hour, backend, requests, cost),
        )
    await conn.close()

    conn = await db.open_db(path)
    try:
        assert await db.scalar(conn, "PRAGMA user_version") == db.SCHEMA_VERSION == 3
        daily = await db.fetch_all(conn, "SELECT day, backend, requests, cost_usd FROM usage_daily ORDER BY 1, 2")
        assert [tuple(r) for r in daily] == [
            ("2026-10-31", "a", 1, 0.125),
            ("2026-11-01", "a", 2, 0.5),
            ("2026-11-01", "b", 3, 0.25),
            ("2026-11-02", "a", 7, 1.0),
        ]
        monthly = await db.fetch_all(conn, "SELECT month, backend, requests FROM usage_monthly ORDER BY 1, 2")
        assert [tuple(r) for r in monthly] == [("2026-10", "a", 1), ("2026-11", "a", 9), ("2026-11", "b", 3)]
        totals = await db.fetch_all(conn, "SELECT day, requests, cost_usd FROM usage_day_totals ORDER BY 1")
        assert [tuple(r) for r in totals] == [("2026-10-31", 1, 0.125), ("2026-11-01", 5, 0.75), ("2026-11-02", 7, 1.0)]
        assert await db.scalar(conn, "SELECT COUNT(*) FROM latency_hourly") == 0
    finally:
        await conn.close()


async def test_aggregates_over_months_and_edge_days_equal_the_hour_buckets(tmp_path: Path) -> None:
    conn = await db.open_db(tmp_path / "gateway.db")
    try:
        hourly: dict[tuple[str, str, str, str], list[float]] = {}
        start = datetime(2026, 1, 20, tzinfo=UTC)
        for i in range(0, 24 * 100, 5):  # every 5 hours for 100 days
            t = start + timedelta(hours=i)
            row = [0.0] * len(HOURLY_COUNTERS)
            row[HOURLY_COUNTERS.index("requests")] = 1 + i % 7
            row[HOURLY_COUNTERS.index("cost_usd")] = (i % 11) / 8
            hourly[(t.strftime("%Y-%m-%dT%H:00:00Z"), f"b{i % 3}", f"m{i % 4}", "k")] = row
        await queries.write_usage(conn, hourly, [], {})
        for first, last in (
            ("2026-01-20", "2026-04-29"),
            ("2026-02-01", "2026-03-31"),
            ("2026-02-10", "2026-02-20"),
            ("2026-01-31", "2026-03-01"),
            ("2026-03-01", "2026-03-01"),
        ):
            end = (date.fromisoformat(last) + timedelta(days=1)).isoformat()
            mine = await reports.aggregate_days(conn, "backend", first, end)
            theirs = await queries.usage_aggregate(conn, "backend", f"{first}T00:00:00Z", f"{end}T00:00:00Z")
            assert [(r["key"], r["requests"], round(r["cost_usd"], 9)) for r in mine] == [
                (r["key"], r["requests"], round(r["cost_usd"], 9)) for r in theirs
            ], (first, last)
        totals = await reports.daily_totals(conn, "2026-01-01", "2026-12-31")
        assert sum(r["requests"] for r in totals) == sum(r[0] for r in hourly.values())
    finally:
        await conn.close()


def test_make_demo_data_builds_a_database_the_dashboard_reads(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    made = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_demo_data.py"),
            "--data-dir",
            str(data_dir),
            "--days",
            "3",
            "--backends",
            "3",
            "--models",
            "6",
            "--keys",
            "4",
            "--log-days",
            "1",
            "--log-per-hour",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert "3 backends, 4 keys" in made.stdout
    with GatewayServer(data_dir) as gateway, Dashboard(gateway) as web:
        web.login()
        hourly = gateway.query("SELECT SUM(requests), SUM(cost_usd) FROM usage_hourly")[0]
        daily = gateway.query("SELECT SUM(requests), SUM(cost_usd) FROM usage_daily")[0]
        assert hourly[0] == daily[0] > 0
        assert abs(hourly[1] - daily[1]) < 1e-6
        today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
        requests_today = gateway.query("SELECT SUM(requests) FROM usage_hourly WHERE hour >= ?", (today,))[0][0]
        overview = web.get("/api/overview").json()
        assert next(c for c in overview["cards"] if c["id"] == "requests")["value"] == requests_today
        assert len(overview["backends"]) == 3
        for path in ("/", "/backends", "/keys", "/usage", "/requests", "/pricing"):
            response = web.get(path)
            assert response.status_code == 200, path
            assert "app;dur=" in response.headers["server-timing"]


def _read_lines(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


def test_gateway_demo_serves_traffic_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any("Ctrl-C" in line for line in output):
            assert time.monotonic() < deadline and process.poll() is None, "".join(output)
            try:
                output.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        text = "".join(output)
        url = re.search(r"dashboard:\s+(\S+)", text).group(1).rstrip("/")  # type: ignore[union-attr]
        token = re.search(r"admin token:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        data_dir = Path(re.search(r"temporary data in (\S+),", text).group(1))  # type: ignore[union-attr]
        upstreams = re.findall(r"(http://127\.0\.0\.1:\d+)/v1 \(", text)
        assert data_dir.is_dir() and len(upstreams) == 2
        headers = {"authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while httpx.get(url + "/api/requests", headers=headers).json()["total"] < 3:
            assert time.monotonic() < deadline, "the demo sent no traffic"
            time.sleep(0.5)
        overview = httpx.get(url + "/api/overview", headers=headers).json()
        assert [b["name"] for b in overview["backends"]] == ["primary-fake", "fallback-fake"]
        assert sum(r["requests"] for r in httpx.get(url + "/api/usage/daily", headers=headers).json()["data"]) > 0

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        reader.join(timeout=5)
        while not lines.empty():
            output.append(lines.get())
        assert "demo stopped" in "".join(output)
        assert not data_dir.exists()
        for address in (url, *upstreams):
            parts = urlsplit(address)
            with socket.socket() as sock:
                assert sock.connect_ex((parts.hostname, parts.port)) != 0, f"{address} still listening"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
