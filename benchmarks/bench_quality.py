"""How good are MT-Bench and AlpacaEval 2.0 as benchmarks? The measures of Li et al. 2024 (separability with
confidence, mean interval width, agreement with a reference ranking) on the published validation data, side by side.

Imports the validation data into a temporary store with ``lioneval import`` (MT-Bench: the real GPT-4 single-grading
judgments; AlpacaEval: the 57 models' annotations written as official files with placeholder outputs of the recorded
lengths), then runs ``lioneval bench-quality`` over both. AlpacaEval is also compared with its published LC win
rates (``expected.csv``, interval from the published standard error), which checks the agreement measures on real
numbers; the validation data holds no human-preference ranking, so the agreement with people is not measured here.

Run: ``python benchmarks/bench_quality.py [--data VALIDATION_DIR] [--rounds N]`` (default ../shared/validation).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import speed_alpaca  # noqa: E402

from lioneval.cli import main as lioneval  # noqa: E402


def _quiet(args: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lioneval(args)
    if code:
        raise SystemExit(f"lioneval {' '.join(args[2:4])} failed with exit code {code}")
    return out.getvalue()


def run(vdir: Path, rounds: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = str(root / "store.db")
        t0 = time.perf_counter()
        _quiet(["--store", store, "import", "mt-bench", str(vdir / "mt_bench" / "gpt4_single_judgments.jsonl")])
        paths = speed_alpaca.write_official(vdir / "alpaca_eval", root / "official")
        for model, path in paths.items():
            if model not in ("eval_set", "lc"):
                dst = root / "official" / "results" / model / "annotations.json"
                shutil.move(path, dst)
                _quiet(["--store", store, "import", "alpaca-eval", str(dst), "--model", model])
        imported_s = time.perf_counter() - t0
        ref = root / "alpaca_published_lc.csv"
        with open(vdir / "alpaca_eval" / "expected.csv", newline="") as fh, open(ref, "w", newline="") as out:
            w = csv.writer(out)
            w.writerow(["model", "score", "lower", "upper"])
            for r in csv.DictReader(fh):
                lc = float(r["length_controlled_winrate"])
                # about half the published rows give no standard error: those are compared by their score alone
                se = float(r["lc_standard_error"]) if r["lc_standard_error"] else None
                w.writerow([r["model"], lc, *((lc - 1.96 * se, lc + 1.96 * se) if se is not None else ("", ""))])
        common = ["--store", store, "bench-quality", "--data", f"alpaca-eval={paths['eval_set']}",
                  "--setting", f"alpaca-eval.lc_data={paths['lc']}", *(["--rounds", str(rounds)] if rounds else [])]
        t0 = time.perf_counter()
        rows = json.loads(_quiet([*common, "--json"]))
        quality_s = time.perf_counter() - t0
        against = json.loads(_quiet([*common, "--bench", "alpaca-eval", "--reference", str(ref), "--json"]))
    return {"rows": rows, "alpaca_vs_published": against[0], "import_s": imported_s, "quality_s": quality_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/validation", help="the validation data folder")
    ap.add_argument("--rounds", type=int, help="bootstrap rounds (default: each benchmark's)")
    args = ap.parse_args()
    vdir = Path(args.data)
    if not (vdir / "mt_bench").is_dir() or not (vdir / "alpaca_eval").is_dir():
        raise SystemExit(f"no validation data at {vdir} (expected mt_bench/ and alpaca_eval/); pass --data DIR")
    res = run(vdir, args.rounds)
    print(f"{'benchmark':<12} {'metric':<28} {'models':>6} {'pairs':>6} {'separable':>10} {'mean CI width':>14} "
          f"{'width / range':>14}")
    for q in res["rows"]:
        print(f"{q['benchmark']:<12} {q['metric']:<28} {q['models']:>6} {q['pairs']:>6} {q['separability']:>10.1%} "
              f"{q['mean_ci_width']:>14.3f} {q['mean_ci_width_rel']:>14.3f}")
        if q["left_out"]:
            print(f"  {q['benchmark']}: left out (no reliable interval): {', '.join(q['left_out'])}")
    a = res["alpaca_vs_published"]
    print(f"AlpacaEval vs its published LC ({a['reference_models']} models): agreement {a['agreement']:.3f}, "
          f"Spearman {a['spearman']:.3f}, Kendall {a['kendall']:.3f}, Brier {a['brier']:.4f}")
    print(f"import {res['import_s']:.1f} s, bench-quality {res['quality_s']:.1f} s")
    by = {q["benchmark"]: q for q in res["rows"]}
    print(json.dumps({
        **{f"{b.replace('-', '_')}_{k}": by[b][k] for b in by
           for k in ("models", "separability", "mean_ci_width", "mean_ci_width_rel")},
        "alpaca_vs_published": {k: a[k] for k in ("reference_models", "agreement", "spearman", "kendall", "brier")},
        "import_s": round(res["import_s"], 1), "quality_s": round(res["quality_s"], 1),
    }))


if __name__ == "__main__":
    main()
