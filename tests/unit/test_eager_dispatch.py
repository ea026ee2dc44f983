"""``start_eagerly``: a dispatch that never waits costs no task; one that waits acts as a task."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from choreokit.events._batch import start_eagerly

flow: contextvars.ContextVar[str] = contextvars.ContextVar("flow", default="outside")


async def test_a_coroutine_that_never_waits_returns_its_result_without_a_task() -> None:
    async def quick() -> str:
        flow.set("inside")
        return flow.get()

    before = len(asyncio.all_tasks())
    assert start_eagerly(quick()) == "inside"
    assert len(asyncio.all_tasks()) == before
    assert flow.get() == "outside"  # its first step ran in a copy of the context, as a task's


async def test_a_coroutine_that_waits_goes_on_in_a_task_of_its_own_context() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def slow() -> str:
        flow.set("inside")
        got = await gate
        await asyncio.sleep(0)  # noqa: sleep-ok - a second suspension: the context must survive it
        return f"{flow.get()} {got}"

    started = start_eagerly(slow())
    assert isinstance(started, asyncio.Task)
    assert flow.get() == "outside"
    gate.set_result(7)
    assert await asyncio.wait_for(started, 5) == "inside 7"


async def test_errors_reach_the_caller_before_and_after_the_first_wait() -> None:
    async def fails_at_once() -> None:
        raise ValueError("now")

    with pytest.raises(ValueError, match="now"):
        start_eagerly(fails_at_once())

    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fails_later() -> None:
        await gate

    started = start_eagerly(fails_later())
    assert isinstance(started, asyncio.Task)
    gate.set_exception(KeyError("later"))
    with pytest.raises(KeyError, match="later"):
        await asyncio.wait_for(started, 5)


async def test_cancelling_the_task_cancels_what_the_coroutine_waits_for() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned = asyncio.Event()

    async def waits() -> None:
        try:
            await gate
        finally:
            cleaned.set()

    started = start_eagerly(waits())
    assert isinstance(started, asyncio.Task)
    await asyncio.sleep(0)  # noqa: sleep-ok - one loop turn for the task to park at its gate
    started.cancel()
    with pytest.raises(asyncio.CancelledError):
        await started
    assert cleaned.is_set()
    assert gate.cancelled()
