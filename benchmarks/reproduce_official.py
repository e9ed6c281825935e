"""Reproduce the official leaderboard numbers from published judgments, through the code users run.

The published data (Arena-Hard-Auto v0.1 verdicts, AlpacaEval 2.0 annotations, MT-Bench GPT-4 single gradings) is
converted to each benchmark's official file layout in a temporary folder, imported with `lioneval import ...` into a
fresh store, and scored with `lioneval leaderboard --json`. The numbers are compared with the published ones.

Run: ``python benchmarks/reproduce_official.py --data ../shared/validation``. The last line printed is one JSON
object: {"arena_hard": {MODEL: {score, lower, upper}}, "alpaca_eval": {MODEL: {win_rate, standard_error,
discrete_win_rate, length_controlled_winrate, lc_published_weights}}, "mt_bench": {MODEL: {overall, turn1, turn2}},
"arena_hard_v2": {MODEL: {score, score_style_controlled, lower, upper, style_coefs}}}.

``arena_hard_v2`` scores the same Arena-Hard verdicts with the v2.0 method (written in today's file layout, read
with ``load_official(version="v2.0")``, summarized by ``ArenaHard(version="v2.0")``) and compares them with the
output of the official v2.0 ``show_result.py`` recorded in ``arena_hard/official_run.txt`` (section B). The official
numbers are statistics of unseeded bootstrap draws, so they agree within a tolerance (0.3 points, 0.02 on the style
coefficients; see tests/test_arena_hard_v2.py), not exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lioneval.cli import main as lioneval  # noqa: E402


def cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lioneval(list(argv))
    if code != 0:
        raise SystemExit(f"lioneval {' '.join(argv)} exited with {code}")
    return out.getvalue()


def mt_bench(vdir: Path, tmp: Path, store: str) -> tuple[dict, dict]:
    """FastChat *_single.jsonl from the published GPT-4 judgments; means must equal the computed summary."""
    judged = tmp / "mt_bench" / "model_judgment" / "gpt-4_single.jsonl"
    judged.parent.mkdir(parents=True)
    with open(vdir / "mt_bench" / "gpt4_single_judgments.jsonl") as src, open(judged, "w") as dst:
        for line in src:
            o = json.loads(line)
            dst.write(json.dumps({
                "question_id": o["question_id"], "model": o["model"], "judge": ["gpt-4", o["judge_prompt"]],
                "user_prompt": "", "judgment": o["judgment"], "score": o["score"], "turn": o["turn"],
                "tstamp": 0.0,
            }) + "\n")
    cli("--store", store, "import", "mt-bench", str(judged))
    rows = json.loads(cli("--store", store, "leaderboard", "--bench", "mt-bench", "--json", "--rounds", "1000"))
    ours = {r["model"]: {k: r[k]["value"] for k in ("overall", "turn1", "turn2")} for r in rows}
    expected = {r["model"]: r for r in json.loads((vdir / "mt_bench" / "computed_summary.json").read_text())}
    diffs = [abs(ours[m][k] - e[k]) for m, e in expected.items() for k in ("overall", "turn1", "turn2")]
    check = {"models": len(expected), "max_abs_diff": max(diffs), "summary_rounding": 5e-5,
             "ok": max(diffs) <= 5e-5 and set(ours) == set(expected)}
    return ours, check


def arena_hard(vdir: Path, tmp: Path, store: str) -> tuple[dict, dict]:
    from speed_arena import write_official

    lines = [json.loads(x) for x in open(vdir / "arena_hard" / "judgments_gpt-4-1106-preview.jsonl")]
    root = write_official(lines, tmp / "arena_hard")
    cli("--store", store, "import", "arena-hard", str(root))
    rows = json.loads(cli("--store", store, "leaderboard", "--bench", "arena-hard", "--json", "--rounds", "100"))
    ours = {r["model"]: {"score": r["score"]["value"], "lower": r["score"]["lower"], "upper": r["score"]["upper"]}
            for r in rows}
    exp = json.loads((vdir / "arena_hard" / "expected.json").read_text())
    published = _arena_published(exp)
    check = {}
    for model, (score, lo, hi) in published.items():
        o = ours[model]
        check[model] = {"published": [score, lo, hi], "score_diff": round(o["score"] - score, 4),
                        "lower_diff": round(o["lower"] - lo, 3), "upper_diff": round(o["upper"] - hi, 3),
                        "ok": abs(o["score"] - score) <= 0.05 and abs(o["lower"] - lo) <= 0.5
                        and abs(o["upper"] - hi) <= 0.5}
    return ours, check


# The official v2.0 show_result.py on these verdicts (official_run.txt, section B): plain and `-f length markdown`.
_V2_OFFICIAL = {"score": {"gpt-4-0613": 37.9, "gpt-3.5-turbo-0125": 23.4},
                "score_style_controlled": {"gpt-4-0613": 36.8, "gpt-3.5-turbo-0125": 23.5},
                "coefs": [0.3315, 0.0037, 0.0968, -0.0390]}


def arena_hard_v2(vdir: Path, tmp: Path, store: str) -> tuple[dict, dict]:
    from lioneval.benchmarks.arena_hard import ArenaHard, load_official

    root = tmp / "arena_hard_v2"
    rows: dict[Path, list[str]] = {}
    answers: dict[str, dict[str, dict]] = {}
    for line in open(vdir / "arena_hard" / "judgments_gpt-4-1106-preview.jsonl"):
        o = json.loads(line)
        path = root / "model_judgment" / "gpt-4-1106-preview" / f"{o['model']}.jsonl"
        rows.setdefault(path, []).append(json.dumps({
            "uid": o["question_id"], "category": o["category"], "judge": "gpt-4-1106-preview", "model": o["model"],
            "baseline": o["baseline"], "games": [{"score": g["score"]} for g in o["games"]]}))
        answers.setdefault(o["model"], {})[o["question_id"]] = o["model_answer_meta"]
        answers.setdefault(o["baseline"], {})[o["question_id"]] = o["baseline_answer_meta"]
    for model, metas in answers.items():
        rows[root / "model_answer" / f"{model}.jsonl"] = [json.dumps({
            "uid": q, "model": model, "metadata": m,
            "messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": {"answer": ""}}]})
            for q, m in metas.items()]
    for path, lines in rows.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    data = load_official(root, version="v2.0")
    bench = ArenaHard(version="v2.0")
    point = bench.summarize(data.judgments, data.answers, rounds=0, style_control=True)
    boot = bench.summarize(data.judgments, data.answers, rounds=100, seed=0, unit="battle", style_control=True)
    ours, check = {}, {}
    for model, s in point.items():
        sc = boot[model].metrics["score_style_controlled"]
        coefs = list(s.meta["style_coefs"]["arena-hard-v0.1"].values())
        ours[model] = {"score": s.metrics["score"].value, "score_style_controlled": sc.value,
                       "lower": sc.ci_low, "upper": sc.ci_high, "level": sc.level, "style_coefs": coefs}
        d_plain = ours[model]["score"] - _V2_OFFICIAL["score"][model]
        d_sc = sc.value - _V2_OFFICIAL["score_style_controlled"][model]
        d_coef = max(abs(a - b) for a, b in zip(coefs, _V2_OFFICIAL["coefs"], strict=True))
        check[model] = {"score_diff": round(d_plain, 3), "score_style_controlled_diff": round(d_sc, 3),
                        "coef_max_abs_diff": round(d_coef, 4),
                        "ok": abs(d_plain) <= 0.3 and abs(d_sc) <= 0.3 and d_coef <= 0.02}
    return ours, check


def alpaca_eval(vdir: Path, tmp: Path, store: str) -> tuple[dict, dict]:
    """annotations.json per model (placeholder texts of the recorded lengths), imported and scored with the
    official LC inputs; parity with the leaderboard as the issue states it."""
    import numpy as np
    import pandas as pd
    from speed_alpaca import write_official

    paths = write_official(vdir / "alpaca_eval", tmp / "alpaca_eval")
    for model, path in paths.items():
        if model not in ("eval_set", "lc"):
            cli("--store", store, "import", "alpaca-eval", str(path), "--model", model)
    rows = json.loads(cli(
        "--store", store, "leaderboard", "--bench", "alpaca-eval", "--json", "--data", str(paths["eval_set"]),
        "--lc-data", str(paths["lc"]), "--glm-weights", str(vdir / "alpaca_eval" / "glm_weights_published.csv"),
    ))
    ours = {}
    for r in rows:
        ours[r["model"]] = {
            "win_rate": r["win_rate"]["value"], "standard_error": r["win_rate"]["se"],
            "discrete_win_rate": r["discrete_win_rate"]["value"],
            "length_controlled_winrate": r["length_controlled_winrate"]["value"],
            "lc_published_weights": r["lc_from_weights"]["value"] if "lc_from_weights" in r else None,
        }
    exp = pd.read_csv(vdir / "alpaca_eval" / "expected.csv").set_index("model")
    d = {k: [] for k in ("win_rate", "standard_error", "discrete_win_rate", "lc_weights", "lc_refit")}
    for model, e in exp.iterrows():
        o = ours[model]
        for k in ("win_rate", "standard_error", "discrete_win_rate"):
            d[k].append(abs(o[k] - e[k]))
        full = next(r for r in rows if r["model"] == model)["counts"]["rows"] == 805
        if full and model != "NullModel" and o["lc_published_weights"] is not None:
            d["lc_weights"].append(abs(o["lc_published_weights"] - e["length_controlled_winrate"]))
        d["lc_refit"].append(abs(o["length_controlled_winrate"] - e["length_controlled_winrate"]))
    refit = np.array(d["lc_refit"])
    check = {
        "models": len(exp), "max_abs_diff_win_rate": max(d["win_rate"]),
        "max_abs_diff_standard_error": max(d["standard_error"]),
        "max_abs_diff_discrete_win_rate": max(d["discrete_win_rate"]),
        "lc_weights_models": len(d["lc_weights"]), "lc_weights_max_abs_diff": max(d["lc_weights"]),
        "lc_refit_median_abs_diff": float(np.median(refit)), "lc_refit_max_abs_diff": float(refit.max()),
    }
    check["ok"] = (max(check[k] for k in check if k.startswith("max_abs_diff")) <= 1e-6
                   and check["lc_weights_max_abs_diff"] <= 1e-6 and check["lc_refit_median_abs_diff"] <= 0.01
                   and check["lc_refit_max_abs_diff"] <= 0.25)
    return ours, check


def _arena_published(exp: dict) -> dict[str, tuple[float, float, float]]:
    """(score, lower, upper) per judged model from the published v0.1 leaderboard (no style control)."""
    board = exp["leaderboards"]["v0.1_no_style_control"]["models"]
    models = exp["models_with_judgments_in_this_set"]
    return {m: (board[m]["score"], board[m]["lower"], board[m]["upper"]) for m in models}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/validation", help="holds arena_hard/, alpaca_eval/, mt_bench/")
    args = ap.parse_args()
    vdir = Path(args.data)
    result, checks, timings = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        store = str(tmp_path / "reproduce.db")
        for name, fn in (("mt_bench", mt_bench), ("arena_hard", arena_hard), ("arena_hard_v2", arena_hard_v2),
                         ("alpaca_eval", alpaca_eval)):
            t0 = time.perf_counter()
            result[name], checks[name] = fn(vdir, tmp_path, store)
            timings[name] = round(time.perf_counter() - t0, 2)
    for name in result:
        print(f"== {name} ({timings[name]} s)")
        print(json.dumps(checks[name], indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
