"""Where a benchmark's official data comes from, and a record of exactly which data a run used.

``resolve(bench)`` looks, in order, at the path the user gave (``--data``), the path in the project config, an
installed package that ships the files (``DataSource.packages``), the Hugging Face hub cache, and finally downloads
the files with ``huggingface_hub`` into that cache (resumable, shared with every other tool that uses the hub). The
result names the folder to hand to the benchmark and, for the report, its origin, the hub commit, the package
version and the sha256 of every file the benchmark reads.

The hub's settings are read from the environment each time ``resolve`` runs (``HF_ENDPOINT``, ``HF_HUB_OFFLINE``,
``HF_HUB_CACHE`` / ``HF_HOME``, ``HF_HUB_ETAG_TIMEOUT``): ``huggingface_hub`` copies them into constants when it is
first imported, which would otherwise pin them to whatever the environment held at that moment.

A revision found complete in the cache is used as it is, without asking the hub whether a branch moved on: runs stay
reproducible offline, and the report records the commit that was used. Cached and downloaded files are checked
against the hash the hub named them by (a damaged blob is downloaded again); a download cut short is never kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lioneval.errors import DataError, MissingExtraError

__all__ = ["ORIGINS", "ResolvedData", "describe", "hub_cache_dir", "hub_endpoint", "hub_offline", "resolve"]

log = logging.getLogger("lioneval.data")

ORIGINS = ("path", "config", "package", "hub-cache", "hub-download")
DEFAULT_ENDPOINT = "https://huggingface.co"
_URL_PREFIX = {"dataset": "datasets/", "space": "spaces/", "model": ""}
_TRUE = {"1", "on", "yes", "true"}
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Exception class names (anywhere in an error's class hierarchy or cause chain) that mean "the hub could not be
# reached": the names are shared by httpx, httpx2 and requests, whichever one huggingface_hub is built on.
_UNREACHABLE = {"ConnectError", "ConnectionError", "TimeoutException", "Timeout", "NetworkError", "ProxyError",
                "RemoteProtocolError", "ConnectTimeout", "ReadTimeout", "ReadError"}


class SourceSpec(Protocol):
    """What ``resolve`` reads of ``lioneval.benchmarks.DataSource``."""

    @property
    def repo_id(self) -> str: ...
    @property
    def files(self) -> tuple[str, ...]: ...
    @property
    def folder(self) -> str: ...
    @property
    def repo_type(self) -> str: ...
    @property
    def revision(self) -> str: ...
    @property
    def packages(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def title(self) -> str: ...


class HasDataSource(Protocol):
    name: str

    def data_source(self) -> Any: ...  # SourceSpec | None


@dataclass(frozen=True)
class ResolvedData:
    """The data a benchmark was handed and where it came from.

    ``path``: the folder (or file) to hand to the benchmark; for the hub, ``<snapshot>/<folder>``. ``revision`` is the
    hub revision asked for, ``commit`` the commit it resolved to. ``files``: file -> sha256 of the files the benchmark
    reads, named as in the hub repository (a file given directly as the path: by its name).
    """

    path: Path
    origin: str  # one of ORIGINS
    repo_id: str | None = None
    repo_type: str | None = None
    revision: str | None = None
    commit: str | None = None
    package: str | None = None
    package_version: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """JSON-able description of the data for a run's report."""
        return {
            "origin": self.origin, "path": str(self.path), "repo_id": self.repo_id, "repo_type": self.repo_type,
            "revision": self.revision, "commit": self.commit, "package": self.package,
            "package_version": self.package_version, "files": dict(sorted(self.files.items())),
        }


# --------------------------------------------------------------------------------------------------------------------
# The hub's settings, read when needed


def hub_endpoint() -> str:
    """The hub to download from: ``HF_ENDPOINT`` (a mirror) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or its older spelling ``TRANSFORMERS_OFFLINE``) forbids network calls."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    """The hub cache: ``HF_HUB_CACHE``, else ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub`` (default
    ``~/.cache/huggingface/hub``), as huggingface_hub resolves it."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def _etag_timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
    except ValueError:
        return 10.0


@contextmanager
def _hub_mode(offline: bool) -> Iterator[None]:
    """huggingface_hub's HTTP layer refuses every request when its import-time offline flag is set: align the flag
    with the environment of this call, and restore it afterwards."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


# --------------------------------------------------------------------------------------------------------------------
# Resolution


def resolve(bench: HasDataSource, path: str | Path | None = None, *, configured: str | Path | None = None,
            revision: str | None = None) -> ResolvedData:
    """The data folder for ``bench``: the user's ``path``, else the ``configured`` path, else an installed package
    that ships the files, else the hub cache, else a download from the hub.

    ``revision`` pins the hub revision (a branch, tag or commit) instead of the benchmark's default; a pinned
    revision skips the package step, whose copy has no hub revision to match.
    Raises DataError when a given path does not exist or the data cannot be found or fetched.
    """
    source: SourceSpec | None = bench.data_source()
    if path is not None:
        return _local(bench, source, path, "path")
    if configured is not None:
        return _local(bench, source, configured, "config")
    if source is None:
        raise DataError(f"{bench.name} has no official data source to fetch its data from",
                        fix=f"pass --data {bench.name}=PATH")
    if not source.files:
        raise DataError(f"{bench.name}'s data source names no files", fix=f"pass --data {bench.name}=PATH")
    rev = revision or source.revision
    if revision is None:
        found = _from_packages(source)
        if found is not None:
            log.info("%s data from the package %s %s: %s", bench.name, found.package, found.package_version or "",
                     found.path)
            return found
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            f"huggingface_hub is needed to find {_what(source)} in the hub cache or download it",
            fix=f"pip install huggingface_hub, or pass --data {bench.name}=PATH",
        ) from None
    cache = hub_cache_dir()
    offline = hub_offline()
    cached, corrupt = _from_cache(source, rev, cache)
    if cached is not None:
        log.info("%s data from the hub cache (%s, commit %s): %s", bench.name, rev, cached.commit, cached.path)
        return cached
    if offline and corrupt:
        raise DataError(f"the cached {', '.join(sorted(corrupt))} of {_what(source, rev)} in {cache} do not match "
                        "their hub checksum (a damaged cache) and HF_HUB_OFFLINE is set",
                        fix=f"delete {cache / _repo_folder(source)} and resolve again on a connected machine, or pass "
                            f"--data {bench.name}=PATH")
    if offline:
        missing = [f for f in source.files if _cached_file(source, f, rev, cache) is None]
        raise DataError(f"{_what(source, rev)} is not in the Hugging Face hub cache {cache} and HF_HUB_OFFLINE is set "
                        f"(missing: {', '.join(missing)})", fix=_offline_fix(bench, source, rev, cache))
    found = _download(bench, source, rev, cache, force=corrupt)
    log.info("%s data downloaded from %s (%s, commit %s): %s", bench.name, hub_endpoint(), rev, found.commit,
             found.path)
    return found


def _what(source: SourceSpec, rev: str | None = None) -> str:
    """'MT-Bench data (space lmsys/mt-bench, revision main)'."""
    where = f"{source.repo_type} {source.repo_id}" + (f", revision {rev}" if rev else "")
    return f"{source.title or source.repo_id} data ({where})"


def _offline_fix(bench: HasDataSource, source: SourceSpec, rev: str, cache: Path) -> str:
    return (f"on a connected machine run `hf download {source.repo_id} {' '.join(source.files)} --repo-type "
            f"{source.repo_type} --revision {rev}` (huggingface-cli download before huggingface_hub 1.0) and copy "
            f"its hub cache to {cache}, or pass --data {bench.name}=PATH")


def _one_line(text: object, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the user's path or the config's ---------------------------------------------------------------------------


def _local(bench: HasDataSource, source: SourceSpec | None, given: str | Path, origin: str) -> ResolvedData:
    p = Path(given).expanduser()
    if not p.exists():
        if origin == "path":
            raise DataError(f"the {bench.name} data path {p} (given with --data) does not exist",
                            fix=f"pass an existing file or folder: --data {bench.name}=PATH")
        raise DataError(f"the {bench.name} data path {p} set in the project config does not exist",
                        fix=f"correct the path in the config, or pass --data {bench.name}=PATH")
    p = p.absolute()
    if p.is_file():
        return ResolvedData(path=p, origin=origin, files={p.name: _sha256(p)})
    files: dict[str, str] = {}
    if source is not None:
        # the folder stands for the source's folder, or for the repository root: whichever holds more of the files
        as_folder, as_root = _layout(p, source), {f: p / f for f in source.files}
        chosen = max((as_folder, as_root), key=lambda m: sum(x.is_file() for x in m.values()))
        files = {f: _sha256(x) for f, x in chosen.items() if x.is_file() and _inside(x, p)}
    return ResolvedData(path=p, origin=origin, files=files)


def _inside(path: Path, folder: Path) -> bool:
    return os.path.normpath(path).startswith(os.path.normpath(folder) + os.sep)


def _layout(folder: Path, source: SourceSpec) -> dict[str, Path]:
    """Where each repository file lies when ``folder`` holds the repository folder ``source.folder`` (a file outside
    that folder, like MT-Bench's ``data/judge_prompts.jsonl``, lies at the same relative place)."""
    base = source.folder.strip("/") or "."
    return {f: Path(os.path.normpath(folder / os.path.relpath(f, base))) for f in source.files}


# --- an installed package -------------------------------------------------------------------------------------------


def _package_roots(module: str) -> list[Path]:
    """The folders of an importable package, found without importing it (nor its parents)."""
    import importlib.util

    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(loc).joinpath(*rest) for loc in spec.submodule_search_locations]


def _distribution(module: str) -> tuple[str, str | None]:
    """(distribution name, version) of the installed distribution that provides ``module``."""
    from importlib import metadata

    top = module.split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return top, None


def _from_packages(source: SourceSpec) -> ResolvedData | None:
    for module, pattern in source.packages:
        for root in _package_roots(module):
            if not root.is_dir():
                continue
            for folder in sorted(p for p in root.glob(pattern) if p.is_dir()):
                paths = _layout(folder, source)
                if all(p.is_file() for p in paths.values()):
                    dist, version = _distribution(module)
                    return ResolvedData(path=folder, origin="package", package=dist, package_version=version,
                                        files={f: _sha256(p) for f, p in paths.items()})
                log.debug("%s in %s lacks some of %s", folder, module, source.files)
    return None


# --- the hub cache --------------------------------------------------------------------------------------------------


def _cached_file(source: SourceSpec, filename: str, rev: str, cache: Path) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    got = try_to_load_from_cache(source.repo_id, filename, cache_dir=cache, revision=rev,
                                 repo_type=source.repo_type)
    return Path(got) if isinstance(got, str) else None


def _snapshot_of(path: Path, filename: str) -> Path:
    """The snapshot folder (named by its commit) that holds ``filename`` at ``path``."""
    return path.parents[filename.count("/")]


def _from_cache(source: SourceSpec, rev: str, cache: Path) -> tuple[ResolvedData | None, set[str]]:
    """The data from the cache when every file is there at ``rev``, and the files whose cached copy is corrupt."""
    paths: dict[str, Path] = {}
    for f in source.files:
        got = _cached_file(source, f, rev, cache)
        if got is None:
            return None, set()
        paths[f] = got
    found = _hub_data(source, rev, paths)
    if isinstance(found, ResolvedData):
        return found, set()
    for f in sorted(found):
        log.warning("the cached %s of %s %s does not match its hub checksum: downloading it again", f,
                    source.repo_type, source.repo_id)
    return None, found


def _hub_data(source: SourceSpec, rev: str, paths: Mapping[str, Path], verify: bool = True) -> ResolvedData | set[str]:
    """ResolvedData for files of one snapshot, or the files whose content does not match their blob's hash."""
    sums, bad = {}, set()
    for f, p in paths.items():
        digest, ok = _hash_blob(p)
        sums[f] = digest
        if verify and not ok:
            bad.add(f)
    if bad:
        return bad
    first = source.files[0]
    snapshot = _snapshot_of(paths[first], first)
    folder = snapshot / source.folder.strip("/") if source.folder.strip("/") else snapshot
    return ResolvedData(path=folder, origin="hub-cache", repo_id=source.repo_id, repo_type=source.repo_type,
                        revision=rev, commit=snapshot.name, files=sums)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_blob(path: Path) -> tuple[str, bool]:
    """(sha256, whether the content matches the blob it links to). The hub cache names a blob by its ETag: the git
    blob sha1 of a regular file, the sha256 of an LFS file. A cache without symlinks (copies) cannot be checked."""
    blob = Path(os.readlink(path)).name if path.is_symlink() else ""
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % path.stat().st_size)  # noqa: S324 - git's object id, not a security hash
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha256.update(chunk)
            git.update(chunk)
    digest = sha256.hexdigest()
    if _HEX64.fullmatch(blob):
        return digest, blob == digest
    if _HEX40.fullmatch(blob):
        return digest, blob == git.hexdigest()
    return digest, True


# --- a download -----------------------------------------------------------------------------------------------------


def _download(bench: HasDataSource, source: SourceSpec, rev: str, cache: Path, force: set[str]) -> ResolvedData:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    endpoint = hub_endpoint()
    timeout = _etag_timeout()
    first, *rest = source.files
    paths: dict[str, Path] = {}
    with _hub_mode(offline=False):
        # One quick look first: hf_hub_download retries an unreachable hub with backoff for about half a minute
        # before it gives up, and answers a refused repository only after that; this look fails at once.
        url = hf_hub_url(source.repo_id, first, repo_type=source.repo_type, revision=rev, endpoint=endpoint)
        try:
            get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint)
        except Exception as err:  # noqa: BLE001 - every failure becomes a DataError that says why and what to do
            raise _hub_error(err, bench, source, rev, first, cache) from None
        # The first file at the requested revision records the branch or tag -> commit in the cache (what the
        # offline cache step reads); the others are pinned to that commit, so all files come from one snapshot.
        commit = rev
        for f in [first, *rest]:
            try:
                got = hf_hub_download(source.repo_id, f, repo_type=source.repo_type, revision=commit,
                                      cache_dir=cache, endpoint=endpoint, etag_timeout=timeout,
                                      force_download=f in force)
            except Exception as err:  # noqa: BLE001 - as above
                raise _hub_error(err, bench, source, rev, f, cache) from None
            paths[f] = Path(str(got))
            if f == first:
                commit = _snapshot_of(paths[f], f).name
    found = _hub_data(source, rev, paths)
    if not isinstance(found, ResolvedData):
        # huggingface_hub has checked each file's size against the one announced; a fresh file whose hash still
        # differs from its ETag comes from a server (a caching proxy) whose ETags are not content hashes
        log.warning("the ETags %s serves for %s are not content hashes: checksums not verified", endpoint,
                    source.repo_id)
        found = _hub_data(source, rev, paths, verify=False)
        assert isinstance(found, ResolvedData)
    return ResolvedData(path=found.path, origin="hub-download", repo_id=found.repo_id, repo_type=found.repo_type,
                        revision=rev, commit=found.commit, files=found.files)


def _repo_folder(source: SourceSpec) -> str:
    return f"{source.repo_type}s--{source.repo_id.replace('/', '--')}"


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _hub_error(err: Exception, bench: HasDataSource, source: SourceSpec, rev: str, filename: str,
               cache: Path) -> DataError:
    """The DataError that says why the hub did not give a file, and what to do about it."""
    from huggingface_hub import errors as hf

    what, endpoint = _what(source, rev), hub_endpoint()
    page = f"{endpoint}/{_URL_PREFIX.get(source.repo_type, '')}{source.repo_id}"
    login = "log in with `hf auth login` or set HF_TOKEN"
    other = f"or pass --data {bench.name}=PATH"
    chain = _chain(err)

    def first(*names: str) -> BaseException | None:
        classes = tuple(c for c in (getattr(hf, n, None) for n in names) if isinstance(c, type))
        return next((e for e in chain if classes and isinstance(e, classes)), None)

    if first("OfflineModeIsEnabled") is not None:
        return DataError(f"{what} is not in the Hugging Face hub cache {cache} and HF_HUB_OFFLINE is set",
                         fix=_offline_fix(bench, source, rev, cache))
    if first("GatedRepoError") is not None:
        return DataError(f"{what}: the repository {page} is gated and this machine may not read it",
                         fix=f"accept its conditions at {page} with your account and {login}, {other}")
    if first("RevisionNotFoundError") is not None:
        return DataError(f"{what}: the revision {rev} does not exist in {page}",
                         fix=f"pin an existing branch, tag or commit of {source.repo_id}, {other}")
    if first("RepositoryNotFoundError") is not None:
        return DataError(f"{what}: the repository {page} was not found (or it is private and no valid token was "
                         "sent)", fix=f"check the repository id and type; for a private repository {login}; {other}")
    if first("RemoteEntryNotFoundError", "EntryNotFoundError") is not None and \
            first("LocalEntryNotFoundError") is None:
        return DataError(f"{what}: the file {filename} does not exist in {page} at revision {rev}",
                         fix=f"pin a revision that has it, {other}")
    for e in chain:
        if _status(e) in (401, 403):
            return DataError(f"{what}: the hub at {endpoint} refused access to {filename} (HTTP {_status(e)})",
                             fix=f"{login} with a token that may read {source.repo_id}, {other}")
    unreachable = next((e for e in chain if {c.__name__ for c in type(e).__mro__} & _UNREACHABLE), None)
    if unreachable is not None or first("LocalEntryNotFoundError") is not None:
        reason = _one_line(unreachable or err, 160)
        return DataError(f"cannot download {what} from the Hugging Face hub at {endpoint} and it is not in the hub "
                         f"cache {cache} ({type(unreachable or err).__name__}: {reason})",
                         fix=_offline_fix(bench, source, rev, cache))
    if first("FileMetadataError") is not None:
        return DataError(f"{what}: {endpoint} does not answer like a Hugging Face hub ({_one_line(err, 160)})",
                         fix="check HF_ENDPOINT and the proxy settings, " + other)
    status = next((s for s in map(_status, chain) if s is not None), None)
    if status is not None:
        return DataError(f"{what}: the hub at {endpoint} answered HTTP {status} for {filename}",
                         fix=f"try again later, {other}")
    if isinstance(err, OSError):
        # huggingface_hub's size check (a download cut short) and disk errors: the partial file is discarded
        return DataError(f"downloading {filename} of {what} failed, nothing was kept: {_one_line(err, 200)}",
                         fix=f"check the connection and the free space in {cache}, then run again, {other}")
    return DataError(f"downloading {filename} of {what} failed: {type(err).__name__}: {_one_line(err, 200)}",
                     fix=f"run again, {other}")


def describe(resolved: ResolvedData) -> str:
    """One line for logs and the CLI: where the data came from."""
    if resolved.origin in ("hub-cache", "hub-download"):
        commit = (resolved.commit or "")[:12]
        return f"{resolved.repo_type} {resolved.repo_id}@{resolved.revision} ({commit}, {resolved.origin})"
    if resolved.origin == "package":
        return f"package {resolved.package} {resolved.package_version or ''}".rstrip()
    return f"{resolved.path} ({resolved.origin})"
