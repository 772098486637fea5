from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeUpstream
from tests.servers import GatewayServer


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the operator's environment or writes outside its tmp_path."""
    for name in (
        "GATEWAY_DATA_DIR",
        "GATEWAY_CONFIG",
        "GATEWAY_HOST",
        "GATEWAY_PORT",
        "GATEWAY_ADMIN_TOKEN",
        "GATEWAY_MASTER_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def fake2() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    servers: list[GatewayServer] = []

    def start(**overrides: Any) -> GatewayServer:
        server = GatewayServer(tmp_path / f"data{len(servers)}", **overrides).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., GatewayServer]) -> GatewayServer:
    return make_gateway()
