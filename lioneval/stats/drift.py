"""How far a policy drifted from its reference model: KL estimate with a CI, answer lengths, near-copies.

The analysis of Ahrabian et al. (2024, "The Hitchhiker's Guide to Human Alignment with *PO"): DPO tends to produce
long answers that stay close to the SFT model's. Three numbers per checkpoint, all pure functions here:

* KL(policy || reference), token-level on answers sampled from the policy: for each sampled answer y to prompt x,
  ``d(x, y) = sum_t [log p_policy(y_t | x, y_<t) - log p_ref(y_t | x, y_<t)]``; the mean of d over the samples is an
  unbiased estimate of the sequence-level KL, with a Student-t interval over the per-sequence values (one value per
  prompt and sample; the samples of one prompt are averaged first, so the prompt is the resampling unit).
* Answer length in tokens: mean, median, 90th percentile, min, max, and the relative growth of the mean over the
  reference model's answers to the same prompts.
* Near-copy share: the share of prompts whose answer has a character n-gram Jaccard similarity (n = 5, whitespace
  runs folded to one space, lower-cased) to the reference model's answer of at least a threshold (0.8 by default).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sp_stats

__all__ = ["MIN_N", "char_ngrams", "jaccard", "kl_estimate", "length_stats", "near_copy_share"]

# Below this many prompts no interval is claimed (the t interval's coverage needs some n).
MIN_N = 3


def kl_estimate(per_sequence: Sequence[float], groups: Sequence[Any] | None = None, *,
                level: float = 0.95) -> dict[str, Any]:
    """Mean per-sequence log-ratio (the KL estimate) with a Student-t interval over prompts.

    ``groups``: the prompt of each value; values of one prompt are averaged first, so several samples per prompt
    do not count as independent evidence. Below :data:`MIN_N` prompts the interval is None."""
    values = np.asarray(list(per_sequence), dtype=float)
    if values.size == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0, "method": "t", "level": level}
    if groups is not None:
        keys = list(groups)
        if len(keys) != values.size:
            raise ValueError(f"{len(keys)} groups for {values.size} values")
        order = sorted(set(keys), key=str)
        values = np.array([values[[k == g for k in keys]].mean() for g in order])
    n = int(values.size)
    mean = float(values.mean())
    lo = hi = None
    if n >= MIN_N:
        sd = float(values.std(ddof=1))
        half = float(sp_stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
        lo, hi = mean - half, mean + half
    return {"value": mean, "ci_low": lo, "ci_high": hi, "n": n, "method": "t", "level": level}


def length_stats(lengths: Sequence[int], reference: Sequence[int] | None = None) -> dict[str, Any]:
    """Mean, median, p90, min and max of answer lengths; with ``reference`` lengths (the reference model's answers
    to the same prompts) also their mean and the relative growth ``mean / reference_mean - 1``."""
    a = np.asarray(list(lengths), dtype=float)
    out: dict[str, Any] = {"n": int(a.size)}
    if a.size:
        out.update(mean=float(a.mean()), median=float(np.median(a)), p90=float(np.percentile(a, 90)),
                   min=int(a.min()), max=int(a.max()))
    if reference is not None:
        r = np.asarray(list(reference), dtype=float)
        out["reference_mean"] = float(r.mean()) if r.size else None
        ok = a.size and r.size and r.mean() > 0
        out["growth"] = float(a.mean() / r.mean() - 1.0) if ok else None
    return out


_SPACE = re.compile(r"\s+")


def char_ngrams(text: str, n: int = 5) -> set[str]:
    """Character n-grams of the lower-cased text with whitespace runs folded; a text shorter than n is one gram."""
    t = _SPACE.sub(" ", text.lower()).strip()
    if len(t) <= n:
        return {t} if t else set()
    return {t[i : i + n] for i in range(len(t) - n + 1)}


def jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of the character n-gram sets (two empty texts are identical: 1.0)."""
    ga, gb = char_ngrams(a, n), char_ngrams(b, n)
    if not ga and not gb:
        return 1.0
    return len(ga & gb) / len(ga | gb)


def near_copy_share(answers: Sequence[str], reference: Sequence[str], *, threshold: float = 0.8,
                    n: int = 5) -> dict[str, Any]:
    """Share of answers whose similarity to the reference answer of the same prompt is at least ``threshold``."""
    if len(answers) != len(reference):
        raise ValueError(f"{len(answers)} answers but {len(reference)} reference answers")
    sims = [jaccard(a, r, n) for a, r in zip(answers, reference, strict=True)]
    copies = sum(s >= threshold for s in sims)
    return {"share": copies / len(sims) if sims else None, "copies": copies, "n": len(sims),
            "mean_similarity": float(np.mean(sims)) if sims else None, "threshold": threshold, "ngram": n}
