"""The install users get: package list complete, no stray top-level modules, a light `import lioneval`."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")


def _config():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    cfg = _config()
    dirs = {"lioneval": "lioneval", **cfg["package-dir"]}
    found = set()
    for pkg, folder in dirs.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([pkg, *rel.parts]))
    # a folder mapped elsewhere is not also a subpackage of lioneval/
    assert sorted(found) == sorted(cfg["packages"])
    for folder in ("judges", "trainers", "dashboards"):
        assert cfg["package-dir"][f"lioneval.{folder}"] == folder


@pytest.mark.slow
def test_wheel_has_no_top_level_side_folders(tmp_path):
    pytest.importorskip("build")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = tmp_path.glob("lioneval-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"lioneval", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for sub in ("judges", "trainers", "dashboards"):
        assert f"lioneval/{sub}/__init__.py" in names
    # the offline demo's question sets travel with the package
    for f in ("mt_bench/question.jsonl", "arena_hard/question.jsonl", "arena_hard/model_answer/demo-baseline.jsonl",
              "alpaca_eval/reference_outputs.json"):
        assert f"lioneval/data/demo/{f}" in names


def test_top_level_side_modules_are_not_importable():
    code = "import importlib.util as u; print([m for m in ('judges','trainers','dashboards') if u.find_spec(m)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip() == "[]"


def test_import_is_light():
    code = (
        "import sys, time; t=time.perf_counter(); import lioneval, lioneval.judges, lioneval.registry; "
        "print(time.perf_counter()-t); "
        "print(sorted(m for m in ('torch','transformers','vllm','streamlit','trl','sklearn','pandas') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    _seconds, heavy = out.stdout.strip().splitlines()
    assert heavy == "[]"
