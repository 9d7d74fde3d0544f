"""Work that no item waits for runs at a lower CPU priority than the work an item waits for.

On this project's 2-core machine every core is busy while the line runs: the model, the
pipeline's planning and the window compete with work whose result is needed only later (an
image's encoding and fsyncs, which its record waits for but the suggestion does not) or with a
stand-in for hardware (the synthetic camera's rendering, which a real camera does not ask of the
CPU). Left at the same priority, the scheduler shares the cores evenly and the item waits its
turn behind them; a thread that lowers its own priority still runs whenever a core is free, so
nothing it does is skipped or lost, only reordered.

Linux gives each thread a nice value of its own (a thread is a task there); elsewhere
`lower_this_thread` does nothing. A thread can only lower its priority, never raise it back,
so it is called only at the start of threads that do nothing else (a pool's initializer).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

#: Nice steps below the process: a thread at +10 gets about a tenth of a core's share against a
#: thread at +0 when both want the same core, and all of a core that nobody else wants.
BACKGROUND_NICE = 10


def lower_this_thread(steps: int = BACKGROUND_NICE) -> None:
    """Lower the calling thread's CPU priority by `steps` nice levels (at most 19)."""
    if sys.platform != "linux":  # elsewhere a thread id is not a process id for setpriority
        return
    with contextlib.suppress(OSError):  # a sandbox may refuse it: the thread runs as before
        tid = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + steps))
