"""Scoring speed against straightforward reference implementations, with identical results.

Times, in one run, lioneval's Arena-Hard scoring (100 bootstrap rounds; the validation set, a synthetic
50-model x 500-question set, and style control) and the AlpacaEval length-controlled win rate for 57 models, each
against a reference that refits scikit-learn models the way the official scripts do. Prints the ratios; the last
line is one JSON object. Targets: Arena-Hard >= 20x, LC >= 5x, same numbers. AlpacaEval end to end
(``lc_cli_*``): the leaderboard of the 57 validation models with official LC and its bootstrap intervals, as a CLI
process after ``lioneval import``, >= 10x faster than a per-model scikit-learn process with no more peak memory
(see speed_alpaca.py; ``lc_cli_cpu_ratio`` is the same ratio in CPU time, steadier on a loaded machine; the CLI runs
on ``lc_cli_threads`` threads, ``lc_cli_ours_1thread_s`` is its time on one, and ``lc_cli_load_avg_1min`` the higher
1-minute load average seen around the timings). Arena-Hard
with style control and question-unit intervals: >= 100x the per-round refits (``arena_cpu_ratio_style_question``, on
the two validation models, and ``arena_cpu_ratio_style_question_10_models``: CPU time, BLAS on one thread for both
sides; the wall-time ratios are printed beside them, and swing with the machine's load).

Both sides are timed as installed: before any timing, the bytecode of the environment's site-packages and of
lioneval is compiled once (``python -m compileall``), as ``pip install`` does. Python reads existing ``.pyc`` files
even with ``PYTHONDONTWRITEBYTECODE`` set, so neither side's processes (lioneval's CLI, the scikit-learn/pandas
reference) spend their start compiling numpy, pandas, scikit-learn, pydantic or lioneval from source; the output
says so (``bytecode_compiled``).

Run: ``python benchmarks/stats_speed.py [VALIDATION_DIR]`` (default ../shared/validation).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import speed_alpaca  # noqa: E402
import speed_arena  # noqa: E402


def compile_bytecode() -> list[str]:
    """Compile the bytecode of site-packages and of lioneval's package folders (the installed state of both sides);
    returns the folders compiled. Files that do not compile (templates, Python 2 leftovers) are skipped by
    compileall and only make its exit status non-zero."""
    found: set[str] = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # lioneval and the folders mapped into its namespace (found without running them: no torch is imported here)
    for name in ("lioneval", "lioneval.judges", "lioneval.trainers", "lioneval.dashboards"):
        spec = importlib.util.find_spec(name)
        found.update(spec.submodule_search_locations or () if spec else ())
    folders = sorted(f for f in found if Path(f).is_dir())
    subprocess.run([sys.executable, "-m", "compileall", "-q", *folders], capture_output=True, check=False)
    return folders


def main() -> None:
    vdir = sys.argv[1] if len(sys.argv) > 1 else "../shared/validation"
    compiled = compile_bytecode()
    print(f"bytecode compiled before timing (both sides): {', '.join(compiled)}")
    arena = speed_arena.run(vdir)
    alpaca = speed_alpaca.run(vdir)
    summary = {
        "arena_ratio_validation": arena["arena_speed"]["ratio"],
        "arena_ratio_synthetic": arena["arena_synthetic_speed"]["ratio"],
        "arena_ratio_style": arena["arena_style_speed"]["ratio"],
        "arena_ratio_style_question": arena["arena_style_question_speed"]["ratio"],
        "arena_cpu_ratio_style": arena["arena_style_speed"]["cpu_ratio"],
        "arena_cpu_ratio_style_question": arena["arena_style_question_speed"]["cpu_ratio"],
        "arena_cpu_ratio_question": arena["arena_question_speed"]["cpu_ratio"],
        "arena_cpu_ratio_style_question_10_models": arena["arena_synthetic_style_question_speed"]["cpu_ratio"],
        "lc_ratio": alpaca["lc_speed"]["ratio"],
        "lc_with_boot_s": alpaca["lc_speed"]["ours_with_boot_s"],
        **({"lc_cli_ratio": alpaca["lc_cli"]["ratio"], "lc_cli_cpu_ratio": alpaca["lc_cli"]["cpu_ratio"],
            "lc_cli_ours_s": alpaca["lc_cli"]["ours_s"],
            "lc_cli_ref_s": alpaca["lc_cli"]["ref_s"], "lc_cli_rss_ours_mb": alpaca["lc_cli"]["ours_rss_mb"],
            "lc_cli_rss_ref_mb": alpaca["lc_cli"]["ref_rss_mb"], "lc_cli_threads": alpaca["lc_cli"]["threads"],
            "lc_cli_ours_1thread_s": alpaca["lc_cli"]["ours_1thread_s"],
            "lc_cli_load_avg_1min": max(alpaca["lc_cli"]["load_avg_1min"])} if "lc_cli" in alpaca else {}),
        "arena_max_abs_diff": max(arena[k]["max_abs_diff"] for k in
                                  ("arena_speed", "arena_synthetic_speed", "arena_style_speed",
                                   "arena_question_speed", "arena_style_question_speed",
                                   "arena_synthetic_style_question_speed")),
        "lc_max_abs_diff": alpaca["lc_speed"]["max_abs_diff"],
    }
    print("\n== summary")
    for k, v in summary.items():
        print(f"{k:<26}{v:.3g}")
    print(json.dumps({**summary, "bytecode_compiled": True, "arena": arena, "alpaca": alpaca}))


if __name__ == "__main__":
    main()
