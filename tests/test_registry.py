import sys
import textwrap

import pytest

from lioneval.errors import MissingExtraError, UnknownNameError
from lioneval.registry import Registry, require


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "lioneval_test_plugin.py").write_text("VALUE = 42\nclass Thing:\n    name = 'thing'\n")
    (tmp_path / "lioneval_test_needy.py").write_text(
        textwrap.dedent("""
            import lioneval_no_such_dependency  # an optional dependency that is not installed
            VALUE = 1
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in ("lioneval_test_plugin", "lioneval_test_needy"):
        sys.modules.pop(mod, None)


def test_entries_import_lazily(plugin_dir):
    reg = Registry("backend")
    reg.register("plugin", "lioneval_test_plugin:Thing.name", "a test entry")
    assert "lioneval_test_plugin" not in sys.modules  # registering imports nothing
    assert reg.get("plugin") == "thing"
    assert "lioneval_test_plugin" in sys.modules


def test_unknown_name_suggests_close_ones():
    reg = Registry("judge")
    reg.register("openai", "x:y")
    reg.register("openai-compatible", "x:z")
    with pytest.raises(UnknownNameError) as info:
        reg.get("opnai")
    msg = str(info.value)
    assert "did you mean 'openai'" in msg and "lioneval list judges" in msg
    with pytest.raises(UnknownNameError, match="none registered|one of"):
        Registry("benchmark").get("mt-bench")


def test_missing_extra_names_the_extra(plugin_dir):
    reg = Registry("backend")
    reg.register("declared", "lioneval_test_plugin:VALUE", needs=("lioneval_no_such_dependency",), extra="vllm")
    reg.register("undeclared", "lioneval_test_needy:VALUE", extra="train")
    with pytest.raises(MissingExtraError, match=r"pip install 'lioneval\[vllm\]'"):
        reg.get("declared")
    assert "lioneval_test_plugin" not in sys.modules  # refused before importing the entry
    with pytest.raises(MissingExtraError, match=r"lioneval_no_such_dependency.*lioneval\[train\]"):
        reg.get("undeclared")
    ok, why = reg.available("declared")
    assert not ok and "lioneval[vllm]" in why
    with pytest.raises(ImportError):  # MissingExtraError is still an ImportError for callers that expect one
        require("lioneval_no_such_dependency", "dashboard")


def test_bad_target_is_refused():
    with pytest.raises(ValueError):
        Registry("benchmark").register("x", "no_colon")
