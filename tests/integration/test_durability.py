"""Loses nothing: a graceful stop flushes every pending row; a locked database delays rows, never loses them.

The SIGTERM and first-start tests run the real `gateway serve` command as a subprocess.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway import db
from gateway.recorder import UsageRecorder
from gateway.records import RequestRecord
from tests.fakes import FakeUpstream, Reply
from tests.servers import GatewayServer

ADMIN_TOKEN = "durability-admin-token-0123456789"
MESSAGES = [{"role": "user", "content": "hi"}]
START_DEADLINE_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeProcess:
    """`python -m gateway serve` on a free port, its output captured in files."""

    process: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the gateway exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.05)
        self.process.kill()
        pytest.fail(f"the gateway did not answer /healthz within {START_DEADLINE_S}s:\n{self.output()}")

    def terminate(self) -> None:
        """SIGTERM, then wait for the process to end after its graceful shutdown."""
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the gateway did not stop within 30s of SIGTERM:\n{self.output()}")
        # uvicorn re-raises the signal it caught once its shutdown is complete, so the
        # status says "ended by SIGTERM"; anything else (a crash, a traceback) is a failure.
        assert status in (0, -signal.SIGTERM), f"exit status {status}:\n{self.output()}"
        assert "Traceback" not in self.output(), self.output()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(data_dir: Path, config: str | None = None, **env: str) -> ServeProcess:
        port = free_port()
        command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir", str(data_dir)]
        if config is not None:
            config_path = tmp_path / f"gateway{len(started)}.toml"
            config_path.write_text(config)
            command += ["--config", str(config_path)]
        stdout_path = tmp_path / f"stdout{len(started)}.txt"
        stderr_path = tmp_path / f"stderr{len(started)}.txt"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                command,
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, **env},
                cwd=Path(__file__).resolve().parents[2],
            )
        server = ServeProcess(process, port, stdout_path, stderr_path)
        started.append(server)
        server.wait_until_ready()
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def count_rows(db_path: Path) -> tuple[int, int, int, int]:
    """(request_log rows, usage_hourly requests, prompt tokens, completion tokens) from another connection."""
    conn = sqlite3.connect(db_path)
    try:
        logged = conn.execute("SELECT COUNT(*) FROM request_log").fetchone()[0]
        sums = conn.execute(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) "
            "FROM usage_hourly"
        ).fetchone()
        return int(logged), int(sums[0]), int(sums[1]), int(sums[2])
    finally:
        conn.close()


# -- (1) SIGTERM -----------------------------------------------------------------------------------


def test_sigterm_flushes_every_pending_row(
    serve: Callable[..., ServeProcess], fake: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "data"
    config = f"""
[usage]
flush_interval = 30   # nothing is written on its own during the test: only the stop can flush

[[backends]]
name = "fake"
base_url = "{fake.url}"
api_key = "sk-upstream"
models = ["gpt-4o-mini"]
"""
    server = serve(data_dir, config, GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN)
    created = httpx.post(
        server.url + "/api/keys", json={"name": "alice"}, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert created.status_code == 201, created.text
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=created.json()["key"], max_retries=0, timeout=30)
    request.addfinalizer(client.close)

    sent = 24
    prompt_total = completion_total = 0
    for i in range(sent):
        prompt, completion = 10 + i, 1 + i % 5
        prompt_total, completion_total = prompt_total + prompt, completion_total + completion
        fake.enqueue(Reply.ok(prompt_tokens=prompt, completion_tokens=completion))
        if i % 3 == 0:
            list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    # One more request is still in flight when SIGTERM arrives: it is answered and recorded too.
    fake.enqueue(Reply.ok(prompt_tokens=1000, completion_tokens=100, delay_s=1.0))
    late: dict[str, Any] = {}

    def send_late() -> None:
        try:
            late["reply"] = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        except openai.OpenAIError as e:
            late["error"] = e

    thread = threading.Thread(target=send_late)
    thread.start()
    assert fake.wait_for_hits(sent + 1, timeout=10)

    db_path = data_dir / "gateway.db"
    assert count_rows(db_path) == (0, 0, 0, 0)  # nothing flushed yet: the test can tell a flush happened

    server.terminate()
    thread.join(timeout=10)
    printed = server.output()
    # The admin token came from the environment: it is never printed. The first client key is.
    assert ADMIN_TOKEN not in printed and "admin token" not in printed
    assert "first client key" in printed

    assert "error" not in late, late
    assert late["reply"].usage.prompt_tokens == 1000
    assert count_rows(db_path) == (sent + 1, sent + 1, prompt_total + 1000, completion_total + 100)
    conn = sqlite3.connect(db_path)
    try:
        per_key = conn.execute("SELECT api_key, SUM(requests) FROM usage_hourly GROUP BY api_key").fetchall()
        statuses = conn.execute("SELECT status, COUNT(*) FROM request_log GROUP BY status").fetchall()
    finally:
        conn.close()
    assert per_key == [("alice", sent + 1)]
    assert statuses == [(200, sent + 1)]


def test_a_hard_kill_loses_at_most_the_last_flush_and_the_database_opens_clean(
    serve: Callable[..., ServeProcess], fake: FakeUpstream, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "data"
    config = f"""
[usage]
flush_interval = 0.2

[[backends]]
name = "fake"
base_url = "{fake.url}"
models = ["gpt-4o-mini"]
"""
    server = serve(data_dir, config, GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN)
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    created = httpx.post(server.url + "/api/keys", json={"name": "alice"}, headers=headers)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=created.json()["key"], max_retries=0, timeout=30)
    request.addfinalizer(client.close)

    for _ in range(20):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    wait_for(
        lambda: httpx.get(server.url + "/healthz", timeout=5).json()["usage"]["written"] >= 20,
        5,
        "the first 20 requests to be flushed",
    )
    for _ in range(5):  # answered, and recorded in memory; the kill may come before their flush
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    server.process.kill()  # SIGKILL: no shutdown, no last flush
    server.process.wait()

    db_path = data_dir / "gateway.db"
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    logged, hourly, _, _ = count_rows(db_path)
    assert 20 <= logged <= 25
    assert hourly == logged  # buckets and log are written in one transaction: never one without the other

    again = serve(data_dir, config, GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN)  # and it starts again on that file
    client = openai.OpenAI(base_url=again.url + "/v1", api_key=created.json()["key"], max_retries=0, timeout=30)
    request.addfinalizer(client.close)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content


# -- (2) a locked database -------------------------------------------------------------------------


def healthz(gateway: GatewayServer) -> dict[str, Any]:
    response = httpx.get(gateway.url + "/healthz", timeout=5)
    assert response.status_code == 200
    return dict(response.json())


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def test_flush_while_another_connection_holds_the_write_lock(
    make_gateway: Callable[..., GatewayServer], fake: FakeUpstream
) -> None:
    gateway = make_gateway(flush_interval=0.1)
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    client = gateway.client(gateway.new_key("alice"))

    def send(count: int) -> None:
        for _ in range(count):
            started = time.monotonic()
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            # The request path never waits for the disk: the lock costs it nothing.
            assert time.monotonic() - started < 1.0

    send(3)
    wait_for(lambda: healthz(gateway)["usage"]["written"] == 3, 5, "the first rows to be written")

    lock = sqlite3.connect(gateway.settings.db_path, isolation_level=None, timeout=0)
    lock.execute("BEGIN IMMEDIATE")  # holds the write lock past the gateway's 5 s busy timeout
    try:
        send(10)
        time.sleep(0.3)  # a flush has taken these rows and is waiting on the lock
        assert healthz(gateway)["usage"]["pending"] == 10  # rows being written still count as pending

        wait_for(lambda: healthz(gateway)["usage"]["flush_failures"] >= 1, 10, "a flush to fail on the lock")
        health = healthz(gateway)
        assert health["status"] == "degraded"
        assert "locked" in health["usage"]["last_error"]
        assert health["usage"]["pending"] == 10
        assert health["usage"]["dropped"] == 0

        send(5)  # still served while the writer keeps retrying
        assert healthz(gateway)["usage"]["pending"] == 15
        assert count_rows(gateway.settings.db_path)[0] == 3
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    wait_for(lambda: healthz(gateway)["usage"]["pending"] == 0, 10, "the backlog to be written after the release")
    health = healthz(gateway)
    assert health["status"] == "ok"
    assert health["usage"]["written"] == health["usage"]["recorded"] == 18
    assert health["usage"]["last_error"] is None
    # Every row exactly once: no loss and no double count from the retried batch.
    assert count_rows(gateway.settings.db_path) == (18, 18, 18 * 10, 18 * 5)
    last_used = gateway.query("SELECT last_used_at FROM client_keys WHERE name = 'alice'")[0][0]
    assert last_used is not None


def test_a_stop_during_a_blocked_flush_loses_nothing(
    make_gateway: Callable[..., GatewayServer], fake: FakeUpstream
) -> None:
    gateway = make_gateway(flush_interval=0.05)
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    client = gateway.client(gateway.new_key("alice"))

    lock = sqlite3.connect(gateway.settings.db_path, isolation_level=None, timeout=0)
    lock.execute("BEGIN IMMEDIATE")
    try:
        for _ in range(6):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.close()
        time.sleep(0.3)  # the periodic flush has taken the rows and waits on the lock
        assert count_rows(gateway.settings.db_path) == (0, 0, 0, 0)
        stopper = threading.Thread(target=gateway.stop)
        stopper.start()  # the shutdown stops the periodic writer in the middle of that flush
        time.sleep(1.0)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    stopper.join(timeout=30)

    assert not stopper.is_alive()
    assert count_rows(gateway.settings.db_path) == (6, 6, 60, 30)


async def test_past_its_bound_the_recorder_drops_new_records_and_counts_them(tmp_path: Path) -> None:
    conn = await db.open_db(tmp_path / "gateway.db")
    try:
        recorder = UsageRecorder(conn, max_pending=3)  # the gateway's bound is 200,000 records

        def record(n: int) -> None:
            for i in range(n):
                recorder.record(RequestRecord(f"req_{time.monotonic_ns()}_{i}", time.time(), "chat", "alice", "m"))

        record(5)
        assert (recorder.stats.recorded, recorder.stats.dropped, recorder.backlog) == (3, 2, 3)
        assert await recorder.flush()
        record(1)  # room again once the backlog is written
        assert await recorder.flush()
        assert (recorder.stats.written, recorder.stats.dropped) == (4, 2)
        assert count_rows(tmp_path / "gateway.db")[:2] == (4, 4)  # what was kept is written exactly once
    finally:
        await conn.close()


# -- (3) first start secrets -----------------------------------------------------------------------


def test_first_start_prints_the_admin_token_and_a_client_key_once(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"

    first = serve(data_dir)
    token_match = re.search(r"admin token.*?:\s*(\S+)\s*$", first.stdout_path.read_text(), re.MULTILINE)
    key_match = re.search(r"client key.*?:\s*(sk-gw-\S+)\s*$", first.stdout_path.read_text(), re.MULTILINE)
    assert token_match and key_match, first.output()
    token, key = token_match.group(1), key_match.group(1)
    assert f"http://127.0.0.1:{first.port}/" in first.stdout_path.read_text()
    # They work: the token on the admin API, the key on the client API.
    keys = httpx.get(first.url + "/api/keys", headers={"authorization": f"Bearer {token}"}, timeout=5)
    assert keys.status_code == 200 and [k["name"] for k in keys.json()["data"]] == ["default"]
    models = httpx.get(first.url + "/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=5)
    assert models.status_code == 200
    first.terminate()
    assert token not in first.stderr_path.read_text() and key not in first.stderr_path.read_text()

    second = serve(data_dir)
    second.terminate()
    printed = second.output()
    assert f"http://127.0.0.1:{second.port}/" in printed  # it did announce itself
    assert "admin token" not in printed and "client key" not in printed
    assert token not in printed and key not in printed

    # Stored only as hashes; the master key file is private.
    for path in data_dir.iterdir():
        content = path.read_bytes()
        assert token.encode() not in content and key.encode() not in content, path.name
    assert (data_dir / "master.key").stat().st_mode & 0o777 == 0o600
