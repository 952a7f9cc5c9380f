"""``asyncio.timeout`` for a loop already known. SHELL.

On Python 3.11 every asyncio call that looks the running loop up (``timeout()``,
``current_task()`` without its loop, ``get_running_loop()``) checks the process id with a getpid
system call, to notice a fork; several microseconds each on a virtual machine, and
``asyncio.timeout`` makes three. Per request that added up to a few per cent of the proxy's CPU
(issue 18; later Pythons dropped the check). ``Deadline`` is the same contract, for the loop the
caller already holds: on expiry the task is cancelled, and the cancellation leaves the block as
``TimeoutError``, unless the task was also cancelled from elsewhere, which then goes on.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    __slots__ = ("_cancelling", "_delay", "_handle", "_loop", "_task", "expired")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self._loop = loop
        self._delay = delay
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._cancelling = 0
        self.expired = False

    def __enter__(self) -> Deadline:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = self._loop.call_later(self._delay, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        self._handle = None
        if self._task is not None:
            self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None  # the handle's callback refers back to this object
        task, self._task = self._task, None
        # as asyncio.timeout: only this deadline's own cancellation becomes TimeoutError
        if (
            self.expired
            and task is not None
            and task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
