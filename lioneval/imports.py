"""Bring official benchmark files (answers, judgments) into the store through the benchmark loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lioneval.benchmarks.base import ImportBundle
from lioneval.errors import DataError
from lioneval.store import RunStore

FORMATS = ("mt-bench", "arena-hard", "alpaca-eval")


def load_official(bench: str, path: str | Path, *, judge: str | None = None, **options: Any) -> ImportBundle:
    """Read one benchmark's official files into records (nothing is stored)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist", fix="check the path to the official files")
    if bench == "mt-bench":
        from lioneval.benchmarks import mt_bench

        bundle = mt_bench.load_judgments(path, judge=judge) if path.is_file() else _mt_bench_dir(path, judge)
        if options.get("answers"):
            bundle.extend(mt_bench.load_answers(options["answers"]))
        if options.get("questions"):
            bundle.extend(mt_bench.load_questions(options["questions"]))
        return bundle
    if bench == "arena-hard":
        from lioneval.benchmarks import arena_hard

        return arena_hard.load_official(path, judge=judge, **options)
    if bench == "alpaca-eval":
        from lioneval.benchmarks import alpaca_eval

        return alpaca_eval.load_annotations(path, **({"judge": judge} if judge else {}), **options)
    raise DataError(f"no importer for {bench!r}", fix=f"use one of: {', '.join(FORMATS)}")


def _mt_bench_dir(path: Path, judge: str | None) -> ImportBundle:
    """A FastChat data directory: question.jsonl, model_answer/*.jsonl, model_judgment/*_single.jsonl."""
    from lioneval.benchmarks import mt_bench

    bundle = ImportBundle()
    if (path / "question.jsonl").is_file():
        bundle.extend(mt_bench.load_questions(path))
    if (path / "model_answer").is_dir():
        bundle.extend(mt_bench.load_answers(path / "model_answer"))
    files = sorted((path / "model_judgment").glob("*_single.jsonl")) if (path / "model_judgment").is_dir() else []
    if not files and not bundle.questions:
        raise DataError(
            f"{path} holds no MT-Bench files",
            fix="pass a *_single.jsonl judgment file or FastChat's data/mt_bench directory",
        )
    for f in files:
        bundle.extend(mt_bench.load_judgments(f, judge=judge))
    return bundle


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
