"""Evaluating checkpoints as a trainer writes them: ``lioneval watch DIR``.

An evaluator process beside training (the pattern of olmo-eval's and prime-rl's separate evaluators): it scans a
training output folder for checkpoints (``checkpoint-<N>`` and ``<stage>-step<N>``, the names ``identify`` reads
stage and step from), and runs the suite on each one that is ready (``trainer_state.json`` written, or files that
stopped changing), writing everything to the run store. The process stays warm: imports, benchmark data and the
judge are set up once; only the checkpoint changes.

* Newest first: when several checkpoints wait, the newest goes first, so early stopping reads the most recent
  decision; with ``max_behind`` only that many of the newest waiting ones are kept and the older ones are recorded
  as skipped (obsolete).
* Deleted checkpoints: a trainer's ``save_total_limit`` removes old checkpoints, maybe while one is evaluated.
  Before loading, the checkpoint's files are pinned (hard links into a private folder, a copy across file systems),
  so a deletion mid-evaluation changes nothing; one deleted before it could be pinned is recorded as vanished.
* Resumable: a checkpoint whose reports are complete in the store is not evaluated again, and an interrupted
  evaluation resumes from its stored answers and judgments (``lioneval.pipeline.run``).
* ``parallel`` evaluations at once (threads: serving backends and remote judges wait on the network).

Every outcome is stored as a check named ``watch`` on the checkpoint's model (``meta["outcome"]``: evaluated,
incomplete, failed, skipped or vanished; ``meta["step"]``, ``meta["checkpoint"]``), beside the reports, so the
training callback (``mode: external``) and the dashboard see what happened to each checkpoint.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lioneval.backends.base import Backend
from lioneval.checkpoint import TRAINER_FILES, CheckpointInfo, identify
from lioneval.errors import ConfigError, LionEvalError
from lioneval.judges.judge import backend_for
from lioneval.judges.spec import parse_spec
from lioneval.pipeline import Prepared, RunConfig, _make_judge, prepare, run
from lioneval.registry import BACKENDS
from lioneval.store import RunStore, is_url
from lioneval.types import CheckResult, Report, RunSpec

log = logging.getLogger("lioneval.watch")

__all__ = ["WATCH_CHECK", "Awaited", "Candidate", "WatchConfig", "Watcher", "collect", "outcomes", "start_watcher",
           "watch"]

WATCH_CHECK = "watch"  # the check that records what happened to each checkpoint the watcher saw
OUTCOMES = ("evaluated", "incomplete", "failed", "skipped", "vanished")
PIN_MODES = ("link", "copy", "none")
_NAME = re.compile(r"^(?:checkpoint-(?P<hf>\d+)|.+?[-_]step[-_]?(?P<step>\d+))$")
_PINS = ".lioneval-pins"


@dataclass
class WatchConfig:
    """How ``lioneval watch`` finds, orders and pins checkpoints; field names are the CLI flags."""

    folder: str
    # The generation backend of a checkpoint: a spec in which {ckpt} stands for the checkpoint's (pinned) folder
    # and {name} for its name, e.g. "vllm:{ckpt}" or "openai-compatible:{name}@http://router:8000/v1" for a server
    # that loads each checkpoint itself. Default: transformers on the checkpoint ("hf:{ckpt}").
    policy: str | None = None
    pattern: str | None = None  # only checkpoints whose folder name matches this glob (e.g. "dpo-step*")
    parallel: int = 1  # evaluations at once
    interval: float = 5.0  # seconds between scans of the folder
    settle: float = 10.0  # a checkpoint without trainer_state.json is ready once its files are this old (seconds)
    max_behind: int | None = None  # evaluate only the newest N waiting checkpoints; older ones are skipped
    pin: str = "link"  # link: hard links (a copy across file systems); copy; none: read in place
    pin_dir: str | None = None  # where pins go (default: <folder>/.lioneval-pins)
    once: bool = False  # evaluate what is ready now, then exit
    idle_exit: float | None = None  # exit after this many seconds with nothing new and nothing running
    stop_file: str | None = None  # once this file exists: a last scan, finish the work, exit
    parent_pid: int | None = None  # the same when this process (the trainer) is gone

    def __post_init__(self) -> None:
        if not Path(self.folder).is_dir():
            raise ConfigError(f"cannot watch {self.folder}: it is not a folder",
                              fix="pass the training output folder (the trainer's output_dir, or its parent)")
        if self.pin not in PIN_MODES:
            raise ConfigError(f"unknown pin mode {self.pin!r}", fix=f"use one of {', '.join(PIN_MODES)}")
        for name in ("parallel", "max_behind"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"WatchConfig.{name} must be a positive integer, not {v!r}", fix=f"e.g. {name}: 1")
        for name in ("interval", "settle", "idle_exit"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ConfigError(f"WatchConfig.{name} must be a number of seconds >= 0, not {v!r}",
                                  fix=f"e.g. {name}: 5")

    @property
    def pins(self) -> Path:
        return Path(self.pin_dir) if self.pin_dir else Path(self.folder) / _PINS


@dataclass
class Candidate:
    """A checkpoint folder the watcher has seen."""

    path: str  # as found (a <stage>-step<N> link is preferred to the checkpoint-<N> it points at)
    real: str  # resolved: one checkpoint seen under two names is one candidate
    step: int
    state: str = "waiting"  # waiting | running | one of OUTCOMES
    model: str | None = None
    detail: str = ""
    reports: list[Report] = field(default_factory=list)
    seen: float = field(default_factory=time.monotonic)


def find_checkpoints(folder: str | Path, *, depth: int = 3, skip: str | Path | None = None) -> list[tuple[str, int]]:
    """``(path, step)`` of every checkpoint-like folder under ``folder`` (links included), without descending into
    one. Names come from the trainer (``checkpoint-<N>``) or lioneval's links (``<stage>-step<N>``)."""
    out: list[tuple[str, int]] = []
    skip_real = os.path.realpath(skip) if skip else None

    def walk(d: Path, level: int) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:  # removed while scanned
            return
        for e in entries:
            try:
                if not e.is_dir():  # follows links: a link to a checkpoint counts
                    continue
            except OSError:
                continue
            if skip_real and os.path.realpath(e.path) == skip_real:
                continue
            m = _NAME.match(e.name)
            if m:
                out.append((e.path, int(m["hf"] or m["step"])))
            elif level < depth and not e.is_symlink() and not e.name.startswith("."):
                walk(Path(e.path), level + 1)

    walk(Path(folder), 1)
    return out


def _ready(path: Path, settle: float) -> bool:
    """Whether the trainer finished writing the checkpoint: its trainer_state.json (written last by a trainer) is
    there, or it has config.json and weights and nothing in it changed for ``settle`` seconds."""
    try:
        if (path / "trainer_state.json").is_file():
            return True
        files = [p for p in path.iterdir() if p.is_file()]
        if not (path / "config.json").is_file() or not any(p.suffix in (".safetensors", ".bin") for p in files):
            return False
        newest = max(p.stat().st_mtime for p in files)
    except OSError:
        return False
    return time.time() - newest >= settle


def pin(path: str | Path, pins: str | Path, mode: str = "link") -> Path:
    """A private view of the checkpoint ``path`` that its trainer cannot delete: its files hard-linked (or copied)
    into ``pins/<token>/<parent name>/<name>``, so stage, step and identity read the same as from ``path``.
    Optimizer and RNG states are left out (a model does not need them). Raises FileNotFoundError when the
    checkpoint disappears meanwhile."""
    src = Path(path)
    real = Path(os.path.realpath(src))
    if not real.is_dir():
        raise FileNotFoundError(str(src))
    token = hashlib.sha256(f"{real}:{os.getpid()}:{threading.get_ident()}:{time.time_ns()}".encode()).hexdigest()[:12]
    dest = Path(pins) / token / (src.parent.name or "root") / src.name
    dest.mkdir(parents=True)
    try:
        for root, _dirs, files in os.walk(real):
            rel = Path(root).relative_to(real)
            (dest / rel).mkdir(parents=True, exist_ok=True)
            for name in files:
                if rel == Path(".") and (name in TRAINER_FILES or name.startswith("rng_state")):
                    continue
                s, d = Path(root) / name, dest / rel / name
                if mode == "link":
                    try:
                        os.link(s, d)
                        continue
                    except FileNotFoundError:
                        raise
                    except OSError:  # another file system, or links not allowed: copy
                        pass
                shutil.copy2(s, d)
        if not real.is_dir():  # deleted while pinned: what was linked may be partial
            raise FileNotFoundError(str(src))
    except BaseException:
        unpin(dest)
        raise
    return dest


def unpin(pinned: str | Path) -> None:
    shutil.rmtree(Path(pinned).parent.parent, ignore_errors=True)


def outcomes(store: RunStore, model: str | None = None) -> list[CheckResult]:
    """The watcher's records (``watch`` checks), oldest step first."""
    found = [c for c in store.checks(model=model, scope="run") if c.name == WATCH_CHECK]
    return sorted(found, key=lambda c: (c.meta.get("step") or 0, c.meta.get("checkpoint") or ""))


class Watcher:
    """Scans a folder and evaluates its checkpoints with one RunConfig; see the module docstring.

    ``on_event(candidate)`` runs (in the watcher's thread) whenever a checkpoint gets an outcome."""

    def __init__(self, config: WatchConfig, suite: RunConfig, store: str, *,
                 on_event: Callable[[Candidate], None] | None = None):
        self.config = config
        self.suite = dataclasses.replace(suite, ckpt=None, policy=None)
        self.store_path = store
        self.on_event = on_event
        self.candidates: dict[str, Candidate] = {}
        self._prepared: Prepared | None = None
        self._judge: Any = None
        self._lock = threading.Lock()
        self._done: list[Candidate] = []
        self._template = config.policy or "hf:{ckpt}"
        # a bad spec, or one whose package is missing, fails now: not once per checkpoint
        BACKENDS.get(parse_spec(self._template.replace("{ckpt}", "ckpt").replace("{name}", "name")).kind)

    # -- setting up once ---------------------------------------------------------------------------------------
    def warm(self) -> None:
        """Check and load what every evaluation shares (data, judge templates, the judge) before any checkpoint."""
        if self._prepared is not None:
            return
        self._prepared = prepare(self.suite)
        specs = set(self._prepared.judges.values())
        if len(specs) == 1:  # one judge for every benchmark: made (a local judge model loaded) once
            self._judge = _make_judge(self.suite, specs.pop())

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> list[Candidate]:
        """Watch until ``once``, ``idle_exit``, ``stop_file`` or ``parent_pid`` ends it; the checkpoints seen."""
        cfg = self.config
        self.warm()
        pool = ThreadPoolExecutor(cfg.parallel, thread_name_prefix="lioneval-watch")
        running: dict[str, Future] = {}
        idle_since = time.monotonic()
        last_scan = False
        try:
            while True:
                finishing = last_scan or cfg.once or self._told_to_stop()
                new = self.scan()
                if new or running:
                    idle_since = time.monotonic()
                for real, fut in list(running.items()):
                    if fut.done():
                        running.pop(real)
                        fut.result()  # an evaluation records its own failure; this re-raises only bugs
                self._plan()
                for c in self._next(cfg.parallel - len(running)):
                    c.state = "running"
                    running[c.real] = pool.submit(self._evaluate, c)
                self._flush()
                waiting = any(c.state == "waiting" for c in self.candidates.values())
                if finishing and not running and not waiting:
                    if last_scan or cfg.once:
                        break
                    last_scan = True  # the trainer is done: one more scan for its last checkpoint
                    continue
                if cfg.idle_exit is not None and not running and not waiting and \
                        time.monotonic() - idle_since >= cfg.idle_exit:
                    break
                self._sleep(cfg.interval if not running else min(cfg.interval, 0.2))
        finally:
            pool.shutdown(wait=True)
            self._flush()
        return sorted(self.candidates.values(), key=lambda c: c.step)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
            if self._told_to_stop() or any(c.state in OUTCOMES for c in self._pending_events()):
                return

    def _pending_events(self) -> list[Candidate]:
        with self._lock:
            return list(self._done)

    def _told_to_stop(self) -> bool:
        cfg = self.config
        if cfg.stop_file and Path(cfg.stop_file).exists():
            return True
        if cfg.parent_pid is not None:
            try:
                os.kill(cfg.parent_pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        return False

    def scan(self) -> list[Candidate]:
        """New ready checkpoints become waiting candidates; waiting ones that disappeared are recorded as vanished."""
        cfg = self.config
        found: dict[str, tuple[str, int]] = {}
        for path, step in find_checkpoints(cfg.folder, skip=cfg.pins):
            if cfg.pattern and not fnmatch.fnmatch(Path(path).name, cfg.pattern):
                continue
            real = os.path.realpath(path)
            # the <stage>-step<N> link names the stage; prefer it to the checkpoint-<N> it points at
            if real not in found or Path(found[real][0]).name.startswith("checkpoint-"):
                found[real] = (path, step)
        new = []
        for real, (path, step) in found.items():
            c = self.candidates.get(real)
            if c is not None:
                if c.state == "waiting" and c.path != path and Path(c.path).name.startswith("checkpoint-"):
                    c.path = path  # the link appeared after the checkpoint
                continue
            if not _ready(Path(path), cfg.settle):
                continue
            c = Candidate(path=path, real=real, step=step)
            self.candidates[real] = c
            new.append(c)
            log.info("lioneval watch: found %s (step %d)", path, step)
        for c in self.candidates.values():
            if c.state == "waiting" and not Path(c.real).is_dir():
                self._outcome(c, "vanished", "deleted (by the trainer's save_total_limit?) before it was evaluated")
        return new

    def _plan(self) -> None:
        """Skip the waiting checkpoints beyond the newest ``max_behind``."""
        if self.config.max_behind is None:
            return
        waiting = sorted((c for c in self.candidates.values() if c.state == "waiting"), key=lambda c: -c.step)
        newest = waiting[0].step if waiting else None
        for c in waiting[self.config.max_behind:]:
            self._outcome(c, "skipped", f"obsolete: the watcher was behind and evaluated newer checkpoints first "
                                        f"(step {newest} and later; max_behind {self.config.max_behind})")

    def _next(self, n: int) -> list[Candidate]:
        waiting = sorted((c for c in self.candidates.values() if c.state == "waiting"), key=lambda c: (-c.step,
                                                                                                       c.seen))
        return waiting[:max(0, n)]

    # -- one checkpoint ----------------------------------------------------------------------------------------
    def _evaluate(self, c: Candidate) -> None:
        pinned: Path | None = None
        try:
            try:
                pinned = pin(c.path, self.config.pins, self.config.pin) if self.config.pin != "none" else None
                info = identify(pinned or c.path)
            except (FileNotFoundError, LionEvalError) as e:
                if not Path(c.real).is_dir():
                    self._outcome(c, "vanished", "deleted (by the trainer's save_total_limit?) before it could be "
                                                 "pinned")
                    return
                self._outcome(c, "failed", str(e))
                return
            c.model = info.model_id
            with RunStore(self.store_path) as st:
                done = self._complete_reports(st, info)
                if done:
                    c.reports = done
                    self._outcome(c, "evaluated", "already evaluated (complete reports in the store)")
                    return
                backend, spec = self._backend(c, info, pinned)
                try:
                    result = run(self.suite, st, backend=backend, spec=spec, judge=self._judge,
                                 prepared=self._prepared)
                finally:
                    close = getattr(backend, "close", None)
                    if callable(close):
                        close()
            c.reports = result.reports
            if result.complete:
                self._outcome(c, "evaluated", f"run {result.run}")
            else:
                why = "; ".join(f"{r.benchmark}: {', '.join(r.incomplete)}" for r in result.reports if not r.complete)
                self._outcome(c, "incomplete", why)
        except LionEvalError as e:
            if "being evaluated right now by another process" in e.message:  # another watcher on the same store
                self._outcome(c, "skipped", f"another evaluator is on it: {e.message}")
            else:
                self._outcome(c, "failed", f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - one checkpoint's failure is recorded; the watcher goes on
            if pinned is None and self.config.pin == "none" and not Path(c.real).is_dir():
                self._outcome(c, "vanished", f"deleted while evaluated in place (pin: none): {e}")
            else:
                log.debug("evaluation of %s failed", c.path, exc_info=True)
                self._outcome(c, "failed", f"{type(e).__name__}: {e}")
        finally:
            if pinned is not None:
                unpin(pinned)

    def _backend(self, c: Candidate, info: CheckpointInfo, pinned: Path | None) -> tuple[Backend, RunSpec]:
        where = str(pinned or c.path)
        text = self._template.replace("{ckpt}", where).replace("{name}", Path(c.path).name)
        spec = parse_spec(text)
        options: dict[str, Any] = {}
        if spec.kind == "hf":
            options = {"batch_size": self.suite.batch_size, "chat_template": self.suite.chat_template,
                       "conv_template": self.suite.conv_template}
        backend = backend_for(spec, **options)
        # the run is the checkpoint's, named by where the trainer wrote it, whatever serves it
        return backend, RunSpec(model=info.model_id, checkpoint=c.path, stage=info.stage, step=info.step,
                                weights_hash=info.weights_hash)

    def _complete_reports(self, st: RunStore, info: CheckpointInfo) -> list[Report]:
        """The complete reports of an earlier run of this checkpoint with these settings (all benchmarks), if any."""
        wanted = list(self.suite.bench)
        for spec in st.runs(model=info.model_id):
            if spec.benchmarks != wanted or spec.seed != self.suite.seed or \
                    spec.settings.get("limit") != self.suite.limit:
                continue
            reports = [r for r in st.reports(run=spec.key) if r.complete]
            if len({r.benchmark for r in reports}) >= len(wanted):
                return reports
        return []

    # -- outcomes ----------------------------------------------------------------------------------------------
    def _outcome(self, c: Candidate, outcome: str, detail: str) -> None:
        c.state, c.detail = outcome, detail
        run_key = c.reports[0].run if c.reports else None
        record = CheckResult(
            name=WATCH_CHECK, scope="run", run=run_key, model=c.model or c.path,
            status="pass" if outcome in ("evaluated", "skipped") else "warn", value=float(c.step),
            detail=f"{Path(c.path).name} (step {c.step}): {outcome}: {detail}",
            meta={"outcome": outcome, "checkpoint": c.path, "step": c.step, "folder": self.config.folder,
                  "reports": [r.key for r in c.reports], "error": detail if outcome == "failed" else None})
        try:
            with RunStore(self.store_path) as st:
                st.put_checks([record])
        except Exception as e:  # noqa: BLE001 - the outcome is still reported on the console
            log.warning("lioneval watch: cannot store the outcome of %s: %s", c.path, e)
        with self._lock:
            self._done.append(c)

    def _flush(self) -> None:
        with self._lock:
            done, self._done = self._done, []
        for c in done:
            log.info("lioneval watch: %s (step %d): %s: %s", c.path, c.step, c.state, c.detail)
            if self.on_event is not None:
                self.on_event(c)


def watch(config: WatchConfig, suite: RunConfig, store: str, *,
          on_event: Callable[[Candidate], None] | None = None) -> list[Candidate]:
    """Run a :class:`Watcher` until it is told to stop; returns every checkpoint it saw, with its outcome."""
    return Watcher(config, suite, store, on_event=on_event).run()


# -- beside a trainer ---------------------------------------------------------------------------------------------
def start_watcher(folder: str | Path, suite: RunConfig, store: str, *, pattern: str | None = None,
                  stop_file: str | Path, max_behind: int | None = 1, nice: int = 0, threads: int = 1,
                  interval: float = 0.5, log_file: str | Path | None = None) -> subprocess.Popen:
    """Start ``lioneval watch`` on ``folder`` in a process of its own (the evaluator beside a trainer): warm for the
    whole training run, at niceness ``nice`` with ``threads`` CPU threads, ending when ``stop_file`` appears (after
    a last scan and the evaluations under way) or when this process ends. A ``suite.policy`` with ``{ckpt}`` or
    ``{name}`` in it is the watcher's policy template (how a server loads each checkpoint)."""
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(suite).items()
                if k not in ("ckpt", "policy")}
    suite_file = Path(stop_file).with_suffix(".suite.json")
    suite_file.write_text(json.dumps(settings))
    cmd = [sys.executable, "-m", "lioneval.cli", "--store", str(store), "watch", str(folder), "--suite",
           str(suite_file), "--interval", str(interval), "--settle", "2", "--stop-file", str(stop_file),
           "--parent-pid", str(os.getpid())]
    if suite.policy and ("{ckpt}" in suite.policy or "{name}" in suite.policy):  # how checkpoints are served
        cmd += ["--policy", suite.policy]
    if pattern:
        cmd += ["--pattern", pattern]
    if max_behind:
        cmd += ["--max-behind", str(max_behind)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - the child owns it from now
    try:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                preexec_fn=(lambda: os.nice(nice)) if nice > 0 else None)
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]


@dataclass
class Awaited:
    """A checkpoint a trainer saved and a watcher is to evaluate."""

    step: int
    path: str
    real: str = ""  # the folder a link points at
    hash8: str = ""  # the start of its weights hash, as in model ids ("<name>@<hash8>")

    @classmethod
    def of(cls, step: int, path: str) -> Awaited:
        try:
            model = identify(path).model_id
        except LionEvalError:
            model = ""
        return cls(step=step, path=str(Path(path).absolute()), real=os.path.realpath(path),
                   hash8=model.rpartition("@")[2])

    def matches(self, record: CheckResult) -> bool:
        """Whether a watcher's record is about this checkpoint: the same weights (the model id's hash, whatever
        the folder was called), or, for a checkpoint the watcher could not read, the same folder."""
        model = record.model or ""
        if self.hash8 and "@" in model and not model.startswith(("/", ".")):
            return model.endswith("@" + self.hash8)
        where = record.meta.get("checkpoint") or ""
        return bool(where) and (str(Path(where).absolute()) == self.path or os.path.realpath(where) == self.real)


def collect(store: str | Path, awaited: list[Awaited]) -> list[tuple[Awaited, CheckResult, list[Report]]]:
    """The watcher's outcome of each awaited checkpoint that has one, with its reports (evaluated or incomplete)."""
    if not awaited or not (is_url(str(store)) or Path(store).is_file()):  # no store yet: nothing evaluated yet
        return []
    out = []
    with RunStore(store, readonly=True) as st:
        records = outcomes(st)
        for a in awaited:
            found = [r for r in records if a.matches(r)]
            if not found:
                continue
            record = found[-1]
            keys = record.meta.get("reports") or []
            reports: list[Report] = st.get("reports", keys) if keys else []  # type: ignore[assignment]
            out.append((a, record, reports))
    return out
