"""The recorder: every decision reaches the database of record, or waits in a journal until it can.

One record is written in one transaction (a new item's: `db.repo.record_inspection_rows`, on SQLite
through the recorder's own connection, db/driver.py: Writer). The acknowledgement callback fires
only after the commit, so "saved" on screen means saved. If the write fails (database locked, disk
full, read-only) the record is appended to a JSON-lines spool in the data dir (fsynced) and kept in
memory; later writes queue behind it so order is kept, `retry()` writes them in order, and a new
Recorder replays the spool left by a previous run. A record whose item is already in the database
(written, then the process died before the spool was trimmed) is not written twice. A write that
fails for no database reason (a fault nobody foresaw) is retried a few times, then set aside in the
rejected file beside the spool, so one bad record never holds every later one back; the window says
so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from db import driver
from db.engine import BUSY_TIMEOUT_MS, session_scope
from db.errors import DbError, IntegrityProblem
from db.models import AdjudicationRequest, ChosenFor, DecidedBy, Disposition, Item, Level
from db.repo import effective_decision, record_human_decision
from station.pipeline.records import (
    ChallengeRecord,
    CorrectionRecord,
    Deferred,
    InspectionRecord,
    Record,
    find_item_by_uid,
    from_json,
    human_decision_row,
    models_registered,
    register_models,
    to_json,
    write_inspection,
)

log = logging.getLogger(__name__)

#: A spool belongs to one database: its name carries the database's identity, so a record
#: spooled for one database is never replayed into another that shares the folder.
SPOOL_NAME = "decision-spool-{identity}.jsonl"
REJECTED_NAME = "decision-rejected-{identity}.jsonl"
#: The spool of versions that did not name it by database: never replayed (it may belong to
#: any database that used the folder); a banner says where it is.
UNCLAIMED_SPOOL = "decision-spool.jsonl"
#: Tries of a record whose write fails for no database reason before it is set aside.
MAX_UNEXPECTED_TRIES = 3
#: While records wait, the database is tried again at most this often.
RETRY_EVERY_S = 2.0
#: How long one write waits for a SQLite lock held by another process: long enough for a
#: report's checkpoint, short enough that decisions never pile up in memory behind it (a
#: retry waits less: the spool already holds what it retries).
WRITE_LOCK_WAIT_MS = 2000
RETRY_LOCK_WAIT_MS = 200
#: The newest items whose database ids the recorder keeps, for corrections and challenges (an
#: older one is looked up by its uid): an entry per item for the process's life grew a station
#: that runs for weeks by about 9 MB a day at one item a second.
REMEMBERED_ITEMS = 4096


@dataclass(frozen=True)
class Ack:
    """A record is in the database: `item_id` is the "saved #N" the inspector sees."""

    uid: str
    item_id: int
    decision_id: int | None


@dataclass(frozen=True)
class Problem:
    """The database cannot take writes right now. `pending` records wait in the spool file, on
    disk; `unsaved` more could not be written there either (a full disk) and are only in this
    process's memory: the line must stop until they are on disk."""

    message: str
    pending: int
    unsaved: int = 0


class Recorder:
    def __init__(
        self,
        engine: Engine,
        *,
        spool_dir: Path,
        on_ack: Callable[[Ack], None] | None = None,
        on_problem: Callable[[Problem | None], None] | None = None,
        ok_label: str = "ok",
    ) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        # SQLite: new items go through a connection of the recorder's own (db/driver.py)
        self._writer = (
            driver.Writer(engine, busy_timeout_ms=WRITE_LOCK_WAIT_MS)
            if driver.can_hold(engine)
            else None
        )
        self.ok_label = ok_label  # to read spools written before records carried defect types
        self.identity = _identity(engine)
        self.spool_path = Path(spool_dir) / SPOOL_NAME.format(identity=self.identity)
        self.rejected_path = Path(spool_dir) / REJECTED_NAME.format(identity=self.identity)
        self.unclaimed_path = Path(spool_dir) / UNCLAIMED_SPOOL
        self.unclaimed: str | None = None  # what to tell the operator about it
        self.on_ack = on_ack
        self.on_problem = on_problem
        self._pending: deque[Record] = deque()
        self._uid_to_ids: dict[str, tuple[int, int | None]] = {}
        self._model_ids: dict[str, int] = {}
        self._failures: dict[str, int] = {}  # uid -> unexpected failures so far
        self._unsaved: set[str] = set()  # uids of pending records the spool could not take
        self._next_retry = 0.0
        self._lock = threading.RLock()
        self.written = 0
        self.rejected = 0  # records set aside in the rejected file (never silently dropped)
        self.last_error: str | None = None
        self.spool_error: str | None = None
        self._load_spool()

    # ------------------------------------------------------------------ public

    @property
    def pending(self) -> int:
        """Records not yet in the database (in the spool file, or only in memory: `unsaved`)."""
        return len(self._pending)

    @property
    def unsaved(self) -> int:
        """Pending records that are on no disk at all (the spool could not be written)."""
        return len(self._unsaved)

    def record(self, rec: Record | Deferred) -> Ack | None:
        """Write `rec` (after anything still pending); None if it had to wait in the spool.

        While records are pending, a new one goes straight to the spool file (on disk at once)
        and the database is tried again at most every RETRY_EVERY_S, so a locked database never
        makes records queue in memory."""
        if isinstance(rec, Deferred):
            rec = rec.build()
        with self._lock:
            if self._pending:
                self._pending.append(rec)
                self._append_spool(rec)
                if time.monotonic() >= self._next_retry:
                    self.retry()
                else:
                    self._report(self.last_error or "earlier decisions are still being retried")
                return None
            try:
                ack = self._write(rec, check_existing=False)
            except _Retryable as e:
                self._pending.append(rec)
                self._append_spool(rec)
                self._report(str(e))
                return None
            except _Unexpected as e:
                self._failures[rec.uid] = 1
                self._pending.append(rec)
                self._append_spool(rec)
                self._report(str(e))
                return None
            except _Rejected as e:
                self._reject(rec, str(e))
                return None
            self._acknowledge(ack)
            return ack

    def retry(self) -> int:
        """Write what is pending, in order, stopping at the first failure; returns how many."""
        with self._lock:
            self._next_retry = time.monotonic() + RETRY_EVERY_S
            done = 0
            while self._pending:
                rec = self._pending[0]
                try:
                    ack = self._write(rec, check_existing=True)
                except _Retryable as e:
                    self._rewrite_spool()
                    self._report(str(e))
                    return done
                except _Unexpected as e:
                    # A fault nobody foresaw: retried a few times, then set aside (on disk) so
                    # that one bad record never holds every later one back.
                    tries = self._failures.get(rec.uid, 0) + 1
                    self._failures[rec.uid] = tries
                    if tries < MAX_UNEXPECTED_TRIES:
                        self._rewrite_spool()
                        self._report(str(e))
                        return done
                    self._pending.popleft()
                    self._failures.pop(rec.uid, None)
                    self._reject(rec, f"{e} ({tries} tries)")
                    continue
                except _Rejected as e:
                    self._pending.popleft()
                    self._reject(rec, str(e))
                    continue
                self._pending.popleft()
                done += 1
                self._acknowledge(ack)
            self._rewrite_spool()
            if self.last_error is not None:
                self.last_error = None
                if self.on_problem:
                    self.on_problem(None)
            return done

    # ------------------------------------------------------------------ writing

    def _write(self, rec: Record, *, check_existing: bool) -> Ack:
        try:
            if isinstance(rec, InspectionRecord) and not check_existing:
                ids = self._write_new(rec)
            else:
                with session_scope(self.engine) as session:
                    ids = self._write_in(session, rec, check_existing=check_existing)
        except (exc.OperationalError, exc.InterfaceError, OSError) as e:
            self._model_ids.clear()  # ids from a rolled-back transaction are not real
            raise _Retryable(_describe(e)) from e
        except IntegrityProblem as e:
            self._model_ids.clear()
            raise _Rejected(str(e)) from e
        except (exc.DBAPIError, DbError) as e:
            self._model_ids.clear()
            raise _Retryable(_describe(e)) from e
        except Exception as e:
            self._model_ids.clear()
            log.exception("writing decision %s failed", rec.uid)
            raise _Unexpected(f"writing a decision failed ({type(e).__name__}: {e})") from e
        if isinstance(rec, InspectionRecord):  # a correction remembers its item itself
            self._remember(rec.uid, ids)
        self.written += 1
        return Ack(rec.uid, *ids)

    def _write_new(self, rec: InspectionRecord) -> tuple[int, int | None]:
        """A new item, the write behind every decision: its rows in one transaction without an
        ORM Session (whose set-up and commit cost as much Python as the rows themselves:
        bench/db_write.py); on SQLite through the recorder's own connection (db/driver.py:
        Writer), elsewhere on a Connection. A model seen for the first time is registered
        first, in a transaction of its own."""
        if not models_registered(rec, self._model_ids):
            with (
                session_scope(self.engine) as session,
                self._lock_wait(session.connection(), WRITE_LOCK_WAIT_MS),
            ):
                register_models(session=session, rec=rec, model_ids=self._model_ids)
        if self._writer is not None:
            with self._writer.transaction() as writer:
                ids = write_inspection(conn=writer, rec=rec, model_ids=self._model_ids)
        else:
            with self.engine.begin() as conn, self._lock_wait(conn, WRITE_LOCK_WAIT_MS):
                ids = write_inspection(conn=conn, rec=rec, model_ids=self._model_ids)
        return ids.item, ids.decision

    @contextlib.contextmanager
    def _lock_wait(self, conn: Connection, wait_ms: int) -> Iterator[None]:
        """SQLite: wait at most `wait_ms` for another process's write lock, then give the
        pooled connection back with the engine's own wait. Set on the driver's connection:
        through SQLAlchemy the two PRAGMAs cost a fifth of the write's Python. Registering a
        model first seen waits no longer than the item's rows do."""
        if not self._sqlite:
            yield
            return
        driver.set_busy_timeout(conn, wait_ms)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                driver.set_busy_timeout(conn, BUSY_TIMEOUT_MS)

    def _write_in(
        self, session: Session, rec: Record, *, check_existing: bool
    ) -> tuple[int, int | None]:
        """The rows of `rec` in the caller's transaction; its ids (the existing ones when a
        retried record turns out to be written already)."""
        conn = session.connection()
        wait = RETRY_LOCK_WAIT_MS if check_existing else WRITE_LOCK_WAIT_MS
        with self._lock_wait(conn, wait):
            if isinstance(rec, ChallengeRecord):
                return self._write_challenge(session, rec)
            if not isinstance(rec, InspectionRecord):
                return self._write_correction(session, rec)
            if check_existing:
                old = find_item_by_uid(session=session, uid=rec.uid, image_sha256=rec.image_sha256)
                if old is not None:
                    assert old.id is not None
                    dec = effective_decision(session=session, item_id=old.id)
                    return (old.id, dec.id if dec else None)
            register_models(session=session, rec=rec, model_ids=self._model_ids)
            ids = write_inspection(conn=conn, rec=rec, model_ids=self._model_ids)
            return (ids.item, ids.decision)

    def _write_challenge(self, session: Session, rec: ChallengeRecord) -> tuple[int, int | None]:
        """The item goes to adjudication, once however often it is challenged or retried."""
        ids = self._uid_to_ids.get(rec.item_uid)
        item = (
            session.get(Item, ids[0])
            if ids is not None
            else find_item_by_uid(session=session, uid=rec.item_uid)
        )
        if item is None or item.id is None:
            raise IntegrityProblem(f"cannot challenge decision {rec.item_uid}: item not found")
        already = session.exec(
            select(AdjudicationRequest).where(
                AdjudicationRequest.item_id == item.id,
                AdjudicationRequest.reason == ChosenFor.challenge.value,
            )
        ).first()
        if already is None:
            session.add(
                AdjudicationRequest(
                    item_id=item.id,
                    station_id=item.station_id,
                    reason=ChosenFor.challenge.value,
                    probability=1.0,
                    operator_id=rec.operator_id,
                    created_at=rec.at,
                )
            )
        return item.id, None

    def _write_correction(self, session: Session, rec: CorrectionRecord) -> tuple[int, int | None]:
        ids = self._uid_to_ids.get(rec.corrects_uid)
        if ids is None:
            item = find_item_by_uid(session=session, uid=rec.corrects_uid)
            if item is None or item.id is None:
                raise IntegrityProblem(
                    f"cannot correct decision {rec.corrects_uid}: item not found"
                )
            ids = (item.id, None)
        item_id = ids[0]
        previous = effective_decision(session=session, item_id=item_id)
        decision = human_decision_row(rec.decision)
        decision.item_id = item_id
        decision.supersedes_id = previous.id if previous is not None else None
        record_human_decision(
            session=session,
            decision=decision,
            disposition=Disposition(
                item_id=item_id,
                final_label=rec.final_label,
                decided_by=DecidedBy(rec.decided_by),
                level=Level(rec.level),
                threshold_version=rec.threshold_version,
            ),
        )
        assert decision.id is not None
        self._remember(rec.corrects_uid, (item_id, decision.id))
        return item_id, decision.id

    def _remember(self, uid: str, ids: tuple[int, int | None]) -> None:
        """Keep the newest REMEMBERED_ITEMS items' ids (a dict keeps its insertion order: the
        first key is the oldest)."""
        self._uid_to_ids.pop(uid, None)
        self._uid_to_ids[uid] = ids
        if len(self._uid_to_ids) > REMEMBERED_ITEMS:
            del self._uid_to_ids[next(iter(self._uid_to_ids))]

    # ------------------------------------------------------------------ spool

    def _load_spool(self) -> None:
        if self.unclaimed_path.exists() and self.unclaimed_path.stat().st_size > 0:
            self.unclaimed = (
                f"an earlier version's decision spool {self.unclaimed_path} is not replayed: it "
                "names no database; replay it into the database it was written for by hand"
            )
            log.warning("%s", self.unclaimed)
        if not self.spool_path.exists():
            return
        bad = 0
        for line in self.spool_path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                self._pending.append(from_json(line, ok_label=self.ok_label))
            except (ValueError, TypeError, KeyError):
                bad += 1  # a line torn by a crash mid-append; kept aside, never silently lost
                self._append_line(self.rejected_path, line)
        if bad:
            log.warning(
                "%d unreadable line(s) of %s moved to %s", bad, self.spool_path, self.rejected_path
            )
        if self._pending:
            log.warning("replaying %d decision(s) from %s", len(self._pending), self.spool_path)

    def _append_spool(self, rec: Record) -> None:
        try:
            self._append_line(self.spool_path, to_json(rec))
        except OSError as e:
            # The record stays in memory only; the banner says so and the line stops.
            self._unsaved.add(rec.uid)
            self.spool_error = f"cannot write the spool {self.spool_path}: {e.strerror}"
            log.error("%s", self.spool_error)

    @staticmethod
    def _append_line(path: Path, line: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _rewrite_spool(self) -> None:
        try:
            if not self._pending:
                if self.spool_path.exists():
                    self.spool_path.unlink()
                self._unsaved.clear()
                self.spool_error = None
                return
            tmp = self.spool_path.with_suffix(".tmp")
            with tmp.open("w", encoding="utf-8") as f:
                for rec in self._pending:
                    f.write(to_json(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.spool_path)
        except OSError as e:
            self.spool_error = f"cannot write the spool {self.spool_path}: {e.strerror}"
            log.error("%s", self.spool_error)
            return
        self._unsaved.clear()  # every pending record is in the file now
        self.spool_error = None

    def _reject(self, rec: Record, why: str) -> None:
        self.rejected += 1
        log.error(
            "decision %s refused by the database (%s); kept in %s", rec.uid, why, self.rejected_path
        )
        with contextlib.suppress(OSError):
            self._append_line(self.rejected_path, to_json(rec))
        self._report(
            f"a decision was refused by the database: {why} (kept in {self.rejected_path})"
        )

    def unbuildable(self, uid: str, why: str) -> None:
        """A decision whose record could not even be built: what is known goes to the rejected
        file, so it is on disk and can be looked into."""
        log.error("decision %s could not be recorded: %s", uid, why)
        with contextlib.suppress(OSError):
            self._append_line(
                self.rejected_path, json.dumps({"uid": uid, "unbuildable": why}, sort_keys=True)
            )

    def keep(self, rec: Record) -> None:
        """Keep a record that could not be written for a reason nobody foresaw: in the spool, in
        order, to be retried like any other."""
        with self._lock:
            if any(p.uid == rec.uid for p in self._pending):
                return
            self._pending.append(rec)
            self._append_spool(rec)

    def close(self) -> None:
        """Close the recorder's own database connection (a later write opens it again)."""
        if self._writer is not None:
            self._writer.close()

    # ------------------------------------------------------------------ callbacks

    def _acknowledge(self, ack: Ack) -> None:
        if self.on_ack is not None:
            self.on_ack(ack)

    def report(self, message: str) -> None:
        """Tell whoever listens (the window's banner) that writing has a problem."""
        self._report(message)

    def _report(self, message: str) -> None:
        self.last_error = message
        if self.spool_error is not None and self._unsaved:
            message = f"{message}; {self.spool_error}"
        on_disk = len(self._pending) - len(self._unsaved)
        log.warning(
            "database not writable: %s (%d decision(s) in the spool, %d only in memory)",
            message,
            on_disk,
            len(self._unsaved),
        )
        if self.on_problem is not None:
            self.on_problem(Problem(message, on_disk, len(self._unsaved)))


class _Retryable(Exception):
    pass


class _Rejected(Exception):
    pass


class _Unexpected(Exception):
    pass


def _identity(engine: Engine) -> str:
    from sqlmodel import Session

    from db.repo import database_identity

    try:
        with Session(engine) as session:
            return database_identity(session=session)
    except exc.DBAPIError as e:
        raise DbError(f"cannot read the database's identity: {_describe(e)}") from e


def _describe(e: BaseException) -> str:
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e).strip().splitlines()
    return text[0] if text else type(e).__name__


class BackgroundRecorder:
    """Runs a Recorder on its own thread so a slow or locked database never stalls the UI; the
    callbacks fire on that thread. `retry_every_s` retries pending records while idle.

    The thread is guarded: whatever one record raises is logged, reported (`on_problem`: the
    window shows it), the record is kept in the spool for a retry, and the thread goes on."""

    def __init__(self, recorder: Recorder, *, retry_every_s: float = 2.0) -> None:
        self.recorder = recorder
        self.retry_every_s = retry_every_s
        self.failures = 0
        self._queue: queue.Queue[Record | Deferred | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
        self._thread.start()

    def submit(self, rec: Record | Deferred) -> None:
        self._queue.put(rec)

    @property
    def backlog(self) -> int:
        """Records handed over and not yet taken up (in memory only)."""
        return self._queue.qsize()

    def wait_for_backlog(self, limit: int, stall_s: float | None = None) -> bool:
        """Block until at most `limit` records wait in memory (a headless run must not outrun
        the database: what it decided is on disk, or it stops). False when the recorder did
        nothing for `stall_s` meanwhile (a write that hangs), or its thread has ended."""
        return self._wait(lambda: self._queue.qsize() <= limit, stall_s)

    def wait_until_written(self, stall_s: float | None = None) -> bool:
        """Block until every record submitted so far is handled: written, or kept to retry (a
        check that reads the record then sees every item decided before it). False as for
        wait_for_backlog."""
        return self._wait(lambda: self._queue.unfinished_tasks == 0, stall_s)

    def _wait(self, done: Callable[[], bool], stall_s: float | None) -> bool:
        seen, since = self._progress(), time.monotonic()
        while not done():
            if not self._thread.is_alive():
                return False
            with self._queue.all_tasks_done:  # woken when the last task is done
                self._queue.all_tasks_done.wait(0.005)
            now = self._progress()
            if now != seen:
                seen, since = now, time.monotonic()
            elif stall_s is not None and time.monotonic() - since >= stall_s:
                return False
        return True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        self._guarded(self._retry)
        while True:
            try:
                rec = self._queue.get(timeout=self.retry_every_s)
            except queue.Empty:
                self._guarded(self._retry)
                continue
            if rec is None:
                self._queue.task_done()
                return
            self._guarded(lambda r=rec: self._record(r))  # type: ignore[misc]
            self._queue.task_done()

    def _retry(self) -> None:
        if self.recorder.pending:
            self.recorder.retry()

    def _record(self, rec: Record | Deferred) -> None:
        if isinstance(rec, Deferred):
            try:
                built = rec.build()
            except Exception as e:
                self.recorder.unbuildable(rec.uid, f"{type(e).__name__}: {e}")
                raise
        else:
            built = rec
        try:
            self.recorder.record(built)
        except Exception:
            self.recorder.keep(built)  # on disk before the error is reported
            raise

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as e:
            self.failures += 1
            log.exception("the recorder failed; the thread goes on")
            self.recorder.report(f"the recorder failed ({type(e).__name__}: {e})")

    def _progress(self) -> tuple[int, int, int, int]:
        """What changes while the thread gets on: records handed over and not yet handled, and
        the recorder's counts (a retry of the spool after an outage writes without taking any
        record from the queue)."""
        r = self.recorder
        return (self._queue.unfinished_tasks, r.written, r.rejected, r.pending)

    def close(self, timeout_s: float = 10.0) -> int:
        """Stop the thread once every record handed over is handled (written, or kept in the
        spool). Waits as long as records keep being handled, so a backlog drains however long it
        takes (it used to give up after `timeout_s` in all: the records still queued were in
        memory only, and ended with the process); gives up when none was handled, nor a pending
        one retried, for `timeout_s`: a write that hangs. Returns how many records it gave up on
        (0 when all were handled): the thread keeps them and goes on while the process lives,
        and an error in the log says how many."""
        self._queue.put(None)
        seen = self._progress()
        while self._thread.is_alive():
            self._thread.join(timeout_s)
            now = self._progress()
            if now == seen:
                break
            seen = now
        # Records handed over and not handled, less the stop sign: 0 once the thread took it
        # (none left behind it); those queued behind a thread that died are counted too.
        left = max(0, self._queue.unfinished_tasks - 1)
        if not self._thread.is_alive():
            self.recorder.close()
            if left:
                log.error("%d decision(s) not saved: the recorder's thread has stopped", left)
        elif left:
            log.error(
                "%d decision(s) not saved yet: a write has not finished in %g s; they are saved "
                "if it finishes before the program ends, and lost if it does not",
                left,
                timeout_s,
            )
        return left
