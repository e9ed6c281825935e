"""What every benchmark module provides, and the tolerant readers its loaders share."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lioneval.errors import DataError
from lioneval.types import Answer, Estimate, Judgment, Question

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


class Benchmark(Protocol):
    name: str
    version: str
    kind: str  # "rating" | "pairwise"

    def questions(self) -> list[Question]: ...

    def summarize(
        self, judgments: Sequence[Judgment], answers: Sequence[Answer], *, rounds: int, seed: int
    ) -> dict[str, Summary]:
        """Scores per model from stored judgments (and answers, for lengths and style)."""
        ...


def read_jsonl(path: str | Path, bundle: ImportBundle) -> Iterator[tuple[str, dict]]:
    """Yield (location, object) for each line; a line that is not a JSON object is skipped and counted."""
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}", fix="check the path and its permissions") from e
    with fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{i}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                bundle.skip(f"not valid JSON ({e.msg})", where)
                continue
            if not isinstance(obj, dict):
                bundle.skip("line is not a JSON object", where)
                continue
            yield where, obj
