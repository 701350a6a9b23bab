"""Run `embedlimit simulate` in its own process for `bench/compare.py`, and read its counters.

A fresh simulator serves each run, so every client starts with full rate-limit buckets and the
counters count that run alone. The simulator runs in real time (no `--time-scale`), because
most peers sleep in real seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class SimulatorSpec:
    """The limits, latency and faults of one simulator run; rpm or tpm 0 disables that limit."""

    rpm: int
    tpm: int
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    fault_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def arguments(self) -> list[str]:
        arguments = [
            "--rpm", str(self.rpm),
            "--tpm", str(self.tpm),
            "--latency-ms", str(self.latency_ms),
            "--latency-jitter-ms", str(self.latency_jitter_ms),
            "--seed", str(self.seed),
        ]
        for kind, rate in sorted(self.fault_rates.items()):
            arguments += ["--fault-rate", f"{kind}={rate}"]
        return arguments


class SimulatorProcess:
    """One `embedlimit simulate` process on 127.0.0.1 that accepts only `key`."""

    def __init__(self, spec: SimulatorSpec, key: str) -> None:
        self.spec = spec
        self.key = key
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> SimulatorProcess:
        environment = {**os.environ, "OPENAI_API_KEY": self.key}
        command = [sys.executable, "-m", "embedlimit", "simulate", "--host", "127.0.0.1", "--port", "0"]
        self._process = subprocess.Popen(
            command + self.spec.arguments(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=environment,
        )
        assert self._process.stdout is not None
        first_line = self._process.stdout.readline().strip()
        if not first_line.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"embedlimit simulate printed {first_line!r} instead of its base URL")
        self.base_url = first_line
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stats(self) -> dict[str, Any]:
        """Return the simulator's counters from `GET /stats`."""
        with urllib.request.urlopen(f"{self.root_url}/stats", timeout=10) as response:
            stats: dict[str, Any] = json.loads(response.read())
        return stats

    def stop(self) -> None:
        """Stop the process with SIGINT, then SIGKILL if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
