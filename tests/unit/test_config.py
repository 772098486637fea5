"""Settings: flag > environment > config file > default, and errors that name the file, key and value."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.backends import ModelRoute
from gateway.config import ConfigError, RoutingSettings, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def load_file(path: Path, environ: dict[str, str] | None = None) -> Settings:
    return load_settings({"--config": str(path)}, environ or {})


def config_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_file(path, environ)
    return str(caught.value)


# -- precedence ---------------------------------------------------------------------------------


def test_defaults_without_flags_env_or_file() -> None:
    settings = load_settings({}, {})
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8080, Path("data"))
    assert settings.max_body_mb == 10 and settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.flush_interval == 1.0 and settings.request_log_days == 30
    assert settings.routing == RoutingSettings()
    assert settings.backends == ()
    assert settings.admin_token is None and settings.master_key is None


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nhost = "10.0.0.3"\nport = 3333\n')
    env = {"GATEWAY_PORT": "2222", "GATEWAY_HOST": "10.0.0.2"}
    flags = {"--config": str(path), "--port": "1111", "--host": None}

    settings = load_settings(flags, env)
    assert settings.port == 1111  # flag
    assert settings.host == "10.0.0.2"  # env (no flag given: None)

    assert load_settings({"--config": str(path)}, env).port == 2222  # env over file
    assert load_settings({"--config": str(path)}, {}).port == 3333  # file over default
    assert load_settings({"--config": str(path)}, {}).host == "10.0.0.3"
    assert load_settings({}, {}).port == 8080  # default


def test_each_layer_for_the_data_dir(tmp_path: Path) -> None:
    assert load_settings({"--data-dir": "/flag"}, {"GATEWAY_DATA_DIR": "/env"}).data_dir == Path("/flag")
    assert load_settings({"--data-dir": None}, {"GATEWAY_DATA_DIR": "/env"}).data_dir == Path("/env")


def test_config_path_from_flag_beats_the_environment(tmp_path: Path) -> None:
    by_flag = write(tmp_path, "[server]\nport = 1001\n")
    by_env = tmp_path / "env.toml"
    by_env.write_text("[server]\nport = 1002\n")
    assert load_settings({"--config": str(by_flag)}, {"GATEWAY_CONFIG": str(by_env)}).port == 1001
    assert load_settings({}, {"GATEWAY_CONFIG": str(by_env)}).port == 1002


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 3333\n")
    assert load_settings({"--config": str(path)}, {"GATEWAY_PORT": ""}).port == 3333


def test_secrets_come_from_the_environment() -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    settings = load_settings({}, {"GATEWAY_ADMIN_TOKEN": "a-long-enough-admin-token", "GATEWAY_MASTER_KEY": key})
    assert settings.admin_token == "a-long-enough-admin-token"
    assert settings.master_key == bytes(range(32))


def test_a_full_file_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
host = "0.0.0.0"
port = 9000
allowed_hosts = ["Gateway.Example", "localhost"]
max_body_mb = 2.5
metrics_public = true

[usage]
flush_interval = 0.5
request_log_days = 7

[routing]
max_attempts = 2
queue_timeout = 0
fallback_after = 1.5

[[backends]]
name = "openai"
base_url = "https://api.openai.com/v1/"
api_key = "env:TEST_OPENAI_KEY"
models = ["gpt-4o-mini", { name = "fast", upstream = "gpt-4o-mini" }]
rpm = 500
tpm = 200000
priority = 1
weight = 3
timeout = 20

[[backends]]
name = "local"
base_url = "http://127.0.0.1:11434/v1"
pool = "fallback"
models = ["llama3"]
enabled = false
""",
    )
    settings = load_file(path, {"TEST_OPENAI_KEY": "sk-from-env"})

    assert (settings.host, settings.port, settings.max_body_mb, settings.metrics_public) == ("0.0.0.0", 9000, 2.5, True)
    assert settings.allowed_hosts == ("gateway.example", "localhost")
    assert (settings.flush_interval, settings.request_log_days) == (0.5, 7)
    assert settings.routing == RoutingSettings(max_attempts=2, queue_timeout=0.0, fallback_after=1.5)
    openai_backend, local = settings.backends
    assert openai_backend.base_url == "https://api.openai.com/v1"
    assert openai_backend.api_key == "sk-from-env"
    assert openai_backend.models == (ModelRoute("gpt-4o-mini", "gpt-4o-mini"), ModelRoute("fast", "gpt-4o-mini"))
    assert (openai_backend.rpm, openai_backend.tpm, openai_backend.priority, openai_backend.weight) == (
        500,
        200000,
        1,
        3,
    )
    assert openai_backend.timeout == 20.0
    assert (local.pool, local.enabled, local.api_key) == ("fallback", False, "")


# -- errors name the file, the key and the value --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[server]\nprot = 8080\n", ("server.prot", "8080")),
        ('[usage]\nflush_every = "1s"\n', ("usage.flush_every", "'1s'")),
        ("[routing]\nmax_retries = 9\n", ("routing.max_retries", "9")),
        ("port = 8080\n", ("port", "8080")),
    ],
)
def test_unknown_keys_are_reported_with_file_key_and_value(tmp_path: Path, text: str, names: tuple[str, ...]) -> None:
    path = write(tmp_path, text)
    message = config_error(path)
    assert str(path) in message
    assert "unknown" in message
    for name in names:
        assert name in message, message


def test_unknown_section_is_reported_without_its_content(tmp_path: Path) -> None:
    path = write(tmp_path, '[[backend]]\nname = "x"\napi_key = "sk-secret-in-a-typo-section"\n')
    message = config_error(path)
    assert str(path) in message and "[backend]" in message and "backends" in message
    assert "sk-secret" not in message


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[server]\nport = "eighty"\n', ("server.port", "'eighty'", "integer")),
        ("[server]\nport = 80.5\n", ("server.port", "80.5", "integer")),
        ("[server]\nport = -1\n", ("server.port", "-1")),
        ("[server]\nport = 70000\n", ("server.port", "70000", "0 to 65535")),
        ('[server]\nmetrics_public = "yes"\n', ("server.metrics_public", "'yes'", "true or false")),
        ('[server]\nallowed_hosts = "localhost"\n', ("server.allowed_hosts", "'localhost'")),
        ("[server]\nmax_body_mb = 0\n", ("server.max_body_mb", "0")),
        ("[server]\nhost = 127\n", ("server.host", "127")),
        ("[usage]\nflush_interval = true\n", ("usage.flush_interval", "True")),
        ("[usage]\nrequest_log_days = 0\n", ("usage.request_log_days", "0")),
        ('[routing]\nmax_attempts = "4"\n', ("routing.max_attempts", "'4'")),
        ("[routing]\nqueue_timeout = -2\n", ("routing.queue_timeout", "-2")),
        ("server = 5\n", ("server", "5")),
        ('[[backends]]\nname = "a"\nbase_url = "http://h/v1"\nrpm = "fast"\n', ("backends[0]", "rpm", "'fast'")),
        (
            '[[backends]]\nname = "a"\nbase_url = "http://h/v1"\npool = "tertiary"\n',
            ("backends[0]", "pool", "'tertiary'"),
        ),
        ('[[backends]]\nname = "a"\nbase_url = "ftp://h/v1"\n', ("backends[0]", "base_url", "'ftp://h/v1'")),
        ('[[backends]]\nname = "a"\nbase_url = "http://169.254.169.254/"\n', ("backends[0]", "base_url", "metadata")),
        ('[[backends]]\nname = "a"\nbase_url = "http://h/v1"\nmodels = "m"\n', ("backends[0]", "models", "'m'")),
        ('[[backends]]\nname = "a"\nbase_url = "http://h/v1"\nweight = 0\n', ("backends[0]", "weight", "0")),
        ('[[backends]]\nname = "a"\nbase_url = "http://h/v1"\ncolour = "red"\n', ("backends[0]", "colour")),
        ('[[backends]]\nbase_url = "http://h/v1"\n', ("backends[0]", "name", "required")),
        (
            '[[backends]]\nname = "a"\nbase_url = "http://h/v1"\n[[backends]]\nname = "a"\nbase_url = "http://i/v1"\n',
            ("backends[1]", "'a'"),
        ),
        ('backends = "openai"\n', ("backends",)),
    ],
)
def test_wrong_values_are_reported_with_file_key_and_value(tmp_path: Path, text: str, names: tuple[str, ...]) -> None:
    path = write(tmp_path, text)
    message = config_error(path)
    assert str(path) in message, message
    for name in names:
        assert name in message, message


def test_a_mistyped_backend_key_field_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, '[[backends]]\nname = "a"\nbase_url = "http://h/v1"\napi_kye = "sk-live-secret"\n')
    message = config_error(path)
    assert "api_kye" in message and "backends[0]" in message
    assert "sk-live-secret" not in message


def test_missing_env_variable_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[[backends]]\nname = "a"\nbase_url = "http://h/v1"\napi_key = "env:NOT_SET_ANYWHERE_KEY"\n')
    message = config_error(path, {"OTHER": "x"})
    assert "NOT_SET_ANYWHERE_KEY" in message
    assert str(path) in message and "backends[0]" in message and "api_key" in message


def test_env_variable_set_but_empty_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, '[[backends]]\nname = "a"\nbase_url = "http://h/v1"\napi_key = "env:EMPTY_KEY"\n')
    assert load_file(path, {"EMPTY_KEY": ""}).backends[0].api_key == ""


def test_upstream_keys_are_left_unread_when_the_command_does_not_need_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[backends]]\nname = "a"\nbase_url = "http://h/v1"\napi_key = "env:NOT_SET_ANYWHERE_KEY"\n'
        '[[backends]]\nname = "b"\nbase_url = "http://i/v1"\napi_key = "sk-literal-key"\nmodels = ["m"]\n',
    )
    settings = load_settings({"--config": str(path)}, {}, resolve_api_keys=False)
    assert [(b.name, b.api_key) for b in settings.backends] == [("a", ""), ("b", "")]
    assert settings.backends[1].models == (ModelRoute("m", "m"),)


@pytest.mark.parametrize(
    ("backend", "names"),
    [
        ('base_url = "ftp://h"\napi_key = "env:NOT_SET_ANYWHERE_KEY"\n', ("backends[0]", "base_url", "'ftp://h'")),
        ('base_url = "http://h/v1"\napi_key = 42\n', ("backends[0]", "api_key")),
        ('base_url = "http://h/v1"\napi_key = "env:X"\npool = "third"\n', ("backends[0]", "pool", "'third'")),
    ],
)
def test_backends_are_still_validated_when_upstream_keys_are_left_unread(
    tmp_path: Path, backend: str, names: tuple[str, ...]
) -> None:
    path = write(tmp_path, f'[[backends]]\nname = "a"\n{backend}')
    with pytest.raises(ConfigError) as caught:
        load_settings({"--config": str(path)}, {}, resolve_api_keys=False)
    message = str(caught.value)
    assert str(path) in message, message
    for name in names:
        assert name in message, message


def test_invalid_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = 1\n")
    message = config_error(path)
    assert str(path) in message and "TOML" in message
    missing = tmp_path / "nope.toml"
    assert str(missing) in config_error(missing)


@pytest.mark.parametrize(
    ("flags", "env", "names"),
    [
        ({"--port": "http"}, {}, ("--port", "'http'", "integer")),
        ({"--port": "-5"}, {}, ("--port", "'-5'")),
        ({"--port": "99999"}, {}, ("--port", "'99999'", "0 to 65535")),
        ({}, {"GATEWAY_PORT": "65536"}, ("GATEWAY_PORT", "'65536'", "0 to 65535")),
        ({}, {"GATEWAY_PORT": "80x"}, ("GATEWAY_PORT", "'80x'", "integer")),
        ({}, {"GATEWAY_ADMIN_TOKEN": "short"}, ("GATEWAY_ADMIN_TOKEN", "16")),
        ({}, {"GATEWAY_MASTER_KEY": "not base64!"}, ("GATEWAY_MASTER_KEY", "base64")),
        ({}, {"GATEWAY_MASTER_KEY": base64.b64encode(b"x" * 16).decode()}, ("GATEWAY_MASTER_KEY", "16 bytes", "32")),
    ],
)
def test_bad_flags_and_environment_values_name_their_source(
    flags: dict[str, str], env: dict[str, str], names: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, env)
    for name in names:
        assert name in str(caught.value), str(caught.value)


def test_secret_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {"GATEWAY_ADMIN_TOKEN": "tiny-secret"})
    assert "tiny-secret" not in str(caught.value)


def test_settings_are_frozen() -> None:
    settings = load_settings({}, {})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
