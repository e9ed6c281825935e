import pytest

from lioneval.errors import LionEvalError, UnknownNameError
from lioneval.judges.spec import parse_spec


def test_spec_strings():
    s = parse_spec("openai:gpt-4o-2024-08-06")
    assert (s.kind, s.model, s.label) == ("openai", "gpt-4o-2024-08-06", "openai:gpt-4o-2024-08-06")
    s = parse_spec("openai-compatible:Qwen/Qwen2.5-7B@http://a:8000/v1,http://b:8000/v1")
    assert s.model == "Qwen/Qwen2.5-7B" and s.base_urls == ("http://a:8000/v1", "http://b:8000/v1")
    e = parse_spec("ensemble:majority:[openai:a; openai-compatible:b@http://h:1/v1,http://h:2/v1; hf:/m]")
    assert e.aggregate == "majority" and [m.kind for m in e.members] == ["openai", "openai-compatible", "hf"]
    assert e.members[1].base_urls == ("http://h:1/v1", "http://h:2/v1")


@pytest.mark.parametrize("bad", ["openai", "openai:", "openai-compatible:model", "ensemble:[openai:a]",
                                 "ensemble:openai:a"])
def test_bad_specs_say_how(bad):
    with pytest.raises(LionEvalError, match="Fix"):
        parse_spec(bad)


def test_unknown_kind_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'openai-compatible'"):
        parse_spec("openai-compatibel:m@http://x/v1")


def test_yaml_config(tmp_path):
    cfg = tmp_path / "big-judge.yaml"
    cfg.write_text(
        "spec: openai-compatible:m@http://h:8000/v1\nmax_tokens: 4096\nprices: {input_per_mtok: 1.0}\n"
        "templates: {arena-hard: /path/judge_config.yaml}\n"
    )
    s = parse_spec(str(cfg))
    assert s.name == "big-judge" and s.max_tokens == 4096 and s.prices == {"input_per_mtok": 1.0}
    assert s.label == "big-judge" and s.base_urls == ("http://h:8000/v1",)
    # prices and transport do not change what the judge is; sampling and templates do
    same = parse_spec("openai-compatible:m@http://other:1/v1", max_tokens=4096,
                      templates={"arena-hard": "/path/judge_config.yaml"})
    assert s.identity() == same.identity()
    (tmp_path / "bad.yaml").write_text("kind: openai\nmodel: x\ntemprature: 0.5\n")
    with pytest.raises(LionEvalError, match="temprature"):
        parse_spec(str(tmp_path / "bad.yaml"))
    with pytest.raises(LionEvalError, match="cannot read"):
        parse_spec(str(tmp_path / "missing.yaml"))
