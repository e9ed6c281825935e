"""`--executor ray`: a run's generation and judging requests sharded over Ray tasks (a local Ray instance with 2
CPUs) that call three scripted servers over HTTP, one of which is killed mid-run."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections import Counter

import pytest

from lioneval.errors import ConfigError
from lioneval.executors import RayBackend, distribute
from lioneval.pipeline import DEMO_DATA, RunConfig, run
from lioneval.store import RunStore
from lioneval.testing.openai_server import ScriptedServer
from lioneval.testing.scripted import SCRIPTS, ScriptedBackend

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the `ray` extra is not installed (pip install 'lioneval[ray]')")


def _respond(request: dict) -> str:
    script = "fair-judge" if request["model"] == "judge" else "echo"
    return SCRIPTS[script](request["messages"], None)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    import os

    import ray

    # Ray puts the driver's working folder on its workers' sys.path: started from a source checkout, the workers
    # would import the uninstalled source tree (which has no lioneval.judges) instead of the installed package.
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ray-driver"))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        os.chdir(here)
    try:
        yield
    finally:
        ray.shutdown()


@needs_ray
def test_every_judgment_is_stored_exactly_once_when_a_server_dies_mid_run(tmp_path, local_ray):
    servers = [ScriptedServer(_respond, latency=0.1) for _ in range(3)]
    victim = servers[2]

    others_at_kill: list[int] = []

    def kill() -> None:
        # as soon as the victim has answered once: how many requests it gets before then depends on how the fleet
        # spreads them, and waiting for more let a run finish with the victim alive
        while not victim.chat_requests():
            time.sleep(0.01)
        victim.stop()
        others_at_kill.append(sum(len(s.chat_requests()) for s in servers[:2]))

    urls = ",".join(s.base_url for s in servers)
    cfg = RunConfig(policy=f"openai-compatible:policy@{urls}", judge=f"openai-compatible:judge@{urls}",
                    bench=("mt-bench", "arena-hard"), executor="ray",
                    data={"mt-bench": str(DEMO_DATA / "mt_bench"), "arena-hard": str(DEMO_DATA / "arena_hard")},
                    baseline={"arena-hard": "demo-baseline"})
    killer = threading.Thread(target=kill)
    killer.start()
    try:
        with RunStore(tmp_path / "runs.db") as st:
            result = run(cfg, st)
            judgments = st.judgments()
    finally:
        killer.join(timeout=30)
        for s in servers:
            s.stop()
    assert not killer.is_alive() and victim.chat_requests()  # the victim served some requests, then died
    assert sum(len(s.chat_requests()) for s in servers[:2]) > others_at_kill[0]  # ... and the run went on without it
    assert result.complete, [r.incomplete for r in result.reports]
    keys = [j.key for j in judgments]
    assert len(keys) == len(set(keys)) and all(not j.failed for j in judgments)
    counts = {r.benchmark: r.counts for r in result.reports}
    assert counts["mt-bench"]["judged"] == 8 and counts["arena-hard"]["judged"] == 3  # 4 questions x 2 turns; 3
    # each judge prompt was answered once over all three servers, the killed one included
    answered = Counter(r.prompt_hash for s in servers for r in s.chat_requests() if r.status == 200)
    assert max(answered.values()) == 1
    with RunStore(tmp_path / "runs.db", readonly=True) as st:
        assert len(st.answers(model=result.spec.model)) == 4 + 3  # every answer stored once too


@needs_ray
def test_backends_that_hold_a_model_here_stay_local():
    local = ScriptedBackend("echo")
    assert distribute(local, "ray") is local
    from lioneval.backends.fanout import FanoutBackend

    assert isinstance(distribute(FanoutBackend("m", "http://127.0.0.1:9/v1"), "ray"), RayBackend)


def test_an_unknown_executor_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        RunConfig(policy="scripted:echo", judge="scripted:fair-judge", executor="dask")
