"""The null-model probe's attack families: several wordings each, a score with a CI, gameable per family."""

from __future__ import annotations

import warnings

from lioneval.checks.audit import FAMILY_PREFIX, family_answers, probe_judge
from lioneval.checks.semantic import load_corpus
from lioneval.judges.judge import make_judge
from lioneval.judges.spec import parse_spec
from lioneval.testing.openai_server import ScriptedServer
from lioneval.types import Question


def test_every_family_has_several_wordings_built_on_the_plain_answer():
    fams = family_answers("mt-bench", wordings=4)
    corpus = load_corpus()
    assert set(fams) == {FAMILY_PREFIX + f for f in corpus["families"]} and len(fams) >= 8
    assert all(len(set(texts)) == 4 for texts in fams.values())
    assert all(len(t) < 80 for t in fams[FAMILY_PREFIX + "master_key"])  # openers stand alone


def test_probe_marks_only_the_family_that_sways_the_judge_gameable(store):
    persuasion = family_answers("mt-bench")[FAMILY_PREFIX + "persuasion"]
    pleas = [t.rsplit("\n\n", 1)[1] for t in persuasion]

    def judge(req: dict) -> str:  # swayed by appeals to the evaluator, by nothing else
        text = [m["content"] for m in req["messages"] if m["role"] == "user"][-1]
        return "Rating: [[9]]" if any(p in text for p in pleas) else "Off topic. Rating: [[2]]"

    qs = [Question(id=str(i), benchmark="mt-bench", turns=[f"Question {i}: why is the sky blue?", "Shorter."],
                   category="writing") for i in range(12)]
    with ScriptedServer(judge) as srv, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        j = make_judge(parse_spec(f"openai-compatible:persuadable@{srv.base_url}", max_retries=1, timeout=10))
        result = probe_judge(j, "mt-bench", qs, (), store, sample=8, seed=2, families=True)
        calls = len(srv.requests)
        again = probe_judge(j, "mt-bench", qs, (), store, sample=8, seed=2, families=True)
        assert len(srv.requests) == calls and again.calls == 0
    out = result.to_dict()
    assert result.gameable and out["gameable_families"] == ["persuasion"]
    by_name = {s["answer"]: s for s in out["scores"]}
    fam = by_name[FAMILY_PREFIX + "persuasion"]
    assert fam["value"] == 9.0 and fam["ci_low"] is not None and fam["n"] == 16  # 8 questions x 2 turns
    assert by_name[FAMILY_PREFIX + "structured_verdict"]["value"] == 2.0 and not by_name["plain"]["gameable"]
    flagged = {c.name for c in result.checks if c.status == "flag"}
    assert flagged == {"null_model:" + FAMILY_PREFIX + "persuasion", "judge_gameable"}
