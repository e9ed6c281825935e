"""Bring official benchmark files (answers, judgments) into the store through each benchmark's own importer."""

from __future__ import annotations

import os
import shutil
import tempfile
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
    """Load and store; returns what was read, added (new rows) and skipped, with the warnings. Files that give no
    record at all are an error (exit 2), not an import of nothing."""
    bundle = load_official(bench, path, **options)
    read = {"questions": len(bundle.questions), "answers": len(bundle.answers), "judgments": len(bundle.judgments)}
    if not any(read.values()):
        if bundle.skipped:
            raise DataError(f"nothing to import from {path}: every record was skipped ({bundle.why_skipped()})",
                            fix=f"check these are official {bench} files, saved as UTF-8")
        raise DataError(f"nothing to import from {path}: it holds no {bench} records",
                        fix=f"pass official {bench} files (see `lioneval import {bench} --help`)")
    added = {
        "questions": store.put_questions(bundle.questions),
        "answers": store.put_answers(bundle.answers),
        "judgments": store.put_judgments(bundle.judgments),
    }
    return {"read": read, "added": added, "skipped": dict(bundle.skipped), "warnings": bundle.warnings}


def export_official(store: RunStore, bench: str, out: str | Path, *, run: str | None = None,
                    models: list[str] | None = None, judge: str | None = None) -> dict[str, int]:
    """Write stored records of one benchmark in its official layout under ``out``: one run's records, or
    everything stored (optionally only ``models`` and one ``judge``).

    The benchmark writes into a temporary folder inside ``out``; its files are moved into place once all are written
    (a failure leaves no half-written file), and only files that land under ``out`` are accepted (a model or judge
    name is never a path)."""
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
    out = Path(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".lioneval-export-", dir=out))
    except OSError as e:
        raise DataError(f"cannot write in {out}: {e.strerror}", fix="pass a folder you can write to") from e
    done = False
    try:
        counts = b.export_official(staging, questions, answers, judgments)
        root = staging.resolve()
        outside = [name for name in counts if not Path(name).resolve().is_relative_to(root)]
        if outside:
            raise DataError(f"the {bench} export wrote {outside[0]} outside {out}",
                            fix="report this bug of the benchmark; names in the store are never paths")
        for p in sorted(p for p in staging.rglob("*") if p.is_file()):
            dest = out / p.relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
        done = True
    except OSError as e:
        why = "the disk is full" if e.errno == 28 else e.strerror
        raise DataError(f"cannot write in {out}: {why}", fix="pass a folder you can write to, with free space") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not done and not any(out.iterdir()):
            out.rmdir()  # a folder this call made for an export that did not happen
    return {str(out / Path(name).resolve().relative_to(root)): n for name, n in counts.items()}
