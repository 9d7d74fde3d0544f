"""`python -m station ARGS` in a child process forked from one that has imported the station's
heavy modules already (torch, scipy, OpenCV, SQLAlchemy, the CLI itself: about 2 s of every
command's start on the test machine, paid once per test worker instead of once per call).

The child is a process of its own, as the user's is: its own environment (the caller's, exactly),
working folder, stdin, stdout and stderr, its exit code, its threads joined and its exit
handlers run at the end as the interpreter would. Only the imports are shared. Set
STATION_TEST_CLI=subprocess to run every command in a fresh interpreter instead (where fork is
missing, that is the only way).

Protocol: one JSON request per line on the zygote's stdin, one JSON answer per line on its
stdout; the zygote's own streams are never the child's.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

# Imported before the first fork. Only modules that read nothing from the environment or the
# home folder at import (matplotlib does: its cache folder; it is left to the child).
PRELOAD = (
    "numpy",
    "cv2",
    "torch",
    "torchvision",
    "scipy.stats",
    "sqlalchemy",
    "alembic",
    "station.cli",
    "station.thresholds",
    "db.migrate",
    "review.report",
)

_SERVE = r"""
import importlib, json, os, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
requests = os.fdopen(os.dup(0), "rb", buffering=0)
answers = os.fdopen(os.dup(1), "w")
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 0)
os.dup2(null, 1)  # the zygote's own prints never reach the answers

def line():
    out = b""
    while not out.endswith(b"\n"):
        got = requests.read(1)
        if not got:
            raise SystemExit(0)
        out += got
    return json.loads(out)

def child(req):
    import atexit, runpy, threading, traceback
    requests.close()
    answers.close()
    os.close(null)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for fd, path, mode in ((0, req["stdin"], os.O_RDONLY), (1, req["stdout"], os.O_WRONLY),
                           (2, req["stderr"], os.O_WRONLY)):
        f = os.open(path, mode)
        os.dup2(f, fd)
        os.close(f)
    enc = req["encoding"]
    sys.stdin = sys.__stdin__ = open(0, "r", encoding=enc, closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding=enc, closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding=enc, errors="backslashreplace",
                                       closefd=False, buffering=1)
    sys.argv = [req["argv0"], *req["args"]]
    code = 0
    try:
        runpy.run_module("station", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)

while True:
    req = line()
    pid = os.fork()
    if pid == 0:
        child(req)
    answers.write(json.dumps({"pid": pid}) + "\n")
    answers.flush()
    _, status = os.waitpid(pid, 0)
    answers.write(json.dumps({"status": status}) + "\n")
    answers.flush()
"""


class Zygote:
    def __init__(self, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE, *PRELOAD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=Path(__file__).resolve().parents[1],
        )
        self._lock = threading.Lock()

    def run(
        self, args: tuple[str, ...], *, input: str | None, env: dict[str, str], timeout: float
    ) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of `python -m station *args`; subprocess.TimeoutExpired
        past `timeout` (the child killed), as subprocess.run raises it."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with self._lock, tempfile.TemporaryDirectory(prefix="station-cli-") as tmp:
            paths = {k: Path(tmp) / k for k in ("stdin", "stdout", "stderr")}
            paths["stdin"].write_text(input or "", encoding="utf-8")
            for k in ("stdout", "stderr"):
                paths[k].touch()
            req: dict[str, Any] = {
                "args": list(args),
                "argv0": str(Path(__file__).resolve().parents[1] / "station" / "__main__.py"),
                "env": env,
                "cwd": os.getcwd(),
                "encoding": "utf-8",
                **{k: str(p) for k, p in paths.items()},
            }
            self._proc.stdin.write((json.dumps(req) + "\n").encode())
            self._proc.stdin.flush()
            pid = json.loads(self._proc.stdout.readline())["pid"]
            killed = threading.Event()
            timer = threading.Timer(timeout, _kill, (pid, killed))
            timer.start()
            try:
                answer = self._proc.stdout.readline()
            finally:
                timer.cancel()
            if not answer:
                raise RuntimeError("the CLI zygote died")
            status = json.loads(answer)["status"]
            code = os.waitstatus_to_exitcode(status)
            out = paths["stdout"].read_text(encoding="utf-8", errors="replace")
            err = paths["stderr"].read_text(encoding="utf-8", errors="replace")
            if killed.is_set():
                raise subprocess.TimeoutExpired(["station", *args], timeout, out, err)
            return code, out, err

    def close(self) -> None:
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):  # it died already
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _kill(pid: int, killed: threading.Event) -> None:
    killed.set()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


# Read once, at import: the tests' fixture clears STATION_* variables from each test's environment.
_MODE = os.environ.get("STATION_TEST_CLI", "zygote")


def usable() -> bool:
    return hasattr(os, "fork") and _MODE != "subprocess"


def run_fresh(
    args: tuple[str, ...],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m station *args` in a fresh interpreter: where
    there is no zygote, and what a forked command is compared with."""
    proc = subprocess.run(
        [sys.executable, "-m", "station", *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr
