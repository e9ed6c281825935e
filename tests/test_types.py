import math

import pytest
from pydantic import ValidationError

from lioneval.types import SCHEMA_VERSION, Answer, Estimate, Game, Judgment, Question, Report, content_hash


def test_content_hash_is_stable_across_spelling():
    assert content_hash({"a": 1, "b": [1.0, 2]}) == content_hash({"b": (1, 2.0), "a": 1.0})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    with pytest.raises(ValueError):
        content_hash({"a": math.nan})


def test_question_validation_and_key():
    q = Question(id="81", benchmark="mt-bench", turns=["Write a poem", "Now shorter"], category="writing")
    assert q.schema_version == SCHEMA_VERSION
    # the category is payload, not identity
    assert q.key == Question(id="81", benchmark="mt-bench", turns=["Write a poem", "Now shorter"]).key
    assert q.key != Question(id="82", benchmark="mt-bench", turns=["Write a poem", "Now shorter"]).key
    with pytest.raises(ValidationError):
        Question(id="1", benchmark="mt-bench", turns=[])
    with pytest.raises(ValidationError):
        Question(id="1", benchmark="mt-bench", turns=["x"], colour="red")  # unknown fields are refused


def test_records_are_frozen_and_round_trip():
    a = Answer(question_id="1", benchmark="b", model="m", turns=["hi"], token_counts=[1], finish_reasons=["stop"])
    with pytest.raises(ValidationError):
        a.model = "other"
    b = Answer.model_validate_json(a.to_json())
    assert b == a and b.key == a.key


def test_answer_key_ignores_text_but_not_settings():
    base = dict(question_id="1", benchmark="b", model="m", generation={"temperature": 0.0})
    a1 = Answer(turns=["one"], **base)
    a2 = Answer(turns=["two"], **base)
    assert a1.key == a2.key and a1.text_hash != a2.text_hash
    a3 = Answer(turns=["one"], **{**base, "generation": {"temperature": 0.7}})
    assert a3.key != a1.key
    with pytest.raises(ValidationError, match="token_counts"):
        Answer(turns=["a", "b"], token_counts=[1], **base)


def test_judgment_failure_is_a_value_not_a_number():
    ok = Judgment(question_id="1", benchmark="mt-bench", judge="j", model="m", kind="rating", turn=1, value=8)
    failed = Judgment(
        question_id="1", benchmark="mt-bench", judge="j", model="m", kind="rating", turn=1, error="no [[rating]]"
    )
    assert not ok.failed and failed.failed
    with pytest.raises(ValidationError, match="why"):
        Judgment(question_id="1", benchmark="b", judge="j", model="m", kind="rating")
    with pytest.raises(ValidationError, match="finite"):
        Judgment(question_id="1", benchmark="b", judge="j", model="m", kind="rating", value=math.nan)
    with pytest.raises(ValidationError, match="baseline"):
        Judgment(question_id="1", benchmark="b", judge="j", model="m", kind="pairwise", value=1.0)
    pw = Judgment(
        question_id="1", benchmark="arena-hard", judge="j", model="m", kind="pairwise", baseline="base", value=0.75,
        games=[Game(model_position="B", label="A<B", value=1.0), Game(model_position="A", label="A=B", value=0.5)],
    )
    assert pw.key != ok.key
    # different judges of the same answer are different records
    assert pw.model_copy(update={"judge": "j2"}).key != pw.key


def test_newer_schema_version_is_refused_with_a_fix():
    with pytest.raises(ValidationError, match="upgrade lioneval"):
        Question(id="1", benchmark="b", turns=["x"], schema_version=SCHEMA_VERSION + 1)


def test_estimate_checks_interval_and_formats():
    e = Estimate(value=37.9, ci_low=35.1, ci_high=40.3, n=1000, method="bootstrap", rounds=100, seed=0)
    assert e.fmt() == "37.9 (-2.8/+2.4)"
    with pytest.raises(ValidationError):
        Estimate(value=1, ci_low=2, ci_high=0, n=1, method="x")
    with pytest.raises(ValidationError):
        Estimate(value=1, ci_low=0, n=1, method="x")
    r = Report(run="r", benchmark="mt-bench", benchmark_version="1", model="m", judge="j", metrics={"overall": e})
    assert Report.model_validate_json(r.to_json()).metrics["overall"] == e
