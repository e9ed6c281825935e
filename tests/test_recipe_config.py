"""The recipe's typed configuration tree: every typo fails when the recipe loads, before any file is written.

No training happens here, so these tests need neither torch nor TRL.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lioneval.cli import main
from lioneval.errors import ConfigError, LionEvalError
from lioneval.pipeline import DEMO_DATA, RunConfig
from lioneval.registry import BENCHMARKS
from lioneval.trainers.config import EvalConfig, check_stage_name, config_from_dict
from lioneval.trainers.dpo import DPOConfig
from lioneval.trainers.online_dpo import OnlineDPOConfig, judge_benchmark
from lioneval.trainers.promotion import PromotionPolicy
from lioneval.trainers.recipe import load_recipe
from lioneval.trainers.sft import SFTConfig

JUDGE = "reward-model:tiny-reward:hidden=32"
RECIPE = {
    "output_dir": "out",
    "model": "tiny:hidden=32,layers=1",
    "eval": {"suite": {"bench": ["mt-bench"], "judge": JUDGE, "limit": 1, "rounds": 50}, "demo_data": True,
             "patience": 2},
    "promotion": {"weights": {"mt-bench/overall": 1.0}},
    "stages": [
        {"stage": "sft", "data": "sft.jsonl", "max_steps": 1, "learning_rate": "1e-5"},
        {"stage": "dpo", "data": "prefs.jsonl", "max_steps": 1, "eval": {"patience": 1}},
        {"stage": "online-dpo", "prompts": "prompts.txt", "judge": JUDGE, "rounds": 1, "eval": None},
    ],
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("sft.jsonl", "prefs.jsonl", "prompts.txt"):
        (tmp_path / name).write_text("{}\n")  # read when the stage runs; loading only needs the files to exist
    return tmp_path


def _write(folder: Path, recipe: dict) -> Path:
    path = folder / "r.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


def _with(change) -> dict:
    recipe = copy.deepcopy(RECIPE)
    change(recipe)
    return recipe


def test_a_valid_recipe_loads_into_typed_configs_and_writes_nothing(folder):
    recipe = load_recipe(_write(folder, RECIPE))
    sft, dpo, online = recipe.stages
    assert isinstance(sft, SFTConfig) and isinstance(dpo, DPOConfig) and isinstance(online, OnlineDPOConfig)
    assert sft.learning_rate == 1e-5  # PyYAML's string for 1e-5 is read as the number it means
    assert isinstance(sft.eval, EvalConfig) and sft.eval.patience == 2 and dpo.eval.patience == 1
    assert online.eval is None and sft.data == str(folder / "sft.jsonl")
    # defaults come from the benchmark: its headline metric and direction
    assert sft.eval.metric == f"mt-bench/{BENCHMARKS.get('mt-bench').headline}" and sft.eval.greater_is_better
    suite = sft.eval.run_config()
    assert isinstance(suite, RunConfig) and suite.limit == 1 and suite.judge == JUDGE
    assert suite.data == {"mt-bench": str(DEMO_DATA / "mt_bench")} and suite.baseline == {}
    assert sorted(p.name for p in folder.iterdir()) == ["prefs.jsonl", "prompts.txt", "r.yaml", "sft.jsonl"]


def test_demo_data_comes_from_the_benchmarks():
    every = BENCHMARKS.names()
    cfg = EvalConfig.coerce({"suite": {"bench": every, "judge": "openai:gpt-4o"}, "demo_data": True})
    suite = cfg.run_config()
    for name in every:
        bench = BENCHMARKS.get(name)
        if bench.demo_data:
            assert suite.data[name] == str(DEMO_DATA / bench.demo_data) and Path(suite.data[name]).exists()
        assert (suite.baseline.get(name) == "demo-baseline") == (bench.kind == "pairwise")
    # the suite's own data and baseline win over the demo's
    own = EvalConfig.coerce({"suite": {"bench": every, "judge": "openai:gpt-4o", "data": {every[0]: "mine"},
                                       "baseline": {every[0]: "gpt-x"}}, "demo_data": True}).run_config()
    assert own.data[every[0]] == "mine" and own.baseline[every[0]] == "gpt-x"


def _eval(key, value):
    return lambda r: r["eval"].__setitem__(key, value)


def _suite(key, value):
    return lambda r: r["eval"]["suite"].__setitem__(key, value)


def _stage(i, key, value):
    return lambda r: r["stages"][i].__setitem__(key, value)


TYPOS = [
    pytest.param(_eval("patiense", 2), "unknown EvalConfig key(s) in eval: 'patiense' (did you mean 'patience'?)",
                 id="eval-unknown-key"),
    pytest.param(_eval("patience", "3"), "eval.patience must be an integer or null, not '3'", id="eval-type"),
    pytest.param(_eval("patience", 0), "eval.patience must be at least 1", id="eval-range"),
    pytest.param(_eval("mode", "backgroud"), "did you mean 'background'", id="eval-choice"),
    pytest.param(_eval("demo_data", "yes"), "eval.demo_data must be true or false", id="eval-bool"),
    pytest.param(_eval("metric", "mt-bnech/overall"), "did you mean 'mt-bench'", id="metric-unknown-benchmark"),
    pytest.param(_eval("metric", "overall"), "eval.metric 'overall' is not BENCH/METRIC", id="metric-form"),
    pytest.param(_eval("metric", "arena-hard/score"), "which eval.suite does not evaluate", id="metric-not-in-suite"),
    pytest.param(_eval("log_metrics", ["mt-bench/overall", "alpacaeval/x"]), "eval.log_metrics[1]",
                 id="log-metrics"),
    pytest.param(_suite("limt", 1), "unknown key(s) in eval.suite: 'limt' (did you mean 'limit'?)",
                 id="suite-unknown-key"),
    pytest.param(_suite("limit", -1), "limit must be a positive integer, not -1", id="suite-range"),
    pytest.param(_suite("limit", "4"), "eval.suite.limit must be an integer or null, not '4'", id="suite-type"),
    pytest.param(_suite("bench", ["mt-bnech"]), "did you mean 'mt-bench'", id="suite-unknown-benchmark"),
    pytest.param(_suite("judge", "opnai:gpt-4o"), "did you mean 'openai'", id="suite-judge"),
    pytest.param(_suite("retry_failed", "no"), "eval.suite.retry_failed must be true or false", id="suite-bool"),
    pytest.param(lambda r: r["stages"][1].__setitem__("eval", {"patience": "1"}),
                 "stages[1] (dpo).eval.patience must be an integer or null, not '1'", id="stage-eval-type"),
    pytest.param(lambda r: r["stages"][1].__setitem__("eval", {"suite": {"judge": None}}),
                 "stages[1] (dpo).eval.suite has no judge", id="stage-eval-no-judge"),
    pytest.param(_stage(0, "max_steps", "3"), "stages[0] (sft).max_steps must be an integer, not '3'",
                 id="stage-type"),
    pytest.param(_stage(0, "max_steps", 0), "stages[0] (sft).max_steps must be at least 1 or -1", id="stage-range"),
    pytest.param(_stage(0, "name", "../x"), "stages[0] (sft).name '../x' is not a valid stage name", id="stage-name"),
    pytest.param(_stage(2, "ranking", "pairwize"), "did you mean 'pairwise'", id="online-ranking"),
    pytest.param(_stage(2, "judge_benchmark", "arena-hard"), "judge_benchmark 'arena-hard' judges pairwise",
                 id="online-judge-benchmark"),
    pytest.param(_stage(2, "k", 1), "stages[2] (online-dpo).k must be at least 2", id="online-k"),
    pytest.param(_stage(1, "data", "missing.jsonl"), "data 'missing.jsonl' is not a file", id="missing-data"),
    pytest.param(lambda r: r["stages"].append({"stage": "sft", "data": "sft.jsonl"}), "both named 'sft'",
                 id="duplicate-stage"),
    pytest.param(lambda r: r.__setitem__("promotion", {"weights": {"mtbench/overall": 1}}),
                 "promotion.weights: 'mtbench/overall' names an unknown benchmark", id="promotion-weights"),
    pytest.param(lambda r: r.__setitem__("promotion", {"count": 0}), "promotion.count must be at least 1",
                 id="promotion-count"),
    pytest.param(lambda r: r.__setitem__("on_no_promotion", "skip"), "on_no_promotion must be error or last",
                 id="on-no-promotion"),
    pytest.param(lambda r: r.__setitem__("evel", {}), "'evel' (did you mean 'eval'?)", id="recipe-unknown-key"),
    pytest.param(lambda r: r.__setitem__("model", "tiny:hiden=3"), "unknown tiny setting", id="model-ref"),
]


@pytest.mark.parametrize(("change", "message"), TYPOS)
def test_a_typo_fails_at_load_before_anything_is_written(folder, capsys, change, message):
    path = _write(folder, _with(change))
    with pytest.raises(LionEvalError) as info:
        load_recipe(path)
    assert message in str(info.value) and info.value.fix
    # the CLI: exit code 2, the message and its fix; no store, no output folder, no model built
    assert main(["--store", str(folder / "s.db"), "train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Fix:" in err
    assert sorted(p.name for p in folder.iterdir()) == ["prefs.jsonl", "prompts.txt", "r.yaml", "sft.jsonl"]


def test_configs_check_themselves_when_built_in_python():
    with pytest.raises(ConfigError, match="SFTConfig.max_steps must be an integer"):
        SFTConfig(max_steps="3")
    with pytest.raises(ConfigError, match="not a valid stage name"):
        DPOConfig(name="../../x")
    with pytest.raises(ConfigError, match=r"eval.patience must be an integer or null"):
        SFTConfig(eval={"suite": {"judge": "openai:gpt-4o"}, "patience": "3"})
    with pytest.raises(ConfigError, match="did you mean 'tie_break'"):
        config_from_dict(PromotionPolicy, {"tie_breaks": ["earlier"]})
    assert SFTConfig(eval={"suite": {"judge": "openai:gpt-4o"}}).eval.metric == "mt-bench/overall"


def test_stage_names_and_judge_benchmarks():
    for good in ("sft", "dpo-2", "online_dpo.v1", "S1"):
        assert check_stage_name(good) == good
    for bad in ("", "..", "../x", "a/b", "a\\b", "x..y", "with space", None):
        with pytest.raises(ConfigError, match="not a valid stage name"):
            check_stage_name(bad)
    # the defaults of before: MT-Bench's single-answer protocol for rating, Arena-Hard's for pairwise
    assert (judge_benchmark("rating"), judge_benchmark("pairwise")) == ("mt-bench", "arena-hard")
    assert judge_benchmark("pairwise", "alpaca-eval") == "alpaca-eval"
    with pytest.raises(ConfigError, match="did you mean"):
        judge_benchmark("rating", "mt-bnech")
