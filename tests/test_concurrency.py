"""The AIMD concurrency limit and the gate that enforces it."""

from __future__ import annotations

import asyncio

import pytest

from embedlimit._concurrency import AimdController, ConcurrencyGate, LatencyBaseline

pytestmark = pytest.mark.timeout(10)


def test_slow_start_grows_by_one_per_success() -> None:
    controller = AimdController(1, 64, initial=4)

    for _ in range(10):
        controller.record_success(0.1, 100)

    assert controller.limit == 14


def test_congestion_halves_and_ends_slow_start() -> None:
    controller = AimdController(1, 64, initial=32)

    controller.record_congestion()

    assert controller.limit == 16
    for _ in range(16):
        controller.record_success(0.1, 100)
    assert controller.limit == 16  # additive: about one per `limit` successes
    controller.record_success(0.1, 100)
    assert controller.limit == 17


def test_burst_of_congestion_counts_once() -> None:
    controller = AimdController(1, 64, initial=32)

    for _ in range(10):
        controller.record_congestion()

    assert controller.limit == 16
    assert controller.decreases == 1


def test_congestion_after_a_round_decreases_again() -> None:
    controller = AimdController(1, 64, initial=32)
    controller.record_congestion()

    for _ in range(16):
        controller.record_congestion()

    assert controller.limit == 8


def test_limit_stays_within_floor_and_ceiling() -> None:
    controller = AimdController(2, 6, initial=4)

    for _ in range(100):
        controller.record_success(0.1, 100)
    assert controller.limit == 6
    for _ in range(100):
        controller.record_congestion()
    assert controller.limit == 2


def test_slow_response_decreases() -> None:
    controller = AimdController(1, 64, initial=20, latency_tolerance=3.0)
    for _ in range(10):
        controller.record_success(0.1, 1000)
    before = controller.limit

    controller.record_success(1.0, 1000)

    assert controller.limit == before // 2


def test_slow_large_request_is_not_judged_by_small_ones() -> None:
    controller = AimdController(1, 64, initial=20, latency_tolerance=3.0)
    for _ in range(10):
        controller.record_success(0.05, 10)
    before = controller.limit

    controller.record_success(2.0, 200_000)

    assert controller.limit > before


def test_latency_baseline_follows_slow_drift() -> None:
    baseline = LatencyBaseline(drift=0.5, warmup=1)
    baseline.record(1.0, 100)

    for _ in range(20):
        baseline.record(4.0, 100)

    assert not baseline.is_slow(4.0, 100, tolerance=2.0)


@pytest.mark.parametrize(
    ("floor", "ceiling", "decrease", "tolerance"),
    [(0, 4, 0.5, 3.0), (5, 4, 0.5, 3.0), (1, 4, 1.0, 3.0), (1, 4, 0.5, 1.0)],
)
def test_controller_rejects_invalid_settings(floor: int, ceiling: int, decrease: float, tolerance: float) -> None:
    with pytest.raises(ValueError, match="must"):
        AimdController(floor, ceiling, decrease=decrease, latency_tolerance=tolerance)


async def test_gate_admits_up_to_limit_in_order() -> None:
    gate = ConcurrencyGate(AimdController(2, 2))
    order: list[int] = []
    release = asyncio.Event()

    async def worker(number: int) -> None:
        async with gate.slot():
            order.append(number)
            await release.wait()

    tasks = [asyncio.create_task(worker(number)) for number in range(5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)

    assert order == [0, 1]
    assert gate.in_flight == 2
    assert gate.waiting == 3
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert gate.in_flight == 0


async def test_gate_wake_admits_after_limit_grows() -> None:
    controller = AimdController(1, 8, initial=1)
    gate = ConcurrencyGate(controller)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()

    controller.record_success(0.1, 10)
    gate.wake()
    await asyncio.sleep(0)

    assert waiter.done()
    assert gate.in_flight == 2


async def test_cancelled_waiter_leaves_queue() -> None:
    gate = ConcurrencyGate(AimdController(1, 1))
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert gate.waiting == 0
    gate.release()
    assert gate.in_flight == 0


async def test_waiter_cancelled_after_grant_returns_slot() -> None:
    gate = ConcurrencyGate(AimdController(1, 1))
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)

    gate.release()  # grants the slot to the waiter
    waiter.cancel()  # before the waiter ran
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert gate.in_flight == 0
