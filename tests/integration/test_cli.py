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


UNSET_KEY_VARIABLE = "GATEWAY_TEST_UNSET_UPSTREAM_KEY"


def write_config(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    return config


def test_key_and_backend_commands_work_without_the_upstream_key_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET_KEY_VARIABLE, raising=False)
    config = write_config(
        tmp_path,
        '[[backends]]\nname = "openai"\nbase_url = "https://api.openai.com/v1"\n'
        f'api_key = "env:{UNSET_KEY_VARIABLE}"\n',
    )
    data_dir = tmp_path / "data"
    for command in (["key", "create", "ops"], ["key", "list"], ["key", "revoke", "ops"], ["backend", "list"]):
        result = gateway_cli(*command, "--config", str(config), data_dir=data_dir)
        assert result.returncode == 0, (command, result.stderr)
        assert UNSET_KEY_VARIABLE not in result.stderr


def test_serve_still_names_a_missing_upstream_key_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSET_KEY_VARIABLE, raising=False)
    config = write_config(
        tmp_path,
        f'[[backends]]\nname = "a"\nbase_url = "http://127.0.0.1:9/v1"\napi_key = "env:{UNSET_KEY_VARIABLE}"\n',
    )
    result = gateway_cli("serve", "--config", str(config), "--port", "0", data_dir=tmp_path / "data")
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    for name in (str(config), "backends[0]", "api_key", UNSET_KEY_VARIABLE):
        assert name in result.stderr, result.stderr


@pytest.mark.parametrize("command", [["key", "list"], ["backend", "list"]])
def test_a_malformed_config_file_is_still_an_error_for_every_command(tmp_path: Path, command: list[str]) -> None:
    config = write_config(
        tmp_path,
        f'[[backends]]\nname = "a"\nbase_url = "http://h/v1"\napi_key = "env:{UNSET_KEY_VARIABLE}"\npool = "x"\n',
    )
    result = gateway_cli(*command, "--config", str(config), data_dir=tmp_path / "data")
    assert result.returncode == 2
    for name in (str(config), "backends[0]", "pool", "'x'"):
        assert name in result.stderr, result.stderr


def test_backend_list_shows_config_backends_before_the_first_serve_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET_KEY_VARIABLE, raising=False)
    config = write_config(
        tmp_path,
        '[[backends]]\nname = "alpha"\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["m1"]\nrpm = 60\n'
        f'api_key = "env:{UNSET_KEY_VARIABLE}"\n'
        '[[backends]]\nname = "beta"\nbase_url = "http://127.0.0.1:9/v1"\npool = "fallback"\nenabled = false\n',
    )
    data_dir = tmp_path / "data"
    listing = gateway_cli("backend", "list", "--config", str(config), data_dir=data_dir)
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert rows["alpha"].split()[:4] == ["alpha", "primary", "m1", "60"]
    assert rows["alpha"].endswith("not yet served")
    assert rows["beta"].split()[:2] == ["beta", "fallback"] and " no " in rows["beta"]
    assert rows["beta"].endswith("not yet served")
    assert not data_dir.exists()  # listing neither creates the database nor writes the backends to it


def test_backend_list_marks_only_config_backends_missing_from_the_database(tmp_path: Path) -> None:
    served = write_config(tmp_path, '[[backends]]\nname = "alpha"\nbase_url = "http://127.0.0.1:9/v1"\n')
    with GatewayServer(tmp_path / "data", backends=load_settings({"--config": str(served)}, {}).backends):
        pass
    added = served.read_text() + '[[backends]]\nname = "beta"\nbase_url = "http://127.0.0.1:9/v1"\n'
    config = write_config(tmp_path, added)
    for _ in range(2):  # a second listing sees the same: the first wrote nothing
        listing = gateway_cli("backend", "list", "--config", str(config), data_dir=tmp_path / "data")
        assert listing.returncode == 0, listing.stderr
        states = {line.split()[0]: line.split(maxsplit=8)[-1] for line in listing.stdout.splitlines()[1:]}
        assert states == {"alpha": "ok", "beta": "not yet served"}


def test_backend_list_host_and_port_flags_take_precedence_over_environment(
    gateway: GatewayServer, fake: FakeUpstream
) -> None:
    from tests.fakes import Reply
    from tests.servers import ADMIN_TOKEN

    gateway.add_backend("live", fake.url, ["gpt-4o-mini"])
    key = gateway.new_key("k")
    fake.enqueue(Reply.error(401, code="invalid_api_key"))
    with pytest.raises(openai.APIStatusError):
        gateway.client(key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    # The environment points at an address where nothing listens; the flags at the running gateway.
    env = {"GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "GATEWAY_HOST": "127.0.0.2", "GATEWAY_PORT": "9"}
    listing = gateway_cli(
        "backend",
        "list",
        "--host",
        "127.0.0.1",
        "--port",
        str(gateway.port),
        data_dir=gateway.settings.data_dir,
        env=env,
    )
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("live"))
    assert "credential_rejected until" in row and "(saved)" not in row
