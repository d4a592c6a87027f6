"""Ctrl-C and SIGTERM: finish the step, checkpoint, exit 130 / 143; a second Ctrl-C aborts at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequest:
    """Set by the first SIGINT/SIGTERM; read by the loop between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 130) if self.signum is not None else 0

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """Install the handlers for the duration of training (main thread only; elsewhere a no-op)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, _frame):
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: abort now, the last checkpoint stays
        stop.signum = stop.signum or signum

    previous = {sig: signal.signal(sig, handler) for sig in EXIT_CODES}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
