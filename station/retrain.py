"""`station model retrain`: the line's verified items -> a challenger beside the champion.

export (station.dataset: verified labels, a holdout kept apart by image hash)
-> train, starting from the champion's weights, at its architecture, input size and fit
-> the champion and the challenger on the same held-out images, paired (station.compare), the
   comparison written as HTML and JSON beside the new artifact
-> register the artifact -> deploy it as the station's shadow challenger.

The challenger decides nothing: it runs hidden beside the champion until an engineer promotes it
(canary, then champion) on its own evidence from the line (`station model compare`). The offline
comparison only says whether that is worth starting.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from db.engine import session_scope
from db.models import Operator
from review.query import ReportFilters
from station.auth import require
from station.compare import compare, score_folder, write_comparison
from station.dataset import ExportSummary, export_dataset
from station.errors import StationError
from station.registry import (
    RoleChange,
    artifact_dir,
    deploy_version,
    lineup,
    register_artifact,
    spec_of,
    station_row,
)
from station.settings import Settings

#: Fewer held-out images than this say nothing about which model is better.
MIN_HOLDOUT = 30


class RetrainRefused(StationError):
    pass


@dataclass(frozen=True)
class Retrained:
    artifact: Path
    data: Path  # the exported training folder, kept with the artifact for the record
    export: ExportSummary
    spec: str
    champion: str
    comparison: dict[str, Any]
    reports: list[Path]
    deployed: RoleChange | None


def next_version(version: str) -> str:
    """ "2" -> "3", "v7" -> "v8", "1.4" -> "1.5"; anything else gets "-r1"."""
    m = re.match(r"^(.*?)(\d+)$", version)
    return f"{m.group(1)}{int(m.group(2)) + 1}" if m else f"{version}-r1"


def retrain(
    engine: Engine,
    settings: Settings,
    *,
    out: Path,
    operator: Operator,
    station_name: str | None = None,
    epochs: int = 6,
    holdout: float = 0.2,
    include_agreed: bool = False,
    version: str | None = None,
    input_size: tuple[int, int] | None = None,
    deploy: bool = True,
    min_holdout: int = MIN_HOLDOUT,
    say: Callable[[str], None] = lambda _s: None,
) -> Retrained:
    """Export, train from the champion, compare on the holdout, register, deploy as challenger.
    `input_size`: train at another size than the champion's (a quicker model, or a test)."""
    from model import TrainConfig, read_manifest, train
    from model.predictor import Predictor

    require(operator, "deploy_model")
    out = Path(out)
    if out.exists():
        raise RetrainRefused(f"{out} exists: expected a new artifact folder")
    with session_scope(engine) as s:
        station = station_row(s, settings, station_name)
        assert station.id is not None
        champ = lineup(s, station.id).champion
        if champ is None:
            raise RetrainRefused(
                f"station {station.name} has no champion: nothing to start from or compare with"
            )
        champ_dir = artifact_dir(settings, champ)
        champ_spec, champ_name, champ_version = spec_of(champ), champ.name, champ.version
        name = station.name
    if champ_dir is None:
        raise RetrainRefused(
            f"the champion {champ_spec}'s artifact is not in this machine's model store: "
            "register it here first (`station model register`)"
        )
    data = out.with_name(out.name + ".data")
    if data.exists():
        shutil.rmtree(data)  # a failed earlier run's export: this run's is the record
    say(f"exporting the verified items of station {name}")
    summary = export_dataset(
        engine,
        ReportFilters(station=name),
        data,
        image_root=settings.image_dir,
        classes=list(settings.labels.all),
        include_agreed=include_agreed,
        holdout=holdout,
    )
    counts = summary.counts()
    if len(counts["train"]) < 2:
        raise RetrainRefused(
            f"the export holds {len(counts['train'])} class(es) to train on: expected at least "
            "2 (adjudicate more items, or add --include-agreed)"
        )
    held = sum(counts["holdout"].values())
    if held < min_holdout:
        raise RetrainRefused(
            f"{held} held-out verified images: expected at least {min_holdout} to compare the "
            "models on (adjudicate more items, or raise --holdout)"
        )
    manifest = read_manifest(champ_dir)
    if str(manifest["architecture"]).startswith("patchcore_"):
        raise RetrainRefused(
            f"the champion {champ_spec} is an anomaly model: rebuild it from the export's "
            f"defect-free images with `station model train-anomaly --data {data / 'train'} "
            f"--init-weights {champ_dir / 'weights.pt'} --out ARTIFACT`, then register it"
        )
    size = input_size or (int(manifest["input"]["width"]), int(manifest["input"]["height"]))
    cfg = TrainConfig(
        arch=manifest["architecture"],
        input_size=size,
        fit=manifest["input"].get("fit", "stretch"),
        epochs=epochs,
        ok_class=settings.ok_class,
        init_weights=str(champ_dir / "weights.pt"),
        name=champ_name,
        version=version or next_version(champ_version),
        notes={"retrained_from": champ_spec, "export": str(data)},
    )
    say(f"training {cfg.name}:{cfg.version} from {champ_spec} ({epochs} epochs)")
    train(data / "train", out, cfg)
    say("comparing champion and challenger on the held-out images")
    classes, ok = list(settings.labels.all), settings.ok_class
    a = score_folder(Predictor.load(champ_dir), data / "holdout", classes, ok)
    b = score_folder(Predictor.load(out), data / "holdout", classes, ok)
    result = compare(a, b, classes, ok, settings.gates.max_escape_upper95)
    spec = f"{cfg.name}:{cfg.version}"
    reports = write_comparison(result, out.parent, (champ_spec, spec), stem=out.name)
    registered = register_artifact(engine, settings, out, operator=operator)
    deployed = None
    if deploy:
        v = result["verdict"]
        deployed = deploy_version(
            engine,
            settings,
            registered.spec,
            "challenger",
            operator=operator,
            reason=f"retrained on {len(summary.items)} verified items; offline comparison "
            f"favours the {v['favours']} ({v['why']})",
            station_name=name,
        )
    return Retrained(out, data, summary, registered.spec, champ_spec, result, reports, deployed)
