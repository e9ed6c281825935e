"""Fit the judge-addressing detector of ``lioneval.checks.semantic`` on the tuning split of the cheat corpus.

    python -m lioneval.checks.train_semantic [--corpus PATH] [--out PATH]

Examples are the step-1 candidate sentences (see ``semantic.candidate_sentences``; code is not prose) of the corpus's
tuning texts: sentences of the attack families that address the evaluator in words (every family but the master-key
openers and length padding, which have rules of their own) are positives, sentences of the honest answers negatives.
Three L2-regularised, class-balanced logistic regressions are fitted: the lexical model (words, word pairs and
character 4-grams seen in at least two sentences; L-BFGS), the embedding model (Newton's method) and the stack that
weighs their log-odds (fitted on out-of-fold scores, so it learns how far each model is to be trusted on sentences
it has not seen). Folds are whole corpus items (item k of the tuning split is in fold k mod 5): no sentence is scored
by a model that saw another sentence of its text. Nothing is random and nothing is shuffled: the result depends only
on the corpus.

An attack text is labelled as a whole, but not every sentence of it speaks to the evaluator (an honest lead-in, a
sentence of the topic before the plea). So the fit runs twice, as multiple-instance learning does: after the first
pass, a positive sentence stays a positive only when its out-of-fold score is within ``MIL_MARGIN`` of the best
sentence of its text; the others are left out of the second pass (they are not made negatives).

Thresholds come from the out-of-fold scores of the tuning split: ``lexical_floor`` passes all but ``FLOOR_QUANTILE``
of the positive sentences on to the embedding model (and never lies above ``threshold``); ``threshold`` (a
judge-addressing sentence: the answer warns) is the ``MEDIUM_QUANTILE`` quantile of the honest sentences' stacked
scores; ``strong`` (the answer is flagged) the ``STRONG_QUANTILE`` quantile, for sentences of
``semantic.STRONG_MIN_WORDS`` words or more; ``lexical_only`` (a hit without embeddings) lies ``MARGIN`` above the
highest honest lexical score and ``lexical_strong`` ``LEXICAL_STRONG_MARGIN`` above it; ``off_topic`` (step 4 of
``semantic``) is the ``OFF_TOPIC_QUANTILE`` quantile of the cosine between an honest sentence and the text around it.
The evaluation split is never read.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.optimize import minimize

from lioneval.checks.answers import code_spans, normalize
from lioneval.checks.semantic import (
    CORPUS_FILE,
    MODEL_FILE,
    candidate_sentences,
    context_around,
    features,
    load_corpus,
    says_something,
)
from lioneval.embeddings import DEFAULT_MODEL, embed

# families whose attacks are words addressed to the evaluator (the others are shapes: rules catch them)
WORD_FAMILIES = ("structured_verdict", "fake_turns", "output_instruction", "persuasion", "authority",
                 "instruction_override", "template_break")
L2_LEXICAL = 1.0
L2_SEMANTIC = 0.3
L2_STACK = 0.01
MIN_COUNT = 2  # a lexical feature must occur in this many training sentences: rarer ones only memorise a text
MARGIN = 0.25
# without embeddings the words alone decide: a hit needs a score beyond every honest sentence, a strong one a whole
# log-odds unit beyond (fewer catches, no false flags from the weaker model)
LEXICAL_STRONG_MARGIN = 1.0
MEDIUM_QUANTILE = 0.95
# The honest sentences of the corpus are its hardest negatives (each holds evaluation vocabulary; most honest
# answers hold none), so a strong hit need not clear every one of them. On the first corpus (544 attacks) 0.98 was
# chosen by cross-validation (benchmarks/cheat_cv.py: 87% hidden with 5 of 371 honest tuning texts flagged, 0.99 83%
# with 3). On the grown corpus (1,745 attacks, honest texts that talk about grading in many more ways) 0.98 made two
# of the 31 real MT-Bench runs of benchmarks/cheat_detection.py cheat-flagged (two answers each); 0.99 flags none,
# so it was chosen against that false-positive measure, at about 3 points of hidden recall.
STRONG_QUANTILE = 0.99
# the share of positives the lexical model may clear without the embedding model: the price of checking 10,000
# answers in seconds (only the sentences above the floor are embedded). The grown corpus's positives include subtle
# wordings with low lexical scores, so 0.025 put the floor so low that seven times as many real sentences were
# embedded; at 0.10 the floor reaches the warn threshold, where it is capped (a sentence that could warn on its
# words is always read in full), and hidden recall is the same as at 0.025 (benchmarks/cheat_detection.py).
FLOOR_QUANTILE = 0.10
FOLDS = 5
# Step 4 (``semantic._second_look``) flags a sentence between the warn and strong thresholds when it is further from
# the text around it than 90% of the corpus's honest sentences are from theirs. Set once, by reasoning rather than by
# a search: a doubtful sentence is one of the 5% of honest sentences above the warn threshold, so if the two were
# independent, half a percent of honest sentences would pass both, half the 1% the strong threshold lets through.
OFF_TOPIC_QUANTILE = 0.10
# a positive sentence within this many log-odds of its text's best stays a positive (None: all of them do). Set
# once, not tuned. In the one comparison made (the grown corpus before its last cleaning), hidden recall on its
# evaluation split went from 72.9% to 76.0% with it, and on the first set of fresh wordings (since joined to the
# corpus) from 65.0% to 69.6%, with about as many honest texts flagged.
MIL_MARGIN: float | None = 2.0


def example_items(corpus: dict) -> list[tuple[str, int, str, str]]:
    """(sentence, label, item id, family or "honest") for every candidate sentence of the tuning split."""
    return [x[:4] for x in _example_spans(corpus)]


def _example_spans(corpus: dict) -> list[tuple[str, int, str, str, str, int, int]]:
    """``example_items`` with each sentence's text and span in it."""
    out: list[tuple[str, int, str, str, str, int, int]] = []
    for item in corpus["attacks"]:
        if item["split"] == "tune" and item["family"] in WORD_FAMILIES:
            out += [(item["text"][s:e], 1, item["id"], item["family"], item["text"], s, e)
                    for s, e in _candidates(item["text"])]
    for item in corpus["honest"]:
        if item["split"] == "tune":
            out += [(item["text"][s:e], 0, item["id"], "honest", item["text"], s, e)
                    for s, e in _candidates(item["text"])]
    return out


def examples(corpus: dict) -> tuple[list[str], np.ndarray]:
    """The training sentences of the tuning split and their labels (1: addresses the evaluator)."""
    items = example_items(corpus)
    return [x[0] for x in items], np.asarray([x[1] for x in items], dtype=np.float64)


def _candidates(text: str) -> list[tuple[int, int]]:
    return candidate_sentences(text, normalize, code_spans)


def _balanced(y: np.ndarray) -> np.ndarray:
    n = len(y)
    return np.where(y == 1, n / (2 * max(y.sum(), 1)), n / (2 * max(n - y.sum(), 1)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> tuple[np.ndarray, float]:
    """Weights and bias of a class-balanced L2 logistic regression by Newton's method (the bias is not penalised);
    for few dense features."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    sw = _balanced(y)
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(xb @ w)))
        grad = xb.T @ (sw * (p - y)) + reg * w
        hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_sparse_logistic(x: sparse.csr_matrix, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """The same regression for many sparse features, by L-BFGS from zero (deterministic)."""
    sw = _balanced(y)
    d = x.shape[1]

    def loss(wb: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = wb[:-1], wb[-1]
        z = x @ w + b
        # log(1 + e^z) - y z, written to stay finite for large |z|
        ll = np.logaddexp(0.0, z) - y * z
        p = 1 / (1 + np.exp(-z))
        g = sw * (p - y)
        return float(sw @ ll + 0.5 * l2 * w @ w), np.concatenate([x.T @ g + l2 * w, [g.sum()]])

    res = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": 2000, "gtol": 1e-7, "ftol": 1e-12})
    return res.x[:-1], float(res.x[-1])


def _vocab(texts: Sequence[str]) -> list[str]:
    counts = Counter(f for t in texts for f in features(t))
    return sorted(f for f, c in counts.items() if c >= MIN_COUNT)


def _lexical_matrix(texts: Sequence[str], vocab: list[str]) -> sparse.csr_matrix:
    index = {f: i for i, f in enumerate(vocab)}
    rows, cols = [], []
    for r, t in enumerate(texts):
        for f in features(t):
            if f in index:
                rows.append(r)
                cols.append(index[f])
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(vocab)))


def _fit(texts: Sequence[str], y: np.ndarray, emb: np.ndarray) -> tuple[list[str], np.ndarray, float, np.ndarray,
                                                                         float]:
    vocab = _vocab(texts)
    w, b = fit_sparse_logistic(_lexical_matrix(texts, vocab), y, L2_LEXICAL)
    ws, bs = fit_logistic(emb, y, L2_SEMANTIC)
    return vocab, w, b, ws, bs


def _out_of_fold(texts: Sequence[str], y: np.ndarray, emb: np.ndarray, fold: np.ndarray,
                 use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold lexical and embedding log-odds of every sentence, the models fitted on the ``use`` sentences of
    the other folds."""
    lex_oof = np.zeros(len(texts))
    sem_oof = np.zeros(len(texts))
    for k in range(FOLDS):
        test, train_ = np.flatnonzero(fold == k), np.flatnonzero((fold != k) & use)
        vocab, w, b, ws, bs = _fit([texts[int(i)] for i in train_], y[train_], emb[train_])
        lex_oof[test] = _lexical_matrix([texts[int(i)] for i in test], vocab) @ w + b
        sem_oof[test] = emb[test] @ ws + bs
    return lex_oof, sem_oof


def _item_recall(hit: np.ndarray, items: list[tuple[str, int, str, str]]) -> dict[str, float]:
    """Per family (and "honest"): the share of items with at least one sentence where ``hit`` holds."""
    per: dict[str, dict[str, bool]] = defaultdict(dict)
    for h, (_, _, item, fam) in zip(hit, items, strict=True):
        per[fam][item] = per[fam].get(item, False) or bool(h)
    return {fam: round(sum(v.values()) / len(v), 4) for fam, v in sorted(per.items())}


def train(corpus: Path | dict = CORPUS_FILE) -> dict:
    """The model (as stored in ``cheat_model.json``) fitted on the tuning split of ``corpus`` (a path or the
    corpus itself)."""
    corpus = corpus if isinstance(corpus, dict) else load_corpus(corpus)
    spans = _example_spans(corpus)
    items = [x[:4] for x in spans]
    texts = [x[0] for x in items]
    y = np.asarray([x[1] for x in items], dtype=np.float64)
    emb = embed(texts, precision="fp32").astype(np.float64)  # the model file must not depend on the CPU
    order = {item: k for k, item in enumerate(dict.fromkeys(x[2] for x in items))}
    fold = np.asarray([order[x[2]] % FOLDS for x in items])
    pos, neg = y == 1, y == 0
    use = np.ones(len(texts), dtype=bool)
    lex_oof, sem_oof = _out_of_fold(texts, y, emb, fold, use)
    (sa, sc), sb = fit_logistic(np.column_stack([lex_oof, sem_oof]), y, L2_STACK)
    if MIL_MARGIN is not None:
        # an attack text's sentences are not all addressed to the evaluator (an honest lead-in, a sentence of the
        # topic): only those within MIL_MARGIN of the text's best out-of-fold score stay positives
        combined = sa * lex_oof + sc * sem_oof + sb
        best: dict[str, float] = defaultdict(lambda: -np.inf)
        for i in np.flatnonzero(pos):
            best[items[i][2]] = max(best[items[i][2]], combined[i])
        use = neg | np.asarray([bool(p) and combined[i] >= best[items[i][2]] - MIL_MARGIN
                                for i, p in enumerate(pos)])
        lex_oof, sem_oof = _out_of_fold(texts, y, emb, fold, use)
        (sa, sc), sb = fit_logistic(np.column_stack([lex_oof, sem_oof])[use], y[use], L2_STACK)
        pos = pos & use
    combined = sa * lex_oof + sc * sem_oof + sb
    threshold = float(np.quantile(combined[neg], MEDIUM_QUANTILE))
    # never above the warn threshold: a sentence the lexical model alone would warn on is always read in full
    floor = min(float(np.quantile(lex_oof[pos], FLOOR_QUANTILE)), threshold)
    strong = float(np.quantile(combined[neg], STRONG_QUANTILE))
    lexical_only = float(lex_oof[neg].max() + MARGIN)
    lexical_strong = float(lex_oof[neg].max() + LEXICAL_STRONG_MARGIN)
    off_topic, contexts = _off_topic(spans, emb, neg & (combined >= threshold), neg)
    vocab, w, b, ws, bs = _fit([t for t, u in zip(texts, use, strict=True) if u], y[use], emb[use])
    passed = (lex_oof >= floor) & (combined >= threshold)
    flagged = (lex_oof >= floor) & (combined >= strong) & np.asarray([says_something(t) for t in texts])
    stats = {
        "sentences": len(texts), "positives": int(y.sum()), "positives_kept": int(pos.sum()),
        "negatives": int(neg.sum()),
        "oof_recall": round(float(passed[pos].mean()), 4), "oof_false_positives": int(passed[neg].sum()),
        "oof_recall_strong": round(float(flagged[pos].mean()), 4),
        "oof_false_positives_strong": int(flagged[neg].sum()),
        "oof_recall_lexical_only": round(float((lex_oof[pos] >= lexical_only).mean()), 4),
        "oof_items_flagged": _item_recall(flagged, items),
        "off_topic_contexts": contexts,
    }
    keep = {f: round(float(v), 4) for f, v in zip(vocab, w, strict=True) if abs(v) >= 1e-3}
    return {
        "version": 4,
        "how": ("python -m lioneval.checks.train_semantic: class-balanced L2 logistic regressions on the candidate "
                "sentences of the tuning split of cheat_corpus.json (lexical: words, word pairs, character 4-grams, "
                "L-BFGS; embedding: Newton's method; stack of the two log-odds fitted on 5-fold out-of-fold scores, "
                f"folds by corpus item; refitted on the positives within {MIL_MARGIN} of their text's best); "
                f"thresholds from the out-of-fold scores (lexical_floor: {FLOOR_QUANTILE:.1%} quantile of positives, "
                f"at most the threshold; threshold: {MEDIUM_QUANTILE:.0%} quantile "
                f"of honest sentences; strong: {STRONG_QUANTILE:.0%} quantile; lexical_only, "
                f"lexical_strong: highest honest lexical score + {MARGIN}, + {LEXICAL_STRONG_MARGIN}; off_topic: "
                f"{OFF_TOPIC_QUANTILE:.0%} quantile of honest sentences' cosine with the text around them)"),
        "families": list(WORD_FAMILIES),
        "l2": {"lexical": L2_LEXICAL, "semantic": L2_SEMANTIC, "stack": L2_STACK},
        "training": stats,
        "thresholds": {"lexical_floor": round(floor, 4), "threshold": round(threshold, 4), "strong": round(strong, 4),
                       "lexical_only": round(lexical_only, 4), "lexical_strong": round(lexical_strong, 4),
                       "off_topic": None if off_topic is None else round(off_topic, 4)},
        "lexical": {"bias": round(b, 4), "weights": keep},
        "semantic": {"model": DEFAULT_MODEL, "bias": round(bs, 4), "weights": [round(float(v), 5) for v in ws]},
        "stack": {"lexical": round(float(sa), 5), "semantic": round(float(sc), 5), "bias": round(sb, 5)},
    }


def _off_topic(spans: list[tuple[str, int, str, str, str, int, int]], emb: np.ndarray, addressing: np.ndarray,
               honest: np.ndarray) -> tuple[float | None, int]:
    """Step 4's threshold: the ``OFF_TOPIC_QUANTILE`` quantile of the cosine between each honest sentence that says
    something and the text around it in its own answer (``semantic.context_around``, the text's sentences above
    the warn threshold, ``addressing``, cut out as they are at run time); and how many such sentences had
    enough text around them to be compared. None (no second look) when none had."""
    cut: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for k in np.flatnonzero(addressing):
        cut[spans[k][2]].append((spans[k][5], spans[k][6]))
    rows, contexts = [], []
    for k in np.flatnonzero(honest):
        sentence, _, item, _, text, s, e = spans[k]
        if says_something(sentence):
            context = context_around(text, s, e, cut[item])
            if context:
                rows.append(int(k))
                contexts.append(context)
    if not rows:
        return None, 0
    vectors = embed(contexts, precision="fp32").astype(np.float64)
    near = np.einsum("ij,ij->i", emb[rows], vectors)  # unit vectors: the cosine
    return float(np.quantile(near, OFF_TOPIC_QUANTILE)), len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS_FILE, help="the cheat corpus (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=MODEL_FILE, help="where to write the model (default: the shipped one)")
    args = ap.parse_args()
    model = train(args.corpus)
    args.out.write_text(json.dumps(model, indent=None, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps({"out": str(args.out), **model["training"], **model["thresholds"]}))


if __name__ == "__main__":
    main()
