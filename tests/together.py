"""Run n pieces of work in threads released at the same instant: the race tests' one way of
making concurrent writers, limiters or servers' connections collide."""

from __future__ import annotations

import threading
from collections.abc import Callable


def together(work: Callable[[int], None], n: int) -> None:
    """Call `work(0)` … `work(n - 1)`, each in its own thread, all started behind one barrier;
    return once every one has finished."""
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
