"""SIGINT (Ctrl-C) and SIGTERM (kill, a batch scheduler's timeout) as one exception, so a long
command stops the same way for both: it writes what it has and exits 128 + the signal number
(130 for SIGINT, 143 for SIGTERM), as shells expect."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by a handled signal; ``signal_name`` is e.g. "SIGTERM"."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name_of(exc: KeyboardInterrupt) -> str:
    """"SIGINT" for a plain KeyboardInterrupt, else the signal that raised ``exc``."""
    return getattr(exc, "signal_name", "SIGINT")


def exit_code_of(exc: KeyboardInterrupt) -> int:
    return getattr(exc, "exit_code", 128 + signal.SIGINT)


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Inside: SIGINT and SIGTERM raise ``Interrupted``; the old handlers come back after.
    Outside the main thread (signals can only be handled there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
