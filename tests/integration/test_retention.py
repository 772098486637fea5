"""The request log is pruned in the background past [usage].request_log_days; hour buckets stay."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from gateway.records import iso_ts
from tests.servers import GatewayServer
from tests.two_pools import poll


def _log_row(request_id: str, age_days: float) -> tuple[object, ...]:
    ts = iso_ts(time.time() - age_days * 86400)
    return (
        request_id,
        ts,
        "chat",
        "k",
        "m",
        "m",
        "b",
        "primary",
        200,
        0,
        0,
        1,
        1,
        1,
        0,
        0,
        0.0,
        1.0,
        None,
        0.1,
        None,
        "[]",
    )


def test_old_request_log_rows_are_pruned_and_hour_buckets_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    GatewayServer(data_dir).start().stop()  # creates the database
    conn = sqlite3.connect(data_dir / "gateway.db")
    with conn:
        conn.executemany(
            f"INSERT INTO request_log VALUES ({', '.join('?' * 22)})",
            [_log_row("req_old", 12), _log_row("req_recent", 3)],
        )
        conn.execute(
            "INSERT INTO usage_hourly (hour, backend, model, api_key, requests) "
            "VALUES ('2025-01-01T00:00:00Z', 'b', 'm', 'k', 5)"
        )
    conn.close()

    with GatewayServer(data_dir, request_log_days=7) as server:
        poll(lambda: not server.query("SELECT 1 FROM request_log WHERE request_id = 'req_old'"), 5)
        assert [r["request_id"] for r in server.query("SELECT request_id FROM request_log")] == ["req_recent"]
        assert server.query("SELECT requests FROM usage_hourly WHERE hour = '2025-01-01T00:00:00Z'")[0][0] == 5
