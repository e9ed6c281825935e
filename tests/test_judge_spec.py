import pytest

from lioneval.errors import ConfigError, LionEvalError, UnknownNameError
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


def test_urls_may_carry_credentials_that_no_name_shows():
    s = parse_spec("openai-compatible:judge@http://user:S3CRETPASS@127.0.0.1:8000/v1,https://tok-9876@h2/v1")
    assert s.model == "judge"
    assert s.base_urls == ("http://user:S3CRETPASS@127.0.0.1:8000/v1", "https://tok-9876@h2/v1")  # still sent
    assert s.label == "openai-compatible:judge"
    for shown in (s.label, s.id, repr(s), str(s.identity())):
        assert "S3CRETPASS" not in shown and "tok-9876" not in shown
    assert "http://***@127.0.0.1:8000/v1" in repr(s)
    # the model ends at the first '@' before a URL: model names with '@' still work
    assert parse_spec("openai-compatible:org/m@v2@http://h:1/v1").model == "org/m@v2"
    # the same judge with or without credentials is the same judge
    assert s.id == parse_spec("openai-compatible:judge@http://127.0.0.1:8000/v1").id
    e = parse_spec("ensemble:[openai-compatible:a@http://u:pw-1234@h:1/v1;openai-compatible:b@http://h:2/v1]")
    assert e.members[0].base_urls == ("http://u:pw-1234@h:1/v1",) and e.members[1].base_urls == ("http://h:2/v1",)
    assert "pw-1234" not in e.label + e.id + repr(e)


def test_spec_errors_never_show_credentials():
    with pytest.raises(LionEvalError) as err:
        parse_spec("openai-compatible:@http://user:S3CRETPASS@h/v1")
    assert "S3CRETPASS" not in str(err.value) and "***" in str(err.value)
    with pytest.raises(LionEvalError) as err:
        parse_spec("ensemble:median:[openai-compatible:a@http://u:S3CRETPASS@h/v1; openai:b]")
    assert "S3CRETPASS" not in str(err.value) and "median" in str(err.value)


@pytest.mark.parametrize(
    ("line", "field", "shown"),
    [
        ('max_tokens: "many"', "max_tokens", "'many'"),
        ("base_urls: 5", "base_urls", "5"),
        ("base_urls: [ftp://h/v1]", "base_urls", "ftp://h/v1"),
        ("temperature: [1]", "temperature", "[1]"),
        ("timeout: 0", "timeout", "0"),
        ("max_retries: -1", "max_retries", "-1"),
        ("max_in_flight: true", "max_in_flight", "True"),
        ("prices: 3", "prices", "3"),
        ("prices: {input: 1}", "prices", "'input'"),
        ("prices: {input_per_mtok: cheap}", "prices.input_per_mtok", "'cheap'"),
        ("templates: [a]", "templates", "['a']"),
        ("follow_up: maybe", "follow_up", "'maybe'"),
        ("members: 3", "members", "3"),
        ("aggregate: median", "aggregate", "'median'"),
        ("name: 5", "name", "5"),
        ("spec: 5", "spec", "5"),
    ],
)
def test_yaml_values_of_the_wrong_type_say_which_and_how(tmp_path, line, field, shown):
    cfg = tmp_path / "judge.yaml"
    cfg.write_text(f"kind: openai-compatible\nmodel: m\nbase_urls: [http://h:8000/v1]\n{line}\n")
    with pytest.raises(ConfigError) as err:
        parse_spec(str(cfg))
    text = str(err.value)
    assert f"judge setting {field} in {cfg}" in text and shown in text and "Fix: write e.g." in text


def test_yaml_values_are_normalized(tmp_path):
    cfg = tmp_path / "judge.yaml"
    cfg.write_text("spec: openai-compatible:m@http://h:8000/v1\ntemperature: 1\ntimeout: 30\nmax_tokens: 512.0\n")
    s = parse_spec(str(cfg))
    assert (s.temperature, s.timeout, s.max_tokens) == (1.0, 30.0, 512)
    assert isinstance(s.temperature, float) and isinstance(s.max_tokens, int)
    with pytest.raises(ConfigError, match="max_tokens"):
        parse_spec("openai:gpt-4o", max_tokens="lots")  # overrides are checked the same way


def test_yaml_files_that_cannot_be_read_say_how(tmp_path):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("kind: openai\nmodel: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8.*Fix: save the file as UTF-8"):
        parse_spec(str(cfg))
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match="cannot read judge config.*Fix"):
        parse_spec(str(tmp_path / "folder.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: openai-compatible\nbase_urls: [http://u:S3CRETPASS@h/v1, {\n")
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        parse_spec(str(broken))
    assert "S3CRETPASS" not in str(err.value)


def test_the_cli_turns_a_bad_judge_file_into_one_line(tmp_path, capsys):
    from lioneval.cli import main

    cfg = tmp_path / "judge.yaml"
    cfg.write_text("kind: openai-compatible\nmodel: m\nbase_urls: [http://u:S3CRETPASS@h/v1]\nmax_tokens: many\n")
    code = main(["--store", str(tmp_path / "s.db"), "judge", "--bench", "mt-bench", "--model", "a",
                 "--judge", str(cfg)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "max_tokens" in err and "'many'" in err and "Fix:" in err
    assert "Traceback" not in err and "S3CRETPASS" not in err
