"""Where a command may write its output: never onto what it reads, nor onto what the station owns
(the database and the files beside it, the image store, the model artifact in use)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from station.errors import StationError
from station.settings import Settings

#: Files SQLite keeps beside a database; writing over one corrupts the database.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Protected:
    path: Path
    what: str  # what it is, for the message: "the station's database"
    tree: bool = False  # a folder: everything inside it is protected too


def station_files(settings: Settings) -> list[Protected]:
    """The database named by the settings (a SQLite file and its sidecars), the image store and
    the decision spools beside it."""
    from db.engine import sqlite_path

    out: list[Protected] = []
    db = sqlite_path(settings.effective_database_url)
    if db is not None:
        out.append(Protected(db, "the station's database"))
        out += [
            Protected(db.with_name(db.name + s), f"the database's {s[1:]} file")
            for s in SQLITE_SIDECARS
        ]
    out.append(Protected(settings.image_dir, "the station's image store", tree=True))
    files = settings.files_dir
    if files.is_dir():
        out += [
            Protected(p, "a decision spool of the station")
            for p in (*files.glob("decision-spool*.jsonl"), *files.glob("decision-rejected*.jsonl"))
        ]
    return out


def bundled_model() -> Protected:
    # Found without importing `model` (that would load torch for a path).
    import importlib.util

    spec = importlib.util.find_spec("model")
    assert spec is not None and spec.submodule_search_locations
    root = Path(list(spec.submodule_search_locations)[0])
    return Protected(root / "bundled" / "default", "the bundled model", tree=True)


def refuse_output(
    out: Path | str, flag: str, protected: Iterable[Protected], *, folder: bool = False
) -> None:
    """Refuse `out` when it is, or lies inside, something protected; a folder output is also
    refused when it is the folder holding something protected (its files would land beside
    it: `capture --out` writes an images/ folder of its own)."""
    target = Path(out).expanduser().resolve()
    for p in protected:
        where = p.path.expanduser().resolve()
        inside = p.tree and where in target.parents
        holds = folder and target == where.parent
        if target == where or inside or holds:
            relation = "is" if target == where else "lies inside" if inside else "holds"
            raise StationError(
                f"{flag} {out} {relation} {p.what} ({where}); a command never writes its "
                "output there: choose another path"
            )
