"""When an item passed each point from capture to the screen, and what that makes per stage.

An item's timeline is stamped (time.perf_counter, one process) by whichever thread has the item:

    captured   the trigger released it (intake thread)
    assess     the pipeline thread took it up              -> "wait": queued behind earlier items
    model      the plan is made, the model is asked        -> "plan": guard, level, rule reads
    answered   the model's answer is back                  -> "model": preprocessing + forward
                                                              (the wait that is left of them where
                                                              the pass started at capture)
    sent       its picture is converted for Qt, signalled  -> "convert"
    received   the GUI thread has it                       -> "hop": the event loop's delay
    shown      the window has painted it (GUI thread)      -> "paint": routing, scaling, drawing
                                                              "total": captured -> shown

An item no window shows (a simulation, an automatic decision at a station without one) has no
"shown" and no paint or total; one the model did not see has no plan, model or convert. The stage times go into the item's record (`item.stage_ms`),
the station's metrics (station/metrics.py) and bench/station_latency.py's output.
"""

from __future__ import annotations

import time

MARKS = ("captured", "assess", "model", "answered", "sent", "received", "shown")
STAGES = (
    ("wait", "captured", "assess"),
    ("plan", "assess", "model"),
    ("model", "model", "answered"),
    ("convert", "answered", "sent"),
    ("hop", "sent", "received"),
    ("paint", "received", "shown"),
    ("total", "captured", "shown"),
)


class Timeline:
    """Stamps of one item. Each stamp is written once, by the one thread holding the item then
    (the item moves between threads through queues and signals, which order the writes)."""

    __slots__ = ("_at",)

    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def mark(self, name: str) -> None:
        if name not in MARKS:
            raise ValueError(f"expected a timeline mark among {', '.join(MARKS)}, got {name!r}")
        self._at.setdefault(name, time.perf_counter())

    def has(self, name: str) -> bool:
        return name in self._at

    def stage_ms(self) -> dict[str, float]:
        """Milliseconds per stage whose two ends were stamped, rounded to 0.01 ms."""
        at = dict(self._at)
        return {
            stage: round((at[end] - at[start]) * 1000.0, 2)
            for stage, start, end in STAGES
            if start in at and end in at
        }
