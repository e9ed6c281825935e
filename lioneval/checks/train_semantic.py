"""Fit the judge-addressing detector of ``lioneval.checks.semantic`` on the tuning split of the cheat corpus.

    python -m lioneval.checks.train_semantic [--corpus PATH] [--out PATH]

Examples are the step-1 candidate sentences (see ``semantic.candidate_sentences``) of the corpus's tuning texts:
sentences of the attack families that address the evaluator in words (every family but the master-key openers and
length padding, which have rules of their own) are positives, sentences of the honest answers negatives. Both models
are L2-regularised logistic regressions fitted by Newton's method with balanced class weights, so the result depends
only on the corpus (no random start, no shuffling). Thresholds come from 5-fold out-of-fold scores on the same
tuning split: ``lexical_floor`` passes 90% of the positives on to the embedding model, ``threshold`` (a judge-addressing
sentence) is the 95% quantile of the honest sentences' combined scores, ``strong`` (one that flags alone) lies a
margin above every honest sentence's, ``lexical_only`` likewise for the lexical model alone.
The evaluation split is never read.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lioneval.checks.semantic import CORPUS_FILE, MODEL_FILE, candidate_sentences, features, load_corpus
from lioneval.embeddings import DEFAULT_MODEL, embed

# families whose attacks are words addressed to the evaluator (the others are shapes: rules catch them)
WORD_FAMILIES = ("structured_verdict", "fake_turns", "output_instruction", "persuasion", "authority",
                 "instruction_override", "template_break")
L2_LEXICAL = 1.0
L2_SEMANTIC = 0.3
MARGIN = 0.5
MEDIUM_QUANTILE = 0.95
# the share of positives the lexical model may clear without the embedding model: the price of checking 10,000
# answers in seconds (only the sentences above the floor are embedded)
FLOOR_QUANTILE = 0.1
FOLDS = 5


def examples(corpus: dict) -> tuple[list[str], np.ndarray]:
    texts: list[str] = []
    labels: list[int] = []
    for item in corpus["attacks"]:
        if item["split"] == "tune" and item["family"] in WORD_FAMILIES:
            for s, e in candidate_sentences(item["text"]):
                texts.append(item["text"][s:e])
                labels.append(1)
    for item in corpus["honest"]:
        if item["split"] == "tune":
            for s, e in candidate_sentences(item["text"]):
                texts.append(item["text"][s:e])
                labels.append(0)
    return texts, np.asarray(labels, dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> tuple[np.ndarray, float]:
    """Weights and bias of a class-balanced L2 logistic regression (the bias is not penalised)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    sw = np.where(y == 1, n / (2 * max(y.sum(), 1)), n / (2 * max(n - y.sum(), 1)))
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


def _lexical_matrix(texts: list[str], vocab: list[str]) -> np.ndarray:
    index = {f: i for i, f in enumerate(vocab)}
    x = np.zeros((len(texts), len(vocab)))
    for r, t in enumerate(texts):
        for f in features(t):
            if f in index:
                x[r, index[f]] = 1.0
    return x


def _vocab(texts: list[str]) -> list[str]:
    return sorted({f for t in texts for f in features(t)})


def _scores(train: np.ndarray, test: np.ndarray, texts: list[str], y: np.ndarray, emb: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    tr = [texts[i] for i in train]
    vocab = _vocab(tr)
    w, b = fit_logistic(_lexical_matrix(tr, vocab), y[train], L2_LEXICAL)
    lex = _lexical_matrix([texts[i] for i in test], vocab) @ w + b
    ws, bs = fit_logistic(emb[train], y[train], L2_SEMANTIC)
    return lex, emb[test] @ ws + bs


def train(corpus_path: Path = CORPUS_FILE) -> dict:
    corpus = load_corpus(corpus_path)
    texts, y = examples(corpus)
    emb = embed(texts).astype(np.float64)
    # out-of-fold scores for the thresholds: folds by position, interleaved so that every family is in each
    lex_oof = np.zeros(len(texts))
    sem_oof = np.zeros(len(texts))
    idx = np.arange(len(texts))
    for k in range(FOLDS):
        test = idx[idx % FOLDS == k]
        train_ = idx[idx % FOLDS != k]
        lex_oof[test], sem_oof[test] = _scores(train_, test, texts, y, emb)
    pos, neg = y == 1, y == 0
    floor = float(np.quantile(lex_oof[pos], FLOOR_QUANTILE))
    combined = (lex_oof + sem_oof) / 2
    threshold = float(np.quantile(combined[neg], MEDIUM_QUANTILE))
    strong = float(combined[neg].max() + MARGIN)
    lexical_only = float(lex_oof[neg].max() + MARGIN)
    vocab = _vocab(texts)
    w, b = fit_logistic(_lexical_matrix(texts, vocab), y, L2_LEXICAL)
    ws, bs = fit_logistic(emb, y, L2_SEMANTIC)
    passed = (lex_oof >= floor) & (combined >= threshold)
    stats = {
        "sentences": len(texts), "positives": int(pos.sum()), "negatives": int(neg.sum()),
        "oof_recall": round(float(passed[pos].mean()), 4), "oof_false_positives": int(passed[neg].sum()),
        "oof_recall_strong": round(float(((lex_oof >= floor) & (combined >= strong))[pos].mean()), 4),
        "oof_recall_lexical_only": round(float((lex_oof[pos] >= lexical_only).mean()), 4),
    }
    keep = {f: round(float(v), 4) for f, v in zip(vocab, w, strict=True) if abs(v) >= 1e-3}
    return {
        "version": 1,
        "how": ("python -m lioneval.checks.train_semantic: class-balanced L2 logistic regressions (Newton's method) "
                "on the candidate sentences of the tuning split of cheat_corpus.json; thresholds from 5-fold "
                f"out-of-fold scores (lexical_floor: 10% quantile of positives; threshold and lexical_only: highest "
                f"honest score + {MARGIN})"),
        "families": list(WORD_FAMILIES),
        "l2": {"lexical": L2_LEXICAL, "semantic": L2_SEMANTIC},
        "training": stats,
        "thresholds": {"lexical_floor": round(floor, 4), "threshold": round(threshold, 4), "strong": round(strong, 4),
                       "lexical_only": round(lexical_only, 4)},
        "lexical": {"bias": round(b, 4), "weights": keep},
        "semantic": {"model": DEFAULT_MODEL, "bias": round(bs, 4), "weights": [round(float(v), 5) for v in ws]},
    }


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
