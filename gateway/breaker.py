"""Circuit breakers for backends that fail transiently (5xx, 529, resets, refusals, header timeouts).

Closed: every request may go. After `failure_threshold` consecutive failures the
circuit opens for `base_open_s`; when that ends it is half-open, and exactly one probe
request may go. The probe's success closes the circuit; its failure re-opens it for
twice as long, up to `max_open_s`, so a backend that recovers is used again within
seconds while one that stays down costs one request per period.

Pure: every method that needs time takes `now`, monotonic seconds. The shell must
report each request `allow` let through with `on_success`, `on_failure` or, when it
ended without a verdict (client gone), `release_probe`, or a half-open circuit would
wait for its probe forever.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass(slots=True)
class _Circuit:
    failures: int = 0  # consecutive failures while closed
    open_until: float | None = None  # None while closed; half-open once now >= open_until
    open_s: float = 0.0  # length of the current (or last) open period
    opened_at: float = 0.0
    probing: bool = False  # the half-open probe is in flight


class CircuitBreakers:
    """One circuit per backend name; a backend never seen is closed."""

    def __init__(self, failure_threshold: int = 3, max_open_s: float = 30.0, base_open_s: float = 2.0) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold!r}")
        if not (base_open_s > 0 and max_open_s > 0):
            raise ValueError(f"open periods must be positive, not {base_open_s!r} and {max_open_s!r}")
        self.failure_threshold = failure_threshold
        self.max_open_s = max_open_s
        self.base_open_s = base_open_s
        self._circuits: dict[str, _Circuit] = {}

    def allow(self, name: str, now: float) -> bool:
        """Whether a request may go to `name` now; in half-open, True once, for the probe."""
        circuit = self._circuits.get(name)
        if circuit is None or circuit.open_until is None:
            return True
        if now < circuit.open_until or circuit.probing:
            return False
        circuit.probing = True
        return True

    def on_failure(self, name: str, now: float) -> None:
        """Count a transient failure of `name`; opens or re-opens its circuit as due."""
        circuit = self._circuits.setdefault(name, _Circuit())
        if circuit.open_until is None:
            circuit.failures += 1
            if circuit.failures >= self.failure_threshold:
                self._open(circuit, now, min(self.base_open_s, self.max_open_s))
        elif now >= circuit.open_until:
            self._open(circuit, now, min(circuit.open_s * 2.0, self.max_open_s))
        # Already open: a request sent before the circuit opened failed late; that is no news.

    def on_success(self, name: str, started_at: float | None = None) -> None:
        """Close `name`'s circuit and reset its failure count.

        `started_at` (monotonic seconds the request was sent) keeps a long request that
        began before the circuit opened, say a stream, from closing it: only a request
        sent since then shows the backend has recovered. Without it, the success counts.
        """
        circuit = self._circuits.get(name)
        if circuit is None:
            return
        if circuit.open_until is not None and started_at is not None and started_at < circuit.opened_at:
            return
        del self._circuits[name]

    def release_probe(self, name: str) -> None:
        """The probe ended without a verdict (e.g. the client went away): allow another one."""
        circuit = self._circuits.get(name)
        if circuit is not None:
            circuit.probing = False

    def state(self, name: str, now: float) -> str:
        """The circuit's state: "closed", "open" or "half_open"."""
        circuit = self._circuits.get(name)
        if circuit is None or circuit.open_until is None:
            return CLOSED
        return OPEN if now < circuit.open_until else HALF_OPEN

    def open_until(self, name: str) -> float | None:
        """Monotonic seconds when `name`'s open period ends (a past value: half-open); None when closed."""
        circuit = self._circuits.get(name)
        return None if circuit is None else circuit.open_until

    def forget(self, name: str) -> None:
        """Drop `name`'s circuit (the backend was deleted or edited)."""
        self._circuits.pop(name, None)

    def _open(self, circuit: _Circuit, now: float, open_s: float) -> None:
        circuit.failures = 0
        circuit.open_s = open_s
        circuit.opened_at = now
        circuit.open_until = now + open_s
        circuit.probing = False
