"""Faults the simulator injects into accepted requests, by script or at random with a seeded RNG.

A fault applies to a request that passed authentication, validation, the quota and the rate
limits, so it has been charged like any accepted request. Scripted faults come first, one per
request in order. When the script is empty, each request draws at most one fault from `rates`.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Iterable, Mapping

__all__ = ["FaultKind", "Faults"]


class FaultKind(str, enum.Enum):
    """One way a response can go wrong."""

    HTTP_500 = "http_500"
    """500 with OpenAI's `server_error` body."""
    HTTP_502 = "http_502"
    """502 with an HTML body, as a proxy in front of the API sends it."""
    HTTP_503 = "http_503"
    """503 with OpenAI's "overloaded" `server_error` body."""
    CONNECTION_RESET = "connection_reset"
    """The connection is reset without any response."""
    HANG = "hang"
    """The response is held back for `Faults.hang_delay` simulated seconds, then sent."""
    MALFORMED_JSON = "malformed_json"
    """200 with a JSON body cut off in the middle."""
    MISSING_VECTORS = "missing_vectors"
    """200 with one vector fewer than inputs (the last one is left out)."""
    SHUFFLED_INDEX = "shuffled_index"
    """200 with every vector correct, but `data` not in `index` order."""
    NAN_VECTOR = "nan_vector"
    """200 where one vector's components are all NaN."""
    NULL_VECTOR = "null_vector"
    """200 where one vector is `null`."""
    EMPTY_VECTOR = "empty_vector"
    """200 where one vector is empty (`[]`, or `""` in base64)."""


class Faults:
    """The fault script and fault rates of one simulator; safe to change while it serves.

    `rates` maps a fault to the probability that a request gets it; the probabilities must add up
    to at most 1. `hang_delay` is how long a HANG fault delays a response, in simulated seconds.
    """

    def __init__(
        self,
        rates: Mapping[FaultKind, float] | Mapping[str, float] | None = None,
        *,
        seed: int = 0,
        hang_delay: float = 600.0,
    ) -> None:
        self._random = random.Random(seed)
        self._script: deque[FaultKind | None] = deque()
        self._rates: dict[FaultKind, float] = {}
        self.hang_delay = hang_delay
        self.set_rates(rates or {})

    @property
    def rates(self) -> dict[FaultKind, float]:
        """A copy of the current fault rates."""
        return dict(self._rates)

    def set_rates(self, rates: Mapping[FaultKind, float] | Mapping[str, float]) -> None:
        """Replace every fault rate; raise ValueError for a rate outside 0..1 or a total above 1."""
        parsed = {FaultKind(kind): float(rate) for kind, rate in rates.items()}
        for kind, rate in parsed.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {kind.value} must be between 0 and 1, got {rate}")
        total = sum(parsed.values())
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:g}; they must add up to at most 1")
        self._rates = {kind: rate for kind, rate in parsed.items() if rate > 0}

    def set_rate(self, kind: FaultKind | str, rate: float) -> None:
        """Set the rate of one fault, keeping the others."""
        rates = dict(self._rates)
        rates[FaultKind(kind)] = rate
        self.set_rates(rates)

    def enqueue(self, *kinds: FaultKind | str | None) -> None:
        """Append faults to the script; None lets one request through unharmed."""
        self._script.extend(None if kind is None else FaultKind(kind) for kind in kinds)

    def enqueue_many(self, kinds: Iterable[FaultKind | str | None]) -> None:
        self.enqueue(*kinds)

    def clear(self) -> None:
        """Drop the script and every rate."""
        self._script.clear()
        self._rates = {}

    @property
    def pending(self) -> int:
        """How many scripted entries are still waiting for a request."""
        return len(self._script)

    def next_fault(self) -> FaultKind | None:
        """Return the fault for the next request: the script's head, else a seeded random draw."""
        if self._script:
            return self._script.popleft()
        if not self._rates:
            return None

        draw = self._random.random()
        for kind, rate in self._rates.items():
            if draw < rate:
                return kind
            draw -= rate
        return None

    def random_index(self, count: int) -> int:
        """Pick which input a one-vector fault damages, with this simulator's seeded RNG."""
        return self._random.randrange(count) if count > 1 else 0

    def shuffle(self, items: list[int]) -> None:
        """Shuffle with this simulator's seeded RNG, so a SHUFFLED_INDEX order is reproducible."""
        self._random.shuffle(items)
