"""Settings: command-line flags > environment > TOML config file > defaults, into one frozen object."""

from __future__ import annotations

import base64
import binascii
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.backends import BackendSpec, InvalidBackend, backend_from_fields, validate_backend_fields


class ConfigError(ValueError):
    """A setting is wrong; the message names where it came from, the key and the value."""


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    max_attempts: int = 4
    queue_timeout: float = 2.0
    fallback_after: float = 0.0
    first_token_timeout: float = 30.0
    stream_idle_timeout: float = 60.0
    circuit_failures: int = 3
    circuit_max_open: float = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    config_path: Path | None = None
    admin_token: str | None = None
    master_key: bytes | None = None
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    max_body_mb: float = 10.0
    metrics_public: bool = False
    flush_interval: float = 1.0
    request_log_days: int = 30
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    backends: tuple[BackendSpec, ...] = ()

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.db"

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table: it drives parsing, validation and the README."""

    name: str  # attribute of Settings
    section: str | None  # TOML table, None when not settable in the file
    env: str | None
    flag: str | None
    kind: str  # "str", "int", "port", "float", "bool", "hosts", "path", "secret", "key"
    help: str
    minimum: float | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "server", "GATEWAY_HOST", "--host", "str", "bind address (loopback by default)"),
    Setting("port", "server", "GATEWAY_PORT", "--port", "port", "bind port"),
    Setting("data_dir", None, "GATEWAY_DATA_DIR", "--data-dir", "path", "SQLite file and generated master key"),
    Setting("config_path", None, "GATEWAY_CONFIG", "--config", "path", "optional TOML config file"),
    Setting("admin_token", None, "GATEWAY_ADMIN_TOKEN", None, "secret", "admin token; generated on first start"),
    Setting("master_key", None, "GATEWAY_MASTER_KEY", None, "key", "32-byte base64 key sealing upstream keys"),
    Setting("allowed_hosts", "server", None, None, "hosts", "Host header names accepted besides the bound address"),
    Setting("max_body_mb", "server", None, None, "float", "request bodies above this get 413", minimum=0.001),
    Setting("metrics_public", "server", None, None, "bool", "serve /metrics without the admin token"),
    Setting("flush_interval", "usage", None, None, "float", "seconds between batched usage writes", minimum=0.01),
    Setting("request_log_days", "usage", None, None, "int", "days the per-request log is kept", minimum=1),
)

ROUTING_FIELDS: dict[str, tuple[str, float]] = {
    # name: (kind, minimum)
    "max_attempts": ("int", 1),
    "queue_timeout": ("float", 0),
    "fallback_after": ("float", 0),
    "first_token_timeout": ("float", 0.001),
    "stream_idle_timeout": ("float", 0.001),
    "circuit_failures": ("int", 1),
    "circuit_max_open": ("float", 0.001),
}

_FILE_SECTIONS = {"server", "usage", "routing", "backends"}


def _show(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _convert(where: str, value: object, kind: str, minimum: float | None, *, from_text: bool) -> object:
    """Turn a raw value (a string when from the environment or a flag) into the setting's type."""
    show = _show(value)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where} has value {show}; expected {expected}")

    if kind in ("str", "path"):
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        return Path(value) if kind == "path" else value
    if kind == "secret":
        if not isinstance(value, str) or len(value) < 16:
            raise ConfigError(f"{where} is too short; expected at least 16 characters")
        return value
    if kind == "key":
        try:
            key = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where} is not valid base64; expected 32 bytes encoded in base64") from None
        if len(key) != 32:
            raise ConfigError(f"{where} decodes to {len(key)} bytes; expected 32 bytes encoded in base64")
        return key
    if kind == "bool":
        if (
            from_text
            and isinstance(value, str)
            and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off")
        ):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if kind == "hosts":
        if not isinstance(value, list) or not all(isinstance(h, str) and h for h in value):
            raise bad("a list of host names")
        return tuple(h.lower() for h in value)
    number: float | int
    integer = kind in ("int", "port")
    if from_text and isinstance(value, str):
        try:
            number = int(value) if integer else float(value)
        except ValueError:
            raise bad("an integer" if integer else "a number") from None
    elif isinstance(value, bool) or not isinstance(value, int | float) or (integer and isinstance(value, float)):
        raise bad("an integer" if integer else "a number")
    else:
        number = value
    if kind == "port" and not 0 <= number <= 65535:
        raise bad("a port number from 0 to 65535")
    if not math.isfinite(number) or (minimum is not None and number < minimum):
        raise bad(f"a number >= {minimum:g}" if minimum is not None else "a finite number")
    if integer:
        if not float(number).is_integer():
            raise bad("an integer")
        return int(number)
    return float(number)


def read_config_file(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from None


def _file_values(
    path: Path, document: Mapping[str, object], key_environ: Mapping[str, str] | None
) -> dict[str, object]:
    values: dict[str, object] = {}
    for section, content in document.items():
        if section not in _FILE_SECTIONS:
            sections = ", ".join(sorted(_FILE_SECTIONS))
            if isinstance(content, Mapping | list):  # its content is not shown: it may hold an api_key
                raise ConfigError(f"{path}: unknown section [{section}] (known: {sections})")
            raise ConfigError(
                f"{path}: unknown top-level key {section} = {_show(content)}; settings go in [{sections}]"
            )
    for section in ("server", "usage"):
        table = document.get(section, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{path}: {section} has value {_show(table)}; expected a table ([{section}])")
        known = {s.name: s for s in SETTINGS if s.section == section}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(
                    f"{path}: unknown key {section}.{key} = {_show(value)} (known: {', '.join(sorted(known))})"
                )
            s = known[key]
            values[key] = _convert(f"{path}: {section}.{key}", value, s.kind, s.minimum, from_text=False)
    routing = document.get("routing", {})
    if not isinstance(routing, Mapping):
        raise ConfigError(f"{path}: routing has value {_show(routing)}; expected a table ([routing])")
    routing_values: dict[str, object] = {}
    for key, value in routing.items():
        if key not in ROUTING_FIELDS:
            raise ConfigError(
                f"{path}: unknown key routing.{key} = {_show(value)} (known: {', '.join(sorted(ROUTING_FIELDS))})"
            )
        kind, minimum = ROUTING_FIELDS[key]
        routing_values[key] = _convert(f"{path}: routing.{key}", value, kind, minimum, from_text=False)
    values["routing"] = RoutingSettings(**routing_values)  # type: ignore[arg-type]
    values["backends"] = _file_backends(path, document.get("backends", []), key_environ)
    return values


def _file_backends(path: Path, raw: object, key_environ: Mapping[str, str] | None) -> tuple[BackendSpec, ...]:
    """Validated backends; with key_environ None, each api_key is checked for type but left empty."""
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: backends must be an array of tables ([[backends]])")
    specs: list[BackendSpec] = []
    names: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{path}: backends[{i}] must be a table")
        if key_environ is None and isinstance(entry.get("api_key"), str):
            # The key (or its env: variable) is not read at all; a wrong type is still reported below.
            entry = {**entry, "api_key": ""}
        try:
            spec = backend_from_fields(validate_backend_fields(entry, key_environ or {}, partial=False))
        except InvalidBackend as e:
            raise ConfigError(f"{path}: backends[{i}]: {e}") from None
        if spec.name in names:
            raise ConfigError(f"{path}: backends[{i}]: name '{spec.name}' is used by another backend")
        names.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def load_settings(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    read_file: Callable[[Path], dict[str, object]] = read_config_file,
    *,
    resolve_api_keys: bool = True,
) -> Settings:
    """Build Settings. `flags` maps a flag such as "--port" to its text (None when not given).

    With resolve_api_keys=False, backends from the config file have an empty api_key and an `env:`
    reference to an unset variable is no error: only `serve` sends upstream keys, and the other
    commands must work where those variables are not set. Such Settings must never reach `serve`.
    """
    by_flag: dict[str, object] = {}
    by_env: dict[str, object] = {}
    for s in SETTINGS:
        if s.flag and flags.get(s.flag) is not None:
            by_flag[s.name] = _convert(s.flag, flags[s.flag], s.kind, s.minimum, from_text=True)
        if s.env and environ.get(s.env, "") != "":
            by_env[s.name] = _convert(s.env, environ[s.env], s.kind, s.minimum, from_text=True)
    config_path = by_flag.get("config_path", by_env.get("config_path"))
    from_file: dict[str, object] = {}
    if isinstance(config_path, Path):
        from_file = _file_values(config_path, read_file(config_path), environ if resolve_api_keys else None)
    merged = {**from_file, **by_env, **by_flag}
    return Settings(**merged)  # type: ignore[arg-type]
