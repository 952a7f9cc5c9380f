"""Requests in flight, as admission (the overload cap) and the shutdown drain see them. SHELL."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class ServerState:
    draining: bool = False
    deadline_passed: bool = False
    in_flight: int = 0
    # bytes of converted streams handed to client transports and not yet sent, across streams:
    # what slow clients cost the process (admission refuses new requests past the budget)
    pending_bytes: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self, task: asyncio.Task[Any] | None) -> None:
        """A request's handler ``task`` begins. Passed in: on Python 3.11 ``current_task()``
        without its loop asks the kernel for the process id (a getpid per call)."""
        self.in_flight += 1
        if task is not None:
            self.tasks.add(task)
        self.idle.clear()

    def leave(self, task: asyncio.Task[Any] | None) -> None:
        self.in_flight -= 1
        if task is not None:
            self.tasks.discard(task)
        if self.in_flight == 0:
            self.idle.set()

    def end_all(self) -> None:
        """The drain deadline passed: interrupt every request still in flight. Each ends as it
        must: a converted stream with the legacy error event (spec rule 6), a request not yet
        answered with a 503, a relayed body by a cut."""
        self.deadline_passed = True
        for task in self.tasks:
            task.cancel()

    def deadline_cancel(self) -> bool:
        """Called where a request task caught CancelledError: True, with the cancellation taken
        back, when it was the drain deadline's (the handler then ends the request itself);
        False when the client left (the cancellation goes on)."""
        task = asyncio.current_task()
        if not self.deadline_passed or task is None or task.cancelling() == 0:
            return False
        task.uncancel()
        return True
