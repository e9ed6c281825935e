"""How good is a benchmark? The measures of Li, Chiang, Frick et al., "From Crowdsourced Data to High-Quality
Benchmarks: Arena-Hard and BenchBuilder Pipeline" (2024, section 4), computed from the headline Estimates of every
model judged on a benchmark in the store.

For the ``m`` models of one (benchmark, judge), each with a score and a confidence interval:

* separability with confidence: the share of the ``m(m-1)/2`` model pairs whose intervals do not overlap;
* mean interval width: the mean of ``ci_high - ci_low``, in the benchmark's units and divided by the range of the
  scores (max - min), so benchmarks on other scales can be set side by side;
* against a reference ranking (a file, e.g. human-preference Elo), over the models both know:
  - agreement with confidence: over the pairs the reference orders confidently (its intervals do not overlap; every
    pair with distinct scores when it gives no intervals), +1 when the benchmark orders the pair confidently and
    the same way, -1 when it orders it confidently the other way, 0 when its intervals overlap; the mean;
  - Spearman's rho and Kendall's tau-b between the two score lists;
  - pair-rank Brier score: for each pair the benchmark's probability that the first model ranks above the second,
    ``Phi((s_i - s_j) / sqrt(se_i^2 + se_j^2))`` with ``se = (ci_high - ci_low) / (2 z)``, against the reference's
    order (1 or 0); the mean squared difference (0 is perfect; 0.25 is a coin flip).

Scores where lower is better (none of the built-in benchmarks) are negated first, so "ranks above" means better.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from lioneval import benchmarks
from lioneval.errors import DataError, LionEvalError
from lioneval.leaderboard import leaderboard
from lioneval.store import RunStore

__all__ = ["ModelScore", "Quality", "bench_quality", "load_reference", "quality", "stored_scores"]

MIN_MODELS = 2  # a pair at least


@dataclass(frozen=True)
class ModelScore:
    model: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None


@dataclass(frozen=True)
class Quality:
    benchmark: str
    judge: str
    metric: str
    models: int
    pairs: int
    separability: float  # share of pairs whose intervals do not overlap
    mean_ci_width: float
    mean_ci_width_rel: float | None  # divided by the range of the scores
    level: float = 0.95
    reference_models: int = 0  # models also in the reference
    agreement: float | None = None
    spearman: float | None = None
    kendall: float | None = None
    brier: float | None = None
    left_out: tuple[str, ...] = ()  # judged models without a reliable headline interval

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _separated(a: ModelScore, b: ModelScore) -> int:
    """+1 when a's interval lies wholly above b's, -1 when wholly below, 0 when they overlap."""
    if a.ci_low > b.ci_high:  # type: ignore[operator]
        return 1
    if a.ci_high < b.ci_low:  # type: ignore[operator]
        return -1
    return 0


def quality(scores: Sequence[ModelScore], reference: Mapping[str, ModelScore] | None = None, *,
            benchmark: str = "", judge: str = "", metric: str = "", level: float = 0.95,
            higher_is_better: bool = True) -> Quality:
    """The measures for one benchmark's models (every one with an interval); see the module notes."""
    rows = sorted((s for s in scores if s.has_interval and math.isfinite(s.value)), key=lambda s: s.model)
    if len(rows) < MIN_MODELS:
        raise LionEvalError(f"{benchmark or 'the benchmark'} has {len(rows)} model(s) with a confidence interval; "
                            f"its quality needs at least {MIN_MODELS}",
                            fix="judge more models on it (or import their judgments) and rerun")
    if not higher_is_better:
        rows = [ModelScore(s.model, -s.value, -s.ci_high, -s.ci_low) for s in rows]  # type: ignore[operator]
    m = len(rows)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    sep = [_separated(rows[i], rows[j]) for i, j in pairs]
    widths = np.array([float(s.ci_high) - float(s.ci_low) for s in rows])  # type: ignore[arg-type]
    values = np.array([s.value for s in rows])
    spread = float(values.max() - values.min())
    out: dict[str, Any] = {
        "benchmark": benchmark, "judge": judge, "metric": metric, "models": m, "pairs": len(pairs),
        "separability": float(np.mean([s != 0 for s in sep])), "mean_ci_width": float(widths.mean()),
        "mean_ci_width_rel": float(widths.mean() / spread) if spread > 0 else None, "level": level,
    }
    if reference:
        out.update(_against(rows, reference, level))
    return Quality(**out)


def _against(rows: list[ModelScore], reference: Mapping[str, ModelScore], level: float) -> dict[str, Any]:
    both = [s for s in rows if s.model in reference]
    if len(both) < MIN_MODELS:
        return {"reference_models": len(both)}
    ref = [reference[s.model] for s in both]
    z = float(sps.norm.ppf(0.5 + level / 2))
    points, brier = [], []
    for i in range(len(both)):
        for j in range(i + 1, len(both)):
            r, b = ref[i], ref[j]
            truth = (_separated(r, b) if r.has_interval and b.has_interval
                     else int(np.sign(r.value - b.value)))
            if truth != 0:
                points.append(_separated(both[i], both[j]) * truth)
            if r.value != b.value:
                se = math.hypot((both[i].ci_high - both[i].ci_low) / (2 * z),  # type: ignore[operator]
                                (both[j].ci_high - both[j].ci_low) / (2 * z))  # type: ignore[operator]
                diff = both[i].value - both[j].value
                p = float(sps.norm.cdf(diff / se)) if se > 0 else 0.5 + 0.5 * float(np.sign(diff))
                brier.append((p - float(r.value > b.value)) ** 2)
    mine = np.array([s.value for s in both])
    theirs = np.array([r.value for r in ref])
    constant = np.ptp(mine) == 0 or np.ptp(theirs) == 0
    return {
        "reference_models": len(both),
        "agreement": float(np.mean(points)) if points else None,
        "spearman": None if constant else float(sps.spearmanr(mine, theirs).statistic),
        "kendall": None if constant else float(sps.kendalltau(mine, theirs).statistic),
        "brier": float(np.mean(brier)) if brier else None,
    }


def load_reference(path: str | Path) -> dict[str, ModelScore]:
    """A reference ranking: CSV with a ``model`` column, a score column (``score``, ``elo``, ``rating`` or
    ``value``) and optional ``lower``/``upper``; or JSON ``{model: score}`` / ``{model: {score, lower, upper}}``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read the reference ranking {p}: {e.strerror}", fix="check the path") from e
    shape = ("a CSV with columns model,score[,lower,upper] or JSON {model: score} / "
             "{model: {score, lower, upper}}")
    out: dict[str, ModelScore] = {}
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            for model, v in data.items():
                v = v if isinstance(v, dict) else {"score": v}
                out[str(model)] = _ref_score(str(model), v)
        else:
            for row in csv.DictReader(text.splitlines()):
                out[str(row["model"])] = _ref_score(str(row["model"]), row)
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"the reference ranking {p} cannot be read ({e})", fix=f"write it as {shape}") from None
    if len(out) < MIN_MODELS:
        raise DataError(f"the reference ranking {p} names {len(out)} model(s)", fix=f"write it as {shape}")
    return out


def _ref_score(model: str, row: Mapping[str, Any]) -> ModelScore:
    key = next((k for k in ("score", "elo", "rating", "value") if row.get(k) not in (None, "")), None)
    if key is None:
        raise ValueError(f"no score for {model!r}")
    lo, hi = row.get("lower"), row.get("upper")
    return ModelScore(model, float(row[key]), float(lo) if lo not in (None, "") else None,
                      float(hi) if hi not in (None, "") else None)


def stored_scores(store: RunStore, bench: str, *, rounds: int | None = None, seed: int = 0,
                  **options: Any) -> dict[tuple[str, str], tuple[list[ModelScore], list[str]]]:
    """(judge, headline metric) -> each model's headline score and interval on ``bench``, from stored judgments, and
    the models left out: those whose headline is unreliable (too few questions, too many failures) or has no
    interval (a baseline compared with itself)."""
    metric = benchmarks.load(bench).headline
    out: dict[tuple[str, str], tuple[list[ModelScore], list[str]]] = {}
    for row in leaderboard(store, bench, rounds=rounds, seed=seed, **options):
        cell = row.get(metric) if metric else None
        scores, left_out = out.setdefault((row["judge"], metric), ([], []))
        if not cell or not row.get("reliable", True) or cell.get("lower") is None or cell.get("value") is None:
            left_out.append(row["model"])
        else:
            scores.append(ModelScore(row["model"], float(cell["value"]), float(cell["lower"]), float(cell["upper"])))
    return out


def bench_quality(store: RunStore, benches: Sequence[str] = (), *, reference: Mapping[str, ModelScore] | None = None,
                  rounds: int | None = None, seed: int = 0,
                  options: Mapping[str, Mapping[str, Any]] | None = None) -> list[Quality]:
    """One Quality per (benchmark, judge) with at least two judged models: of ``benches``, or of every benchmark
    with judgments in the store. ``options``: leaderboard options per benchmark (e.g. AlpacaEval's ``data``)."""
    names = list(benches) or store.distinct("judgments", "benchmark")
    if not names:
        raise LionEvalError("the store holds no judgments", fix="run or import some, then rerun `bench-quality`")
    found: list[Quality] = []
    for bench in names:
        b = benchmarks.load(bench)
        extra = dict((options or {}).get(b.name, {}))
        for (judge, metric), (scores, left_out) in stored_scores(store, bench, rounds=rounds, seed=seed,
                                                                 **extra).items():
            if len(scores) >= MIN_MODELS:
                q = quality(scores, reference, benchmark=bench, judge=judge, metric=metric,
                            higher_is_better=b.higher_is_better)
                found.append(dataclasses.replace(q, left_out=tuple(sorted(left_out))))
    if not found:
        raise LionEvalError(f"no benchmark among {', '.join(names)} has two models with confidence intervals",
                            fix="judge at least two models on a benchmark, then rerun")
    return found
