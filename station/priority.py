"""Work that the suggestion does not wait for runs at a lower CPU priority than the work it does.

On this project's 2-core machine every core is busy while the line runs: the model, the
pipeline's planning and the window compete with work whose result is needed only later (an
image's encoding and fsyncs, which its record waits for but the suggestion does not) or with a
stand-in for hardware (the synthetic camera's rendering, which a real camera does not ask of the
CPU). Left at the same priority, the scheduler shares the cores evenly and the item waits its
turn behind them; a thread that lowers its own priority still runs whenever a core is free, so
nothing it does is skipped or lost, only reordered. Records wait for their images: on a machine
kept full by the line's own work they are written later, never dropped.

The risk is Python's lock: a lowered thread that holds it when the scheduler passes the thread
over holds up every thread that needs it until the thread runs again. `station simulate` (no
window; its model's thread is the critical path) lowers its renderers and image writers; the
station window lowers nothing (its one writer's work measured no latency gain there, and its
longest event-loop stalls were longer in the runs with it lowered).

Linux gives each thread a nice value of its own (a thread is a task there); elsewhere
`lower_this_thread` does nothing. A thread can only lower its priority, never raise it back,
so it is called only at the start of threads that do nothing else (`background_pool`).

A thread inherits the nice value of the thread that creates it. OpenCV creates its worker
threads at its first parallel call, from whichever thread makes it: made on a lowered thread,
the model's own resizes would later be split onto lowered workers. `background_pool` has them
started first, on the calling thread.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

#: Nice steps below the process: a thread at +10 gets about a tenth of a core's share against a
#: thread at +0 when both want the same core, and all of a core that nobody else wants.
BACKGROUND_NICE = 10


def lower_this_thread(steps: int = BACKGROUND_NICE) -> None:
    """Lower the calling thread's CPU priority by `steps` nice levels (at most 19)."""
    if sys.platform != "linux":  # elsewhere a thread id is not a process id for setpriority
        return
    with contextlib.suppress(Exception):  # a sandbox may refuse it: the thread runs as before
        tid = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + steps))


def start_opencv_workers() -> None:
    """Have OpenCV start its worker threads now, from this thread: one resize large enough to be
    split across them (a no-op once they run; 1-3 ms the first time)."""
    import cv2
    import numpy as np

    if cv2.getNumThreads() > 1:
        cv2.resize(np.zeros((720, 1280, 3), np.uint8), (640, 368), interpolation=cv2.INTER_AREA)


def background_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A thread pool for work the suggestion does not wait for: its threads run lowered."""
    if sys.platform == "linux":
        start_opencv_workers()
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=lower_this_thread)
