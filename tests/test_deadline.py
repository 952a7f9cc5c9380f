"""proxy.server.deadline: asyncio.timeout's contract, for a loop already known (issue 18)."""

from __future__ import annotations

import asyncio

import pytest

from proxy.server.deadline import Deadline


async def test_expiry_leaves_the_block_as_timeout_error_and_the_task_uncancelled() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError), Deadline(loop, 0.01) as d:
        await asyncio.sleep(10)
    assert d.expired
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # still runnable: no cancellation left pending


async def test_a_block_that_ends_in_time_is_not_interrupted_later() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(loop, 0.05) as d:
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # past the deadline: its timer was cancelled with the block
    assert not d.expired


async def test_a_cancellation_from_elsewhere_goes_on_as_cancellation() -> None:
    loop = asyncio.get_running_loop()

    async def body() -> None:
        with Deadline(loop, 10):
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outside_a_task_it_refuses() -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop, 1)
    result: list[BaseException] = []

    def outside() -> None:
        try:
            deadline.__enter__()
        except RuntimeError as exc:
            result.append(exc)

    loop.call_soon(outside)
    await asyncio.sleep(0.01)
    assert result and "inside a task" in str(result[0])
