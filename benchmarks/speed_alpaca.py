"""AlpacaEval 2.0 scoring: parity with the published leaderboard, and speed of the length-controlled (LC) fit.

Parity: the validation annotations (57 models, judge weighted_alpaca_eval_gpt4_turbo) are written out in the
official layout (``results/<model>/<annotator>/annotations.json`` with placeholder outputs of the recorded lengths,
the baseline's ``model_outputs.json`` as eval set, and the LC folder with ``instruction_difficulty.csv`` and
``df_gamed.csv``), read back through ``load_annotations`` and scored by ``AlpacaEval.summarize``. Checks: win rate,
standard error and discrete win rate equal to the leaderboard (1e-6, all models); LC from the published GLM weights
equal to the leaderboard (1e-6, every model with 805 rows except NullModel, whose published weights row belongs to
another run); LC refitted with the calibrated df_gamed within median 0.01 and max 0.25 of the leaderboard.

Speed: LC of every model, ours against a reference that follows the official recipe with scikit-learn
(``LogisticRegressionCV``: liblinear, L1, 10 strengths, 5 grouped folds, weighted log-loss scorer, tol 1e-4,
random_state 123, refit), on the same inputs; both must give the same numbers.

End to end (the acceptance figure): the AlpacaEval leaderboard of the 57 validation models with official LC and
its bootstrap intervals (the default 1000 rounds), as a CLI process, ``lioneval leaderboard --bench alpaca-eval --json
--data EVAL_SET --lc-data LC_DIR`` run after ``lioneval import alpaca-eval FILE --model M`` of every model into a
temporary store, against a per-model scikit-learn process: for each model, read its ``annotations.json`` with pandas
and fit the official GLM (the recipe above), as the reference implementation does. Both are subprocesses, timed by
wall clock and by CPU time (user + system; best of ``REPEATS``) with their peak resident memory (the child's own
``ru_maxrss``, what ``resource.getrusage(RUSAGE_CHILDREN)`` reports for one child). Target: >= 10x, no more peak
memory. The CLI runs on the threads it picks (the usable CPUs, at most two: lioneval.stats.workers) and again with
``LIONEVAL_THREADS=1``; both must print the same JSON. The 1-minute load average before and after is printed beside
the timings: on a shared machine other processes take the cores the threads would use.

Coverage (``--coverage``): how often the LC bootstrap interval of a random subset of n questions covers the model's
LC on all 805, for validation models across the LC range; it sets ``LC_MIN_QUESTIONS`` and ``LC_MIN_OUTCOMES``.

Run: ``python benchmarks/speed_alpaca.py [VALIDATION_DIR]`` (``VALIDATION_DIR`` holds ``alpaca_eval/``; without it
only a synthetic speed case runs), or ``python benchmarks/speed_alpaca.py --coverage VALIDATION_DIR``. The last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from lioneval.benchmarks.alpaca_eval import DEFAULT_BASELINE, AlpacaEval, load_annotations
from lioneval.benchmarks.base import ImportBundle
from lioneval.stats.alpaca import GamedRows, LCRows, length_controlled_win_rates
from lioneval.stats.workers import ENV, worker_count

LAMBDA = 0.2  # length_controlled_v1: weight of the gamed-baseline rows, split over the two gamed models
REPEATS = 2  # timings: best of this many runs, for both implementations
TOL = 1e-6
BOOT_ROUNDS = 1000  # the leaderboard's default bootstrap rounds


# ---------------------------------------------------------------------------------------------------------------
# Reference: the official recipe, written plainly with pandas and scikit-learn


def _weighted_log_loss(y_true, y_pred, true_prob, true_weight):
    # Each row comes twice (label 1, label 0); both copies score the soft label of the original row.
    p = np.where(y_true == 1, true_prob, 1 - true_prob)
    q = np.clip(y_pred, 1e-15, 1 - 1e-15)
    return -np.mean(true_weight * (p * np.log(q) + (1 - p) * np.log(1 - q)))


def reference_lc(preference, len_1, len_2, difficulty, df_gamed: pd.DataFrame) -> float:
    """LC win rate of one model by the official recipe: features, gamed rows, duplicated soft labels, CV, refit."""
    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    delta = pd.Series(np.asarray(len_1, float) - np.asarray(len_2, float))
    df = pd.DataFrame(
        {
            "preference": pd.Series(preference, dtype=float).replace({0.0: 1.5}) - 1,
            "std_delta_len": delta / delta.std(),
            "instruction_difficulty": difficulty,
            "not_gamed_baseline": True,
        }
    )
    train = pd.concat([df_gamed.drop(columns=["model", "index"]), df], ignore_index=True)
    train = train[train["preference"].notna()].reset_index(drop=True)
    weight = np.where(train["not_gamed_baseline"], 1.0, LAMBDA / 2)
    X = np.column_stack(
        [np.tanh(train["std_delta_len"]), train["instruction_difficulty"], train["not_gamed_baseline"].astype(float)]
    )
    p = train["preference"].to_numpy()
    n = len(p)
    X2, y2 = np.vstack([X, X]), np.r_[np.ones(n), np.zeros(n)]
    prob, w2, groups = np.r_[p, 1 - p], np.r_[weight, weight], np.r_[np.arange(n), np.arange(n)]
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scorer = make_scorer(_weighted_log_loss, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(true_prob=True, true_weight=True)
        model = LogisticRegressionCV(
            Cs=10, cv=GroupKFold(n_splits=5), scoring=scorer, penalty="l1", solver="liblinear", dual=False,
            fit_intercept=False, tol=1e-4, max_iter=100, random_state=123,
        )
        model.set_fit_request(sample_weight=True)
        model.fit(X2, y2, sample_weight=prob * w2, groups=groups, true_prob=prob, true_weight=w2)
    X_test = np.column_stack([np.zeros(len(df)), df["instruction_difficulty"], np.ones(len(df))])
    return float(100 * model.predict_proba(X_test)[:, 1].mean())


def speed_case(inputs: list[tuple], df_gamed: pd.DataFrame) -> dict:
    """Time LC for every model, ours (batched) against the reference (one sklearn fit per model)."""
    gamed = GamedRows(
        df_gamed["std_delta_len"].to_numpy(), df_gamed["instruction_difficulty"].to_numpy(),
        df_gamed["preference"].to_numpy(), df_gamed["index"].to_numpy(), n_models=df_gamed["model"].nunique(),
    )
    rows = [LCRows(pref, l1, l2, diff) for pref, l1, l2, diff in inputs]
    # Wall and CPU time of the calling process, best of REPEATS, alternating so that both see the same load.
    ours_t, ref_t, boot_t = [], [], []
    for _ in range(REPEATS):
        t, c = time.perf_counter(), time.process_time()
        ours = [r.estimate.value for r in length_controlled_win_rates(rows, gamed)]
        ours_t.append((time.perf_counter() - t, time.process_time() - c))
        t, c = time.perf_counter(), time.process_time()
        boot = length_controlled_win_rates(rows, gamed, rounds=BOOT_ROUNDS, seed=0)
        boot_t.append((time.perf_counter() - t, time.process_time() - c))
        t, c = time.perf_counter(), time.process_time()
        ref = [reference_lc(pref, l1, l2, diff, df_gamed) for pref, l1, l2, diff in inputs]
        ref_t.append((time.perf_counter() - t, time.process_time() - c))
    (ours_s, ours_cpu), (ref_s, ref_cpu) = np.min(ours_t, axis=0), np.min(ref_t, axis=0)
    boot_s, boot_cpu = np.min(boot_t, axis=0)
    ratios = [r.estimate.meta["bootstrap"]["sd"] / r.estimate.se for r in boot if "bootstrap" in r.estimate.meta]
    return {
        "boot_rounds": BOOT_ROUNDS,
        "ours_with_boot_s": round(float(boot_s), 3),
        "ours_with_boot_cpu_s": round(float(boot_cpu), 3),
        "boot_sd_over_official_se": [round(float(min(ratios)), 2), round(float(max(ratios)), 2)] if ratios else None,
        "boot_unconverged": int(sum(r.estimate.meta.get("bootstrap", {}).get("unconverged", 0) for r in boot)),
        "models": len(rows),
        "ref_s": round(float(ref_s), 3),
        "ours_s": round(float(ours_s), 3),
        "ratio": round(float(ref_s / ours_s), 2),
        "ref_cpu_s": round(float(ref_cpu), 3),
        "ours_cpu_s": round(float(ours_cpu), 3),
        "cpu_ratio": round(float(ref_cpu / ours_cpu), 2),
        "max_abs_diff": float(np.max(np.abs(np.array(ours) - np.array(ref)))),
    }


# ---------------------------------------------------------------------------------------------------------------
# Validation data -> the official layout, and the parity checks


def write_official(vdir: Path, root: Path) -> dict[str, Path]:
    """Write the validation rows as official files (outputs are placeholders of the recorded lengths)."""
    eval_set = [json.loads(s) for s in (vdir / "eval_set.jsonl").read_text().splitlines() if s.strip()]
    ref = root / DEFAULT_BASELINE / "model_outputs.json"
    ref.parent.mkdir(parents=True)
    ref.write_text(json.dumps([
        {"instruction": e["instruction"], "output": "x" * e["len_reference"], "generator": DEFAULT_BASELINE,
         "dataset": e["dataset"]}
        for e in eval_set
    ]))
    by_model = defaultdict(list)
    for line in (vdir / "annotations.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            by_model[r["model"]].append(r)
    files = {}
    for model, rs in by_model.items():
        rs.sort(key=lambda r: r["row"])
        path = root / "results" / model / rs[0]["annotator"] / "annotations.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps([
            {
                "instruction": eval_set[r["eval_idx"]]["instruction"],
                "output_1": "x" * r["len_1"],
                "output_2": ("x" if r.get("identical_outputs") else "y") * r["len_2"],
                "generator_1": r["generator_1"],
                "generator_2": r["generator_2"],
                "annotator": r["annotator"],
                "preference": r["preference"],
                "dataset": r["dataset"],
            }
            for r in rs
        ]))
        files[model] = path
    lc = root / "lc"
    lc.mkdir()
    shutil.copy(vdir / "instruction_difficulty_recovered.csv", lc / "instruction_difficulty.csv")
    shutil.copy(vdir / "df_gamed_calibrated.csv", lc / "df_gamed.csv")
    return {"eval_set": ref, "lc": lc, **files}


def validation(vdir: Path, root: Path) -> tuple[dict, dict, list[tuple]]:
    paths = write_official(vdir, root)
    expected = pd.read_csv(vdir / "expected.csv").set_index("model")
    bundle = ImportBundle()
    for model in expected.index:  # named as on the leaderboard (NullModel's file says generator_2 "example")
        load_annotations(paths[model], model=model, bundle=bundle)
    bench = AlpacaEval(paths["eval_set"], lc_data=paths["lc"], weights=vdir / "glm_weights_published.csv")
    t = time.perf_counter()
    summaries = bench.summarize(bundle.judgments, bundle.answers)
    summarize_s = time.perf_counter() - t

    per_model, d = {}, defaultdict(list)
    counts_equal = True
    for model, exp in expected.iterrows():
        m = summaries[model].metrics
        c = summaries[model].counts
        got = {
            "win_rate": m["win_rate"].value,
            "standard_error": m["win_rate"].se,
            "discrete_win_rate": m["discrete_win_rate"].value,
            "length_controlled_winrate": m["length_controlled_winrate"].value,
            "lc_published_weights": m["lc_from_weights"].value if "lc_from_weights" in m else None,
        }
        per_model[model] = got
        for key in ("win_rate", "standard_error", "discrete_win_rate"):
            d[key].append(abs(got[key] - exp[key]))
        counts_equal &= all(int(c[k]) == int(exp[k]) for k in ("n_wins", "n_wins_base", "n_draws", "n_total"))
        if c["rows"] == 805 and model != "NullModel" and got["lc_published_weights"] is not None:
            d["lc_weights"].append(abs(got["lc_published_weights"] - exp["length_controlled_winrate"]))
        d["lc_refit"].append(abs(got["length_controlled_winrate"] - exp["length_controlled_winrate"]))
    lc_diff = np.array(d["lc_refit"])
    parity = {
        "models": len(expected),
        "max_abs_diff_win_rate": max(d["win_rate"]),
        "max_abs_diff_standard_error": max(d["standard_error"]),
        "max_abs_diff_discrete_win_rate": max(d["discrete_win_rate"]),
        "counts_equal": bool(counts_equal),
        "lc_weights_models": len(d["lc_weights"]),
        "lc_weights_max_abs_diff": max(d["lc_weights"]),
        "lc_refit_median_abs_diff": float(np.median(lc_diff)),
        "lc_refit_max_abs_diff": float(lc_diff.max()),
        "lc_refit_worst": str(expected.index[int(lc_diff.argmax())]),
        "summarize_s": round(summarize_s, 3),
        "skipped": dict(bundle.skipped),
    }
    parity["ok"] = bool(
        max(parity[f"max_abs_diff_{k}"] for k in ("win_rate", "standard_error", "discrete_win_rate")) <= TOL
        and counts_equal
        and parity["lc_weights_max_abs_diff"] <= TOL
        and parity["lc_refit_median_abs_diff"] <= 0.01
        and parity["lc_refit_max_abs_diff"] <= 0.25
    )

    # The same inputs for the speed case: every model but the baseline, difficulty by row position.
    df_gamed = pd.read_csv(paths["lc"] / "df_gamed.csv")
    table = df_gamed.drop_duplicates("index").set_index("index")["instruction_difficulty"]
    ann = pd.read_json(vdir / "annotations.jsonl", lines=True).sort_values(["model", "row"])
    inputs = [
        (g["preference"].to_numpy(), g["len_1"].to_numpy(), g["len_2"].to_numpy(), table.loc[g["row"]].to_numpy())
        for model, g in ann.groupby("model", sort=True)
        if model != DEFAULT_BASELINE
    ]
    return per_model, parity, inputs


def synthetic(n_models: int = 57, n: int = 805, seed: int = 0) -> tuple[list[tuple], pd.DataFrame]:
    """A stand-in with the validation set's shape, for runs without the validation data."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 0.8, n)
    len_ref = rng.lognormal(7.5, 0.5, n).round()
    gamed = []
    for name, scale in (("verbose", 1.6), ("concise", 0.3)):
        lens = (len_ref * scale * rng.lognormal(0, 0.3, n)).round()
        delta = len_ref - lens
        logit = -1.5 * np.tanh(delta / delta.std()) + 0.8 * difficulty
        gamed.append(pd.DataFrame({
            "model": f"gamed_{name}", "index": np.arange(n), "preference": 1 / (1 + np.exp(-logit)),
            "std_delta_len": delta / delta.std(), "instruction_difficulty": difficulty, "not_gamed_baseline": False,
        }))
    inputs = []
    for _ in range(n_models):
        skill, scale = rng.normal(-1.5, 1.2), rng.lognormal(0, 0.4)
        len_m = (len_ref * scale * rng.lognormal(0, 0.4, n)).round()
        delta = len_ref - len_m
        logit = skill - 1.8 * np.tanh(delta / delta.std()) + difficulty + rng.normal(0, 1, n)
        inputs.append((1 + 1 / (1 + np.exp(-logit)), len_ref, len_m, difficulty))
    return inputs, pd.concat(gamed, ignore_index=True)


def _table(title: str, rows: list[list]) -> None:
    print(f"\n{title}")
    for r in rows:
        cells = [f"{c:.6g}" if isinstance(c, float) else str(c) for c in r]
        print("  " + f"{cells[0]:<36}" + "".join(f"{c:>14}" for c in cells[1:]))


def run(validation_dir: str | None) -> dict:
    figures: dict = {}
    vdir = None
    if validation_dir:
        # Accept the validation root (holding alpaca_eval/) or the alpaca_eval folder itself.
        root = Path(validation_dir)
        vdir = root / "alpaca_eval" if (root / "alpaca_eval").is_dir() else root
    if vdir is not None and (vdir / "annotations.jsonl").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            per_model, parity, inputs = validation(vdir, Path(tmp))
        expected = pd.read_csv(vdir / "expected.csv").set_index("model")
        figures["alpaca_validation"] = per_model
        figures["alpaca_parity"] = parity
        rows = [["model", "win_rate", "d_wr", "lc", "d_lc", "lc(weights)", "d_lc(w)"]]
        for model, got in per_model.items():
            exp = expected.loc[model]
            lcw = got["lc_published_weights"]
            rows.append([
                model, got["win_rate"], got["win_rate"] - exp["win_rate"], got["length_controlled_winrate"],
                got["length_controlled_winrate"] - exp["length_controlled_winrate"],
                lcw if lcw is not None else "-",
                lcw - exp["length_controlled_winrate"] if lcw is not None else "-",
            ])
        _table("AlpacaEval 2.0 validation vs the published leaderboard (d_ = ours - published)", rows)
        _table("Parity", [[k, v] for k, v in parity.items() if k != "skipped"])
        df_gamed = pd.read_csv(vdir / "df_gamed_calibrated.csv")
    else:
        inputs, df_gamed = synthetic()
    figures["lc_speed"] = speed = speed_case(inputs, df_gamed)
    _table(
        f"Speed: LC of {speed['models']} models, reference = official recipe with sklearn (best of {REPEATS})",
        [["", "ref_s", "ours_s", "ratio", "max_abs_diff"],
         ["wall", speed["ref_s"], speed["ours_s"], speed["ratio"], speed["max_abs_diff"]],
         ["cpu (this process)", speed["ref_cpu_s"], speed["ours_cpu_s"], speed["cpu_ratio"], ""],
         [f"ours + {BOOT_ROUNDS} bootstrap refits", "", speed["ours_with_boot_s"], "", ""]],
    )
    if vdir is not None and (vdir / "annotations.jsonl").is_file():
        figures["lc_cli"] = cli = cli_case(vdir)
        _table(
            f"End to end: alpaca-eval leaderboard of {cli['models']} models with official LC and "
            f"{cli['rounds']}-round bootstrap intervals, CLI process vs per-model sklearn process (best of {REPEATS})",
            [["", "wall_s", "cpu_s", "peak_rss_mb"],
             [f"lioneval leaderboard (CLI, {cli['threads']} threads)", cli["ours_s"], cli["ours_cpu_s"],
              cli["ours_rss_mb"]],
             [f"lioneval leaderboard (CLI, {ENV}=1)", cli["ours_1thread_s"], cli["ours_1thread_cpu_s"],
              cli["ours_1thread_rss_mb"]],
             ["per-model sklearn recipe", cli["ref_s"], cli["ref_cpu_s"], cli["ref_rss_mb"]],
             ["ratio (ref / ours)", cli["ratio"], cli["cpu_ratio"], cli["rss_ratio"]]],
        )
        print(f"  LC max |ours - reference| = {cli['max_abs_diff']:.2e}; models with an LC interval: "
              f"{cli['models_with_lc_interval']}; same JSON on one thread: {cli['same_json_on_one_thread']}; "
              f"1-min load average before/after: {cli['load_avg_1min']}; targets: ratio >= 10 "
              f"({'met' if cli['ratio'] >= 10 else 'NOT met'}), peak memory <= reference "
              f"({'met' if cli['rss_ratio'] <= 1 else 'NOT met'})")
    return figures


# ---------------------------------------------------------------------------------------------------------------
# End to end: the CLI leaderboard against a per-model scikit-learn process


def reference_leaderboard(root: Path) -> dict[str, dict[str, float]]:
    """The per-model reference: every ``results/<model>/annotations.json`` read with pandas, its win rate and the
    official LC GLM fitted with scikit-learn, difficulty looked up by row position as the official code does."""
    df_gamed = pd.read_csv(root / "lc" / "df_gamed.csv")
    table = df_gamed.drop_duplicates("index").set_index("index")["instruction_difficulty"]
    out = {}
    for path in sorted((root / "results").glob("*/annotations.json")):
        ann = pd.read_json(path)
        pref = ann["preference"].astype(float).replace({0.0: 1.5})
        out[path.parent.name] = {
            "win_rate": float((pref - 1).mean() * 100), "standard_error": float((pref - 1).sem() * 100),
            # the official code skips the fit for the baseline against itself: 50
            "length_controlled_winrate": 50.0 if path.parent.name == DEFAULT_BASELINE else reference_lc(
                ann["preference"].to_numpy(dtype=float), ann["output_1"].str.len().to_numpy(),
                ann["output_2"].str.len().to_numpy(), table.loc[np.arange(len(ann))].to_numpy(), df_gamed),
        }
    return out


# Runs the command as its child and reports the child's wall time and peak memory. The measured process must be the
# child of a small process: Linux counts the memory a process had when it was forked in its ru_maxrss, so a child of
# this (large) benchmark process would report at least this process's size.
_MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True)
wall = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.buffer.write(proc.stderr)
sys.stdout.buffer.write(proc.stdout)
sys.stdout.write("\\n" + json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "maxrss": usage.ru_maxrss,
                                     "code": proc.returncode}) + "\\n")
"""


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str, float]:
    """Wall seconds, peak resident memory (MB, ``getrusage(RUSAGE_CHILDREN).ru_maxrss``), stdout and CPU seconds (user
    + system) of ``cmd`` (with ``env`` added to the environment)."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    out, _, last = proc.stdout.rstrip("\n").rpartition("\n")
    m = json.loads(last)
    if proc.returncode != 0 or m["code"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {m['code']}: {proc.stderr[-2000:]}")
    # ru_maxrss is in kilobytes on Linux (bytes on macOS)
    return m["wall"], m["maxrss"] / (1024 * 1024 if sys.platform == "darwin" else 1024), out, m["cpu"]


def cli_case(vdir: Path) -> dict:
    from lioneval.cli import main as lioneval

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_official(vdir, root / "official")
        # The official tree has results/<model>/<annotator>/annotations.json; the reference reads one per model.
        for model, path in paths.items():
            if model not in ("eval_set", "lc"):
                dst = root / "official" / "results" / model / "annotations.json"
                shutil.move(path, dst)
                paths[model] = dst
        store = str(root / "store.db")
        for model, path in paths.items():  # `lioneval import alpaca-eval FILE --model M`, in this process
            with contextlib.redirect_stdout(io.StringIO()):
                code = 0 if model in ("eval_set", "lc") else lioneval(
                    ["--store", store, "import", "alpaca-eval", str(path), "--model", model])
            if code:
                raise SystemExit(f"lioneval import of {path} failed")
        ours_cmd = [sys.executable, "-m", "lioneval.cli", "--store", store, "leaderboard", "--bench", "alpaca-eval",
                    "--json", "--data", str(paths["eval_set"]), "--lc-data", str(paths["lc"])]
        ref_cmd = [sys.executable, str(Path(__file__).resolve()), "--reference", str(root / "official")]
        ours_runs, one_runs, ref_runs = [], [], []
        load = [os.getloadavg()[0]]
        for _ in range(REPEATS):  # alternating, so that all see the same load
            ours_runs.append(_timed(ours_cmd))
            one_runs.append(_timed(ours_cmd, {ENV: "1"}))
            ref_runs.append(_timed(ref_cmd))
        load.append(os.getloadavg()[0])
    rows = json.loads(ours_runs[0][2])
    ref = json.loads(ref_runs[0][2].strip().splitlines()[-1])
    ours_lc = {r["model"]: r["length_controlled_winrate"] for r in rows if r["model"] != DEFAULT_BASELINE}
    diffs = [abs(ours_lc[m]["value"] - ref[m]["length_controlled_winrate"]) for m in ref if m != DEFAULT_BASELINE]
    ours_s, ref_s = min(r[0] for r in ours_runs), min(r[0] for r in ref_runs)
    ours_rss, ref_rss = max(r[1] for r in ours_runs), max(r[1] for r in ref_runs)
    # CPU time moves less than wall time with the load of a shared machine (both sides are single-threaded)
    ours_cpu, ref_cpu = min(r[3] for r in ours_runs), min(r[3] for r in ref_runs)
    one_s, one_cpu, one_rss = min(r[0] for r in one_runs), min(r[3] for r in one_runs), max(r[1] for r in one_runs)
    return {
        "models": len(rows),
        "threads": worker_count(),
        "same_json_on_one_thread": all(r[2] == ours_runs[0][2] for r in [*ours_runs, *one_runs]),
        "ours_1thread_s": round(one_s, 2),
        "ours_1thread_cpu_s": round(one_cpu, 2),
        "ours_1thread_rss_mb": round(one_rss, 1),
        "load_avg_1min": [round(x, 2) for x in load],
        "rounds": next(iter(ours_lc.values()))["rounds"],
        "models_with_lc_interval": sum(v["lower"] is not None for v in ours_lc.values()),
        "ours_s": round(ours_s, 2),
        "ref_s": round(ref_s, 2),
        "ratio": round(ref_s / ours_s, 2),
        "ours_cpu_s": round(ours_cpu, 2),
        "ref_cpu_s": round(ref_cpu, 2),
        "cpu_ratio": round(ref_cpu / ours_cpu, 2),
        "ours_rss_mb": round(ours_rss, 1),
        "ref_rss_mb": round(ref_rss, 1),
        "rss_ratio": round(ours_rss / ref_rss, 2),
        "max_abs_diff": float(max(diffs)),
    }


# ---------------------------------------------------------------------------------------------------------------
# Coverage of the LC bootstrap interval


GAMING_MODELS = ("NullModel", "gpt4_gamed")
COVERAGE_MODELS = ("oasst-sft-pythia-12b", "chatglm2-6b", "gemma-2b-it", "oasst-rlhf-llama-33b", "gemma-7b-it",
                   "gpt4_gamed", "jina-chat", "gpt4_0613_concise", "claude-2", "FuseChat-Llama-3.2-3B-Instruct",
                   "FuseChat-Gemma-2-9B-Instruct", "NullModel")


def coverage(validation_dir: str, sizes=(30, 50, 100, 200, 300), subsets: int = 150, rounds: int = 400,
             seed: int = 2) -> dict:
    """Share of random n-question subsets whose LC interval covers the model's LC on all its questions.

    Each subset is scored as lioneval scores a run on n questions: the official GLM refitted (CV included) on the
    subset, then the question bootstrap. The "truth" is the same estimator on every question of the model, the
    number a full run reports. Intervals are computed for every subset (no minimum) and then split by whether the
    stated rule (``LC_MIN_QUESTIONS`` questions, ``LC_MIN_OUTCOMES`` expected of the rarer outcome) claims them.
    """
    from lioneval.stats.alpaca import LC_MIN_OUTCOMES, LC_MIN_QUESTIONS, claims_interval

    root = Path(validation_dir)
    vdir = root / "alpaca_eval" if (root / "alpaca_eval").is_dir() else root
    df_gamed = pd.read_csv(vdir / "df_gamed_calibrated.csv")
    gamed = GamedRows(df_gamed["std_delta_len"].to_numpy(), df_gamed["instruction_difficulty"].to_numpy(),
                      df_gamed["preference"].to_numpy(), df_gamed["index"].to_numpy(), n_models=2)
    table = gamed.difficulty_by_index()
    ann = pd.read_json(vdir / "annotations.jsonl", lines=True).sort_values(["model", "row"])
    rng = np.random.default_rng(seed)
    cells, claimed_hits, honest_hits = [], [], []
    t0 = time.perf_counter()
    for model in COVERAGE_MODELS:
        g = ann[ann["model"] == model]
        P, LB, LM = (g[c].to_numpy(dtype=float) for c in ("preference", "len_1", "len_2"))
        D = table[g["row"].to_numpy()]
        truth = length_controlled_win_rates([LCRows(P, LB, LM, D)], gamed)[0].estimate.value
        for n in sizes:
            subs = [np.sort(rng.choice(P.size, n, replace=False)) for _ in range(subsets)]
            res = length_controlled_win_rates([LCRows(P[i], LB[i], LM[i], D[i]) for i in subs], gamed,
                                              rounds=rounds, seed=0, min_questions=0, min_outcomes=0)
            est = [r.estimate for r in res]
            hit = np.array([e.ci_low is not None and e.ci_low <= truth <= e.ci_high for e in est])
            claim = np.array([claims_interval(n, e.value) for e in est])
            claimed_hits += hit[claim].tolist()
            if model not in GAMING_MODELS:
                honest_hits += hit[claim].tolist()
            cells.append({"model": model, "lc": round(truth, 2), "n": n, "coverage": round(float(hit.mean()), 3),
                          "claimed": round(float(claim.mean()), 2),
                          "coverage_claimed": round(float(hit[claim].mean()), 3) if claim.any() else None})
            print(f"  {model[:30]:<30} LC {truth:6.2f}  n {n:4d}  coverage {hit.mean():.3f}  "
                  f"claimed {claim.mean():.2f}  coverage of claimed "
                  f"{hit[claim].mean() if claim.any() else float('nan'):.3f}", flush=True)
    summary = {"rule": {"min_questions": LC_MIN_QUESTIONS, "min_outcomes": LC_MIN_OUTCOMES},
               "claimed_intervals": len(claimed_hits), "coverage_of_claimed": round(float(np.mean(claimed_hits)), 3),
               # the length-gaming models' subset LC is biased (see LC_MIN_QUESTIONS in lioneval/stats/alpaca.py)
               "claimed_intervals_other_models": len(honest_hits),
               "coverage_of_claimed_other_models": round(float(np.mean(honest_hits)), 3),
               "subsets_per_cell": subsets, "rounds": rounds, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(summary))
    return {"cells": cells, **summary}


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--reference":
        print(json.dumps(reference_leaderboard(Path(sys.argv[2]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "--coverage":
        print(json.dumps(coverage(sys.argv[2] if len(sys.argv) > 2 else "../shared/validation")))
    else:
        print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else None), default=str))
