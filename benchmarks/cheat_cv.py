"""Cross-validated hidden recall on the tuning split of the cheat corpus: what detector changes are chosen by.

The evaluation split (``benchmarks/cheat_detection.py``) is read once, to report; choices between detector variants
are made here, on the tuning split only. The tuning items of each attack family and of the honest texts are dealt
into ``--folds`` folds (item k of its family in fold k mod folds); for each fold the sentence model is refitted by
``train_semantic.train`` on the other folds (its thresholds from its own inner out-of-fold scores), and the fold's
attacks are hidden in the fold's honest texts as ``cheat_detection.py`` hides them (end, start or middle; padding
after the host; master-key openers alone). An attack counts as caught when its answer is flagged and a flagged span
overlaps it. The honest texts of the fold are checked too (flags there are false positives). With ``--data`` (the
validation folder holding mt_bench/), the fold's attacks are also hidden in one turn of GPT-4's official MT-Bench
answers and checked with their questions, as ``cheat_detection.py`` does with the evaluation split ("in real,
asked": what reading answers with their questions costs).

    python benchmarks/cheat_cv.py [--folds 5] [--seed 0] [--data ../shared/validation] [-v]

Prints a table and, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

from lioneval.checks import semantic
from lioneval.checks.answers import check_answers
from lioneval.checks.train_semantic import train
from lioneval.types import Answer, Question

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cheat_detection import _insert, found_in_real, gpt4_answers, hide_in_real, mt_questions  # noqa: E402


def _hidden(attack: dict, host: str, rng: random.Random) -> tuple[str, int]:
    if attack["family"] == "master_key":
        return attack["text"], 0
    if attack["family"] == "length_padding":
        return host + "\n" + attack["text"], len(host) + 1
    return _insert(host, attack["text"], rng)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, help="the validation folder (holding mt_bench/): adds the in-real column")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every attack that was missed")
    args = ap.parse_args()
    real: dict[str, list[str]] = {}
    questions: list[Question] = []
    if args.data is not None:
        mt = args.data / "mt_bench"
        if not (mt / "model_answers_official.jsonl").is_file():
            sys.exit(f"no MT-Bench answers under {mt}: pass --data with the folder that holds mt_bench/")
        real, questions = gpt4_answers(mt), mt_questions(mt)
    corpus = semantic.load_corpus()
    fold_of: dict[str, int] = {}
    counters: dict[str, int] = defaultdict(int)
    for item in corpus["attacks"] + corpus["honest"]:
        if item["split"] == "tune":
            group = item.get("family", "honest")
            fold_of[item["id"]] = counters[group] % args.folds
            counters[group] += 1
    rng = random.Random(args.seed)
    caught: dict[str, list[bool]] = defaultdict(list)
    caught_real: dict[str, list[bool]] = defaultdict(list)
    honest_flags = honest_n = 0
    t0 = time.perf_counter()
    for k in range(args.folds):
        inner = {**corpus,
                 "attacks": [a for a in corpus["attacks"] if a["split"] == "tune" and fold_of[a["id"]] != k],
                 "honest": [h for h in corpus["honest"] if h["split"] == "tune" and fold_of[h["id"]] != k]}
        model = semantic.SemanticModel(train(inner))
        attacks = [a for a in corpus["attacks"] if a["split"] == "tune" and fold_of[a["id"]] == k]
        hosts = [h["text"] for h in corpus["honest"] if h["split"] == "tune" and fold_of[h["id"]] == k]
        answers, where = [], {}
        for i, a in enumerate(attacks):
            text, start = _hidden(a, hosts[i % len(hosts)], rng)
            where[a["id"]] = (start, start + len(a["text"]))
            answers.append(Answer(question_id=a["id"], benchmark="cv", model="hidden", turns=[text]))
        answers += [Answer(question_id=f"h{k}-{i}", benchmark="cv", model="honest", turns=[t])
                    for i, t in enumerate(hosts)]
        in_real, where_real = hide_in_real(attacks, real, rng) if real else ([], {})
        with mock.patch.object(semantic, "load_model", lambda path=None, m=model: m):
            results = {c.question_id: c for c in check_answers(answers) if c.status == "flag"}
            real_found = found_in_real(check_answers(in_real, questions=questions), where_real) if in_real else set()
        for a in attacks:
            if a["id"] in where_real:
                caught_real[a["family"]].append(a["id"] in real_found)
                if args.verbose and a["id"] not in real_found:
                    print(f"  missed in real: {a['id']}: {a['text'][:100]!r}")
        for a in attacks:
            c = results.get(a["id"])
            s, e = where[a["id"]]
            ok = c is not None and any(cs < e and ce > s for cs, ce in c.spans)
            caught[a["family"]].append(ok)
            if args.verbose and not ok:
                print(f"  missed {a['id']}: {a['text'][:110]!r}")
        honest_flags += sum(f"h{k}-{i}" in results for i in range(len(hosts)))
        honest_n += len(hosts)
    print(f"{'family':<22}{'n':>4}{'cv hidden':>11}" + (f"{'in real, asked':>16}" if real else ""))
    fams = {}
    for fam in corpus["families"]:
        v, r = caught.get(fam, []), caught_real.get(fam, [])
        fams[fam] = {"n": len(v), "hidden_recall": round(sum(v) / len(v), 4) if v else None}
        if real:
            fams[fam]["in_real_recall"] = round(sum(r) / len(r), 4) if r else None
        shown = (f"{sum(r) / len(r):>16.0%}" if r else f"{'-':>16}") if real else ""
        print(f"{fam:<22}{len(v):>4}{sum(v) / max(len(v), 1):>11.0%}{shown}")
    every = [x for v in caught.values() for x in v]
    every_real = [x for v in caught_real.values() for x in v]
    print(f"{'all':<22}{len(every):>4}{sum(every) / len(every):>11.0%}"
          + (f"{sum(every_real) / max(len(every_real), 1):>16.0%}" if real else ""))
    print(f"honest tuning texts flagged: {honest_flags} of {honest_n}; {time.perf_counter() - t0:.0f} s")
    print(json.dumps({"benchmark": "cheat_cv", "folds": args.folds, "families": fams,
                      "hidden_recall": round(sum(every) / len(every), 4),
                      "min_family_hidden_recall": min(f["hidden_recall"] for f in fams.values()
                                                      if f["hidden_recall"] is not None),
                      **({"in_real_recall": round(sum(every_real) / max(len(every_real), 1), 4)} if real else {}),
                      "honest_flagged": honest_flags, "honest": honest_n}))


if __name__ == "__main__":
    main()
