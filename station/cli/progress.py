"""Progress on stderr for the commands that take more than a couple of seconds: a bar (done of
total, rate, time left) where the number of items is known, a spinner naming the stage otherwise.

Shown only when stderr is a terminal, so piped or captured output (the tests' included) carries
none of it, and stdout is never touched: JSON and CSV written there read the same with or without
a terminal. Imported inside the commands, like the rest of the CLI's heavier imports (rich).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

#: (done, total): how far a loop of known length is.
Counted = Callable[[int, int], None]
#: What is being done now, in words.
Staged = Callable[[str], None]


def terminal_console() -> Console | None:
    """A console on stderr when stderr is a terminal that can redraw a line, else None."""
    console = Console(stderr=True)
    return console if console.is_terminal and not console.is_dumb_terminal else None


class _Rate(ProgressColumn):
    """Items per second over rich's recent samples (blank until there are two)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            "" if speed is None else f"{speed:.1f} {self.unit}/s", style="progress.data.speed"
        )


def _progress(console: Console, *columns: str | ProgressColumn) -> Progress:
    # Gone when done (transient): the command's own lines follow. stdout stays the command's:
    # left to its default, rich would send print() to this stderr console while the display
    # runs (a CSV streamed to stdout would land on the terminal). A few redraws a second are
    # plenty and cost the work little on two shared cores.
    return Progress(
        *columns,
        console=console,
        transient=True,
        redirect_stdout=False,
        refresh_per_second=4,
    )


def _ignore_count(_done: int, _total: int) -> None:
    return None


def _ignore_stage(_what: str) -> None:
    return None


@contextmanager
def counting(
    description: str, total: int | None, *, unit: str = "items", console: Console | None = None
) -> Iterator[Counted]:
    """A bar while the block runs; the block reports (done, total) through the callback it is
    given (`total` None: not known until then). `console` (tests) replaces the terminal check;
    without a terminal the callback does nothing."""
    console = console if console is not None else terminal_console()
    if console is None:
        yield _ignore_count
        return
    with _progress(
        console,
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(unit),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def stages(first: str, *, console: Console | None = None) -> Iterator[Staged]:
    """A spinner naming the stage in progress (and the time so far) while the block runs; the
    block names each new stage through the callback it is given. `console` as for `counting`."""
    console = console if console is not None else terminal_console()
    if console is None:
        yield _ignore_stage
        return
    with _progress(
        console,
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    ) as spinner:
        task = spinner.add_task(first, total=None)

        def update(what: str) -> None:
            spinner.update(task, description=what)

        yield update
