"""`Simulator`: the simulator application served on a local port, as an async context manager."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from aiohttp import web

from embedlimit._clock import Clock
from embedlimit.testing._config import SimulatorConfig
from embedlimit.testing._faults import Faults
from embedlimit.testing._server import STATE_KEY, SimulatorState, create_app
from embedlimit.testing._stats import SimulatorStats
from embedlimit.testing._vectors import vector_for

__all__ = ["Simulator"]

logger = logging.getLogger(__name__)

# Seconds that stopping waits for requests still being served before it cancels them. A HANG
# fault or a latency sleep wakes up as soon as stopping begins, so this is rarely reached.
_SHUTDOWN_TIMEOUT = 5.0


class Simulator:
    """An OpenAI-compatible embeddings server on 127.0.0.1, started by `async with` or `start()`.

    Pass a `SimulatorConfig`, keyword arguments naming its fields, or both (the keywords win):

        async with Simulator(rpm=3000, tpm=1_000_000, keys=["sk-test-1"], time_scale=60) as sim:
            client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-test-1")
    """

    def __init__(self, config: SimulatorConfig | None = None, /, **options: Any) -> None:
        self.app = create_app(config, **options)
        self._state: SimulatorState = self.app[STATE_KEY]
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def config(self) -> SimulatorConfig:
        return self._state.config

    @property
    def clock(self) -> Clock:
        """The clock the simulator reads time through; share it with a client to agree on durations."""
        return self._state.clock

    @property
    def faults(self) -> Faults:
        """The fault script and rates, changeable while the simulator serves."""
        return self._state.faults

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not running; use `async with Simulator(...)` or await start()")
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL, such as `http://127.0.0.1:PORT`."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give a client, such as `http://127.0.0.1:PORT/v1`."""
        return f"{self.url}/v1"

    @property
    def azure_endpoint(self) -> str:
        """The Azure OpenAI endpoint to give a client; requests go to `/openai/deployments/...`."""
        return self.url

    async def start(self) -> None:
        """Start listening on the configured host and port (port 0 picks a free port)."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        runner = web.AppRunner(self.app, shutdown_timeout=_SHUTDOWN_TIMEOUT, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = _bound_port(runner)
        logger.info("simulator listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and end the requests in flight; calling it twice is harmless."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await runner.cleanup()
        logger.info("simulator on port %s stopped", self._port)
        self._port = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()

    def stats(self) -> SimulatorStats:
        """Return a snapshot of the counters."""
        return self._state.stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters, including the per-text embed counts."""
        self._state.stats.reset()

    def reset_limits(self) -> None:
        """Refill every rate-limit bucket, as if no request had been sent."""
        self._state.reset_limits()

    def embed_counts(self) -> dict[str, int]:
        """Return how many times each text was embedded intact, keyed by `input_key(text)`."""
        return self._state.stats.embed_counts()

    def embed_count(self, text: str) -> int:
        """Return how many times `text` was embedded intact."""
        return self._state.stats.embed_count(text)

    def set_quota_exhausted(self, key: str, exhausted: bool = True) -> None:
        """Make `key` get 429 `insufficient_quota` (or serve it again with False)."""
        self._state.quota.set_exhausted(key, exhausted)

    def expected_vector(self, text: str, model: str, dimensions: int | None = None) -> list[float]:
        """Return the vector this simulator sends for `text` with `model`, which may be a custom model."""
        spec = self.config.models.get(model)
        if spec is None:
            raise ValueError(f"unknown model {model!r}; this simulator serves {', '.join(sorted(self.config.models))}")
        return vector_for(text, spec.dimension, dimensions)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            port: int = address[1]
            return port
    raise RuntimeError(f"the simulator bound no TCP port; runner addresses: {runner.addresses!r}")
