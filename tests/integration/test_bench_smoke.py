"""`make bench` works end to end: its quick path on a tiny workload produces numbers for every proxy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_bench_measures_the_floor_and_the_gateway(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--workloads",
            "ns1,st1",
            "--proxies",
            "floor,gateway",
            "--duration",
            "0.5",
            "--quiet-budget",
            "0",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    for workload in ("ns1", "st1"):
        for proxy in ("floor", "gateway"):
            measured = figures["results"][workload][proxy]
            assert measured["rps"] > 0, (workload, proxy, measured)
            assert measured["errors"] == 0, (workload, proxy, measured)
            assert math.isfinite(measured["lat_p50_ms"])
    assert figures["results"]["st1"]["gateway"]["ttft_p50_ms"] > 0
    assert "floor: Starlette + aiohttp" in done.stdout and "gateway (full accounting)" in done.stdout
