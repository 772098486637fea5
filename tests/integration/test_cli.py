"""The `gateway` command against a real data directory, next to a running gateway."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from gateway.config import load_settings
from tests.fakes import FakeUpstream
from tests.servers import GatewayServer


def gateway_cli(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_key_created_by_cli_works_and_revocation_applies_within_a_second(
    gateway: GatewayServer, fake: FakeUpstream
) -> None:
    gateway.add_backend("main", fake.url, ["gpt-4o-mini"])
    data_dir = gateway.settings.data_dir
    created = gateway_cli("key", "create", "cli-key", "--rpm", "100", "--budget-usd", "5", data_dir=data_dir)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("sk-gw-")
    assert "only time it is shown" in created.stderr

    # The running gateway notices the other process's change by polling config_version.
    deadline = time.monotonic() + 5
    while True:
        try:
            gateway.client(secret).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline, "key created by the CLI was never accepted"
            time.sleep(0.1)

    listing = gateway_cli("key", "list", data_dir=data_dir)
    line = next(row for row in listing.stdout.splitlines() if row.startswith("cli-key"))
    assert line.split()[1:5] == [f"...{secret[-4:]}", "100", "5", "enabled"]
    assert secret not in listing.stdout

    revoked = gateway_cli("key", "revoke", "cli-key", data_dir=data_dir)
    assert revoked.returncode == 0, revoked.stderr
    started = time.monotonic()
    while True:
        try:
            gateway.client(secret).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
        except openai.AuthenticationError:
            break
        time.sleep(0.05)
    assert time.monotonic() - started < 1.5


def test_key_cli_errors_are_clear(tmp_path: Path) -> None:
    assert gateway_cli("key", "create", "dup", data_dir=tmp_path).returncode == 0
    again = gateway_cli("key", "create", "dup", data_dir=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    missing = gateway_cli("key", "revoke", "nobody", data_dir=tmp_path)
    assert missing.returncode == 1 and "no active key named 'nobody'" in missing.stderr
    bad = gateway_cli("key", "create", "x", "--rpm", "-3", data_dir=tmp_path)
    assert bad.returncode == 2 and "expected an integer >= 1" in bad.stderr


def test_bad_environment_is_reported_with_variable_and_value(tmp_path: Path) -> None:
    result = gateway_cli("key", "list", data_dir=tmp_path, env={"GATEWAY_PORT": "abc"})
    assert result.returncode == 2
    assert "GATEWAY_PORT has value 'abc'; expected an integer" in result.stderr


@pytest.mark.parametrize("cooling", [False, True])
def test_backend_list_shows_pool_models_limits_and_state(tmp_path: Path, cooling: bool) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[[backends]]\nname = "alpha"\nbase_url = "http://127.0.0.1:9/v1"\npool = "fallback"\n'
        'models = ["m1", { name = "fast", upstream = "m2" }]\nrpm = 60\n'
    )
    backends = load_settings({"--config": str(config)}, {}).backends
    # A start upserts the config file's backends; a stop saves cooldowns for the CLI to read.
    with GatewayServer(tmp_path / "data", backends=backends) as server:
        if cooling:
            server.gateway.routing.cooldowns.on_rate_limited("alpha", time.monotonic(), 120.0, 0.0)
    listing = gateway_cli("backend", "list", data_dir=tmp_path / "data")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("alpha"))
    assert row.split()[:4] == ["alpha", "fallback", "m1,fast->m2", "60"]
    assert ("cooling until" in row) is cooling


def test_backend_list_reads_live_state_from_a_running_gateway(gateway: GatewayServer, fake: FakeUpstream) -> None:
    from tests.fakes import Reply
    from tests.servers import ADMIN_TOKEN

    gateway.add_backend("live", fake.url, ["gpt-4o-mini"])
    key = gateway.new_key("k")
    fake.enqueue(Reply.error(401, code="invalid_api_key"))
    with pytest.raises(openai.APIStatusError):
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    env = {"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "GATEWAY_PORT": str(gateway.port)}
    listing = gateway_cli("backend", "list", data_dir=gateway.settings.data_dir, env=env)
    row = next(line for line in listing.stdout.splitlines() if line.startswith("live"))
    assert "credential_rejected until" in row and "(saved)" not in row
