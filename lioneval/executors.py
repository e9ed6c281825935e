"""Where a run's model and judge requests are sent from: this process (``local``), or Ray tasks (``ray``).

``--executor ray`` shards each batch of requests to an OpenAI-compatible backend (vLLM or SGLang servers, a router,
or any API) into Ray tasks: each task rebuilds the backend from its settings, sends its shard, and returns the
completions, which this process stores as each shard arrives, so the store stays the single record and a crash
loses only shards in flight. A task whose worker dies is run again by Ray (``max_retries``); the store is keyed by
content, so a request sent twice is stored once. Backends that hold a model in this process (``hf:``, ``vllm:``)
stay local: on GPU machines, serve the checkpoints (``vllm serve``) and point the run at the servers.

Ray connects to the cluster in ``RAY_ADDRESS`` (``ray start --head`` on one machine, ``ray start --address`` on
the others), or starts a local instance. API keys are read from the environment of the Ray workers.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from lioneval.backends.base import Backend, Chat, Completion, OnResult, Sampling
from lioneval.backends.openai_compat import OpenAICompatibleBackend
from lioneval.errors import ConfigError
from lioneval.judges.judge import backend_for
from lioneval.judges.spec import parse_spec
from lioneval.registry import require

log = logging.getLogger("lioneval.executors")

__all__ = ["EXECUTORS", "RayBackend", "distribute", "judge_backend"]

EXECUTORS = ("local", "ray")
SHARD = 16  # requests per Ray task: small enough that results stream back, large enough to keep tasks cheap


def check(executor: str) -> None:
    """Refuse an unknown executor, or one whose package is missing, before any work starts."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}", fix=f"use one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        require("ray", "ray", what="--executor ray")


def _shard(cls_path: str, settings: dict[str, Any], chats: list[Chat], sampling: Sampling) -> list[Completion]:
    """What one Ray task runs: the backend rebuilt from its settings, one batch of requests."""
    module, _, name = cls_path.partition(":")
    backend = getattr(importlib.import_module(module), name).from_spec(settings)
    return backend.generate(chats, sampling)


class RayBackend:
    """A backend whose batches are sent from Ray tasks (``shard`` requests each); see the module docstring."""

    def __init__(self, inner: OpenAICompatibleBackend, *, shard: int = SHARD, max_retries: int = 3):
        self.inner = inner
        self.name = inner.name
        self.shard = shard
        self.max_retries = max_retries
        cls = type(inner)
        self._cls = f"{cls.__module__}:{cls.__qualname__}"

    def __repr__(self) -> str:
        return f"RayBackend({self.inner!r}, shard={self.shard})"

    def to_spec(self, *, credentials: bool = False) -> dict[str, Any]:
        return self.inner.to_spec(credentials=credentials)

    def generate(self, chats: Sequence[Chat], sampling: Sampling, *, on_result: OnResult | None = None
                 ) -> list[Completion]:
        chats = list(chats)
        if not chats:
            return []
        ray = _ray()
        # the settings travel to the workers with the URLs' credentials (they need them), never with the key
        settings = self.inner.to_spec(credentials=True)
        # retry_exceptions: a shard that raised (a server dying under it before failover settled) is run again too
        task = ray.remote(_shard).options(max_retries=self.max_retries, retry_exceptions=True, num_cpus=1)
        pending = {}
        for start in range(0, len(chats), self.shard):
            ref = task.remote(self._cls, settings, chats[start:start + self.shard], sampling)
            pending[ref] = start
        out: list[Completion | None] = [None] * len(chats)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    start = pending.pop(ref)
                    try:
                        got = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - a shard that failed after its retries fails as values
                        last = (str(e).strip().splitlines() or [""])[-1][:200]
                        end = start + self.shard - 1
                        why = f"the Ray task of requests {start}-{end} failed: {type(e).__name__}: {last}"
                        got = [Completion(None, error=f"{why}. Fix: check the Ray workers' logs (ray status)")
                               for _ in chats[start:start + self.shard]]
                    for k, c in enumerate(got):
                        out[start + k] = c
                        if on_result is not None:
                            on_result(start + k, c)
        finally:
            for ref in pending:
                ray.cancel(ref)
        return out  # type: ignore[return-value]  # every shard filled its slots


_INIT = threading.Lock()  # a run's judging thread may ask for Ray while generation is connecting to it


def _ray() -> Any:
    require("ray", "ray", what="--executor ray")
    import ray

    with _INIT:
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            log.info("lioneval: connecting to Ray (%s)", address or "a local instance")
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    return ray


def distribute(backend: Backend, executor: str) -> Backend:
    """The backend to use under ``executor``: HTTP backends go through Ray tasks; others stay as they are."""
    check(executor)
    if executor == "local" or isinstance(backend, RayBackend):
        return backend
    if isinstance(backend, OpenAICompatibleBackend):
        return RayBackend(backend)
    log.warning("lioneval: %s runs in this process (--executor %s shards requests to servers only)",
                getattr(backend, "name", type(backend).__name__), executor)
    return backend


def judge_backend(spec: str, executor: str, **overrides: Any) -> Backend | None:
    """The backend a judge spec gets under ``executor``, or None to let the judge build its own (local)."""
    check(executor)
    if executor == "local":
        return None
    parsed = parse_spec(spec, **overrides)
    if parsed.kind not in ("openai-compatible", "openai"):
        return None
    return distribute(backend_for(parsed), executor)
