from __future__ import annotations

import pytest

from gateway.breaker import CircuitBreakers


def tripped(now: float = 0.0) -> CircuitBreakers:
    """Breakers whose "a" circuit opened at `now` (for base_open_s = 2)."""
    breakers = CircuitBreakers(failure_threshold=3, max_open_s=30.0, base_open_s=2.0)
    for _ in range(3):
        breakers.on_failure("a", now)
    return breakers


def test_an_unknown_backend_is_closed():
    breakers = CircuitBreakers()
    assert breakers.allow("a", now=0.0)
    assert breakers.allow("a", now=0.0)
    assert breakers.state("a", now=0.0) == "closed"
    assert breakers.open_until("a") is None


def test_opens_after_threshold_consecutive_failures():
    breakers = CircuitBreakers()
    breakers.on_failure("a", 0.0)
    breakers.on_failure("a", 1.0)
    assert breakers.state("a", now=1.0) == "closed"
    assert breakers.allow("a", now=1.0)
    breakers.on_failure("a", 2.0)
    assert breakers.state("a", now=2.0) == "open"
    assert breakers.open_until("a") == pytest.approx(4.0)
    assert not breakers.allow("a", now=2.0)
    assert not breakers.allow("a", now=3.99)
    assert breakers.allow("b", now=3.0)


def test_non_consecutive_failures_do_not_open():
    breakers = CircuitBreakers()
    for now in (0.0, 1.0):
        breakers.on_failure("a", now)
    breakers.on_success("a")
    for now in (2.0, 3.0):
        breakers.on_failure("a", now)
    assert breakers.state("a", now=3.0) == "closed"
    breakers.on_failure("a", 4.0)
    assert breakers.state("a", now=4.0) == "open"


def test_threshold_is_a_parameter():
    breakers = CircuitBreakers(failure_threshold=1)
    breakers.on_failure("a", 0.0)
    assert breakers.state("a", now=0.0) == "open"
    breakers = CircuitBreakers(failure_threshold=5)
    for _ in range(4):
        breakers.on_failure("a", 0.0)
    assert breakers.state("a", now=0.0) == "closed"


def test_half_open_allows_exactly_one_probe():
    breakers = tripped()
    assert breakers.state("a", now=2.0) == "half_open"
    assert breakers.allow("a", now=2.0)
    assert not breakers.allow("a", now=2.0)
    assert not breakers.allow("a", now=100.0)
    assert breakers.state("a", now=100.0) == "half_open"


def test_probe_success_closes():
    breakers = tripped()
    assert breakers.allow("a", now=2.5)
    breakers.on_success("a", started_at=2.5)
    assert breakers.state("a", now=3.0) == "closed"
    assert breakers.open_until("a") is None
    assert breakers.allow("a", now=3.0)
    assert breakers.allow("a", now=3.0)


def test_probe_failure_reopens_for_twice_as_long_up_to_the_cap():
    breakers = tripped()
    now = 2.0
    periods = []
    for _ in range(6):
        now += 0.5  # the probe takes half a second to fail
        assert breakers.allow("a", now=now)
        breakers.on_failure("a", now)
        until = breakers.open_until("a")
        assert until is not None
        periods.append(until - now)
        assert not breakers.allow("a", now=now)
        now = until
    assert periods == pytest.approx([4.0, 8.0, 16.0, 30.0, 30.0, 30.0])


def test_after_closing_the_next_trip_starts_at_the_base_period():
    breakers = tripped()
    breakers.allow("a", now=2.0)
    breakers.on_failure("a", 2.0)  # open for 4 s
    breakers.allow("a", now=6.0)
    breakers.on_success("a", started_at=6.0)
    for _ in range(3):
        breakers.on_failure("a", 10.0)
    assert breakers.open_until("a") == pytest.approx(12.0)


def test_a_closing_circuit_needs_threshold_failures_again():
    breakers = tripped()
    breakers.allow("a", now=2.0)
    breakers.on_success("a")
    breakers.on_failure("a", 3.0)
    breakers.on_failure("a", 3.0)
    assert breakers.state("a", now=3.0) == "closed"


def test_release_probe_allows_another_probe():
    breakers = tripped()
    assert breakers.allow("a", now=2.0)
    breakers.release_probe("a")
    assert breakers.state("a", now=2.0) == "half_open"
    assert breakers.allow("a", now=2.1)
    assert not breakers.allow("a", now=2.1)
    breakers.release_probe("never-seen")


def test_a_late_failure_while_open_does_not_extend():
    breakers = tripped()
    breakers.on_failure("a", 1.0)
    breakers.on_failure("a", 1.5)
    assert breakers.open_until("a") == pytest.approx(2.0)
    assert breakers.state("a", now=2.0) == "half_open"


def test_a_late_success_of_a_request_sent_before_opening_is_ignored():
    breakers = tripped(now=10.0)
    breakers.on_success("a", started_at=9.0)  # a long stream that began before
    assert breakers.state("a", now=11.0) == "open"
    breakers.on_success("a", started_at=10.0)
    assert breakers.state("a", now=11.0) == "closed"


def test_a_success_without_started_at_closes():
    breakers = tripped()
    breakers.on_success("a")
    assert breakers.state("a", now=0.0) == "closed"


def test_max_open_below_base_caps_the_first_period():
    breakers = CircuitBreakers(failure_threshold=1, max_open_s=1.0, base_open_s=2.0)
    breakers.on_failure("a", 0.0)
    assert breakers.open_until("a") == pytest.approx(1.0)


def test_forget():
    breakers = tripped()
    breakers.forget("a")
    breakers.forget("never-seen")
    assert breakers.state("a", now=0.0) == "closed"


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"base_open_s": 0.0}, {"max_open_s": -1.0}, {"base_open_s": float("nan")}],
)
def test_invalid_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        CircuitBreakers(**kwargs)
