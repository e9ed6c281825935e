"""Scoring speed against straightforward reference implementations, with identical results.

Times, in one run, lioneval's Arena-Hard scoring (100 bootstrap rounds; the validation set, a synthetic
50-model x 500-question set, and style control) and the AlpacaEval length-controlled win rate for 57 models, each
against a reference that refits scikit-learn models the way the official scripts do. Prints the ratios; the last
line is one JSON object. Targets: Arena-Hard >= 20x, LC >= 5x, same numbers.

Run: ``python benchmarks/stats_speed.py [VALIDATION_DIR]`` (default ../shared/validation).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import speed_alpaca  # noqa: E402
import speed_arena  # noqa: E402


def main() -> None:
    vdir = sys.argv[1] if len(sys.argv) > 1 else "../shared/validation"
    arena = speed_arena.run(vdir)
    alpaca = speed_alpaca.run(vdir)
    summary = {
        "arena_ratio_validation": arena["arena_speed"]["ratio"],
        "arena_ratio_synthetic": arena["arena_synthetic_speed"]["ratio"],
        "arena_ratio_style": arena["arena_style_speed"]["ratio"],
        "lc_ratio": alpaca["lc_speed"]["ratio"],
        "arena_max_abs_diff": max(arena[k]["max_abs_diff"] for k in
                                  ("arena_speed", "arena_synthetic_speed", "arena_style_speed")),
        "lc_max_abs_diff": alpaca["lc_speed"]["max_abs_diff"],
    }
    print("\n== summary")
    for k, v in summary.items():
        print(f"{k:<26}{v:.3g}")
    print(json.dumps({**summary, "arena": arena, "alpaca": alpaca}))


if __name__ == "__main__":
    main()
