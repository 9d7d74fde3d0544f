"""A decision acknowledged by the recorder is in the database even when the process is killed
(kill -9) a moment later, whatever it was doing: the acknowledgement comes after the commit, and
the commit is durable (WAL, synchronous=FULL). Seen from a second process, as a line sees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlmodel import select

from db.chain import verify
from db.engine import make_engine, session_scope
from db.migrate import upgrade
from db.models import Item

TESTS = Path(__file__).resolve().parent

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from db.engine import make_engine
    from records_fixtures import new_item_record
    from station.pipeline.recorder import Recorder

    engine = make_engine({url!r})
    recorder = Recorder(engine, spool_dir=Path({spool!r}))
    print("ready", flush=True)
    for i in range(100_000):
        uid = "{prefix}-%d" % i
        ack = recorder.record(new_item_record(uid, station_id={station}, operator_id={operator}))
        if ack is not None:  # "saved": the item's transaction is committed
            print(uid, ack.item_id, flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9 (POSIX)")
def test_every_acknowledged_decision_survives_kill_9(tmp_path: Path) -> None:
    from records_fixtures import station_and_operator

    url = f"sqlite:///{tmp_path / 'station.db'}"
    engine = make_engine(url)
    upgrade(engine, backup=False)
    station, operator = station_and_operator(engine)
    acked: dict[str, int] = {}
    for round_, stop_after in enumerate((3, 17, 41)):
        script = CHILD.format(
            tests=str(TESTS),
            url=url,
            spool=str(tmp_path),
            prefix=f"r{round_}",
            station=station,
            operator=operator,
        )
        with subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            for _ in range(stop_after):
                uid, item_id = child.stdout.readline().split()
                acked[uid] = int(item_id)
            os.kill(child.pid, signal.SIGKILL)  # mid-write, most likely: it writes without pause
            child.wait(timeout=30)
            for line in child.stdout:  # acknowledged before the kill, read after it
                uid, item_id = line.split()
                acked[uid] = int(item_id)
    with session_scope(engine) as s:
        stored = {i.stats["record_uid"]: i.id for i in s.exec(select(Item))}
    assert len(acked) >= 3 + 17 + 41
    missing = {uid for uid in acked if stored.get(uid) != acked[uid]}
    assert not missing, f"acknowledged, then lost: {sorted(missing)[:5]}"
    with engine.connect() as conn:
        chain = verify(conn)
    assert chain.intact, chain.problems
