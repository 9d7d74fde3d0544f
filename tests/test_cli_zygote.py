"""The tests' CLI runner (tests/cli_zygote.py) forks commands from a process with the imports
done: what a command prints, reads and exits with must be what a fresh `python -m station` gives."""

from __future__ import annotations

import os

import pytest
from cli_zygote import Zygote, run_fresh, usable

pytestmark = pytest.mark.skipif(not usable(), reason="no fork here, or STATION_TEST_CLI=subprocess")


def test_a_forked_command_prints_reads_and_exits_as_a_fresh_one(tmp_path, monkeypatch):
    (tmp_path / "s.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "COLUMNS": "100"}
    zygote = Zygote(dict(os.environ))
    try:
        cases = [
            ("--help",),
            ("config", "show", "--config", "s.toml"),
            ("no-such-command",),  # a usage error: exit 2, one line on stderr
            ("config", "show", "--config", "missing.toml"),  # relative to the working folder
        ]
        for args in cases:
            assert zygote.run(args, input=None, env=env, timeout=120) == run_fresh(
                args, env=env, cwd=tmp_path
            ), args
        # a secret read from stdin: each adds the first engineer to a database of its own
        add = ("user", "add", "kim", "--role", "engineer", "--db")
        got = zygote.run(
            (*add, f"sqlite:///{tmp_path / 'a.db'}"), input="k\n", env=env, timeout=120
        )
        want = run_fresh(
            (*add, f"sqlite:///{tmp_path / 'b.db'}"), input="k\n", env=env, cwd=tmp_path
        )
        assert got[0] == want[0] == 0 and got[2] == want[2], (got, want)
        assert got[1].replace("a.db", "b.db") == want[1]
        # the caller's environment, exactly: a variable set only for this call is seen
        shown = zygote.run(
            ("config", "show"),
            input=None,
            env={**env, "STATION_DATA_DIR": str(tmp_path / "d2")},
            timeout=120,
        )
        assert str(tmp_path / "d2") in shown[1]
    finally:
        zygote.close()
