"""Do decisions replicate? The 57 AlpacaEval 2.0 models of the validation set as if they were checkpoints.

Each model's per-instruction preference against the reference (weighted_alpaca_eval_gpt4_turbo, 805 instructions;
win = preference - 1, the raw win rate's unit) is real judge output. For 100 seeded random halvings of the
instructions, a decision is made on one half and checked on the other, untouched half, both ways round:

* pairwise ("is A better than the reference B?", all 1,596 pairs, and the close ones, within 3 win-rate points on
  all 805 instructions, as checkpoints of one run tend to be): the new rule is the paired t-test
  (``lioneval.decisions.compare``, two-sided 95%); the old rule calls a winner when the two models' own 95%
  intervals do not overlap. A decision replicates when the other half's estimate points the same way; it reverses
  when the other half makes the opposite significant call (by the same rule).
* selection (promotion): 40 random groups of 8 models per split, in random order (the order is the "step"; the
  first is the incumbent; answer length is each model's mean output length on that half). New: the incumbent vs
  every other by one-sided paired tests, Holm at alpha 0.05, non-inferiority margin 1 win-rate point for shorter
  ones (``lioneval.decisions.select``, the promotion policy's defaults); old: the top score unless intervals
  overlap, then shorter, then earlier among the tied. A selection replicates when the other half selects the same
  model; a promotion away from the incumbent holds up when the other half's estimate of its difference with the
  incumbent is positive.

Prints a table; the last line is one JSON object. Run: ``python benchmarks/alpaca_replication.py [VALIDATION_DIR]``
(default ../shared/validation).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from lioneval import decisions as D
from lioneval.stats.alpaca import clean_preference

SPLITS = 100
GROUPS, GROUP_SIZE = 40, 8
ALPHA, MARGIN = 0.05, 1.0
SCALE = 100.0  # win rate in percent
CLOSE = 3.0  # win-rate points: "close" pairs, as near as checkpoints of one run


def load(vdir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Models, wins (models x 805, NaN where missing) and output lengths (models x 805)."""
    rows = [json.loads(line) for line in (vdir / "alpaca_eval" / "annotations.jsonl").open()]
    models = sorted({r["model"] for r in rows})
    at = {m: i for i, m in enumerate(models)}
    n = 1 + max(r["eval_idx"] for r in rows)
    wins = np.full((len(models), n), np.nan)
    length = np.full((len(models), n), np.nan)
    pref = clean_preference([r["preference"] for r in rows])
    for r, p in zip(rows, pref, strict=True):
        wins[at[r["model"]], r["eval_idx"]] = p - 1
        length[at[r["model"]], r["eval_idx"]] = r["len_2"]
    return models, wins, length


def panel(wins: np.ndarray, inc: int, cands: np.ndarray) -> D.Panel:
    """Incumbent ``inc`` and candidate rows ``cands`` of the wins matrix as paired units (a missing row: absent)."""
    units = np.nan_to_num(wins)
    one = np.ones(wins.shape[1])
    present = ~np.isnan(wins[cands]) & ~np.isnan(wins[inc])
    return D.Panel(tuple(map(str, range(wins.shape[1]))), np.stack([units[inc], one], -1),
                   np.stack([units[cands], np.broadcast_to(one, units[cands].shape)], -1), present, SCALE)


def own_interval(wins: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each model's win rate on the masked instructions and its 95% half-width (normal, as the old rule used)."""
    w = np.where(mask, wins, np.nan)
    n = (~np.isnan(w)).sum(1)
    mean = SCALE * np.nanmean(w, 1)
    hw = 1.96 * SCALE * np.nanstd(w, 1, ddof=1) / np.sqrt(n)
    return mean, hw


def pairwise(wins: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every pair (i, j): the paired difference i - j, the new rule's call and the old rule's call
    (+1: i better, -1: j better, 0: no call), on the masked instructions."""
    m = len(wins)
    diff, new = np.zeros((m, m)), np.zeros((m, m), int)
    for i in range(m):
        others = np.array([j for j in range(m) if j != i])
        st = D.contrast([panel(wins, i, others)], [mask])  # candidates j vs incumbent i: diff = j - i
        lo, hi = zip(*(D.interval(st, k, ALPHA / 2) for k in range(len(others))), strict=True)
        lo, hi = np.array(lo, float), np.array(hi, float)
        diff[i, others] = -st.diff
        new[i, others] = np.where(hi < 0, 1, np.where(lo > 0, -1, 0))
    mean, hw = own_interval(wins, mask)
    old = np.where(mean[:, None] - hw[:, None] > mean[None] + hw[None], 1,
                   np.where(mean[:, None] + hw[:, None] < mean[None] - hw[None], -1, 0))
    return diff, new, old


def select_new(wins: np.ndarray, length: np.ndarray, group: np.ndarray, mask: np.ndarray) -> int:
    inc, cands = group[0], group[1:]
    st = D.contrast([panel(wins, inc, cands)], [mask])
    mean_len = np.nanmean(np.where(mask, length, np.nan), 1)
    preferred = mean_len[cands] < mean_len[inc]  # tie_break "shorter": only non-inferiority needed
    pick = int(D.select(st, preferred, alpha=ALPHA, margin=MARGIN, correction="holm").pick)
    return int(group[0] if pick < 0 else cands[pick])


def select_old(mean: np.ndarray, hw: np.ndarray, mean_len: np.ndarray, group: np.ndarray) -> int:
    top = group[np.argmax(mean[group])]
    tied = [g for g in group if g == top or mean[g] + hw[g] >= mean[top] - hw[top]]
    order = {g: k for k, g in enumerate(group)}
    return int(min(tied, key=lambda g: (mean_len[g], order[g], -mean[g])))


def main() -> None:
    vdir = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/validation")
    t0 = time.perf_counter()
    models, wins, length = load(vdir)
    m, n = wins.shape
    rng = np.random.default_rng(0)
    iu = np.triu_indices(m, 1)
    tally = {rule: {"decided": 0, "same_sign": 0, "same_call": 0, "reversed": 0, "close_decided": 0,
                    "close_same_sign": 0} for rule in ("new", "old")}
    pairs_total = close_total = 0
    full_diff = pairwise(wins, np.ones(n, bool))[0][iu]
    close = np.abs(full_diff) < CLOSE  # pairs as close as a run's checkpoints tend to be
    sel = {rule: {"same": 0, "moved": 0, "held": 0, "groups": 0} for rule in ("new", "old")}
    for _ in range(SPLITS):
        a = np.zeros(n, bool)
        a[rng.permutation(n)[: n // 2]] = True
        halves = [a, ~a]
        res = [pairwise(wins, h) for h in halves]
        for fit, held in ((0, 1), (1, 0)):
            d_held = res[held][0][iu]
            pairs_total += len(iu[0])
            for k, rule in ((1, "new"), (2, "old")):
                call, again = res[fit][k][iu], res[held][k][iu]
                made = call != 0
                t = tally[rule]
                t["decided"] += int(made.sum())
                t["same_sign"] += int((made & (np.sign(d_held) == call)).sum())
                t["same_call"] += int((made & (again == call)).sum())
                t["reversed"] += int((made & (again == -call)).sum())
                t["close_decided"] += int((made & close).sum())
                t["close_same_sign"] += int((made & close & (np.sign(d_held) == call)).sum())
            close_total += int(close.sum())
        stats = [own_interval(wins, h) for h in halves]
        lens = [np.nanmean(np.where(h, length, np.nan), 1) for h in halves]
        for _ in range(GROUPS):
            group = rng.choice(m, GROUP_SIZE, replace=False)
            picks = {"new": [select_new(wins, length, group, h) for h in halves],
                     "old": [select_old(*stats[k], lens[k], group) for k in (0, 1)]}
            for rule, (pa, pb) in picks.items():
                for held, p_fit, p_held in ((1, pa, pb), (0, pb, pa)):
                    s = sel[rule]
                    s["groups"] += 1
                    s["same"] += int(p_fit == p_held)
                    if p_fit != group[0]:
                        s["moved"] += 1
                        diff_held = stats[held][0][p_fit] - stats[held][0][group[0]]
                        s["held"] += int(diff_held > 0)
    out: dict = {"models": m, "instructions": n, "splits": SPLITS, "pairs_per_half": len(iu[0]),
                 "groups": GROUPS * SPLITS, "group_size": GROUP_SIZE, "alpha": ALPHA, "margin": MARGIN}
    print(f"== {m} AlpacaEval 2.0 models, {n} instructions, {SPLITS} random halvings (decide on one half, check on "
          f"the other, both ways)")
    print(f"{'pairwise: is A better than B?':<44}{'new (paired t)':>16}{'old (CI overlap)':>18}")
    for key, label in (("decided", "calls made (share of pairs)"), ("same_sign", "replicate: other half same sign"),
                       ("same_call", "replicate: same significant call"), ("reversed", "reversed significantly")):
        vals = []
        for rule in ("new", "old"):
            t = tally[rule]
            v = t[key] / pairs_total if key == "decided" else t[key] / max(1, t["decided"])
            out[f"pair_{key}_{rule}"] = v
            vals.append(v)
        print(f"{label:<44}{vals[0]:>16.3f}{vals[1]:>18.3f}")
    print(f"{'correct-direction calls per pair':<44}{out['pair_decided_new'] * out['pair_same_sign_new']:>16.3f}"
          f"{out['pair_decided_old'] * out['pair_same_sign_old']:>18.3f}")
    for rule in ("new", "old"):
        t = tally[rule]
        out[f"close_decided_{rule}"] = t["close_decided"] / max(1, close_total)
        out[f"close_same_sign_{rule}"] = t["close_same_sign"] / max(1, t["close_decided"])
    out["close_pairs"] = int(close.sum())
    print(f"{f'close pairs (|full-data diff| < {CLOSE:g} points, {int(close.sum())}): calls':<44}"
          f"{out['close_decided_new']:>16.3f}{out['close_decided_old']:>18.3f}")
    print(f"{'  ...replicate: other half same sign':<44}{out['close_same_sign_new']:>16.3f}"
          f"{out['close_same_sign_old']:>18.3f}")
    out["pair_replicated_calls_new"] = out["pair_decided_new"] * out["pair_same_sign_new"]
    out["pair_replicated_calls_old"] = out["pair_decided_old"] * out["pair_same_sign_old"]
    print(f"\n{f'selection: groups of {GROUP_SIZE}, the first is the incumbent':<44}{'new (Holm)':>16}"
          f"{'old (CI overlap)':>18}")
    for key, label in (("same", "same model selected on the other half"),
                       ("moved", "promoted away from the incumbent"), ("held", "  ...and better on the other half")):
        vals = []
        for rule in ("new", "old"):
            s = sel[rule]
            v = s[key] / (s["moved"] if key == "held" else s["groups"]) if (s["moved"] or key != "held") else math.nan
            out[f"select_{key}_{rule}"] = v
            vals.append(v)
        print(f"{label:<44}{vals[0]:>16.3f}{vals[1]:>18.3f}")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
