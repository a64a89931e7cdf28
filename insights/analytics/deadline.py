"""A query's time limit: interrupt it when the time is up, and keep interrupting until it ends.

Why keep interrupting: an interrupt reaches only the work running at that moment (DuckDB's
current statement, Spark's current jobs). A query still being parsed or planned when its time
is up (Spark can take seconds to plan on a loaded machine) starts its work after a single
interrupt and would then run unbounded.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

REPEAT_S = 0.25


@contextlib.contextmanager
def interrupt_after(seconds: float, interrupt: Callable[[], None]) -> Iterator[threading.Event]:
    """Call ``interrupt`` once ``seconds`` have passed and every ``REPEAT_S`` after that, until
    the block exits. Yields an event that is set once the time was up. On exit no call is in
    flight any more, so the caller's next statement on the same connection is never hit."""
    fired = threading.Event()
    done = threading.Event()

    def watch() -> None:
        if done.wait(seconds):
            return
        fired.set()
        while not done.is_set():
            with contextlib.suppress(Exception):  # a failed interrupt must not kill the watch
                interrupt()
            done.wait(REPEAT_S)

    watcher = threading.Thread(target=watch, name="query-time-limit", daemon=True)
    watcher.start()
    try:
        yield fired
    finally:
        done.set()
        watcher.join()
