from __future__ import annotations

import math

import pytest

from gateway.pricing import BUILTIN_PRICES, Price, cost_usd, find_price, validate_price
from gateway.usage import Usage

# --- find_price ----------------------------------------------------------------------


def test_exact_builtin_match():
    assert find_price("gpt-4o-mini", {}) == (Price(0.15, 0.60, 0.075), "builtin")
    assert find_price("text-embedding-3-small", {}) == (Price(0.02, 0.0), "builtin")


def test_override_beats_builtin_on_exact_match():
    cheap = Price(0.01, 0.02)
    assert find_price("gpt-4o-mini", {"gpt-4o-mini": cheap}) == (cheap, "override")


def test_dated_snapshot_takes_the_longest_prefix():
    assert find_price("gpt-4o-mini-2024-07-18", {}) == (BUILTIN_PRICES["gpt-4o-mini"], "builtin")
    assert find_price("gpt-4o-2024-08-06", {}) == (BUILTIN_PRICES["gpt-4o"], "builtin")
    assert find_price("o3-mini-2025-01-31", {}) == (BUILTIN_PRICES["o3-mini"], "builtin")
    assert find_price("o3-2025-04-16", {}) == (BUILTIN_PRICES["o3"], "builtin")
    assert find_price("claude-3-5-haiku-20241022", {}) == (BUILTIN_PRICES["claude-3-5-haiku"], "builtin")
    assert find_price("claude-opus-4-1-20250805", {}) == (BUILTIN_PRICES["claude-opus-4"], "builtin")
    assert find_price("gpt-4.1-nano-2025-04-14", {}) == (BUILTIN_PRICES["gpt-4.1-nano"], "builtin")


def test_exact_snapshot_entry_beats_its_family_prefix():
    assert find_price("gpt-4o-2024-05-13", {}) == (Price(5.00, 15.00), "builtin")


def test_prefix_must_be_followed_by_a_dash():
    assert find_price("gpt-4omni", {}) == (None, "unknown")
    assert find_price("o3x", {}) == (None, "unknown")
    # "gpt-4.1" is not a dash-prefix of "gpt-4.10", nor "gpt-4" of "gpt-4.1-preview".
    assert find_price("gpt-4.10", {}) == (None, "unknown")
    assert find_price("gpt-4.1-preview", {}) == (BUILTIN_PRICES["gpt-4.1"], "builtin")


def test_longer_builtin_prefix_beats_shorter_override_prefix():
    overrides = {"gpt-4o": Price(1.0, 1.0)}
    assert find_price("gpt-4o-mini-2024-07-18", overrides) == (BUILTIN_PRICES["gpt-4o-mini"], "builtin")
    assert find_price("gpt-4o-2024-11-20", overrides) == (Price(1.0, 1.0), "override")


def test_override_wins_a_prefix_tie():
    overrides = {"gpt-4o-mini": Price(0.5, 0.5)}
    assert find_price("gpt-4o-mini-2024-07-18", overrides) == (Price(0.5, 0.5), "override")


def test_provider_prefix_is_stripped():
    assert find_price("openai/gpt-4o-mini", {}) == (BUILTIN_PRICES["gpt-4o-mini"], "builtin")
    assert find_price("openrouter/anthropic/claude-3-5-sonnet-20241022", {}) == (
        BUILTIN_PRICES["claude-3-5-sonnet"],
        "builtin",
    )


def test_override_with_provider_prefix_matches_exactly_first():
    routed = Price(3.0, 3.0)
    assert find_price("openai/gpt-4o", {"openai/gpt-4o": routed}) == (routed, "override")
    # Without the override the bare name's built-in price applies.
    assert find_price("openai/gpt-4o", {"azure/gpt-4o": routed}) == (BUILTIN_PRICES["gpt-4o"], "builtin")


def test_full_name_match_beats_stripped_name_match():
    table = {"openai/gpt-4o": Price(9.0, 9.0)}
    overrides = {"gpt-4o": Price(1.0, 1.0)}
    assert find_price("openai/gpt-4o", overrides, builtin=table) == (Price(9.0, 9.0), "builtin")
    assert find_price("azure/gpt-4o", overrides, builtin=table) == (Price(1.0, 1.0), "override")


def test_matching_ignores_case_and_surrounding_spaces():
    assert find_price("GPT-4o-Mini", {}) == (BUILTIN_PRICES["gpt-4o-mini"], "builtin")
    assert find_price(" gpt-4o ", {}) == (BUILTIN_PRICES["gpt-4o"], "builtin")
    assert find_price("meta-llama/Llama-3.3-70B-Versatile", {}) == (BUILTIN_PRICES["llama-3.3-70b"], "builtin")
    assert find_price("my-model", {"My-Model": Price(1.0, 2.0)}) == (Price(1.0, 2.0), "override")


@pytest.mark.parametrize("model", ["", "/", "openai/", "unknown-model", "mistral", "gpt"])
def test_unknown_models(model):
    assert find_price(model, {}) == (None, "unknown")


def test_custom_builtin_table():
    table = {"a": Price(1.0, 1.0), "a-b": Price(2.0, 2.0)}
    assert find_price("a-b-c", {}, builtin=table) == (Price(2.0, 2.0), "builtin")
    assert find_price("a-c", {}, builtin=table) == (Price(1.0, 1.0), "builtin")
    assert find_price("gpt-4o", {}, builtin=table) == (None, "unknown")


def test_empty_override_key_matches_nothing():
    assert find_price("-x", {"": Price(1.0, 1.0)}) == (None, "unknown")


def test_builtin_prices_are_sane():
    required = {
        "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini", "o4-mini",
        "gpt-3.5-turbo", "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
        "claude-3-5-haiku", "claude-3-5-sonnet", "claude-3-7-sonnet", "claude-sonnet-4", "claude-opus-4",
        "deepseek-chat", "deepseek-reasoner",
    }  # fmt: skip
    assert required <= BUILTIN_PRICES.keys()
    for model, price in BUILTIN_PRICES.items():
        assert model == model.lower(), model
        assert 0 <= price.input_per_mtok < 200, model
        assert 0 <= price.output_per_mtok < 700, model
        if price.cached_input_per_mtok is not None:
            assert 0 <= price.cached_input_per_mtok <= price.input_per_mtok, model
        assert validate_price(price.as_dict()) == price


# --- cost_usd ------------------------------------------------------------------------


def test_cost_with_cached_price():
    usage = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200)
    # 800 x 2.50 + 200 x 1.25 + 500 x 10.00 = 7250 USD per million
    assert cost_usd(usage, Price(2.50, 10.00, 1.25)) == pytest.approx(0.00725)


def test_cost_without_cached_price_bills_cached_tokens_as_input():
    usage = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200)
    assert cost_usd(usage, Price(2.50, 10.00)) == pytest.approx(0.0075)


def test_cost_of_a_million_tokens_is_the_list_price():
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert cost_usd(usage, Price(0.15, 0.60)) == pytest.approx(0.75)


def test_free_cached_input_price_is_not_replaced_by_input_price():
    usage = Usage(prompt_tokens=100, cached_tokens=100)
    assert cost_usd(usage, Price(1.0, 1.0, 0.0)) == 0.0


def test_cost_clamps_cached_tokens_to_prompt_tokens():
    usage = Usage(prompt_tokens=100, completion_tokens=0, cached_tokens=500)
    assert cost_usd(usage, Price(10.0, 0.0, 1.0)) == pytest.approx(100 * 1.0 / 1e6)


def test_cost_of_unknown_price_and_of_no_usage_is_zero():
    assert cost_usd(Usage(prompt_tokens=10_000, completion_tokens=10_000), None) == 0.0
    assert cost_usd(Usage(), Price(5.0, 15.0)) == 0.0


def test_cost_of_a_real_looking_request_end_to_end():
    price, source = find_price("gpt-4o-mini-2024-07-18", {})
    usage = Usage(prompt_tokens=2000, completion_tokens=300, cached_tokens=1024)
    # 976 x 0.15 + 1024 x 0.075 + 300 x 0.60 = 146.4 + 76.8 + 180 = 403.2 USD per million
    assert source == "builtin"
    assert cost_usd(usage, price) == pytest.approx(0.0004032)


# --- validate_price ------------------------------------------------------------------


def test_validate_full_price():
    raw = {"input_per_mtok": 0.15, "output_per_mtok": 0.6, "cached_input_per_mtok": 0.075}
    assert validate_price(raw) == Price(0.15, 0.6, 0.075)


def test_validate_price_with_cached_absent_or_null():
    assert validate_price({"input_per_mtok": 1, "output_per_mtok": 2}) == Price(1.0, 2.0, None)
    assert validate_price({"input_per_mtok": 1, "output_per_mtok": 2, "cached_input_per_mtok": None}) == Price(
        1.0, 2.0, None
    )


def test_validate_price_converts_ints_to_floats():
    price = validate_price({"input_per_mtok": 3, "output_per_mtok": 0, "cached_input_per_mtok": 0})
    assert (type(price.input_per_mtok), type(price.output_per_mtok), type(price.cached_input_per_mtok)) == (
        float,
        float,
        float,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"input_per_mtok": "abc", "output_per_mtok": 1}, "input_per_mtok must be a non-negative number, got 'abc'"),
        ({"input_per_mtok": 1, "output_per_mtok": True}, "output_per_mtok must be a non-negative number, got True"),
        ({"input_per_mtok": -0.5, "output_per_mtok": 1}, "input_per_mtok must be a non-negative number, got -0.5"),
        ({"input_per_mtok": math.nan, "output_per_mtok": 1}, "input_per_mtok must be a non-negative number, got nan"),
        ({"input_per_mtok": 1, "output_per_mtok": math.inf}, "output_per_mtok must be a non-negative number, got inf"),
        ({"input_per_mtok": None, "output_per_mtok": 1}, "input_per_mtok must be a non-negative number, got None"),
        ({"input_per_mtok": 1, "output_per_mtok": [2]}, "output_per_mtok must be a non-negative number, got [2]"),
        (
            {"input_per_mtok": 1, "output_per_mtok": 2, "cached_input_per_mtok": "0.1"},
            "cached_input_per_mtok must be a non-negative number, got '0.1'",
        ),
        (
            {"input_per_mtok": 1, "output_per_mtok": 2, "cached_input_per_mtok": False},
            "cached_input_per_mtok must be a non-negative number, got False",
        ),
        (
            {"input_per_mtok": 10**400, "output_per_mtok": 2},
            "input_per_mtok must be a non-negative number, got 1000",  # the repr starts with the digits
        ),
        ({"output_per_mtok": 1}, "input_per_mtok is required"),
        ({"input_per_mtok": 1}, "output_per_mtok is required"),
        (
            {"input_per_mtok": 1, "output_per_mtok": 2, "currency": "EUR"},
            "unknown field 'currency'; expected only input_per_mtok, output_per_mtok, cached_input_per_mtok",
        ),
        (
            {"input_per_mtok": 1, "output_per_mtok": 2, "b": 1, "a": 2},
            "unknown fields 'a', 'b';",
        ),
        ([0.15, 0.6], "price must be a JSON object, got list"),
        ("0.15", "price must be a JSON object, got str"),
        (None, "price must be a JSON object, got NoneType"),
    ],
)
def test_validate_price_errors_name_the_field(raw, message):
    with pytest.raises(ValueError) as excinfo:
        validate_price(raw)
    assert str(excinfo.value).startswith(message)
