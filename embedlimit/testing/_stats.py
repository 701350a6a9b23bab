"""Counters of what a simulator served, for tests and for `GET /stats`."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SimulatorStats", "StatsRecorder", "input_key"]


def input_key(text: str) -> str:
    """Return the key under which `embed_counts` counts a text: 16 hex digits of its BLAKE2b hash."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class SimulatorStats:
    """A snapshot of a simulator's counters since it started or was last reset.

    `inputs_embedded` counts inputs whose vector reached the response intact. `rate_limited`
    counts 429s by type (`requests`, `tokens`, `insufficient_quota`). `distinct_inputs` and
    `repeated_inputs` count texts embedded at least once and more than once.
    """

    requests: int
    requests_by_status: dict[int, int]
    inputs_embedded: int
    tokens_accepted: int
    rate_limited: dict[str, int]
    faults_injected: dict[str, int]
    peak_concurrency: int
    in_flight: int
    distinct_inputs: int
    repeated_inputs: int

    def to_dict(self) -> dict[str, Any]:
        """Return the counters as JSON-ready values (status codes become string keys)."""
        values = asdict(self)
        values["requests_by_status"] = {str(status): count for status, count in self.requests_by_status.items()}
        return values


class StatsRecorder:
    """The mutable counters behind `SimulatorStats`.

    With `track_inputs`, each embedded text is counted under `input_key(text)`. That map grows by
    one entry of about 100 bytes per distinct text, so turn it off for runs of many millions.
    """

    def __init__(self, *, track_inputs: bool = True) -> None:
        self.track_inputs = track_inputs
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero every counter; requests in flight stay counted as in flight."""
        self._by_status: Counter[int] = Counter()
        self._rate_limited: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._embed_counts: Counter[str] = Counter()
        self.inputs_embedded = 0
        self.tokens_accepted = 0
        self.peak_concurrency = self.in_flight

    def request_started(self) -> None:
        self.in_flight += 1
        self.peak_concurrency = max(self.peak_concurrency, self.in_flight)

    def request_finished(self, status: int) -> None:
        self.in_flight -= 1
        self._by_status[status] += 1

    def rate_limited(self, limit_type: str) -> None:
        self._rate_limited[limit_type] += 1

    def fault_injected(self, kind: str) -> None:
        self._faults[kind] += 1

    def tokens_charged(self, tokens: int) -> None:
        self.tokens_accepted += tokens

    def inputs_delivered(self, texts: Iterable[str]) -> None:
        """Count texts whose vectors were sent intact."""
        if not self.track_inputs:
            self.inputs_embedded += sum(1 for _ in texts)
            return
        keys = [input_key(text) for text in texts]
        self.inputs_embedded += len(keys)
        self._embed_counts.update(keys)

    def embed_counts(self) -> dict[str, int]:
        return dict(self._embed_counts)

    def embed_count(self, text: str) -> int:
        return self._embed_counts.get(input_key(text), 0)

    def snapshot(self) -> SimulatorStats:
        return SimulatorStats(
            requests=sum(self._by_status.values()),
            requests_by_status=dict(sorted(self._by_status.items())),
            inputs_embedded=self.inputs_embedded,
            tokens_accepted=self.tokens_accepted,
            rate_limited=dict(self._rate_limited),
            faults_injected=dict(self._faults),
            peak_concurrency=self.peak_concurrency,
            in_flight=self.in_flight,
            distinct_inputs=len(self._embed_counts),
            repeated_inputs=sum(1 for count in self._embed_counts.values() if count > 1),
        )
