"""Bring official benchmark files (answers, judgments) into the store through each benchmark's own importer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from lioneval import benchmarks
from lioneval.benchmarks.base import ImportBundle
from lioneval.errors import DataError
from lioneval.store import RunStore
from lioneval.types import Answer, Judgment, Question


def load_official(bench: str, path: str | Path, **options: Any) -> ImportBundle:
    """Read one benchmark's official files into records (nothing is stored)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist", fix="check the path to the official files")
    return benchmarks.load(bench).import_official(path, **options)


def import_official(store: RunStore, bench: str, path: str | Path, **options: Any) -> dict[str, Any]:
    """Load and store; returns what was read, added (new rows) and skipped, with the warnings."""
    bundle = load_official(bench, path, **options)
    added = {
        "questions": store.put_questions(bundle.questions),
        "answers": store.put_answers(bundle.answers),
        "judgments": store.put_judgments(bundle.judgments),
    }
    read = {"questions": len(bundle.questions), "answers": len(bundle.answers), "judgments": len(bundle.judgments)}
    return {"read": read, "added": added, "skipped": dict(bundle.skipped), "warnings": bundle.warnings}


def export_official(store: RunStore, bench: str, out: str | Path, *, run: str | None = None,
                    models: list[str] | None = None, judge: str | None = None) -> dict[str, int]:
    """Write stored records of one benchmark in its official layout under ``out``: one run's records, or
    everything stored (optionally only ``models`` and one ``judge``)."""
    b = benchmarks.load(bench)
    questions: list[Question]
    answers: list[Answer]
    judgments: list[Judgment]
    if run is not None:
        spec = store.run(run)
        # store.linked returns the records of the table it is asked for, typed as the common base.
        questions = cast(list[Question], store.linked(spec.key, "questions", benchmark=b.name))
        answers = cast(list[Answer], store.linked(spec.key, "answers", benchmark=b.name))
        judgments = cast(list[Judgment], store.linked(spec.key, "judgments", benchmark=b.name, judge=judge))
    else:
        questions = store.questions(benchmark=b.name)
        answers = store.answers(benchmark=b.name, model=models)
        judgments = store.judgments(benchmark=b.name, judge=judge, model=models)
    return b.export_official(out, questions, answers, judgments)
