"""Tests for the clocks: FakeClock by hand and with autojump, LoopClock and ScaledClock basics."""

from __future__ import annotations

import asyncio

import pytest

from embedlimit._clock import Clock, FakeClock, LoopClock, ScaledClock


async def yield_to_loop(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_clocks_satisfy_protocol() -> None:
    assert isinstance(FakeClock(), Clock)
    assert isinstance(LoopClock(), Clock)
    assert isinstance(ScaledClock(60), Clock)


def test_fake_clock_starts_where_told() -> None:
    assert FakeClock().now() == 0.0
    assert FakeClock(start=100.5).now() == 100.5


def test_fake_clock_advance_moves_time() -> None:
    clock = FakeClock()
    clock.advance(1.5)
    clock.advance(0)
    assert clock.now() == 1.5


@pytest.mark.parametrize("delay", [-1.0, float("nan")])
def test_fake_clock_rejects_backward(delay: float) -> None:
    with pytest.raises(ValueError, match="forward"):
        FakeClock().advance(delay)


@pytest.mark.timeout(10)
async def test_fake_clock_sleep_waits_for_advance() -> None:
    clock = FakeClock()
    sleeper = asyncio.create_task(clock.sleep(2.0))
    await yield_to_loop()
    assert not sleeper.done()
    assert clock.sleepers == 1
    assert clock.next_deadline() == 2.0

    clock.advance(1.999)
    await yield_to_loop()
    assert not sleeper.done()

    clock.advance(0.001)
    await yield_to_loop()
    assert sleeper.done()
    assert clock.sleepers == 0


@pytest.mark.timeout(10)
async def test_fake_clock_wakes_in_deadline_order() -> None:
    clock = FakeClock()
    woken: list[float] = []

    async def sleep_and_record(delay: float) -> None:
        await clock.sleep(delay)
        woken.append(delay)

    tasks = [asyncio.create_task(sleep_and_record(delay)) for delay in (3.0, 1.0, 2.0)]
    await yield_to_loop()
    clock.advance(1.0)
    await yield_to_loop()
    assert woken == [1.0]

    clock.advance(5.0)
    await asyncio.gather(*tasks)
    assert sorted(woken) == [1.0, 2.0, 3.0]


@pytest.mark.timeout(10)
async def test_fake_clock_zero_sleep_only_yields() -> None:
    clock = FakeClock()
    await clock.sleep(0)
    await clock.sleep(-5)
    assert clock.sleepers == 0
    assert clock.now() == 0.0


@pytest.mark.timeout(10)
async def test_fake_clock_cancelled_sleeper_removed() -> None:
    clock = FakeClock()
    sleeper = asyncio.create_task(clock.sleep(5.0))
    await yield_to_loop()
    sleeper.cancel()
    await yield_to_loop()
    assert clock.sleepers == 0
    assert clock.next_deadline() is None


@pytest.mark.timeout(10)
async def test_autojump_runs_sleeps_instantly() -> None:
    clock = FakeClock(autojump=True)
    await clock.sleep(30.0)
    assert clock.now() == 30.0
    await asyncio.gather(clock.sleep(5.0), clock.sleep(2.0))
    assert clock.now() == 35.0


@pytest.mark.timeout(10)
async def test_autojump_waits_for_busy_tasks() -> None:
    clock = FakeClock(autojump=True)
    steps: list[float] = []

    async def busy() -> None:
        # A task that keeps reading the clock between yields counts as activity, so no jump.
        for _ in range(100):
            steps.append(clock.now())
            await asyncio.sleep(0)

    worker = asyncio.create_task(busy())
    await clock.sleep(10.0)
    await worker
    assert steps[-1] == 0.0
    assert clock.now() == 10.0


@pytest.mark.timeout(10)
async def test_autojump_off_leaves_time_alone() -> None:
    clock = FakeClock()
    sleeper = asyncio.create_task(clock.sleep(1.0))
    await yield_to_loop(50)
    assert not sleeper.done()
    assert clock.now() == 0.0
    clock.advance(1.0)
    await sleeper


def test_fake_clock_repr() -> None:
    assert repr(FakeClock(start=2, autojump=True)) == "FakeClock(now=2, autojump=True, sleepers=0)"


def test_fake_clock_rejects_zero_idle_yields() -> None:
    with pytest.raises(ValueError, match="idle_yields"):
        FakeClock(idle_yields=0)


@pytest.mark.timeout(10)
async def test_loop_clock_zero_sleep() -> None:
    clock = LoopClock()
    before = clock.now()
    await clock.sleep(0)
    assert clock.now() >= before


@pytest.mark.timeout(10)
async def test_scaled_clock_scales_now() -> None:
    clock = ScaledClock(60)
    loop_now = asyncio.get_running_loop().time()
    assert clock.now() == pytest.approx(loop_now * 60, abs=60 * 0.5)
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(0)
