"""Arena-Hard-Auto scoring: parity with the published numbers, and speed against a per-round refit.

The reference below follows the official v0.1 recipe step by step: a pandas battle table with a strong verdict
repeated three times, every battle listed twice for the logistic regression (a tie as one win and one loss),
sklearn ``LogisticRegression`` refit on each bootstrap resample, percentiles of the ratings mapped to win rates.
Both implementations get the same resampled index sets, so their intervals must agree, not only their points.

Run: ``python benchmarks/speed_arena.py [VALIDATION_DIR]`` (``VALIDATION_DIR`` holds ``arena_hard/``); the
last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lioneval.benchmarks.arena_hard import battles_from_judgments, load_official
from lioneval.stats.arena import STYLE_FEATURES, arena_scores, resample_indices

BASELINE = "gpt-4-0314"
JUDGE = "gpt-4-1106-preview"
ROUNDS = 100

# Official battle rows per verdict: (winner, copies), with the baseline as model_a in both games.
_GAME1 = {
    "A>>B": ("model_a", 3),
    "A>B": ("model_a", 1),
    "A=B": ("tie", 1),
    "B>A": ("model_b", 1),
    "B>>A": ("model_b", 3),
}
_GAME2 = {
    "A>>B": ("model_b", 3),
    "A>B": ("model_b", 1),
    "A=B": ("tie", 1),
    "B>A": ("model_a", 1),
    "B>>A": ("model_a", 3),
}


# ---------------------------------------------------------------------------------------------------------------
# Data: compact verdict lines (the validation file's schema) <-> the official folder layout


def _totals(meta: dict) -> dict[str, int]:
    return {k: meta[k] if isinstance(meta[k], int) else sum(meta[k].values()) for k in STYLE_FEATURES}


def write_official(lines: list[dict], root: Path, judge: str = JUDGE) -> Path:
    """Write verdict lines as model_judgment/ and model_answer/ files, the layout users load."""
    (root / "model_judgment" / judge).mkdir(parents=True, exist_ok=True)
    (root / "model_answer").mkdir(parents=True, exist_ok=True)
    by_model: dict[str, list[dict]] = {}
    baseline_meta: dict[str, dict] = {}
    for o in lines:
        by_model.setdefault(o["model"], []).append(o)
        baseline_meta[o["question_id"]] = o["baseline_answer_meta"]

    def answer(qid: str, model: str, meta: dict) -> str:
        turn = {"content": "", "token_len": meta["token_len"]}
        return json.dumps(
            {
                "question_id": qid,
                "model_id": model,
                "answer_id": f"{model}/{qid}",
                "tstamp": 0.0,
                "choices": [{"index": 0, "turns": [turn]}],
                "conv_metadata": meta,
            }
        )

    for model, rows in by_model.items():
        games = [[{"user_prompt": "", "judgment": "", "score": g["score"]} for g in o["games"]] for o in rows]
        (root / "model_judgment" / judge / f"{model}.jsonl").write_text(
            "".join(
                json.dumps({"question_id": o["question_id"], "model": model, "judge": judge, "games": g}) + "\n"
                for o, g in zip(rows, games, strict=True)
            )
        )
        (root / "model_answer" / f"{model}.jsonl").write_text(
            "".join(answer(o["question_id"], model, o["model_answer_meta"]) + "\n" for o in rows)
        )
    (root / "model_answer" / f"{BASELINE}.jsonl").write_text(
        "".join(answer(q, BASELINE, m) + "\n" for q, m in baseline_meta.items())
    )
    return root


def synthetic_lines(n_models: int = 50, n_questions: int = 500, seed: int = 0) -> list[dict]:
    """Random Arena-Hard verdicts: each model has a strength; about 1% of games come back without a verdict."""
    rng = np.random.default_rng(seed)
    labels = np.array(["A>>B", "A>B", "A=B", "B>A", "B>>A"])
    strength = rng.normal(0.0, 1.0, n_models)

    def meta() -> dict:
        h, lst, bold = rng.poisson([1.0, 4.0, 3.0])
        return {
            "token_len": int(rng.integers(50, 1200)),
            "header_count": {"h1": int(h)},
            "list_count": {"ordered": int(lst), "unordered": 0},
            "bold_count": {"**": int(bold), "__": 0},
        }

    base_meta = [meta() for _ in range(n_questions)]
    lines = []
    for i in range(n_models):
        win = 1 / (1 + np.exp(-strength[i]))  # the model's chance of winning a game
        probs = np.array([0.3 * (1 - win), 0.5 * (1 - win), 0.2, 0.5 * win, 0.3 * win])
        probs /= probs.sum()
        for q in range(n_questions):
            g1, g2 = labels[rng.choice(5, p=probs)], labels[::-1][rng.choice(5, p=probs)]
            games = [{"score": None if rng.random() < 0.01 else str(s)} for s in (g1, g2)]
            lines.append(
                {
                    "question_id": f"q{q:04d}",
                    "model": f"model-{i:02d}",
                    "baseline": BASELINE,
                    "games": games,
                    "model_answer_meta": meta(),
                    "baseline_answer_meta": base_meta[q],
                }
            )
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Reference: the official recipe, one sklearn fit per bootstrap round


def reference_battles(lines: list[dict], weight: int = 3) -> pd.DataFrame:
    """The official battle table, models in file-name order and games in file order."""
    rows = []
    for o in sorted(lines, key=lambda o: o["model"]):
        ma, mb = _totals(o["baseline_answer_meta"]), _totals(o["model_answer_meta"])
        style = {**{f"{k}_a": ma[k] for k in STYLE_FEATURES}, **{f"{k}_b": mb[k] for k in STYLE_FEATURES}}
        for table, game in zip((_GAME1, _GAME2), o["games"], strict=False):
            if game.get("score") in table:
                winner, copies = table[game["score"]]
                copies = weight if copies > 1 else 1
                row = {"question_id": o["question_id"], "model_a": BASELINE, "model_b": o["model"], "winner": winner}
                rows += [{**row, **style}] * copies
    return pd.DataFrame(rows)


def _design(df: pd.DataFrame, style: bool) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    names = pd.concat([df["model_a"], df["model_b"]]).unique()
    models = pd.Series(np.arange(len(names)), index=names)
    doubled = pd.concat([df, df], ignore_index=True)
    n, p = len(doubled), len(models)
    k = len(STYLE_FEATURES) if style else 0
    x = np.zeros((n, p + k))
    x[np.arange(n), models[doubled["model_a"]].to_numpy()] = math.log(10)
    x[np.arange(n), models[doubled["model_b"]].to_numpy()] = -math.log(10)
    if style:
        a = doubled[[f"{f}_a" for f in STYLE_FEATURES]].to_numpy(float)
        b = doubled[[f"{f}_b" for f in STYLE_FEATURES]].to_numpy(float)
        diff = (a - b) / (a + b + 1)
        x[:, p:] = (diff - diff.mean(axis=0)) / diff.std(axis=0)
    y = (doubled["winner"] == "model_a").to_numpy(float)
    tie = (doubled["winner"] == "tie").to_numpy(copy=True)
    tie[n // 2 :] = False
    y[tie] = 1.0
    return x, y, models


def _fit(x: np.ndarray, y: np.ndarray, models: pd.Series, style: bool) -> tuple[pd.Series, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    # C=inf is sklearn's spelling of penalty=None; style control keeps the default C=1 (an L2 penalty). The official
    # code uses the lbfgs solver, which stops on relative progress ~1e-5 points short of the optimum with 50 models;
    # newton-cg reaches the same optimum to ~1e-8, so agreement can be checked at 1e-6 (and it is as fast or faster).
    lr = LogisticRegression(C=1.0 if style else np.inf, fit_intercept=False, solver="newton-cg", tol=1e-8)
    lr.fit(x, y)
    elo = 400 * lr.coef_[0][: len(models)] + 1000
    elo += 1000 - elo[models[BASELINE]]
    return pd.Series(elo, index=models.index), lr.coef_[0][len(models) :]


def reference_scores(df: pd.DataFrame, indices, style: bool = False) -> dict:
    """Point win rates from the full fit and percentile intervals from one refit per resample.

    ``indices``: per round, the battle rows drawn (a battle-row resample, or every row of each drawn question)."""
    x, y, models = _design(df, style)
    point, coefs = _fit(x, y, models, style)
    boot = []
    if style:
        # The official style bootstrap resamples battle rows and rebuilds the doubled design from them.
        k = len(df)
        tie = (df["winner"] == "tie").to_numpy()
        for idx in indices:
            plain, tied = idx[~tie[idx]], idx[tie[idx]]
            rows = np.concatenate([plain, plain, tied, tied + k])
            boot.append(_fit(x[rows], y[rows], models, style)[0])
    else:
        for idx in indices:
            xb, yb, mb = _design(df.iloc[idx], style)
            boot.append(_fit(xb, yb, mb, style)[0])
    ratings = pd.DataFrame(boot)

    def wr(rating):
        return 100 / (1 + 10 ** ((1000 - np.asarray(rating)) / 400))

    return {
        m: {
            "score": float(wr(point[m])),
            "ci_low": float(wr(np.percentile(ratings[m], 2.5))),
            "ci_high": float(wr(np.percentile(ratings[m], 97.5))),
        }
        for m in point.index
    } | ({"_style_coefs": dict(zip(STYLE_FEATURES, coefs.tolist(), strict=True))} if style else {})


# ---------------------------------------------------------------------------------------------------------------
# Runs


def _compare(ours, ref: dict) -> dict:
    point = max(abs(ours.scores[m].value - r["score"]) for m, r in ref.items() if not m.startswith("_"))
    ci = max(
        max(abs(ours.scores[m].ci_low - r["ci_low"]), abs(ours.scores[m].ci_high - r["ci_high"]))
        for m, r in ref.items()
        if not m.startswith("_")
    )
    return {"max_abs_diff_point": point, "max_abs_diff_ci": ci, "max_abs_diff": max(point, ci)}


def _timed(fn, repeat: int = 1):
    """Median wall time and median CPU time of this process over ``repeat`` runs, and the last result.

    BLAS runs on one thread for both sides, so the CPU time is the work done: on a shared machine it is the steadier
    figure (other jobs stretch wall times, by 3x at times); both are reported."""
    from threadpoolctl import threadpool_limits

    walls, cpus, out = [], [], None
    with threadpool_limits(1):
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            out = fn()
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus)), out


def canonical(lines: list[dict]) -> list[dict]:
    """The lines in lioneval's battle-table order: by model, then question id (records carry no file position)."""
    return sorted(lines, key=lambda o: (o["model"], o["question_id"]))


def question_rows(df: pd.DataFrame, questions: tuple[str, ...], indices: np.ndarray) -> list[np.ndarray]:
    """Per round of question draws, the battle rows of every drawn question (a question drawn twice, twice)."""
    rows_of = {q: np.flatnonzero(df["question_id"].to_numpy() == q) for q in questions}
    order = [rows_of[q] for q in questions]
    return [np.concatenate([order[i] for i in idx]) for idx in indices]


def speed_case(lines: list[dict], tmp: Path, style: bool = False, seed: int = 0, unit: str = "battle") -> dict:
    bundle = load_official(write_official(lines, tmp))
    battles = battles_from_judgments(bundle.judgments, bundle.answers)
    indices = resample_indices(battles, ROUNDS, seed, unit)
    df = reference_battles(canonical(lines))
    assert len(df) == battles.n_battles, (len(df), battles.n_battles)
    rows = indices if unit == "battle" else question_rows(df, battles.questions, indices)
    # The per-round refits give percentile intervals; the closed form's own default by question is the studentized
    # one, so the comparison asks for the percentile interval (the fits and their time are the same).
    def ours_fn():
        return arena_scores(battles, BASELINE, indices=indices, style_control=style, unit=unit, interval="percentile")

    # Interleaved, so that both sides see the same load on a shared machine: the reference once, ours five times,
    # three times over (once over for a large table); medians of each. scikit-learn is imported first: its import
    # (a second or two) is not the reference's work.
    from sklearn.linear_model import LogisticRegression  # noqa: F401

    timings: dict[str, list[float]] = {"ref_s": [], "ref_cpu": [], "ours_s": [], "ours_cpu": []}
    for _ in range(1 if len(df) > 10_000 else 3):
        wall, cpu, ref = _timed(lambda: reference_scores(df, rows, style))
        timings["ref_s"].append(wall)
        timings["ref_cpu"].append(cpu)
        wall, cpu, ours = _timed(ours_fn, repeat=5)
        timings["ours_s"].append(wall)
        timings["ours_cpu"].append(cpu)
    ref_s, ref_cpu, ours_s, ours_cpu = (float(np.median(v)) for v in timings.values())
    build_s, _, _ = _timed(lambda: battles_from_judgments(bundle.judgments, bundle.answers))
    out = {
        "models": len(battles.models) - 1,
        "battles": battles.n_battles,
        "rounds": ROUNDS,
        "unit": unit,
        "style_control": style,
        "ref_s": ref_s,
        "ours_s": ours_s,
        "ref_cpu_s": ref_cpu,
        "ours_cpu_s": ours_cpu,
        "ours_build_battles_s": build_s,
        "ratio": ref_s / ours_s,
        "cpu_ratio": ref_cpu / ours_cpu,
        **_compare(ours, ref),
    }
    if style:
        out["style_coefs"] = ours.style_coefs
        out["style_coefs_ref"] = ref["_style_coefs"]
    return out


def _official_run(path: Path) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Scores and CI offsets printed by the official show_result.py runs (section flag -> model -> numbers)."""
    runs: dict[str, dict] = {"csv": {}}
    flag = None
    for line in path.read_text().splitlines():
        head = re.match(r"--- A\d?: python show_result\.py\s*(\S*)", line)
        if head:
            flag = head.group(1) if head.group(1).startswith("--") else "default"
            continue
        if line.startswith("[csv written by"):
            flag = "csv"  # model,score,rating_q025,rating_q975,...: the bounds with two decimals
            continue
        csv = re.match(r"([^,\s]+),([\d.]+),([\d.]+),([\d.]+),", line)
        if csv and flag == "csv":
            runs["csv"][csv.group(1)] = tuple(float(v) for v in csv.group(2, 3, 4))
            continue
        row = re.match(r"(\S+)\s+\| score:\s+([\d.]+)\s+\| 95% CI:\s+\(([-\d.]+), ([-\d.]+)\)", line)
        if row and flag and flag != "--show-elo":
            runs.setdefault(flag, {})[row.group(1)] = tuple(float(v) for v in row.group(2, 3, 4))
        if line.startswith("####") and "v2.0" in line:
            break
    return runs


def official_to_ours(lines: list[dict], battles) -> np.ndarray:
    """For each row of the official battle table (models by file name, lines in file order, game 1 then game 2, a
    strong verdict's copies adjacent), the expanded row of lioneval's table that holds the same battle."""
    models, questions = {m: i for i, m in enumerate(battles.models)}, {q: i for i, q in enumerate(battles.questions)}
    compact = {(int(b), int(q), int(g)): i for i, (b, q, g) in enumerate(zip(battles.b, battles.question, battles.game,
                                                                               strict=True))}
    start = np.concatenate([[0], np.cumsum(battles.weight)[:-1]])
    out = []
    for o in sorted(lines, key=lambda o: o["model"]):
        for game, (table, verdict) in enumerate(zip((_GAME1, _GAME2), o["games"], strict=False)):
            if verdict.get("score") in table:
                row = compact[(models[o["model"]], questions[o["question_id"]], game)]
                out += [start[row] + c for c in range(int(battles.weight[row]))]
    return np.array(out)


def validation(vdir: Path, tmp: Path) -> dict:
    """Published leaderboard (seeded default_rng draws) and the recorded official run (its legacy RNG draws)."""
    lines = [json.loads(s) for s in (vdir / "judgments_gpt-4-1106-preview.jsonl").read_text().splitlines() if s]
    expected = json.loads((vdir / "expected.json").read_text())
    bundle = load_official(write_official(lines, tmp))
    battles = battles_from_judgments(bundle.judgments, bundle.answers)
    out: dict = {"skipped": dict(bundle.skipped), "published": {}, "official_run": {}}

    published = expected["leaderboards"]["v0.1_no_style_control"]["models"]
    exact = expected["exact_values_from_this_set"]
    res = arena_scores(battles, BASELINE, rounds=ROUNDS, seed=0, unit="battle")
    for m, e in published.items():
        est = res.scores[m]
        row = {
            "score": est.value,
            "ci_low": est.ci_low,
            "ci_high": est.ci_high,
            "published": e["score"],
            "published_ci": [e["lower"], e["upper"]],
        }
        row["ok"] = (
            abs(est.value - e["score"]) <= 0.05
            and max(abs(est.ci_low - e["lower"]), abs(est.ci_high - e["upper"])) <= 0.5
        )
        if m in exact:
            row["exact_win_rate_diff"] = abs(est.value / 100 - exact[m]["win_rate"])
            row["exact_rating_diff"] = abs(res.ratings[m] - exact[m]["elo_vs_baseline_1000"])
        out["published"][m] = row
    style = arena_scores(battles, BASELINE, rounds=ROUNDS, seed=0, style_control=True)
    pub_style = expected["leaderboards"]["v0.1_style_control"]["models"]
    out["published_style"] = {
        m: {
            "score": style.scores[m].value,
            "ci_low": style.scores[m].ci_low,
            "ci_high": style.scores[m].ci_high,
            "published": e["score"],
        }
        for m, e in pub_style.items()
    }

    # The official script seeds numpy's legacy global RNG with 42 and draws each round with
    # DataFrame.sample(frac=1, replace=True), i.e. RandomState.randint over the battle rows; replaying those draws
    # on the same table reproduces its printed intervals.
    legacy = np.random.RandomState(42)
    draws = np.stack([legacy.randint(0, battles.n_battles, battles.n_battles) for _ in range(ROUNDS)])
    draws = official_to_ours(lines, battles)[draws]
    features = {
        "default": False,
        "--output": False,
        "csv": False,
        "--style-control": True,
        "--length-control-only": ("token_len",),
        "--markdown-control-only": STYLE_FEATURES[1:],
    }
    for flag, printed in _official_run(vdir / "official_run.txt").items():
        if flag not in features:
            continue
        r = arena_scores(battles, BASELINE, indices=draws, style_control=features[flag])
        rows = {}
        for m, official in printed.items():
            e = r.scores[m]
            if flag == "csv":
                ours = (round(e.value, 2), round(e.ci_low, 2), round(e.ci_high, 2))
                close = max(abs(o - v) for o, v in zip(ours, official, strict=True)) < 0.006
            else:
                ours = (round(e.value, 1), round(e.ci_low - e.value, 1), round(e.ci_high - e.value, 1))
                # The official prints offsets of already rounded bounds, so a .x5 tie may print 0.1 away.
                off = max(abs(o - v) for o, v in zip(ours[1:], official[1:], strict=True))
                close = abs(ours[0] - official[0]) < 0.051 and off < 0.11
            rows[m] = {"ours": ours, "official": official, "ok": close}
        if r.style_coefs:
            rows["style_coefs"] = {k: round(v, 3) for k, v in r.style_coefs.items()}
        out["official_run"][flag] = rows
    return out


def _table(title: str, rows: list[list]) -> None:
    print(f"\n{title}")
    for r in rows:
        cells = [f"{c:.6g}" if isinstance(c, float) else str(c) for c in r]
        print("  " + f"{cells[0]:<24}" + "".join(f"{c:>22}" for c in cells[1:]))


def run(validation_dir: str | None) -> dict:
    figures: dict = {}
    vdir = None
    if validation_dir:
        # Accept the validation root (holding arena_hard/) or the arena_hard folder itself.
        root = Path(validation_dir)
        vdir = root / "arena_hard" if (root / "arena_hard").is_dir() else root
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if vdir is not None and (vdir / "judgments_gpt-4-1106-preview.jsonl").is_file():
            figures["arena_validation"] = v = validation(vdir, tmp / "validation")
            rows = [["model", "score", "ci_low", "ci_high", "published", "ok"]]
            rows += [
                [m, r["score"], r["ci_low"], r["ci_high"], r["published"], r["ok"]] for m, r in v["published"].items()
            ]
            _table("Arena-Hard v0.1 validation (unit=battle, 100 rounds, seed 0) vs published leaderboard", rows)
            rows = [["model", "sc score", "ci_low", "ci_high", "published"]]
            rows += [
                [m, r["score"], r["ci_low"], r["ci_high"], r["published"]] for m, r in v["published_style"].items()
            ]
            _table("Style control vs published (published fit used ~70 models: not comparable on 2)", rows)
            rows = [["official run", "model", "ours", "official", "ok"]]
            for flag, res in v["official_run"].items():
                rows += [[flag, m, r["ours"], r["official"], r["ok"]] for m, r in res.items() if m != "style_coefs"]
                if "style_coefs" in res:
                    rows.append([flag, "style coefs", res["style_coefs"], "", ""])
            _table("Replay of the recorded official show_result.py runs (legacy RNG, seed 42)", rows)
            val_lines = [json.loads(s) for s in (vdir / "judgments_gpt-4-1106-preview.jsonl").read_text().splitlines()]
            figures["arena_speed"] = speed_case(val_lines, tmp / "speed")
            figures["arena_style_speed"] = speed_case(val_lines, tmp / "style", style=True)
            figures["arena_question_speed"] = speed_case(val_lines, tmp / "question", unit="question")
            figures["arena_style_question_speed"] = speed_case(val_lines, tmp / "style_question", style=True,
                                                               unit="question")
        figures["arena_synthetic_speed"] = speed_case(synthetic_lines(), tmp / "synthetic")
        # A ten-model leaderboard with style control and question-unit intervals (the per-round refits of a
        # fifty-model one would take the reference tens of minutes).
        figures["arena_synthetic_style_question_speed"] = speed_case(
            synthetic_lines(n_models=10), tmp / "synthetic_style_question", style=True, unit="question"
        )
    rows = [["case", "ref_s", "ours_s", "ratio", "cpu_ratio", "max_abs_diff"]]
    for key in ("arena_speed", "arena_style_speed", "arena_question_speed", "arena_style_question_speed",
                "arena_synthetic_speed", "arena_synthetic_style_question_speed"):
        if key in figures:
            f = figures[key]
            rows.append([key, f["ref_s"], f["ours_s"], f["ratio"], f["cpu_ratio"], f["max_abs_diff"]])
    _table("Speed: 100 bootstrap rounds, reference = per-round sklearn refit on the same index sets "
           "(battle rows, or all rows of the drawn questions)", rows)
    return figures


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else None), default=str))
