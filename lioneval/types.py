"""The vocabulary of lioneval: every record that flows through a run.

Records are immutable pydantic models with a ``schema_version``. Each has a stable content hash (``key``) over the
fields that define it, used as the primary key in the store: writing the same record twice stores it once, and a
rerun with the same inputs finds the record it would have produced.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1
# Model names of the null-model probe's constant answers (lioneval.checks.audit); leaderboards and dashboards hide
# models with this prefix.
NULL_MODEL_PREFIX = "lioneval-null:"

__all__ = [
    "NULL_MODEL_PREFIX",
    "SCHEMA_VERSION",
    "Answer",
    "CheckResult",
    "Decision",
    "Estimate",
    "Game",
    "Judgment",
    "Question",
    "EarlyStop",
    "Promotion",
    "Report",
    "RunSpec",
    "content_hash",
]


def _canonical(obj: Any) -> Any:
    """Normalise floats so that 1 and 1.0 hash alike and NaN is rejected (it has no stable meaning)."""
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            raise ValueError("cannot hash a NaN or infinite value")
        return int(obj) if obj.is_integer() else obj
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def content_hash(obj: Any, length: int = 16) -> str:
    """Stable hex digest of a JSON-able object: key order, tuple/list and int/float spelling do not matter."""
    text = json.dumps(_canonical(obj), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class Record(BaseModel):
    """Base of every stored record: frozen, strict about unknown fields, versioned and hashable."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    schema_version: int = SCHEMA_VERSION
    # Fields that identify the record; everything else is payload. None means all fields except schema_version.
    KEY_FIELDS: ClassVar[tuple[str, ...] | None] = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {v} is newer than this lioneval understands ({SCHEMA_VERSION}); upgrade lioneval"
            )
        return v

    @property
    def key(self) -> str:
        data = self.model_dump(mode="json", exclude={"schema_version"})
        fields = self.KEY_FIELDS
        if fields is not None:
            data = {k: data[k] for k in fields}
        return content_hash({"type": type(self).__name__, **data})

    def to_json(self) -> str:
        return self.model_dump_json()


class Question(Record):
    """One benchmark item. ``turns`` holds the user messages (MT-Bench has two)."""

    id: str = Field(min_length=1)
    benchmark: str = Field(min_length=1)
    turns: list[str] = Field(min_length=1)
    category: str | None = None
    reference: list[str] | None = None  # reference answers per turn (MT-Bench math/reasoning/coding)
    meta: dict[str, Any] = Field(default_factory=dict)  # e.g. Arena-Hard cluster, AlpacaEval dataset subset

    KEY_FIELDS = ("id", "benchmark", "turns", "reference")


class Answer(Record):
    """A model's (or baseline's) answer to one question, with how it was generated."""

    question_id: str = Field(min_length=1)
    benchmark: str = Field(min_length=1)
    model: str = Field(min_length=1)  # checkpoint id or baseline name
    turns: list[str] = Field(min_length=1)
    token_counts: list[int] | None = None
    finish_reasons: list[str] | None = None  # "stop" | "length" | ... per turn
    generation: dict[str, Any] = Field(default_factory=dict)  # sampling settings, backend, template
    meta: dict[str, Any] = Field(default_factory=dict)  # e.g. markdown counts for style control

    # The key says which answer this is, not what it says: a rerun with the same settings reuses it.
    KEY_FIELDS = ("question_id", "benchmark", "model", "generation")

    @model_validator(mode="after")
    def _lengths_match(self) -> Answer:
        for name in ("token_counts", "finish_reasons"):
            v = getattr(self, name)
            if v is not None and len(v) != len(self.turns):
                raise ValueError(f"{name} has {len(v)} entries but the answer has {len(self.turns)} turns")
        return self

    @property
    def text_hash(self) -> str:
        return content_hash(self.turns)


class Game(Record):
    """One judge call in one position order. ``value`` is from the judged model's side."""

    model_position: Literal["A", "B", "single"] = "single"
    label: str | None = None  # parsed verdict as the judge wrote it ("A>>B", "8", ...)
    value: float | None = None  # rating, or the model's win share in [0, 1]
    raw: str = ""
    error: str | None = None


class Judgment(Record):
    """A judge's verdict on one answer (rating) or one answer against a baseline (pairwise).

    A failed or unparsed judgment has ``value=None`` and says why in ``error``; it is never scored as a loss.
    """

    question_id: str = Field(min_length=1)
    benchmark: str = Field(min_length=1)
    judge: str = Field(min_length=1)  # judge id: hash of backend, prompt template, parser and sampling settings
    model: str = Field(min_length=1)
    kind: Literal["rating", "pairwise"]
    turn: int | None = None  # MT-Bench judges each turn; None = the whole conversation
    baseline: str | None = None
    value: float | None = None
    games: list[Game] = Field(default_factory=list)
    inputs: str = ""  # content hash of what the judge saw (answer texts, question, template)
    raw: str = ""
    error: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    KEY_FIELDS = ("question_id", "benchmark", "judge", "model", "kind", "turn", "baseline", "inputs")

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("a judgment value must be finite; use value=None with an error for a failure")
        return v

    @model_validator(mode="after")
    def _pairwise_has_baseline(self) -> Judgment:
        if self.kind == "pairwise" and not self.baseline:
            raise ValueError("a pairwise judgment needs the baseline it was compared with")
        if self.value is None and not self.error and not self.games:
            raise ValueError("a judgment without a value must say why in `error`")
        return self

    @property
    def failed(self) -> bool:
        return self.value is None


class Estimate(Record):
    """A headline number with its uncertainty and how that was computed."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    se: float | None = None
    n: int = Field(ge=0)
    method: str  # "bootstrap-percentile", "bradley-terry", "glm-lc", "mean", ...
    rounds: int | None = None
    seed: int | None = None
    unit: str | None = None  # resampling unit: "question", "battle", ...
    level: float = 0.95
    # False when too many of the judgments behind it failed (or too few questions remain) to trust it
    reliable: bool = True
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> Estimate:
        lo, hi = self.ci_low, self.ci_high
        if (lo is None) != (hi is None):
            raise ValueError("give both ci_low and ci_high, or neither")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"ci_low {lo} is above ci_high {hi}")
        return self

    def fmt(self, digits: int = 1) -> str:
        if self.ci_low is not None and self.ci_high is not None:
            below, above = self.value - self.ci_low, self.ci_high - self.value
            return f"{self.value:.{digits}f} (-{below:.{digits}f}/+{above:.{digits}f})"
        if self.se is not None:
            return f"{self.value:.{digits}f} ± {self.se:.{digits}f}"
        return f"{self.value:.{digits}f}"


class CheckResult(Record):
    """Outcome of one cheat check or judge audit on an answer, a run or a judge.

    Keyed by what was checked (run, check name, scope, benchmark and subject), not by the outcome: checking the
    same thing again replaces the stored result, so a run re-checked under new thresholds carries only the new one.
    """

    name: str
    scope: Literal["answer", "run", "judge"]
    run: str | None = None  # RunSpec key when the check belongs to a run
    benchmark: str | None = None
    status: Literal["pass", "warn", "flag"]  # flag = cheating suspected: not eligible for promotion
    model: str | None = None
    question_id: str | None = None
    judge: str | None = None
    value: float | None = None
    threshold: float | None = None
    detail: str = ""
    spans: list[tuple[int, int]] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    KEY_FIELDS = ("run", "name", "scope", "benchmark", "model", "question_id", "judge")

    @model_validator(mode="before")
    @classmethod
    def _benchmark_from_meta(cls, data: Any) -> Any:
        # Results written before `benchmark` was a field carry it in meta.
        if isinstance(data, dict) and not data.get("benchmark") and isinstance(data.get("meta"), dict):
            bench = data["meta"].get("benchmark")
            if isinstance(bench, str) and bench:
                data = {**data, "benchmark": bench}
        return data


class RunSpec(Record):
    """What a run evaluates and how: the checkpoint, its identity and the evaluation settings."""

    model: str = Field(min_length=1)  # model id used in answers (e.g. "dpo-step2000@3f2a...")
    checkpoint: str | None = None  # path as given
    stage: str | None = None  # sft | dpo | online-dpo | ...
    step: int | None = None
    weights_hash: str | None = None
    benchmarks: list[str] = Field(default_factory=list)
    judge: str | None = None
    seed: int = 0
    settings: dict[str, Any] = Field(default_factory=dict)

    KEY_FIELDS = ("model", "weights_hash", "benchmarks", "judge", "seed", "settings")


class Report(Record):
    """The result of evaluating one model on one benchmark with one judge, written last.

    ``complete`` is False when answers are missing, judgments were never answered, or more failed than the run
    allows: such a report is kept (it says what is missing and how to finish) but no decision uses it.
    """

    run: str  # RunSpec key
    benchmark: str
    benchmark_version: str
    model: str
    judge: str
    metrics: dict[str, Estimate]
    checks: list[CheckResult] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)  # requested, judged, failed, unanswered, missing answers...
    complete: bool = True
    incomplete: list[str] = Field(default_factory=list)  # why not complete, each with what to do
    meta: dict[str, Any] = Field(default_factory=dict)

    KEY_FIELDS = ("run", "benchmark", "benchmark_version", "model", "judge")


class Promotion(Record):
    """A promotion decision: which checkpoint of a stage goes on, why, and what it was chosen from."""

    stage: str = Field(min_length=1)
    run: str | None = None  # RunSpec key of the promoted checkpoint's evaluation
    model: str = Field(min_length=1)
    checkpoint: str | None = None
    step: int | None = None
    rank: int = 1
    judge: str | None = None
    score: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    reasons: list[str] = Field(default_factory=list)
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    policy: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


class EarlyStop(Record):
    """Training stopped early at a checkpoint: the evaluation that decided it and why."""

    stage: str | None = None
    run: str | None = None  # RunSpec key of the evaluation that triggered the stop
    model: str = Field(min_length=1)
    checkpoint: str | None = None
    step: int
    reason: str
    metric: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class Decision(Record):
    """A paired, error-controlled comparison of a candidate checkpoint with an incumbent (``lioneval.decisions``).

    ``diff`` is candidate minus incumbent in the metric's own units, with its interval (``ci_low``, ``ci_high``:
    two-sided at ``1 - alpha`` for ``compare``; for a one-sided test, the bound that decides is the one at ``alpha``).
    ``verdict`` reads the direction of ``higher_is_better``: "better" (significantly better), "worse"
    (significantly worse by more than ``margin``), "non-inferior" (not worse by ``margin`` or more, significantly)
    or "inconclusive". ``correction`` names the multiplicity control across the candidates decided together and
    ``p_value`` is after it; ``corrected_score`` is the winner's-curse-corrected score of a selected checkpoint.
    """

    kind: Literal["compare", "promotion", "early_stop"]
    benchmark: str | None = None  # several, joined by "+", when the decision combines benchmarks
    metric: str | None = None
    candidate: str | None = None  # RunSpec key (or model id) of the candidate's evaluation
    incumbent: str | None = None
    diff: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = Field(ge=0)  # shared questions (summed over benchmarks)
    margin: float = Field(default=0.0, ge=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    method: str
    correction: str | None = None
    verdict: Literal["better", "worse", "non-inferior", "inconclusive"]
    p_value: float | None = None
    higher_is_better: bool = True
    corrected_score: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> Decision:
        lo, hi = self.ci_low, self.ci_high
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"ci_low {lo} is above ci_high {hi}")
        return self
