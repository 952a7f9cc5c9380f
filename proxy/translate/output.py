"""What every client-side output of a converted stream shares. CORE.

A translator (Text Completions or Messages upstream) writes to one of these; which one decides
the client's format:

    LegacyStream  2023-01-01: cumulative ``data:`` snapshots, ``[DONE]`` (spec section 2)
    ModernStream  2023-06-01: ``event: completion`` increments, no ``[DONE]`` (spec section 6)

Backpressure is a byte budget, ``room`` (issue 14): the bytes the output may still hand out
before it holds. The shell sets it from what the client transport can take; every non-final
event rendered (snapshot, increment, ping) subtracts its length, and while ``room <= 0``
snapshots or increments are held as the single pending one (taken by ``take_pending``) and pings
are dropped. The ending (final event, ``[DONE]``, error event) is never held. So one read from the
upstream yields at most ``room`` bytes plus one non-final event plus the ending, however many
events it holds, where a boolean "behind" flag let one read of N events render N full snapshots.

``behind`` remains as the boolean view of the budget for callers of the flag's era.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Final

from proxy.errors import StreamErrorReason

# "no limit": large enough never to run out, small enough to stay a machine integer
UNLIMITED: Final = 1 << 62


class ClientStream(ABC):
    """The interface translators write to, and the shell reads through StreamConverter."""

    __slots__ = ("finished", "out_counts", "outcome", "pings", "room", "snapshots_skipped")

    def __init__(self, *, pings: bool) -> None:
        self.pings = pings
        self.room = UNLIMITED
        self.finished = False
        self.outcome: str | None = None  # "ok" or a StreamErrorReason once finished
        # held events superseded by a later one before they were taken (rule 7)
        self.snapshots_skipped = 0
        # events written, by kind: snapshot (a completion event), ping, error, done
        self.out_counts = {"snapshot": 0, "ping": 0, "error": 0, "done": 0}

    @property
    def behind(self) -> bool:
        return self.room <= 0

    @behind.setter
    def behind(self, value: bool) -> None:
        self.room = 0 if value else UNLIMITED

    @property
    @abstractmethod
    def fields(self) -> tuple[Any, ...]:
        """stop_reason, stop, model, log_id, upstream id: the latest value of each."""

    @abstractmethod
    def update(
        self, delta: str, stop_reason: Any, stop: Any, model: Any, log_id: Any, upstream_id: Any
    ) -> bytes:
        """New text and the latest field values; the ending when ``stop_reason`` is set."""

    @abstractmethod
    def set_fields(self, stop: Any, model: Any, log_id: Any, upstream_id: Any) -> None:
        """Field values that come with no text: nothing is rendered."""

    @abstractmethod
    def append(self, delta: str) -> None:
        """Text to include in what is written next, without rendering anything now."""

    PING: ClassVar[bytes]  # the client format's ping event

    def ping(self) -> bytes:
        # Without room, a ping would only add to the backlog; the client is getting bytes anyway.
        if self.finished or not self.pings or self.room <= 0:
            return b""
        self.out_counts["ping"] += 1
        self.room -= len(self.PING)
        return self.PING

    @abstractmethod
    def finish(self) -> bytes:
        """The final event (and ``[DONE]`` for legacy clients); never held back."""

    @abstractmethod
    def fail(
        self, reason: StreamErrorReason, error: Any = None, exception: str | None = None
    ) -> bytes:
        """The error ending (rules 5 and 6); never held back."""

    @abstractmethod
    def take_pending(self) -> bytes:
        """The held event, once; b"" when none is held."""

    @property
    @abstractmethod
    def has_pending(self) -> bool:
        """Whether an event is held for when the client has room again."""
