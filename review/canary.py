"""Two model versions compared on the same items, and a canary step judged on that comparison.

Both versions answered every paired item (one acted, the other ran hidden beside it), so the
comparison is paired: on the items whose true pass/fail is known, the exact McNemar test looks
only at the discordant pairs (b: the new version wrong where the old one was right, c: the
reverse). The truth, best first: a QA lead's adjudication, a known ground truth (a golden sample,
a simulated line), or the inspector's decision where no model's answer was on screen (shadow,
blind checks): never a decision the inspector made looking at one of the two.

A canary step ends
  Failed        its errors or timeouts, its latency p95, or a one-sided McNemar (the canary
                significantly worse) say so: the canary stops at once;
  Successful    after its baking period (items in its arm, minutes, referenced pairs) the upper
                95% bound on how much worse it errs than the champion is within the margin;
  Inconclusive  otherwise: it holds its weight (no data is never a pass).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import scipy.stats as sps
from sqlalchemy import Connection, and_, func, select

from db.models import Adjudication, HumanDecision, Item, Prediction, Slot
from review.stats import clopper_pearson_interval, clopper_pearson_upper, mcnemar_exact

_pred = Prediction.__table__  # type: ignore[attr-defined]
_item = Item.__table__  # type: ignore[attr-defined]
_adj = Adjudication.__table__  # type: ignore[attr-defined]
_hd = HumanDecision.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CanaryRules:
    """What a canary step needs (settings [lifecycle]; the defaults are these)."""

    min_items: int = 200  # items in the canary's arm during the step
    min_minutes: float = 60.0  # the step's baking time
    min_reference: int = 50  # paired items whose truth is known
    max_worse: float = 0.02  # non-inferiority margin on the pass/fail error rate
    alpha: float = 0.01  # one-sided McNemar: the canary is worse
    max_error_rate: float = 0.02  # model errors and timeouts among its answers
    latency_p95_ms: float = 1500.0
    min_answers: int = 20  # before its error rate or latency can fail it


class Outcome(enum.StrEnum):
    successful = "successful"
    failed = "failed"
    inconclusive = "inconclusive"


@dataclass
class Comparison:
    """`new` against `old` on the items both answered (from `since`)."""

    new: int  # model_version ids
    old: int
    paired: int = 0  # items both answered with a label
    agree: int = 0  # ... with the same pass/fail call
    referenced: int = 0  # paired items whose truth is known
    new_wrong: int = 0  # pass/fail against the truth
    old_wrong: int = 0
    b: int = 0  # new wrong, old right
    c: int = 0  # new right, old wrong
    arm: int = 0  # items where `new` was acted on (the canary's arm)
    answers: int = 0  # answers of `new`, errors included
    errors: int = 0
    latency_p95_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        n = self.referenced
        d["agreement"] = _rate(self.agree, self.paired)
        d["new_error"] = _rate(self.new_wrong, n)
        d["old_error"] = _rate(self.old_wrong, n)
        d["error_rate"] = _rate(self.errors, self.answers)
        d["mcnemar"] = mcnemar_exact(self.b, self.c).to_dict()
        d["p_new_worse"] = self.p_new_worse
        d["worse_upper95"] = self.worse_upper95
        return d | self.extra

    @property
    def p_new_worse(self) -> float:
        """One-sided exact McNemar: P(X >= b), X ~ Binomial(b + c, 1/2)."""
        n = self.b + self.c
        return 1.0 if n == 0 else float(sps.binom.sf(self.b - 1, n, 0.5))

    @property
    def worse_upper95(self) -> float | None:
        """Upper 95% bound on (new's error rate - old's) on the referenced pairs: the discordant
        share times (2q - 1), q the Clopper-Pearson upper bound of b among the discordant."""
        n, d = self.referenced, self.b + self.c
        if n == 0:
            return None
        if d == 0:
            return 0.0
        q = clopper_pearson_upper(self.b, d)
        assert q is not None
        return d / n * (2.0 * q - 1.0)


def _rate(k: int, n: int) -> dict[str, Any]:
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": clopper_pearson_interval(k, n)}


def compare(
    conn: Connection,
    *,
    station_id: int,
    new: int,
    old: int,
    ok: str,
    since: datetime | None = None,
) -> Comparison:
    """Version `new` against version `old` on this station's items that both answered."""
    cond = [_item.c.station_id == station_id, _pred.c.model_version_id.in_((new, old))]
    if since is not None:
        cond.append(_pred.c.created_at >= since)
    rows = conn.execute(
        select(
            _pred.c.item_id,
            _pred.c.model_version_id,
            _pred.c.slot,
            _pred.c.label,
            _pred.c.error,
            _pred.c.latency_ms,
            _item.c.ground_truth,
        )
        .join(_item, _item.c.id == _pred.c.item_id)
        .where(and_(*cond))
        .order_by(_pred.c.id)
    ).all()
    cmp = Comparison(new=new, old=old)
    labels: dict[int, dict[int, str]] = {}
    truth: dict[int, str] = {}
    latencies: list[float] = []
    for item_id, version, slot, label, error, latency, ground in rows:
        if version == new:
            cmp.answers += 1
            cmp.errors += error is not None or label is None
            if latency is not None:
                latencies.append(float(latency))
            if Slot(slot) is Slot.canary:
                cmp.arm += 1
        if label is not None:
            labels.setdefault(item_id, {})[version] = label
        if ground is not None:
            truth[item_id] = ground
    if latencies:
        cmp.latency_p95_ms = float(np.percentile(latencies, 95))
    both = [i for i, d in labels.items() if new in d and old in d]
    truth.update(_unprompted_decisions(conn, both, exclude=set(truth)))
    truth.update(_adjudicated(conn, both))  # a QA lead's word over everything else
    for i in both:
        n_pass, o_pass = labels[i][new] == ok, labels[i][old] == ok
        cmp.paired += 1
        cmp.agree += n_pass == o_pass
        if i not in truth:
            continue
        t_pass = truth[i] == ok
        cmp.referenced += 1
        n_wrong, o_wrong = n_pass != t_pass, o_pass != t_pass
        cmp.new_wrong += n_wrong
        cmp.old_wrong += o_wrong
        cmp.b += n_wrong and not o_wrong
        cmp.c += o_wrong and not n_wrong
    return cmp


def _chunks(ids: Sequence[int], size: int = 900) -> list[Sequence[int]]:
    return [ids[k : k + size] for k in range(0, len(ids), size)]


def _adjudicated(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in _chunks(list(ids)):
        latest = (
            select(func.max(_adj.c.id)).where(_adj.c.item_id.in_(chunk)).group_by(_adj.c.item_id)
        )
        for item_id, label in conn.execute(
            select(_adj.c.item_id, _adj.c.label).where(_adj.c.id.in_(latest))
        ):
            out[int(item_id)] = str(label)
    return out


def _unprompted_decisions(
    conn: Connection, ids: Sequence[int], exclude: set[int]
) -> dict[int, str]:
    """The inspector's latest decision where no model's answer was on screen."""
    out: dict[int, str] = {}
    wanted = [i for i in ids if i not in exclude]
    for chunk in _chunks(wanted):
        latest = select(func.max(_hd.c.id)).where(_hd.c.item_id.in_(chunk)).group_by(_hd.c.item_id)
        for item_id, label, shown in conn.execute(
            select(_hd.c.item_id, _hd.c.label, _hd.c.suggestion_shown).where(_hd.c.id.in_(latest))
        ):
            if not shown:
                out[int(item_id)] = str(label)
    return out


@dataclass(frozen=True)
class StepVerdict:
    outcome: Outcome
    reason: str
    numbers: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "reason": self.reason, "numbers": self.numbers}


def health_breach(
    answers: int, errors: int, p95_ms: float | None, rules: CanaryRules, *, of: str = "answers"
) -> str | None:
    """What a model's errors and timeouts or its latency breach, in words (`of`: which answers
    they were); None while it is within the limits or has fewer than `min_answers` answers.
    Fails a canary step, rolls a champion back (station/ramp.py)."""
    if answers < rules.min_answers:
        return None
    rate = errors / answers
    if rate > rules.max_error_rate:
        return (
            f"errors or timeouts on {errors} of {of} ({rate:.1%}, limit {rules.max_error_rate:.1%})"
        )
    if p95_ms is not None and p95_ms > rules.latency_p95_ms:
        return f"latency p95 {p95_ms:.0f} ms over {of} (budget {rules.latency_p95_ms:.0f} ms)"
    return None


def judge_step(cmp: Comparison, minutes: float, rules: CanaryRules) -> StepVerdict:
    """A canary step on its comparison with the champion since the step began."""
    numbers = cmp.to_dict() | {"minutes": round(minutes, 2)}
    breach = health_breach(
        cmp.answers, cmp.errors, cmp.latency_p95_ms, rules, of=f"{cmp.answers} answers"
    )
    if breach is not None:
        return StepVerdict(Outcome.failed, breach, numbers)
    if cmp.b + cmp.c > 0 and cmp.p_new_worse < rules.alpha:
        return StepVerdict(
            Outcome.failed,
            f"worse than the champion: wrong on {cmp.b} items the champion got right, right on "
            f"{cmp.c} it got wrong (one-sided exact McNemar p = {cmp.p_new_worse:.2g} < "
            f"{rules.alpha:g})",
            numbers,
        )
    short = []
    if cmp.arm < rules.min_items:
        short.append(f"{cmp.arm} of {rules.min_items} items in its arm")
    if minutes < rules.min_minutes:
        short.append(f"{minutes:.0f} of {rules.min_minutes:g} minutes")
    if cmp.referenced < rules.min_reference:
        short.append(f"{cmp.referenced} of {rules.min_reference} pairs with a known truth")
    if short:
        return StepVerdict(Outcome.inconclusive, "still baking: " + ", ".join(short), numbers)
    up = cmp.worse_upper95
    if up is None or up > rules.max_worse:
        return StepVerdict(
            Outcome.inconclusive,
            f"cannot yet show it errs at most {rules.max_worse:.1%} more often than the champion "
            f"(upper 95% bound {up:.1%})"
            if up is not None
            else "no pair with a known truth",
            numbers,
        )
    return StepVerdict(
        Outcome.successful,
        f"no worse than the champion: {cmp.b} vs {cmp.c} discordant of {cmp.referenced} "
        f"referenced pairs (its extra error at most {up:.1%}), {cmp.arm} items in its arm",
        numbers,
    )


# --------------------------------------------------------------------------- the report's block


def _active_roles(conn: Connection, station_id: int) -> dict[str, dict[str, Any]]:
    """slot -> {id, version, weight, since} of the deployments in force at the station."""
    from db.models import Deployment, ModelVersion

    dep = Deployment.__table__  # type: ignore[attr-defined]
    mv = ModelVersion.__table__  # type: ignore[attr-defined]
    rows = conn.execute(
        select(dep.c.slot, dep.c.traffic_share, dep.c.started_at, mv.c.id, mv.c.name, mv.c.version)
        .join(mv, mv.c.id == dep.c.model_version_id)
        .where(dep.c.station_id == station_id, dep.c.ended_at.is_(None))
        .order_by(dep.c.id)
    ).all()
    out: dict[str, dict[str, Any]] = {}
    for slot, share, since, vid, name, version in rows:
        out[Slot(slot).value] = {
            "id": int(vid),
            "version": f"{name}:{version}",
            "weight": float(share) * 100.0,
            "since": since,
        }
    return out


def models_block(
    conn: Connection, station_id: int, *, ok: str, rules: CanaryRules | None = None
) -> dict[str, Any]:
    """The station's lineup and, when a challenger or canary runs, its paired comparison with
    the champion on every item both answered (and the canary's current step, judged)."""
    from datetime import UTC
    from datetime import datetime as dt

    roles = _active_roles(conn, station_id)
    challenger = roles.get("canary") or roles.get("challenger")
    champion = roles.get("champion")
    block: dict[str, Any] = {
        "champion": champion["version"] if champion else None,
        "challenger": challenger["version"] if challenger else None,
        "canary_weight": roles["canary"]["weight"] if "canary" in roles else 0.0,
        "previous": roles["standby"]["version"] if "standby" in roles else None,
    }
    if champion is None or challenger is None:
        return block
    cmp = compare(conn, station_id=station_id, new=challenger["id"], old=champion["id"], ok=ok)
    block["comparison"] = cmp.to_dict()
    if "canary" in roles:
        since = roles["canary"]["since"]
        since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
        step = compare(
            conn,
            station_id=station_id,
            new=challenger["id"],
            old=champion["id"],
            ok=ok,
            since=since,
        )
        minutes = (dt.now(UTC) - since).total_seconds() / 60.0
        block["canary_step"] = judge_step(step, minutes, rules or CanaryRules()).to_dict()
    return block
