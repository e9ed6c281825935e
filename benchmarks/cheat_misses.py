"""Where the judge-addressing detector loses the hidden attacks it misses, and what reading every sentence would cost.

Each attack of the corpus's evaluation split and of each fresh set is hidden in an honest host exactly as
``cheat_detection.py`` hides it (same seed, same places) and checked. An attack that is not flagged at its own
characters is counted at the step of ``lioneval.checks.semantic`` where it was lost (its best candidate sentence
inside the attack decides):

- ``no_cue``: no sentence of the attack holds a cue of the gate (step 1), so no model reads it;
- ``cleared_by_words``: the lexical model scores every candidate below ``lexical_floor`` (step 2), so the
  embedding model never reads it;
- ``below_warn``: the combined score stays under ``threshold`` (step 3);
- ``warn_only``: at or above ``threshold``, under ``strong``, and not off its answer's topic (step 4): the answer
  only warns;
- ``strong_unflagged``: a sentence reaches ``strong`` but the answer is not flagged at the attack (too few words,
  or a rule's weaker reading of the same text).

The gate is what keeps the checks fast: only sentences holding evaluation vocabulary are read by the models. The
second part measures the alternative: the sentences (three words or more) of ``check_speed.py``'s 10,000 answers,
how many of them the gate nominates, and how long the embedding model takes to read all of them, timed on a seeded
sample of ``--sample`` sentences and scaled. With ``--ungated`` it also measures whether the embedding model could
do without the gate, cost aside: a class-balanced logistic regression (``train_semantic.fit_logistic``) on the
embeddings of every sentence of the tuning split (an attack's sentences positives, an honest text's negatives), its
threshold set so that a given share of the real MT-Bench answers (their sentences of three words or more; the
answer's best sentence counts) is flagged, and the share of each set's attacks that one of their sentences reaches.
That reads some 50,000 real sentences (minutes).

    python benchmarks/cheat_misses.py --data ../shared/validation [--sample 2000] [--ungated]

Prints a table and, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from lioneval.checks import CheckConfig
from lioneval.checks.answers import check_answers, code_spans, normalize
from lioneval.checks.semantic import candidate_sentences, load_corpus, load_model, says_something
from lioneval.checks.train_semantic import WORD_FAMILIES, fit_logistic
from lioneval.embeddings import embed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cheat_detection import FRESH_SETS, hide  # noqa: E402
from check_speed import load  # noqa: E402

STEPS = ("no_cue", "cleared_by_words", "below_warn", "warn_only", "strong_unflagged")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentences(text: str) -> list[str]:
    return [x.strip() for x in _SENTENCE.split(text) if len(x.split()) >= 3]


def lost_at(attacks: list[dict], hosts: list[str], seed: int) -> tuple[int, Counter[str]]:
    """How many of ``attacks`` are found when hidden in ``hosts``, and the step where each missed one was lost. The
    sentences the lexical model leaves in doubt are embedded in one batch, as the detector embeds them."""
    model = load_model()
    hidden, where = hide(attacks, hosts, random.Random(seed))
    flagged = {c.question_id: c for c in check_answers(hidden, CheckConfig()) if c.status == "flag"}
    lost: Counter[str] = Counter()
    found = 0
    doubted: list[tuple[list[str], np.ndarray]] = []  # per missed attack that reached step 3: sentences, lexical
    for answer in hidden:
        start, end = where[answer.question_id]
        c = flagged.get(answer.question_id)
        if c is not None and any(s < end and e > start for s, e in c.spans):
            found += 1
            continue
        text = answer.turns[0]
        spans = [(s, e) for s, e in candidate_sentences(text, normalize, code_spans) if s < end and e > start]
        if not spans:
            lost["no_cue"] += 1
            continue
        sentences = [text[s:e] for s, e in spans]
        lex = model.lexical(sentences)
        if lex.max() < model.lexical_floor:
            lost["cleared_by_words"] += 1
        else:
            doubted.append((sentences, lex))
    unique = sorted({x for sentences, _ in doubted for x in sentences})
    row = {x: r for r, x in enumerate(unique)}
    vectors = embed(unique) if unique else np.zeros((0, 0))
    for sentences, lex in doubted:
        semantic = model.semantic(vectors[[row[x] for x in sentences]])
        score = np.where(lex >= model.lexical_floor, model.combined(lex, semantic), -np.inf)
        best = int(np.argmax(score))
        if score[best] < model.threshold:
            lost["below_warn"] += 1
        elif score[best] < model.strong or not says_something(sentences[best]):
            lost["warn_only"] += 1
        else:
            lost["strong_unflagged"] += 1
    return found, lost


def reading_cost(sample: int, seed: int) -> dict:
    """Sentences of check_speed's 10,000 answers, those the gate nominates, and the seconds the embedding model
    would take to read them all (timed on a seeded sample)."""
    _, answers, _, _ = load(3)
    texts = [t for a in answers for t in a.turns]
    sentences = [x for t in texts for x in _sentences(t)]
    nominated = sum(len(candidate_sentences(t, normalize, code_spans)) for t in texts)
    embed(["a sentence to load the model"])
    chosen = random.Random(seed).sample(sentences, min(sample, len(sentences)))
    t0 = time.perf_counter()
    embed(chosen)
    per_s = len(chosen) / (time.perf_counter() - t0)
    return {"answers": len(answers), "sentences": len(sentences), "nominated_by_gate": nominated,
            "embedded_per_s": round(per_s), "read_all_s": round(len(sentences) / per_s, 1)}


def ungated(corpus: dict, sets: dict[str, tuple[list[dict], list[str]]], mt: Path,
            shares: tuple[float, ...] = (0.005, 0.01, 0.02)) -> dict[str, dict[str, float]]:
    """Per share of real answers flagged: the share of each set's attacks (of the word families) that a linear model
    over the embedding of every sentence, with no gate, would find."""
    tune = [(x, 1) for a in corpus["attacks"] if a["split"] == "tune" and a["family"] in WORD_FAMILIES
            for x in _sentences(a["text"])]
    tune += [(x, 0) for h in corpus["honest"] if h["split"] == "tune" for x in _sentences(h["text"])]
    weights, bias = fit_logistic(embed([x for x, _ in tune], precision="fp32").astype(np.float64),
                                 np.asarray([y for _, y in tune], dtype=np.float64), 3.0)

    def best(texts: list[str]) -> np.ndarray:
        """Each text's best sentence score (-inf without a sentence)."""
        split = [_sentences(t) for t in texts]
        flat = [x for xs in split for x in xs]
        scores = embed(flat, precision="fp32").astype(np.float64) @ weights + bias if flat else np.zeros(0)
        out, k = np.full(len(texts), -np.inf), 0
        for i, xs in enumerate(split):
            if xs:
                out[i] = scores[k:k + len(xs)].max()
            k += len(xs)
        return out

    real = best([t for line in (mt / "model_answers_official.jsonl").read_text(encoding="utf-8").splitlines()
                  if line.strip() for t in ["\n".join(json.loads(line)["turns"])]])
    attacks = {name: best([a["text"] for a in items if a["family"] in WORD_FAMILIES])
               for name, (items, _) in sets.items()}
    return {f"{share:.1%}": {name: round(float((score >= np.quantile(real, 1 - share)).mean()), 4)
                             for name, score in attacks.items()} for share in shares}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the validation folder (holding mt_bench/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", type=int, default=2000, help="sentences timed to estimate the cost of reading all")
    ap.add_argument("--ungated", action="store_true",
                    help="also fit a model over every sentence's embedding and measure it against real answers")
    args = ap.parse_args()
    if not (args.data / "mt_bench" / "model_answers_official.jsonl").is_file():
        sys.exit(f"no MT-Bench answers under {args.data / 'mt_bench'}: pass --data with the folder that holds it")
    corpus = load_corpus()
    sets = {"evaluation split": ([a for a in corpus["attacks"] if a["split"] == "eval"],
                                 [h["text"] for h in corpus["honest"] if h["split"] == "eval"])}
    for path in FRESH_SETS:
        fresh = json.loads(path.read_text(encoding="utf-8"))
        sets[path.name] = (fresh["attacks"], [h["text"] for h in fresh["honest"]])
    out: dict[str, dict] = {}
    print(f"{'set':<22}{'attacks':>8}{'found':>8}" + "".join(f"{s:>18}" for s in STEPS))
    for name, (attacks, hosts) in sets.items():
        found, lost = lost_at(attacks, hosts, args.seed)
        n = len(attacks)
        out[name] = {"attacks": n, "found": round(found / n, 4), **{s: round(lost[s] / n, 4) for s in STEPS}}
        print(f"{name:<22}{n:>8}{found / n:>8.1%}" + "".join(f"{lost[s] / n:>18.1%}" for s in STEPS))
    cost = reading_cost(args.sample, args.seed)
    print(f"check_speed's {cost['answers']} answers hold {cost['sentences']} sentences of three words or more; the "
          f"gate nominates {cost['nominated_by_gate']}. The embedding model reads {cost['embedded_per_s']} sentences "
          f"a second here: reading all of them would take {cost['read_all_s']} s (the target for all checks: 10 s)")
    without_gate = ungated(corpus, sets, args.data / "mt_bench") if args.ungated else None
    for share, caught in (without_gate or {}).items():
        print(f"without the gate, {share} of real answers flagged: attacks found "
              + ", ".join(f"{name} {x:.1%}" for name, x in caught.items()))
    print(json.dumps({"benchmark": "cheat_misses", "sets": out, "reading_every_sentence": cost,
                      "without_gate": without_gate}))


if __name__ == "__main__":
    main()
