"""What a trial process checks before it goes on: that its driver still holds the sweep.

A trial runs in a Ray worker, which has no ``Lease``; it reads the lock files instead
(``lock.held``). Its own module, so that the engine and the Ray Train workers both use it
without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sweeps import lock


@dataclass(frozen=True)
class Guard:
    """The driver's lock file of one sweep and the token it holds it with."""

    folder: str
    path: str
    token: str

    def lost(self) -> str | None:
        return lock.held(Path(self.folder), Path(self.path), self.token)

    def check(self) -> None:
        why = self.lost()
        if why is not None:
            raise lock.LockLost(why)


def guarded(report: Callable[[dict], None], guard: Guard | None) -> Callable[[dict], None]:
    """The trial's per-epoch report, then a check of the driver's lock: a trial of a driver whose
    sweep was taken over stops at its next epoch instead of racing the new driver's trial."""
    if guard is None:
        return report

    def report_and_check(point: dict) -> None:
        report(point)
        guard.check()

    return report_and_check
