"""Stop signals: SIGTERM, SIGINT and SIGUSR1 ask a run to stop at the end of its current update,
after a checkpoint (:class:`StopSignals`); a second one while it stops ends the process at once
(the atomic checkpoint writes leave the previous ``last.pt`` whole)."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exit_now(code: int) -> None:
    os._exit(code)


class StopSignals:
    """While active (``with StopSignals() as stop:``), the stop signals set ``stop.received``
    (the first signal's number) instead of ending the process; a second one writes one line
    and exits with ``128 + signal``. Installed only in the main thread (elsewhere Python
    cannot, and the run keeps the handlers it had); the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:  # noqa: PYI034
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = number  # the run says how it stopped once it has (spg.trainer)
            return
        _say(f"{signal_name(number)} received again: exiting at once; checkpoints/last.pt holds the last complete checkpoint, "
             "continue with trainer.resume=auto")
        _exit_now(128 + number)


def _say(line: str) -> None:
    """One line on stderr by a plain write (a handler may interrupt a buffered write to stderr)."""
    try:
        os.write(2, (line + "\n").encode())
    except OSError:
        pass
