"""Simulator lifecycle, configuration checks and use as a plain aiohttp application."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from embedlimit._clock import LoopClock, ScaledClock
from embedlimit.testing import EmbeddingModel, Simulator, SimulatorConfig, create_app
from embedlimit.testing._vectors import vector_for
from tests.simulator_support import KEY, MODEL, ManualClock, post_embeddings


async def test_urls_and_clock() -> None:
    async with Simulator(time_scale=60.0) as sim:
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/v1"
        assert sim.azure_endpoint == f"http://127.0.0.1:{sim.port}"
        assert isinstance(sim.clock, ScaledClock)
        assert sim.clock.scale == 60.0
    assert isinstance(Simulator().clock, LoopClock)


async def test_port_needs_running_simulator() -> None:
    sim = Simulator()
    with pytest.raises(RuntimeError, match="not running"):
        _ = sim.port
    await sim.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            await sim.start()
    finally:
        await sim.stop()
    await sim.stop()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rpm": 0}, "rpm must be at least 1"),
        ({"tpm": -5}, "tpm must be at least 1"),
        ({"request_window": 0.0}, "request_window must be positive"),
        ({"time_scale": 60.0, "clock": LoopClock()}, "either clock or time_scale"),
        ({"latency_base": -1.0}, "latency_base must be zero or more"),
    ],
)
def test_config_rejects_invalid_values(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**options)  # type: ignore[arg-type]


def test_unknown_option_rejected() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'rpn'"):
        Simulator(rpn=10)


async def test_create_app_under_test_server() -> None:
    app = create_app(SimulatorConfig(keys=[KEY]), clock=ManualClock())
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        reply = await post_embeddings(session, str(server.make_url("/v1/embeddings")), {"model": MODEL, "input": "a"})
    assert reply.status == 200


async def test_custom_model_list() -> None:
    models = {"tiny-embedder": EmbeddingModel("tiny-embedder", 16)}
    async with Simulator(keys=[KEY], clock=ManualClock(), models=models) as sim, aiohttp.ClientSession() as session:
        url = f"{sim.base_url}/embeddings"
        tiny = await post_embeddings(session, url, {"model": "tiny-embedder", "input": "a"})
        default = await post_embeddings(session, url, {"model": MODEL, "input": "a"})
        vector = sim.expected_vector("a", "tiny-embedder")
    assert len(tiny.body["data"][0]["embedding"]) == 16
    assert tiny.body["data"][0]["embedding"] == pytest.approx(vector, abs=1e-7)
    assert vector == pytest.approx(vector_for("a", 16), abs=1e-7)
    assert default.status == 404
