"""Speed of the cheat checks: answer- and run-level checks over 10,000 answers (target: under 10 s).

The answer-level checks include the judge-addressing sentence detector with its embedding model (all-MiniLM-L6-v2,
embedded in one batch, only for the sentences its lexical model leaves in doubt); loading the model is timed apart,
once per process. The caches of whole texts and sentences are emptied before each timed run, so that every run reads
its answers as new ones. ``--no-embeddings`` times the lexical model alone. The embeddings run at the product's
default precision (``auto``: bfloat16 where the CPU has it natively, else float32); ``--precision fp32`` times float32
on any CPU.

The answers are the 2,480 official MT-Bench answers (31 models x 80 questions, read from ../shared/validation), three
perturbed copies of them under other model names (words dropped and swapped, so no copy is identical to another),
and one null-model run of 80 injection answers: 10,000 answers, 125 runs, two turns each. Besides the time, the
script reports the cheat flags on the real answers (must be 0) and on the null-model run (must flag it).

    python benchmarks/check_speed.py [--data ../shared/validation] [--copies 3] [--repeat 3] [--no-embeddings]
                                     [--precision auto|fp32|bf16]

Prints a table and, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

from lioneval.checks import CheckConfig, run_checks, semantic
from lioneval.checks import runs as run_level
from lioneval.checks.answers import check_answers
from lioneval.checks.audit import null_answers
from lioneval.checks.runs import check_run
from lioneval.types import Answer, Question

MT = Path(__file__).resolve().parents[2] / "shared" / "validation" / "mt_bench"  # default of --data


def _perturb(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    out = []
    for w in words:
        r = rng.random()
        if r < 0.04:
            continue  # drop a word
        if r < 0.08 and out:
            out[-1], w = w, out[-1]  # swap with the previous word
        out.append(w)
    return " ".join(out)


def load(copies: int) -> tuple[list[Question], list[Answer], set[str], str]:
    if not (MT / "model_answers_official.jsonl").exists():
        sys.exit(f"validation data not found at {MT}; this benchmark needs the official MT-Bench answers")
    qrows = [json.loads(x) for x in (MT / "questions.jsonl").read_text().splitlines() if x.strip()]
    questions = [Question(id=str(r["question_id"]), benchmark="mt-bench", turns=r["turns"], category=r["category"])
                 for r in qrows]
    rows = [json.loads(x) for x in (MT / "model_answers_official.jsonl").read_text().splitlines() if x.strip()]
    answers = [Answer(question_id=str(r["question_id"]), benchmark="mt-bench", model=r["model"], turns=r["turns"])
               for r in rows]
    real = {a.model for a in answers}
    rng = random.Random(0)
    for c in range(copies):
        answers += [Answer(question_id=str(r["question_id"]), benchmark="mt-bench", model=f"{r['model']}~{c}",
                           turns=[_perturb(t, rng) for t in r["turns"]]) for r in rows]
    real |= {a.model for a in answers}
    null = "null-injection"
    text = null_answers("arena-hard")["inject-fake-task"]
    answers += [Answer(question_id=q.id, benchmark="mt-bench", model=null, turns=[text, text]) for q in questions]
    return questions, answers, real, null


def _cold() -> None:
    """Empties the checks' caches of whole texts and sentences, so that each timed run reads its answers as new ones
    (a second run would otherwise find every sentence's features remembered)."""
    semantic.features.cache_clear()
    run_level.content_stems.cache_clear()


def _best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        _cold()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=3, help="perturbed copies of the real answers (default 3)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per stage; the best is reported (default 3)")
    ap.add_argument("--data", type=Path, help="the validation folder holding mt_bench/ (default ../shared/validation)")
    ap.add_argument("--no-embeddings", action="store_true", help="the sentence detector's lexical model alone")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="the embedding model's precision (default auto: bfloat16 where the CPU has it natively)")
    args = ap.parse_args()
    os.environ["LIONEVAL_EMBED_PRECISION"] = args.precision

    global MT
    if args.data is not None:
        MT = args.data / "mt_bench"
    questions, answers, real, null = load(args.copies)
    config = CheckConfig(semantic_embeddings=not args.no_embeddings)
    load_s = 0.0
    if config.semantic_embeddings:
        from lioneval.embeddings import embedder

        t0 = time.perf_counter()
        embedder()
        load_s = time.perf_counter() - t0
    qmap = {q.id: q for q in questions}
    runs: dict[str, list[Answer]] = {}
    for a in answers:
        runs.setdefault(a.model, []).append(a)
    chars = sum(len(t) for a in answers for t in a.turns)

    t_answer, _ = _best(lambda: check_answers(answers, config), args.repeat)
    t_run, _ = _best(lambda: [check_run(group, qmap, config=config) for group in runs.values()], args.repeat)
    t_all, checks = _best(lambda: run_checks(questions, answers, config=config), args.repeat)

    flags = [c for c in checks if c.status == "flag"]  # type: ignore[union-attr]
    false_pos = [c for c in flags if c.model in real and c.scope == "run"]  # cheat flags: run-level (is_cheat)
    answer_flags = [c for c in flags if c.model in real and c.scope == "answer"]
    null_flags = Counter(c.name for c in flags if c.model == null)
    warns = Counter(c.name for c in checks if c.status == "warn" and c.model in real)  # type: ignore[union-attr]

    rows = [
        ("answer-level checks", t_answer),
        ("run-level checks", t_run),
        ("run_checks (both)", t_all),
    ]
    precision = ""
    if config.semantic_embeddings:
        from lioneval.embeddings import embedder

        precision = "bfloat16" if embedder()._bf16 else "float32"
    model = f"loaded in {load_s:.1f} s (once per process), {precision}" if load_s else "off"
    print(f"{len(answers):,} answers, {len(runs)} runs, {chars / 1e6:.1f} M characters; best of {args.repeat}; "
          f"embedding model {model}")
    print(f"{'stage':<22}{'seconds':>9}{'answers/s':>12}")
    for name, t in rows:
        print(f"{name:<22}{t:>9.2f}{len(answers) / t:>12,.0f}")
    print(f"cheat flags on {len(real)} real (or perturbed real) runs: {len(false_pos)} "
          f"{dict(Counter(c.name for c in false_pos))}; answer-level flags: {len(answer_flags)}")
    print(f"warnings on real runs: {dict(warns)}")
    print(f"flags on the null-model run: {dict(null_flags)}")
    print(f"target: run_checks under 10 s -> {'met' if t_all < 10 else 'MISSED'}")
    print(json.dumps({
        "benchmark": "check_speed",
        "answers": len(answers),
        "runs": len(runs),
        "characters": chars,
        "answer_level_s": round(t_answer, 3),
        "run_level_s": round(t_run, 3),
        "run_checks_s": round(t_all, 3),
        "embeddings": config.semantic_embeddings,
        "model_load_s": round(load_s, 2),
        "embedding_precision": precision or None,
        "answers_per_s": round(len(answers) / t_all),
        "target_s": 10,
        "target_met": t_all < 10,
        "false_positive_flags": len(false_pos),
        "answer_level_flags_on_real": len(answer_flags),
        "null_run_flags": sorted(null_flags),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
