"""Backend definitions and their validation, shared by the config file, the admin API and the CLI."""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

POOLS = ("primary", "fallback")

# Cloud metadata endpoints: a backend pointing there would leak instance credentials.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA_HOSTS = frozenset(
    {
        "169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
        "fd00:ec2::254",
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
    }
)

BACKEND_FIELDS = (
    "name",
    "base_url",
    "api_key",
    "pool",
    "models",
    "rpm",
    "tpm",
    "priority",
    "weight",
    "timeout",
    "enabled",
)


# What a new backend gets for each field it leaves out (the admin API and the dashboard form).
NEW_BACKEND_DEFAULTS: dict[str, object] = {
    "api_key": "",
    "pool": "primary",
    "models": (),
    "rpm": None,
    "tpm": None,
    "priority": 0,
    "weight": 1,
    "timeout": 60.0,
    "enabled": True,
}


class InvalidBackend(ValueError):
    """A backend definition is wrong; `field` names the offending field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A model name a client may ask for, and the name sent upstream."""

    name: str
    upstream: str


@dataclass(frozen=True, slots=True)
class BackendSpec:
    name: str
    base_url: str
    api_key: str = ""  # plaintext only in memory; sealed at rest
    pool: str = "primary"
    models: tuple[ModelRoute, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    priority: int = 0
    weight: int = 1
    timeout: float = 60.0  # seconds to response headers
    enabled: bool = True
    routes: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", {m.name: m.upstream for m in self.models})

    def upstream_model(self, requested: str) -> str | None:
        """The upstream name for a requested model, or None when this backend does not serve it."""
        return self.routes.get(requested)


def _describe(value: object) -> str:
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def _fail(name: str, value: object, expected: str) -> InvalidBackend:
    return InvalidBackend(name, f"{name} has value {_describe(value)}; expected {expected}")


def _int(name: str, value: object, *, minimum: int, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(name, value, f"an integer >= {minimum}" + (" or null" if optional else ""))
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise _fail(name, value, f"an integer >= {minimum}")
    if value < minimum:
        raise _fail(name, value, f"an integer >= {minimum}")
    return int(value)


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail("name", value, "a non-empty string")
    if len(value) > 64 or any(c in value for c in "/?#\\") or value != value.strip():
        raise _fail("name", value, "at most 64 characters without '/', '?', '#', '\\' or surrounding spaces")
    return value


def validate_base_url(value: object) -> str:
    """Only http(s) URLs with a host, never a cloud metadata address; trailing slash removed."""
    if not isinstance(value, str):
        raise _fail("base_url", value, "an http:// or https:// URL")
    try:
        parts = urlsplit(value.strip())
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _fail("base_url", value, "an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _fail("base_url", value, "an http:// or https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise _fail("base_url", value, "a URL without credentials, query or fragment")
    if _is_metadata_address(host):
        raise InvalidBackend("base_url", f"base_url has value '{value}'; cloud metadata addresses are refused")
    return value.strip().rstrip("/")


def _is_metadata_address(host: str) -> bool:
    """A metadata name, or an address that reaches a link-local or metadata IP in any spelling."""
    name = host.strip("[]").rstrip(".")  # "metadata.google.internal." is the same name
    if name in _METADATA_HOSTS:
        return True
    address = _ip_of(name)
    return address is not None and (str(address) in _METADATA_HOSTS or address.is_link_local)


def _ip_of(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP a literal stands for, as the resolver reads it, IPv4 inside IPv6 unwrapped; None for a name.

    getaddrinfo takes the legacy IPv4 forms too (0xa9fea9fe, 2852039166, 0251.0376.0251.0376,
    169.254.43518) and connects to ::ffff:a.b.c.d or NAT64's 64:ff9b::a.b.c.d as to a.b.c.d.
    """
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(name)
    except ValueError:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _models(value: object) -> tuple[ModelRoute, ...]:
    expected = 'a list of model names or {name = "...", upstream = "..."} tables'
    if not isinstance(value, list | tuple):
        raise _fail("models", value, expected)
    routes: list[ModelRoute] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        name: object
        upstream: object
        if isinstance(item, str):
            name, upstream = item, item
        elif isinstance(item, Mapping):
            unknown = set(item) - {"name", "upstream"}
            if unknown:
                raise InvalidBackend(f"models[{i}]", f"models[{i}] has unknown key '{sorted(unknown)[0]}'")
            name, upstream = item.get("name"), item.get("upstream", item.get("name"))
        else:
            raise _fail(f"models[{i}]", item, expected)
        for label, text in (("name", name), ("upstream", upstream)):
            if not isinstance(text, str) or not text.strip() or len(text) > 200:
                raise _fail(f"models[{i}].{label}", text, "a non-empty string")
        assert isinstance(name, str) and isinstance(upstream, str)
        if name in seen:
            raise InvalidBackend(f"models[{i}]", f"models[{i}] repeats the model '{name}'")
        seen.add(name)
        routes.append(ModelRoute(name, upstream))
    return tuple(routes)


def resolve_api_key(value: object, environ: Mapping[str, str]) -> str:
    """A literal key, or `env:NAME` read from the environment."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail("api_key", "<hidden>", "a string (a key or env:VARIABLE)")
    if value.startswith("env:"):
        variable = value[4:]
        if variable not in environ:
            raise InvalidBackend("api_key", f"api_key refers to environment variable {variable}, which is not set")
        return environ[variable]
    return value


def validate_backend_fields(
    raw: Mapping[str, object], environ: Mapping[str, str], *, partial: bool
) -> dict[str, object]:
    """Check each field present in `raw`; with partial=False, `name` and `base_url` are required.

    Returns the normalized values (api_key resolved, models as ModelRoute tuples).
    """
    unknown = [k for k in raw if k not in BACKEND_FIELDS]
    if unknown:
        raise InvalidBackend(unknown[0], f"unknown field '{unknown[0]}' (known: {', '.join(BACKEND_FIELDS)})")
    if not partial:
        for required in ("name", "base_url"):
            if required not in raw:
                raise InvalidBackend(required, f"{required} is required")
    out: dict[str, object] = {}
    for key, value in raw.items():
        if key == "name":
            out[key] = _name(value)
        elif key == "base_url":
            out[key] = validate_base_url(value)
        elif key == "api_key":
            out[key] = resolve_api_key(value, environ)
        elif key == "pool":
            if value not in POOLS:
                raise _fail("pool", value, "'primary' or 'fallback'")
            out[key] = value
        elif key == "models":
            out[key] = _models(value)
        elif key in ("rpm", "tpm"):
            out[key] = _int(key, value, minimum=1, optional=True)
        elif key == "priority":
            out[key] = _int(key, value, minimum=0, optional=False)
        elif key == "weight":
            out[key] = _int(key, value, minimum=1, optional=False)
        elif key == "timeout":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
                raise _fail("timeout", value, "a number of seconds in (0, 3600]")
            out[key] = float(value)
        elif key == "enabled":
            if not isinstance(value, bool):
                raise _fail("enabled", value, "true or false")
            out[key] = value
    return out


def backend_from_fields(fields: Mapping[str, object]) -> BackendSpec:
    return BackendSpec(**fields)  # type: ignore[arg-type]
