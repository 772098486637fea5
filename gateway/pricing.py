"""Model prices and the cost of a request's usage. Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.usage import Usage

PriceSource = Literal["override", "builtin", "unknown"]

_TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. Cached input costs the same as input when its price is None."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        """The JSON shape of `PUT /api/pricing/{model}`."""
        return {
            "input_per_mtok": self.input_per_mtok,
            "output_per_mtok": self.output_per_mtok,
            "cached_input_per_mtok": self.cached_input_per_mtok,
        }


# List prices (USD per million tokens) published by the providers at the time of writing
# (2025). They change; operators override them with `PUT /api/pricing/{model}`.
# Keys match a model exactly or as a prefix followed by "-" ("gpt-4o-mini-2024-07-18"),
# so dated snapshots need an entry only when their price differs from the family's.
# Cached input is the provider's prompt-cache read price (Anthropic: cache hits).
BUILTIN_PRICES: Mapping[str, Price] = {
    # OpenAI
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-2024-05-13": Price(5.00, 15.00),
    "chatgpt-4o-latest": Price(5.00, 15.00),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o1": Price(15.00, 60.00, 7.50),
    "o1-mini": Price(1.10, 4.40, 0.55),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-pro": Price(20.00, 80.00),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "text-embedding-ada-002": Price(0.10, 0.0),
    # Anthropic
    "claude-3-haiku": Price(0.25, 1.25, 0.03),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08),
    "claude-3-5-sonnet": Price(3.00, 15.00, 0.30),
    "claude-3-7-sonnet": Price(3.00, 15.00, 0.30),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30),
    "claude-3-opus": Price(15.00, 75.00, 1.50),
    "claude-opus-4": Price(15.00, 75.00, 1.50),
    # DeepSeek (standard hours; cache hits are the cached price)
    "deepseek-chat": Price(0.27, 1.10, 0.07),
    "deepseek-reasoner": Price(0.55, 2.19, 0.14),
    # Google (prompts up to the first context tier)
    "gemini-1.5-flash": Price(0.075, 0.30),
    "gemini-1.5-pro": Price(1.25, 5.00),
    "gemini-2.0-flash": Price(0.10, 0.40, 0.025),
    "gemini-2.0-flash-lite": Price(0.075, 0.30),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.075),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.025),
    "gemini-2.5-pro": Price(1.25, 10.00, 0.31),
    # Mistral
    "mistral-large": Price(2.00, 6.00),
    "mistral-small": Price(0.10, 0.30),
    "codestral": Price(0.30, 0.90),
    "open-mistral-nemo": Price(0.15, 0.15),
    # Llama: open weights, so the price is the host's; these are Groq's.
    "llama-3.1-8b": Price(0.05, 0.08),
    "llama-3.3-70b": Price(0.59, 0.79),
}


def _model_names(model: str) -> tuple[str, ...]:
    """The names to look up, most specific first: the model, then without its provider prefix."""
    name = model.strip().lower()
    _, slash, bare = name.rpartition("/")  # "openrouter/openai/gpt-4o" -> "gpt-4o"
    return (name, bare) if slash and bare else (name,)


def find_price(
    model: str,
    overrides: Mapping[str, Price],
    builtin: Mapping[str, Price] = BUILTIN_PRICES,
) -> tuple[Price | None, PriceSource]:
    """The price of a model and where it came from; (None, "unknown") when nothing matches.

    Case-insensitive. An exact name wins (an override before a built-in price), then
    the longest key that is a prefix of the name followed by "-", so a dated snapshot
    takes its family's price. A provider prefix such as "openai/" is also tried without.
    """
    names = _model_names(model)
    best_exact: tuple[tuple[int, int], Price, PriceSource] | None = None
    best_prefix: tuple[tuple[int, int], Price, PriceSource] | None = None
    sources: tuple[tuple[PriceSource, Mapping[str, Price]], ...] = (("override", overrides), ("builtin", builtin))
    for source_rank, (source, prices) in enumerate(sources):
        for key, price in prices.items():
            key = key.lower()
            if not key:
                continue
            for name_rank, name in enumerate(names):
                if name == key:
                    rank = (name_rank, source_rank)
                    if best_exact is None or rank < best_exact[0]:
                        best_exact = (rank, price, source)
                elif name.startswith(key) and name[len(key)] == "-":
                    rank = (-len(key), source_rank)
                    if best_prefix is None or rank < best_prefix[0]:
                        best_prefix = (rank, price, source)
    best = best_exact or best_prefix
    if best is None:
        return None, "unknown"
    return best[1], best[2]


def cost_usd(usage: Usage, price: Price | None) -> float:
    """USD for `usage` at `price`; 0.0 when the price is unknown.

    (prompt - cached) x input + cached x cached_input + completion x output, per million tokens.
    """
    if price is None:
        return 0.0
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    cached_price = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    return (
        (usage.prompt_tokens - cached) * price.input_per_mtok
        + cached * cached_price
        + usage.completion_tokens * price.output_per_mtok
    ) / _TOKENS_PER_MTOK


_REQUIRED_FIELDS = ("input_per_mtok", "output_per_mtok")
_OPTIONAL_FIELDS = ("cached_input_per_mtok",)
_FIELDS = _REQUIRED_FIELDS + _OPTIONAL_FIELDS


class InvalidPrice(ValueError):
    """A price body is wrong; `field` names the offending field (None for the body itself)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


def _price_value(name: str, value: object) -> float:
    # bool is an int subclass: `true` is not a price.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPrice(name, f"{name} must be a non-negative number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise InvalidPrice(name, f"{name} must be a non-negative number, got {value!r}")
    return number


def validate_price(raw: object) -> Price:
    """A Price from a decoded JSON body; InvalidPrice (a ValueError) naming the offending field otherwise.

    `cached_input_per_mtok` may be absent or null; unknown fields are rejected.
    """
    if not isinstance(raw, dict):
        raise InvalidPrice(None, f"price must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in _FIELDS)
    if unknown:
        label = "unknown field" if len(unknown) == 1 else "unknown fields"
        names = ", ".join(repr(key) for key in unknown)
        raise InvalidPrice(unknown[0], f"{label} {names}; expected only {', '.join(_FIELDS)}")
    for name in _REQUIRED_FIELDS:
        if name not in raw:
            raise InvalidPrice(name, f"{name} is required")
    cached = raw.get("cached_input_per_mtok")
    return Price(
        input_per_mtok=_price_value("input_per_mtok", raw["input_per_mtok"]),
        output_per_mtok=_price_value("output_per_mtok", raw["output_per_mtok"]),
        cached_input_per_mtok=None if cached is None else _price_value("cached_input_per_mtok", cached),
    )
