"""Arena-Hard-Auto v2.0: today's file layout, a baseline and a judge prompt per category, v2.0 style control, the
official v2.0 script's numbers on the validation set, and the errors a wrong data folder gets.

The fixture (tests/fixtures/arena_hard_v2, written for lioneval in today's official layout) has 6 ``hard_prompt``
questions (baseline o3-mini-2025-01-31) and 4 ``creative_writing`` ones (baseline gemini-2.0-flash-001); both
baselines' answer files cover all 10 questions. Judge gpt-4.1, weighted wins over weighted battles (a strong verdict
counts 3):

- model-a, hard: h1 4/4, h2 0/2, h3 1.5/2, h4 0/6, h5 1.5/2, h6 1/1 (game 1 gave no verdict) -> 8/17;
  creative: c1 2/2, c2 6/6, c3 0.5/2, c4 1.5/2 (mirrored labels B=A, B<A) -> 10/12; both -> 18/29.
- model-b, hard: 0/2, 2/2, 0.5/4, 1/2, 1/2, 1/2 -> 5.5/14; creative: 0/2, 1/2, 2/2, 1/1 (game 1 is null) -> 4/7.
- Judge gemini-2.5 judged model-a's creative answers: 2/2, 1/2, 1/2, 1.5/2 -> 5.5/8 (pooled with gpt-4.1: 15.5/20).
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from lioneval import benchmarks
from lioneval.benchmarks import prompts as T
from lioneval.benchmarks.arena_hard import (
    V2_BASELINES,
    ArenaHard,
    battles_from_judgments,
    load_official,
    style_features,
    version_of,
)
from lioneval.errors import DataError
from lioneval.stats import arena
from lioneval.stats.arena import arena_scores
from lioneval.types import Answer

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "arena_hard_v2"
V01 = FIXTURES / "arena_hard"
VALIDATION = Path(__file__).resolve().parents[2] / "shared" / "validation" / "arena_hard"
O3, GEMINI = "o3-mini-2025-01-31", "gemini-2.0-flash-001"
PACKAGE_FILE = T._package_file  # before any test replaces it
SHARES = {
    "model-a": {"hard_prompt": 8 / 17, "creative_writing": 10 / 12, "all": 18 / 29},
    "model-b": {"hard_prompt": 5.5 / 14, "creative_writing": 4 / 7, "all": 9.5 / 21},
}


@pytest.fixture(scope="module")
def bundle():
    return load_official(DATA, judge="gpt-4.1", version="v2.0")


@pytest.fixture
def v2():
    return benchmarks.load("arena-hard@v2.0", DATA)


@pytest.fixture
def no_official(monkeypatch, tmp_path):
    """No arenahard package and an empty hub cache, with the one-time warnings reset."""
    monkeypatch.setattr(T, "_package_file", lambda module, relative: None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(T, "_WARNED", set())


def _by(bundle, model, qid):
    return next(j for j in bundle.judgments if j.model == model and j.question_id == qid)


# ---------------------------------------------------------------------------------------------------------------
# The version: defaults, data source


def test_versions_and_their_defaults(v2):
    v01 = benchmarks.load("arena-hard")
    assert ArenaHard.versions == ("v0.1", "v2.0") and v01.version == "v0.1" and v2.version == "v2.0"
    assert v01.official_judge == "openai:gpt-4-1106-preview" and v2.official_judge == "openai:gpt-4.1"
    assert v01.headline == "score" and v2.headline == "score_style_controlled"
    assert v01.baseline == "gpt-4-0314" and v2.baseline == O3 and v2.default_baseline == O3
    assert v2.baselines == {"hard_prompt": O3, "coding": O3, "math": O3, "creative_writing": GEMINI}
    assert v01.judge_modes() == [None]
    assert v2.judge_modes() == ["v2.0/coding", "v2.0/creative_writing", "v2.0/hard_prompt", "v2.0/math"]
    with pytest.raises(Exception, match="no version"):
        benchmarks.load("arena-hard@v3")


def test_data_source_names_the_version_folder_and_only_the_baselines_needed(v2):
    src = v2.data_source()
    assert src.repo_id == "lmarena-ai/arena-hard-auto" and src.repo_type == "dataset"
    assert src.folder == "data/arena-hard-v2.0"
    assert src.files == ("data/arena-hard-v2.0/question.jsonl",
                         f"data/arena-hard-v2.0/model_answer/{GEMINI}.jsonl",
                         f"data/arena-hard-v2.0/model_answer/{O3}.jsonl")
    old = ArenaHard().data_source()
    assert old.folder == "data/arena-hard-v0.1"
    assert old.files == ("data/arena-hard-v0.1/question.jsonl", "data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl")
    one = ArenaHard(version="v2.0", baseline="my-baseline")
    assert set(one.baselines.values()) == {"my-baseline"}
    assert one.data_source().files[1:] == ("data/arena-hard-v2.0/model_answer/my-baseline.jsonl",)


# ---------------------------------------------------------------------------------------------------------------
# Reading today's layout


def test_questions_in_todays_layout_carry_category_and_version(v2):
    qs = v2.questions()
    assert [q.id for q in qs] == [f"h{i}" for i in range(1, 7)] + [f"c{i}" for i in range(1, 5)]
    assert {q.category for q in qs} == {"hard_prompt", "creative_writing"}
    assert all(q.meta["version"] == "v2.0" and q.benchmark == "arena-hard" for q in qs)
    assert qs[0].turns == ["Write a Python function that reverses the words in a sentence."]
    assert qs[0].meta["subcategory"] == "coding"
    # the v0.1 questions carry theirs too
    assert all(q.meta["version"] == "v0.1" for q in ArenaHard(V01).questions())


def test_answers_in_todays_layout(bundle):
    ans = {(a.model, a.question_id): a for a in bundle.answers}
    a1 = ans[("model-a", "h1")]
    assert a1.turns == ["model-a answers h1: " + "text " * 5]
    assert a1.token_counts == [520]
    assert a1.meta["style"] == {"token_len": 520, "header_count": 3, "list_count": 8, "bold_count": 6}
    assert a1.meta["ans_id"] == "model-a-h1"
    # both baselines' answers are read, and the judged models'
    assert {a.model for a in bundle.answers} == {"model-a", "model-b", O3, GEMINI}


def test_judgments_in_todays_layout(bundle):
    h1 = _by(bundle, "model-a", "h1")
    assert h1.baseline == O3 and h1.judge == "gpt-4.1" and h1.kind == "pairwise"
    assert h1.meta["category"] == "hard_prompt" and h1.meta["version"] == "v2.0" and version_of(h1) == "v2.0"
    # game 1: the baseline is A (the model is B); game 2: the model is A
    assert [(g.model_position, g.label, g.value) for g in h1.games] == [("B", "B>>A", 1.0), ("A", "A>B", 1.0)]
    assert h1.games[0].raw.endswith("[[B>>A]].")  # the judge's reply, from judgment.answer
    c4 = _by(bundle, "model-a", "c4")
    assert c4.baseline == GEMINI and [g.label for g in c4.games] == ["A=B", "A>B"]  # B=A and B<A mirrored
    h6 = _by(bundle, "model-a", "h6")
    assert h6.games[0].value is None and "no verdict" in h6.games[0].error and h6.value == 1.0
    null = _by(bundle, "model-b", "c4")
    assert "null game" in null.games[0].error and null.value == 1.0
    assert not bundle.skipped  # a null game is a failed game, not a malformed line


def test_old_and_todays_layouts_give_the_same_records(tmp_path):
    """The v0.1 fixture rewritten in today's layout reads into the same questions, answers and judgments."""
    old = load_official(V01)
    root = tmp_path / "today"
    for q in old.questions:
        _append(root / "question.jsonl", {"uid": q.id, "category": q.category, "cluster": q.meta["cluster"],
                                          "prompt": q.turns[0]})
    for a in old.answers:
        row = {"uid": a.question_id, "ans_id": a.meta["answer_id"], "model": a.model, "tstamp": a.meta["tstamp"],
               "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": {"answer": a.turns[0]}}]}
        if "style" in a.meta:
            row["metadata"] = a.meta["style"]
        elif a.token_counts:
            row["metadata"] = {"token_len": a.token_counts[0]}
        _append(root / "model_answer" / f"{a.model}.jsonl", row)
    for j in old.judgments:
        games = [{"score": g.label if g.value is not None else None, "judgment": {"answer": g.raw}} for g in j.games]
        _append(root / "model_judgment" / j.judge / f"{j.model}.jsonl",
                {"uid": j.question_id, "category": "arena-hard-v0.1", "judge": j.judge, "model": j.model,
                 "baseline": j.baseline, "games": games})
    new = load_official(root)
    assert [(q.id, q.turns, q.category) for q in new.questions] == [(q.id, q.turns, q.category) for q in old.questions]
    key = lambda a: (a.model, a.question_id)  # noqa: E731
    assert sorted((key(a), a.turns, a.token_counts, a.meta.get("style")) for a in new.answers) == sorted(
        (key(a), a.turns, a.token_counts, a.meta.get("style")) for a in old.answers)
    assert sorted((key(j), [(g.label, g.value) for g in j.games], j.baseline) for j in new.judgments) == sorted(
        (key(j), [(g.label, g.value) for g in j.games], j.baseline) for j in old.judgments)
    assert all(j.meta["version"] == "v0.1" and j.meta["category"] == "arena-hard-v0.1" for j in new.judgments)


def _append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def test_export_and_import_round_trip_in_todays_layout(v2, bundle, tmp_path):
    counts = v2.export_official(tmp_path / "out", v2.questions(), bundle.answers, bundle.judgments)
    assert counts[str(tmp_path / "out" / "question.jsonl")] == 10
    first = json.loads((tmp_path / "out" / "question.jsonl").read_text().splitlines()[0])
    assert set(first) == {"uid", "category", "subcategory", "prompt"}
    back = v2.import_official(tmp_path / "out", judge="gpt-4.1")
    assert sorted((j.model, j.question_id, j.baseline, [g.value for g in j.games]) for j in back.judgments) == sorted(
        (j.model, j.question_id, j.baseline, [g.value for g in j.games]) for j in bundle.judgments)
    ans = {(a.model, a.question_id): a for a in back.answers}
    assert ans[("model-a", "h1")].meta["style"]["list_count"] == 8 and ans[("model-a", "h1")].token_counts == [520]


# ---------------------------------------------------------------------------------------------------------------
# A baseline and a judge prompt per category


def test_baseline_answers_follow_each_questions_category(v2):
    base = v2.baseline_answers()
    assert sorted((a.question_id, a.model) for a in base) == sorted(
        [(f"h{i}", O3) for i in range(1, 7)] + [(f"c{i}", GEMINI) for i in range(1, 5)])
    assert all("style" in a.meta for a in base)


def test_judge_tasks_pair_each_answer_with_its_categorys_baseline_and_prompt(v2, bundle):
    qs = v2.questions()
    mine = [a for a in bundle.answers if a.model == "model-a"]
    seen = []

    def template(mode):
        seen.append(mode)
        return T.template_for("arena-hard", mode, source="builtin")

    tasks = v2.judge_tasks(qs, mine, v2.baseline_answers(), template)
    assert len(tasks) == 10 and set(seen) == {"v2.0/hard_prompt", "v2.0/creative_writing"}
    by_q = {t.question_id: t for t in tasks}
    h1, c1 = by_q["h1"], by_q["c1"]
    assert h1.baseline == O3 and c1.baseline == GEMINI
    assert h1.meta == {"version": "v2.0", "category": "hard_prompt"} and not h1.follow_up
    assert h1.games[0].template.name == "arena-hard-v2.0/hard_prompt"
    assert c1.games[0].template.name == "arena-hard-v2.0/creative_writing"
    # game 1: the baseline's answer as A; game 2: the model's
    assert [g.position for g in h1.games] == ["B", "A"]
    assert h1.games[0].values["ANSWER_A"].startswith(O3) and h1.games[0].values["answer_2"].startswith("model-a")
    assert h1.games[1].values["ANSWER_A"].startswith("model-a")
    messages = h1.games[0].template.render(h1.games[0].values)
    assert "Write a Python function" in messages[-1]["content"]
    # a run whose baseline was replaced holds one other model's answers: they are used
    other = [a.model_copy(update={"model": "other-base"}) for a in bundle.answers if a.model == "model-b"]
    swapped = v2.judge_tasks(qs, mine, other, template)
    assert len(swapped) == 10 and {t.baseline for t in swapped} == {"other-base"}


def test_builtin_templates_differ_by_category_and_warn_once(no_official):
    with pytest.warns(T.BuiltinPromptWarning, match="Arena-Hard v2.0") as record:
        hard = T.template_for("arena-hard", "v2.0/hard_prompt")
        creative = T.template_for("arena-hard", "v2.0/creative_writing")
        T.template_for("arena-hard", "v2.0/math")
    assert len([w for w in record if issubclass(w.category, T.BuiltinPromptWarning)]) == 1
    assert hard.is_builtin and creative.is_builtin and hard.hash != creative.hash
    assert "your own answer" in hard.system and "your own answer" not in creative.system
    assert hard.options["attempts"] == 1 and hard.options["sampling"] == {"temperature": 0.0, "max_tokens": 16000}
    assert T.template_for("arena-hard", "v2.0/coding", "builtin").hash == hard.hash
    with pytest.raises(Exception, match="category"):
        T.template_for("arena-hard", "v2.0/poetry", "builtin")


def _fake_clone(root: Path, *, package: bool = False) -> Path:
    """A folder laid out as arena-hard-auto is, with texts written for this test; judge_utils.py raises if run."""
    utils = root / ("arenahard/utils" if package else "utils")
    config = root / ("arenahard/config" if package else "config")
    utils.mkdir(parents=True)
    config.mkdir(parents=True)
    if package:
        (root / "arenahard" / "__init__.py").write_text("")
    (utils / "judge_utils.py").write_text(
        'raise RuntimeError("lioneval must read this file, not run it")\n\n'
        'FIRST_PROMPT = "Judge A and B; answer the prompt yourself first. " + "Verdict: [[A>>B]] .. [[B>>A]]."\n'
        "JUDGE_SETTINGS = {\n"
        '    "hard_prompt": {"baseline": "base-x", "system_prompt": FIRST_PROMPT},\n'
        '    "creative_writing": {"baseline": "base-y", "system_prompt": "Judge the two stories. [[A=B]] if even."},\n'
        '    "arena-hard-v0.1": {"baseline": "gpt-4-0314", "system_prompt": FIRST_PROMPT},\n'
        "}\n"
    )
    (config / "arena-hard-v2.0.yaml").write_text(
        "judge_model: gpt-4.1\ntemperature: 0.0\nmax_tokens: 16000\nbench_name: arena-hard-v2.0\n"
        "regex_pattern: \\[\\[([AB<>=]+)\\]\\]\n"
        'prompt_template: "PROMPT\\n{QUESTION}\\nFIRST\\n{ANSWER_A}\\nSECOND\\n{ANSWER_B}"\n'
    )
    return root


def test_templates_from_an_installed_arenahard_are_read_not_imported(no_official, tmp_path, monkeypatch):
    site = _fake_clone(tmp_path / "site", package=True)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(T, "_package_file", PACKAGE_FILE)  # an installed package may be found again
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.BuiltinPromptWarning)
        hard = T.template_for("arena-hard", "v2.0/hard_prompt")
        creative = T.template_for("arena-hard", "v2.0/creative_writing")
        v01 = T.template_for("arena-hard")
    assert "arenahard.utils.judge_utils" not in sys.modules
    assert hard.system == "Judge A and B; answer the prompt yourself first. Verdict: [[A>>B]] .. [[B>>A]]."
    assert creative.system == "Judge the two stories. [[A=B]] if even."
    assert hard.user == ("PROMPT\n{QUESTION}\nFIRST\n{ANSWER_A}\nSECOND\n{ANSWER_B}",)
    assert hard.version.startswith("arenahard==") and not hard.is_builtin
    assert hard.options["sampling"]["judge_model"] == "gpt-4.1"
    assert v01.system == hard.system and v01.placeholders == ("QUESTION", "ANSWER_A", "ANSWER_B")
    # the benchmark's values fill either spelling of the placeholders
    q = ArenaHard(DATA, version="v2.0").questions()[0]
    a = Answer(question_id=q.id, benchmark="arena-hard", model="m", turns=["mine"])
    b = Answer(question_id=q.id, benchmark="arena-hard", model="b", turns=["theirs"])
    rendered = hard.render(ArenaHard._values(q, b, a))
    assert rendered[1]["content"] == f"PROMPT\n{q.turns[0]}\nFIRST\ntheirs\nSECOND\nmine"


def test_a_clones_config_or_judge_utils_is_a_template_source(no_official, tmp_path):
    clone = _fake_clone(tmp_path / "arena-hard-auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.BuiltinPromptWarning)
        from_yaml = T.template_for("arena-hard", "v2.0/creative_writing", source=clone / "config/arena-hard-v2.0.yaml")
        from_py = T.template_for("arena-hard", "v2.0/creative_writing", source=clone / "utils/judge_utils.py")
        from_dir = T.template_for("arena-hard", "v2.0/creative_writing", source=clone)
        v01 = T.load_arena_hard_template(clone / "config/arena-hard-v2.0.yaml")
    assert from_yaml.hash == from_py.hash == from_dir.hash
    assert from_yaml.system == "Judge the two stories. [[A=B]] if even." and from_yaml.source.endswith(".yaml")
    assert v01.system.startswith("Judge A and B") and "{QUESTION}" in v01.user[0]
    # the config alone (no judge_utils.py anywhere): today's user text, a built-in system prompt, and a warning
    alone = tmp_path / "alone.yaml"
    shutil.copy(clone / "config/arena-hard-v2.0.yaml", alone)
    with pytest.warns(T.BuiltinPromptWarning, match="system prompt"):
        mixed = T.template_for("arena-hard", "v2.0/hard_prompt", source=alone)
    assert "{QUESTION}" in mixed.user[0] and "your own answer" in mixed.system and "builtin" in mixed.source
    with pytest.raises(DataError, match="no system_prompt"):
        T.read_arena_hard_config(alone)
    assert T.read_arena_hard_config(alone, system_prompt="S").system == "S"


def test_judge_settings_reader_errors(tmp_path):
    assert T.read_arena_hard_settings(_fake_clone(tmp_path / "c") / "utils/judge_utils.py")["hard_prompt"][
        "baseline"] == "base-x"
    bad = tmp_path / "judge_utils.py"
    bad.write_text("JUDGE_SETTINGS = make_settings()\n")
    with pytest.raises(DataError, match="no JUDGE_SETTINGS"):
        T.read_arena_hard_settings(bad)
    bad.write_text("def broken(:\n")
    with pytest.raises(DataError, match="not a Python file"):
        T.read_arena_hard_settings(bad)
    bad.write_text('JUDGE_SETTINGS = {"math": {"baseline": "b"}}\n')
    with pytest.raises(DataError, match="system_prompt"):
        T.read_arena_hard_settings(bad)


def test_each_version_has_its_own_judge_prompts_in_the_judge_id():
    v01, v2 = ArenaHard(), ArenaHard(version="v2.0")
    hashes = {m: v2.judge_template(m, "builtin").hash for m in v2.judge_modes()}
    assert len(set(hashes.values())) == 2  # hard prompts, coding and math share a prompt; creative writing has its own
    assert [v01.judge_template(m, "builtin").hash for m in v01.judge_modes()] != list(hashes.values())


# ---------------------------------------------------------------------------------------------------------------
# Scores per category


def test_plain_scores_per_category_and_combined(v2, bundle):
    out = v2.summarize(bundle.judgments, bundle.answers, rounds=50, seed=1, style_control=False)
    assert set(out) == {"model-a", "model-b"}
    for model, shares in SHARES.items():
        m = out[model].metrics
        assert m["score/hard_prompt"].value == pytest.approx(100 * shares["hard_prompt"])
        assert m["score/creative_writing"].value == pytest.approx(100 * shares["creative_writing"])
        # the battle-weighted mean of the categories: the pooled win share
        assert m["score"].value == pytest.approx(100 * shares["all"])
        assert not any(k.startswith("score_style_controlled") for k in m)
    a = out["model-a"]
    assert a.counts == {"judgments": 10, "failed": 1, "dropped": 0, "judgments_failed": 0, "judgments_partial": 1,
                        "games_failed": 1, "games_dropped": 0, "battles": 29}
    assert a.meta["baselines"] == {"hard_prompt": O3, "creative_writing": GEMINI} and a.meta["judge"] == "gpt-4.1"
    hard = a.metrics["score/hard_prompt"]
    assert hard.meta["baseline"] == O3 and hard.unit == "question" and hard.n == 6
    assert hard.ci_low is None and not hard.reliable  # 6 questions: below the minimum for an interval
    combined = a.metrics["score"]
    assert combined.n == 10 and combined.ci_low < combined.value < combined.ci_high
    assert combined.meta["categories"]["hard_prompt"]["weight"] == 17 and combined.seed == 1
    # each category draws with its own seed, whatever else is summarized with it
    alone = v2.summarize([j for j in bundle.judgments if j.meta["category"] == "hard_prompt"], bundle.answers,
                         rounds=50, seed=1, style_control=False)["model-a"]
    assert alone.metrics["score/hard_prompt"].seed == hard.seed
    assert alone.metrics["score"] == alone.metrics["score/hard_prompt"]  # one category: its own numbers


def _reference_v2_fit(bundle, category: str) -> tuple[dict[str, float], np.ndarray]:
    """The official v2.0 recipe written out independently: one row per battle (a strong verdict 3 rows), outcome the
    model's score, features model minus baseline (length; markdown densities), z-scored with the sample std, an
    unpenalised logistic fit on the one-hot (+1 model, -1 baseline) and the features, by Newton's method."""
    style = {(a.model, a.question_id): a.meta["style"] for a in bundle.answers}
    rows, outcomes, models = [], [], []
    for j in bundle.judgments:
        if j.meta["category"] != category:
            continue
        for g in j.games:
            if g.value is None:
                continue
            for _ in range(3 if ">>" in g.label else 1):
                m, b = style[(j.model, j.question_id)], style[(j.baseline, j.question_id)]
                dm = np.array([m[k] for k in ("header_count", "list_count", "bold_count")]) / m["token_len"]
                db = np.array([b[k] for k in ("header_count", "list_count", "bold_count")]) / b["token_len"]
                length = (m["token_len"] - b["token_len"]) / (m["token_len"] + b["token_len"])
                rows.append([length, *((dm - db) / (dm + db + 1))])
                outcomes.append(g.value)
                models.append(j.model)
    feats = np.array(rows)
    std = feats.std(axis=0, ddof=1)
    feats = (feats - feats.mean(axis=0)) / np.where(std > 0, std, 1)
    names = sorted(set(models))
    onehot = np.array([[1.0 if m == n else 0.0 for n in names] for m in models])  # the baseline column is pinned
    x, y = np.hstack([onehot, feats]), np.array(outcomes)
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-x @ beta))
        step = np.linalg.lstsq((x * (p * (1 - p))[:, None]).T @ x, x.T @ (p - y), rcond=None)[0]
        beta -= step
        if np.abs(step).max() < 1e-12:
            break
    return {n: 100 / (1 + np.exp(-beta[i])) for i, n in enumerate(names)}, beta[len(names):]


def test_style_controlled_scores_follow_the_v2_recipe(v2, bundle):
    out = v2.summarize(bundle.judgments, bundle.answers, rounds=20, seed=0)  # style control on: answers have style
    for cat in ("hard_prompt", "creative_writing"):
        ref, coefs = _reference_v2_fit(bundle, cat)
        for model in ("model-a", "model-b"):
            est = out[model].metrics[f"score_style_controlled/{cat}"]
            assert est.value == pytest.approx(ref[model], abs=1e-6)
            assert est.meta["style_scheme"] == "v2.0" and est.method == "bradley-terry-style-control"
        got = list(out["model-a"].meta["style_coefs"][cat].values())
        np.testing.assert_allclose(got, coefs, atol=1e-6)
    a = out["model-a"].metrics
    w = {"hard_prompt": 17, "creative_writing": 12}
    expected = sum(w[c] * a[f"score_style_controlled/{c}"].value for c in w) / 29
    assert a["score_style_controlled"].value == pytest.approx(expected)
    assert v2.headline in a
    # the creative answers use no lists: a constant feature gets a zero coefficient, not NaN
    assert out["model-a"].meta["style_coefs"]["creative_writing"]["list_count"] == 0.0


def test_style_control_selections_and_when_it_is_off(v2, bundle):
    assert style_features(True) == arena.STYLE_FEATURES
    assert style_features("length") == ("token_len",)
    assert style_features(["markdown", "length"]) == arena.STYLE_FEATURES
    assert style_features(False) == ()
    only_length = v2.summarize(bundle.judgments, bundle.answers, rounds=0, style_control="length")["model-a"]
    assert list(only_length.meta["style_coefs"]["hard_prompt"]) == ["token_len"]
    # without answers (or with answers lacking style counts) the default leaves style control out
    plain = v2.summarize(bundle.judgments, rounds=0)["model-a"]
    assert "score_style_controlled" not in plain.metrics and "score" in plain.metrics
    with pytest.raises(DataError, match="style control needs"):
        v2.summarize(bundle.judgments, rounds=0, style_control=True)


def test_pooled_judges_as_the_official_ensemble(v2):
    both = load_official(DATA, judge=["gpt-4.1", "gemini-2.5"], version="v2.0")
    with pytest.raises(DataError, match="several judges") as err:
        v2.summarize(both.judgments, both.answers, rounds=0)
    assert "pool_judges" in err.value.fix
    out = v2.summarize(both.judgments, both.answers, rounds=0, pool_judges=True, style_control=False)
    a = out["model-a"]
    assert a.metrics["score/creative_writing"].value == pytest.approx(100 * 15.5 / 20)
    assert a.metrics["score/hard_prompt"].value == pytest.approx(100 * 8 / 17)  # only gpt-4.1 judged these
    assert a.meta["judge"] == "gemini-2.5+gpt-4.1"


def test_battle_unit_uses_the_official_90_percent_level(v2, bundle):
    est = v2.summarize(bundle.judgments, bundle.answers, rounds=100, seed=0, unit="battle",
                       style_control=False)["model-a"].metrics["score"]
    assert est.level == 0.9 and est.unit == "battle"
    wide = v2.summarize(bundle.judgments, bundle.answers, rounds=100, seed=0, unit="battle", level=0.99,
                        style_control=False)["model-a"].metrics["score"]
    assert wide.ci_high - wide.ci_low > est.ci_high - est.ci_low


def test_category_comes_from_the_questions_when_the_judgment_lacks_it(v2, bundle):
    bare = [j.model_copy(update={"meta": {"version": "v2.0"}}) for j in bundle.judgments]
    with pytest.raises(DataError, match="has no category"):
        v2.summarize(bare, rounds=0)
    out = v2.summarize(bare, rounds=0, questions=v2.questions())
    assert out["model-a"].metrics["score/creative_writing"].value == pytest.approx(100 * 10 / 12)


def test_a_category_with_two_baselines_is_refused(v2, bundle):
    odd = [j.model_copy(update={"baseline": "someone-else"}) if j.question_id == "h1" and j.model == "model-b"
           else j for j in bundle.judgments]
    with pytest.raises(DataError, match="hard_prompt judgments mix several baselines"):
        v2.summarize(odd, rounds=0)


def test_versions_never_mix(v2, bundle):
    old = load_official(V01)
    with pytest.raises(DataError, match="of arena-hard v2.0, not v0.1") as err:
        ArenaHard().summarize(bundle.judgments, rounds=0)
    assert "arena-hard@v2.0" in err.value.fix
    with pytest.raises(DataError, match="of arena-hard v0.1, not v2.0"):
        v2.summarize(old.judgments, rounds=0)
    # a mixed list: each version scores its own judgments only
    mixed = [*old.judgments, *bundle.judgments]
    assert set(ArenaHard().summarize(mixed, old.answers, rounds=0)) == {"model-x", "model-y"}
    assert set(v2.summarize(mixed, bundle.answers, rounds=0)) == {"model-a", "model-b"}


# ---------------------------------------------------------------------------------------------------------------
# v2.0 style features and the stats options


def test_v2_style_features_by_hand():
    style_a = np.array([[100, 2, 0, 1], [300, 0, 6, 0], [0, 0, 0, 0]], dtype=float)
    style_b = np.array([[300, 3, 0, 0], [100, 0, 0, 2], [0, 0, 0, 0]], dtype=float)
    bt = arena.Battles(models=("base", "m"), questions=("q1", "q2", "q3"), a=np.zeros(3, dtype=np.intp),
                       b=np.ones(3, dtype=np.intp), outcome=np.array([1.0, 0.0, 0.5]), weight=np.array([1, 3, 1]),
                       question=np.arange(3), game=np.zeros(3, dtype=np.int8), style_a=style_a, style_b=style_b)
    feats = arena._style_matrix_v2(bt, arena.STYLE_FEATURES)
    length = np.array([-0.5, 0.5, 0.0])  # (a - b)/(a + b); two empty answers give 0
    da, db = np.array([[0.02, 0, 0.01], [0, 0.02, 0], [0, 0, 0]]), np.array([[0.01, 0, 0], [0, 0, 0.02], [0, 0, 0]])
    raw = np.column_stack([length, (da - db) / (da + db + 1)])
    expanded = np.repeat(raw, [1, 3, 1], axis=0)  # z-scored over battle rows, sample std
    mean, std = expanded.mean(axis=0), expanded.std(axis=0, ddof=1)
    np.testing.assert_allclose(feats, (raw - mean) / std, atol=1e-12)
    # a subset keeps its columns' values; v0.1's features are another recipe
    np.testing.assert_allclose(arena._style_matrix_v2(bt, ("list_count",)), feats[:, [2]], atol=1e-12)
    assert not np.allclose(arena._style_matrix(bt, arena.STYLE_FEATURES), feats)


def test_arena_scores_rejects_unknown_scheme_and_level(bundle):
    bt = battles_from_judgments(bundle.judgments, bundle.answers)
    with pytest.raises(DataError, match="scheme"):
        arena_scores(bt, O3, rounds=0, scheme="v3")
    with pytest.raises(DataError, match="level"):
        arena_scores(bt, O3, rounds=0, level=95)


# ---------------------------------------------------------------------------------------------------------------
# Clear errors before any model is loaded


def test_unreadable_questions_say_which_file_and_which_layouts(tmp_path):
    root = tmp_path / "arena-hard-v2.0"
    root.mkdir()
    (root / "question.jsonl").write_text('{"id": 1, "text": "what"}\n{"uid": "x"}\nnot json\n')
    with pytest.raises(DataError) as err:
        ArenaHard(root, version="v2.0").questions()
    text = f"{err.value} {err.value.fix}"
    assert str(root / "question.jsonl") in text and "uid" in text and "question_id" in text and "prompt" in text
    assert "--limit" not in text
    (root / "question.jsonl").write_text("")
    with pytest.raises(DataError, match="file is empty"):
        ArenaHard(root, version="v2.0").questions()


def test_a_folder_of_the_other_version_is_named(tmp_path):
    old = tmp_path / "data" / "arena-hard-v0.1"
    shutil.copytree(V01, old)
    with pytest.raises(DataError, match="holds Arena-Hard v0.1") as err:
        ArenaHard(old, version="v2.0").questions()
    assert "arena-hard@v0.1" in err.value.fix
    with pytest.raises(DataError, match="holds Arena-Hard v2.0"):
        ArenaHard(DATA).questions()
    with pytest.raises(DataError, match="holds Arena-Hard v2.0"):
        ArenaHard().import_official(DATA, judge="gpt-4.1")


def test_a_snapshot_root_leads_to_the_version_folder(tmp_path):
    shutil.copytree(DATA, tmp_path / "snapshot" / "data" / "arena-hard-v2.0")
    bench = ArenaHard(tmp_path / "snapshot", version="v2.0")
    assert len(bench.questions()) == 10 and len(bench.baseline_answers()) == 10


def test_unknown_categories_and_missing_baselines_are_named(tmp_path):
    root = tmp_path / "v2"
    shutil.copytree(DATA, root)
    with (root / "question.jsonl").open("a") as fh:
        fh.write(json.dumps({"uid": "p1", "category": "poetry", "prompt": "A haiku, please."}) + "\n")
    with pytest.raises(DataError, match="1 x 'poetry'") as err:
        ArenaHard(root, version="v2.0").questions()
    assert "baseline={category: model}" in err.value.fix
    assert len(ArenaHard(root, version="v2.0", baseline={"poetry": GEMINI}).questions()) == 11
    (root / "model_answer" / f"{GEMINI}.jsonl").unlink()
    with pytest.raises(DataError, match="baseline of creative_writing") as err:
        ArenaHard(root, version="v2.0", baseline={"poetry": O3}).baseline_answers()
    assert GEMINI in str(err.value)
    with pytest.raises(DataError, match="not bundled"):
        ArenaHard(version="v2.0").questions()


# ---------------------------------------------------------------------------------------------------------------
# The official v2.0 script on the validation set (../shared/validation/arena_hard, official_run.txt section B)


def _validation_in_todays_layout(root: Path) -> Path:
    """The validation verdicts and style counts written as today's files (uid, category, baseline; metadata)."""
    lines = [json.loads(x) for x in (VALIDATION / "judgments_gpt-4-1106-preview.jsonl").read_text().splitlines()
             if x.strip()]
    answers: dict[str, dict[str, dict]] = {}
    for r in lines:
        _append(root / "model_judgment" / "gpt-4-1106-preview" / f"{r['model']}.jsonl",
                {"uid": r["question_id"], "category": r["category"], "judge": "gpt-4-1106-preview",
                 "model": r["model"], "baseline": r["baseline"], "games": [{"score": g["score"]} for g in r["games"]]})
        answers.setdefault(r["model"], {})[r["question_id"]] = r["model_answer_meta"]
        answers.setdefault(r["baseline"], {})[r["question_id"]] = r["baseline_answer_meta"]
    for model, metas in answers.items():
        for qid, meta in metas.items():
            _append(root / "model_answer" / f"{model}.jsonl",
                    {"uid": qid, "model": model, "metadata": meta,
                     "messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": {"answer": ""}}]})
    return root


@pytest.mark.skipif(not VALIDATION.is_dir(), reason="validation data not found")
def test_v2_scoring_matches_the_official_v2_script(tmp_path):
    """Section B of official_run.txt: the v2.0 show_result.py on the v0.1 verdicts (``-b arena-hard-v0.1 -c
    arena-hard-v0.1``, whose JUDGE_SETTINGS entry has baseline gpt-4-0314).

    The official numbers are statistics of 100 unseeded bootstrap draws (plain: their mean of means; style control:
    medians of the win rates and coefficients of 100 refits), ours the deterministic fit of all the data. Simulating
    the official statistic on this data (2,000 refits) gives a standard deviation of about 0.13-0.15 points for
    the scores and 0.0035-0.0046 for the coefficients: we allow 0.3 points (two of those plus the 0.05 of the
    printed rounding) and 0.02 on the coefficients (four of those). The published v0.1 point scores of the same
    verdicts are 37.9 and 23.34 exactly.
    """
    root = _validation_in_todays_layout(tmp_path / "validation")
    data = load_official(root, version="v2.0")
    assert {j.meta["category"] for j in data.judgments} == {"arena-hard-v0.1"}
    bench = ArenaHard(version="v2.0")
    out = bench.summarize(data.judgments, data.answers, rounds=0, style_control=["length", "markdown"])
    plain = {m: s.metrics["score"].value for m, s in out.items()}
    styled = {m: s.metrics["score_style_controlled"].value for m, s in out.items()}
    official_plain = {"gpt-4-0613": 37.9, "gpt-3.5-turbo-0125": 23.4}
    official_styled = {"gpt-4-0613": 36.8, "gpt-3.5-turbo-0125": 23.5}
    for model in official_plain:
        assert plain[model] == pytest.approx(official_plain[model], abs=0.3)
        assert styled[model] == pytest.approx(official_styled[model], abs=0.3)
        assert out[model].metrics["score/arena-hard-v0.1"] == out[model].metrics["score"]  # one category
    assert plain["gpt-4-0613"] == pytest.approx(37.90, abs=0.005) and plain["gpt-3.5-turbo-0125"] == pytest.approx(
        23.34, abs=0.005)
    coefs = list(out["gpt-4-0613"].meta["style_coefs"]["arena-hard-v0.1"].values())
    np.testing.assert_allclose(coefs, [0.3315, 0.0037, 0.0968, -0.0390], atol=0.02)
    # The official interval: 5th-95th percentile of battle-row draws; ours with unit="battle" is the same kind
    # (seeded). Its half-widths were 1.6-2.5 points over the official runs; ours must be of that size.
    boot = bench.summarize(data.judgments, data.answers, rounds=100, seed=0, unit="battle",
                           style_control=["length", "markdown"])
    for model in official_plain:
        for metric in ("score", "score_style_controlled"):
            est = boot[model].metrics[metric]
            assert est.level == 0.9
            assert 1.2 < est.value - est.ci_low < 3.0 and 1.2 < est.ci_high - est.value < 3.0
    # The selections the official script gets wrong: length alone runs, markdown alone keeps the length feature out
    # and the models in their places (the official -f markdown printed 63.4 for gpt-3.5-turbo-0125).
    for selection in ("length", "markdown"):
        one = bench.summarize(data.judgments, data.answers, rounds=0, style_control=selection)
        assert 20 < one["gpt-3.5-turbo-0125"].metrics["score_style_controlled"].value < 27
        assert 33 < one["gpt-4-0613"].metrics["score_style_controlled"].value < 41
    assert list(one["gpt-4-0613"].meta["style_coefs"]["arena-hard-v0.1"]) == list(arena.MARKDOWN_FEATURES)


def test_v01_scoring_is_untouched_by_the_v2_options():
    old = load_official(V01)
    bench = ArenaHard(V01)
    a = bench.summarize(old.judgments, old.answers, rounds=50, seed=3, unit="battle")
    b = bench.summarize(old.judgments, old.answers, rounds=50, seed=3, unit="battle", level=0.95, pool_judges=False)
    assert a["model-x"].metrics == b["model-x"].metrics
    assert a["model-x"].metrics["score"].level == 0.95 and "style_scheme" not in a["model-x"].metrics["score"].meta
    assert V2_BASELINES["creative_writing"] == GEMINI


# ---------------------------------------------------------------------------------------------------------------
# End to end with an in-process judge


def test_a_judge_run_on_v2_gives_judgments_that_summarize_per_category(no_official, v2):
    from lioneval.judges.judge import make_judge
    from lioneval.testing.scripted import script

    @script("prefers-good")
    def _judge(chat, sampling):
        text = chat[-1]["content"]
        first, second = text.split("<answer_b>")
        verdict = "A>B" if "GOOD" in first and "GOOD" not in second else "B>A" if "GOOD" in second else "A=B"
        return f"Compared. My final verdict is [[{verdict}]]."

    qs = v2.questions()
    mine = [Answer(question_id=q.id, benchmark="arena-hard", model="ckpt",
                   turns=["GOOD answer" if q.category == "hard_prompt" else "plain answer"], token_counts=[50],
                   meta=v2.answer_meta(["x"], [50])) for q in qs]
    judge = make_judge("scripted:prefers-good")
    with pytest.warns(T.BuiltinPromptWarning):
        run = judge.run_answers(v2, qs, mine, v2.baseline_answers())
        v01_id = judge.id_for(ArenaHard())
    assert run.judge == judge.id_for(v2) != v01_id  # each version's prompts are in its judge id
    js = run.judgments
    assert len(js) == 10 and all(j.meta["version"] == "v2.0" for j in js)
    assert {j.meta["category"]: j.baseline for j in js} == {"hard_prompt": O3, "creative_writing": GEMINI}
    out = v2.summarize(js, [*mine, *v2.baseline_answers()], questions=qs, rounds=20, seed=0)["ckpt"]
    assert out.metrics["score/hard_prompt"].value == 100.0  # GOOD wins both games of every hard prompt
    assert out.metrics["score/creative_writing"].value == 50.0  # ties
    assert out.metrics["score"].value == pytest.approx(100 * (12 + 4) / 20)
    assert "score_style_controlled" in out.metrics
