"""Scoring on several threads gives what one thread gives, to the bit: the LC fits and bootstraps of many models, and
the AlpacaEval leaderboard read from a store (whose answers are read on a connection of their own meanwhile)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from lioneval.benchmarks.alpaca_eval import AlpacaEval, question_id
from lioneval.cli import main as lioneval
from lioneval.errors import ConfigError, LionEvalError
from lioneval.leaderboard import leaderboard
from lioneval.stats import alpaca, workers
from lioneval.stats.alpaca import GamedRows, LCRows, length_controlled_win_rates
from lioneval.stats.workers import ENV, MAX_WORKERS, Pool, worker_count
from lioneval.store import RunStore
from lioneval.types import Answer, Game, Judgment, Question

FIX = Path(__file__).parent / "fixtures" / "alpaca_eval"


@pytest.fixture(autouse=True)
def _empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv(ENV, raising=False)


def _models(n_models: int, n: int, seed: int = 0) -> tuple[list[LCRows], GamedRows]:
    """Models of different skill and verbosity on the same n instructions, and gamed-baseline rows."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 0.8, n)
    len_ref = rng.lognormal(6.5, 0.4, n).round()
    gamed_delta = np.r_[len_ref - 1.6 * len_ref, len_ref - 0.3 * len_ref]
    sd = gamed_delta.std()
    gamed = GamedRows(gamed_delta / sd, np.r_[difficulty, difficulty],
                      1 / (1 + np.exp(1.5 * np.tanh(gamed_delta / sd) - 0.5 * np.r_[difficulty, difficulty])),
                      np.r_[np.arange(n), np.arange(n)])
    rows = []
    for m in range(n_models):
        len_m = (len_ref * rng.lognormal(0.2 * (m % 3 - 1), 0.4, n)).round()
        delta = len_ref - len_m
        logit = -1.0 + 0.4 * m - 1.5 * np.tanh(delta / delta.std()) + difficulty + rng.normal(0, 1, n)
        pref = 1 + 1 / (1 + np.exp(-logit))
        pref[m % n] = np.nan  # a failed annotation
        rows.append(LCRows(pref, len_ref, len_m, difficulty))
    return rows, gamed


def _bootstrap_threads(monkeypatch) -> set[str]:
    """The names of the threads the LC bootstraps run on from now on (filled as they run)."""
    seen: set[str] = set()
    original = alpaca._lc_bootstrap

    def spy(*args):
        seen.add(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(alpaca, "_lc_bootstrap", spy)
    return seen


def test_lc_fits_and_bootstraps_on_threads_equal_one_thread_to_the_bit(monkeypatch):
    rows, gamed = _models(5, 90)
    kw = {"chunk": 2, "rounds": 60, "seed": 4}  # three chunks of fits, then five bootstraps
    one = length_controlled_win_rates(rows, gamed, threads=1, **kw)
    seen = _bootstrap_threads(monkeypatch)
    many = length_controlled_win_rates(rows, gamed, threads=3, **kw)
    assert seen and all(name.startswith("lioneval-stats") for name in seen)  # off the calling thread
    assert [r.estimate for r in many] == [r.estimate for r in one]
    for a, b in zip(one, many, strict=True):
        assert a.coef == b.coef and a.C == b.C
        assert a.boot is not None and b.boot is not None and a.boot.tobytes() == b.boot.tobytes()
        assert a.cv_loss.tobytes() == b.cv_loss.tobytes() and a.predicted.tobytes() == b.predicted.tobytes()
    assert many[0].estimate.ci_low is not None


def test_an_error_in_a_thread_is_raised_to_the_caller():
    rows, gamed = _models(3, 60)
    bad = LCRows(np.full(60, np.nan), rows[0].len_baseline, rows[0].len_model, rows[0].difficulty)
    for threads in (1, 2):  # the model in the second chunk has no usable row and no gamed rows to go with
        with pytest.raises(ValueError, match="cannot be split into 5 folds"):
            length_controlled_win_rates([rows[0], bad], None, chunk=1, threads=threads)


def test_worker_count_follows_the_option_the_environment_and_the_cpus(monkeypatch):
    assert worker_count(1, tasks=10) == 1
    assert worker_count(3, tasks=2) == 2
    assert 1 <= worker_count() <= MAX_WORKERS
    monkeypatch.setattr(workers, "_usable_cpus", lambda: 1)
    assert worker_count(tasks=10) == 1
    monkeypatch.setattr(workers, "_usable_cpus", lambda: 64)
    assert worker_count(tasks=10) == MAX_WORKERS and worker_count(tasks=0) == 1
    monkeypatch.setenv(ENV, "2")
    assert worker_count(tasks=10) == 2 and worker_count(5, tasks=10) == 5
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ConfigError, match=f"{ENV}={bad!r} is not a number of threads"):
            worker_count()
    with pytest.raises(ConfigError, match="threads=0"):
        worker_count(0)


def test_a_pool_of_one_runs_on_the_calling_thread_and_errors_come_back_through_the_future():
    with Pool(1) as pool:
        assert pool.submit(threading.current_thread).result() is threading.current_thread()
        failed = pool.submit(int, "x")
        assert [pool.submit(pow, a, b).result() for a, b in ((2, 3), (3, 2))] == [8, 9]
    with pytest.raises(ValueError):
        failed.result()
    with Pool(2) as pool:
        assert pool.submit(threading.current_thread).result() is not threading.current_thread()
        with pytest.raises(ValueError):
            pool.submit(int, "x").result()


def _fill(store: RunStore, duplicate: bool) -> list[Question]:
    """Three models judged on the fixture's six instructions, with eval indexes (as lioneval's own judgments);
    ``duplicate``: one model judged twice on one question, differently."""
    outputs = json.loads((FIX / "model_outputs.json").read_text())
    questions, answers, judgments = [], [], []
    rng = np.random.default_rng(1)
    for i, o in enumerate(outputs):
        qid = question_id(o["instruction"])
        questions.append(Question(id=qid, benchmark="alpaca-eval", turns=[o["instruction"]], meta={"eval_idx": i}))
        answers.append(Answer(question_id=qid, benchmark="alpaca-eval", model="base", turns=["x" * (50 + 9 * i)]))
        for m in range(3):
            answers.append(Answer(question_id=qid, benchmark="alpaca-eval", model=f"m{m}",
                                  turns=["y" * int(20 + 30 * m + rng.integers(40))]))
            value = float(rng.random())
            judgments.append(Judgment(question_id=qid, benchmark="alpaca-eval", judge="j", model=f"m{m}",
                                      kind="pairwise", baseline="base", value=value, games=[Game(value=value)],
                                      meta={"eval_idx": i}))
            if duplicate and m == 1 and i == 2:
                again = {"value": 0.25, "raw": "again", "inputs": "another prompt"}
                judgments.append(judgments[-1].model_copy(update=again))
    store.put_answers(answers)
    store.put_judgments(judgments)
    return questions


@pytest.mark.parametrize("duplicate", [False, True])
def test_the_stored_leaderboard_is_the_same_on_one_thread_and_on_several(tmp_path, monkeypatch, duplicate):
    with RunStore(tmp_path / "s.db") as st:
        questions = _fill(st, duplicate)
    board = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(ENV, threads)
        with RunStore(tmp_path / "s.db", readonly=True) as st:
            board[threads] = leaderboard(st, "alpaca-eval", rounds=30, seed=2, settings={"lc_data": str(FIX / "lc")})
    assert json.dumps(board["1"]) == json.dumps(board["2"])
    assert {r["model"]: r["counts"]["rows"] for r in board["1"]} == {"m0": 6, "m1": 7 if duplicate else 6, "m2": 6}
    # the same numbers as the summary of the validated records, duplicates sorted by their content
    with RunStore(tmp_path / "s.db", readonly=True) as st:
        summary = AlpacaEval(lc_data=FIX / "lc", baseline="base").summarize(
            list(reversed(st.judgments(benchmark="alpaca-eval"))), st.answers(benchmark="alpaca-eval"),
            questions=questions, rounds=30, seed=2)
    for row in board["1"]:
        assert row["win_rate"]["value"] == summary[row["model"]].metrics["win_rate"].value
        assert row["length_controlled_winrate"]["value"] == summary[row["model"]].metrics[
            "length_controlled_winrate"].value


def test_on_postgresql_the_answers_are_read_on_a_connection_of_their_own(pg_server, monkeypatch):
    url = pg_server.new_database()
    with RunStore(url) as st:
        _fill(st, True)
    board = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(ENV, threads)
        with RunStore(url, readonly=True) as st:
            board[threads] = leaderboard(st, "alpaca-eval", rounds=30, seed=2, settings={"lc_data": str(FIX / "lc")})
    assert json.dumps(board["1"]) == json.dumps(board["2"])
    assert {r["model"]: r["avg_chars"] is not None for r in board["2"]} == {"m0": True, "m1": True, "m2": True}


def test_a_bad_thread_setting_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    with RunStore(tmp_path / "s.db") as st:
        _fill(st, False)
    monkeypatch.setenv(ENV, "many")
    code = lioneval(["--store", str(tmp_path / "s.db"), "leaderboard", "--bench", "alpaca-eval", "--rounds", "20"])
    err = capsys.readouterr().err
    assert code == 2 and f"{ENV}='many' is not a number of threads" in err and "Traceback" not in err


def test_the_eval_order_is_that_of_the_full_sort_key_with_ties_and_unknown_indexes():
    from lioneval.benchmarks.alpaca_eval import _Row

    bench = AlpacaEval(FIX / "model_outputs.json")
    known = [q.id for q in bench.questions()]
    rng = np.random.default_rng(3)
    for trial in range(20):
        rows = []
        for _ in range(30):
            qid = str(rng.choice(known + ["not-in-the-eval-set"]))
            idx = None if rng.random() < 0.3 else int(rng.integers(4))
            value = None if rng.random() < 0.2 else float(rng.integers(3)) / 2
            rows.append(_Row.make("m", qid, "j", value, str(rng.integers(2)), "", None,
                                  {} if idx is None else {"eval_idx": idx}))
        if trial % 2:  # every row with an index, no ties
            rows = [r._replace(eval_idx=i) for i, r in enumerate(rows)]
        rows.reverse()
        ordered, idx = bench._in_eval_order(rows)
        assert ordered == sorted(rows, key=bench._order_key)
        assert idx == [bench._eval_idx(r) for r in ordered]


def test_without_a_way_to_hold_blas_to_one_thread_the_models_run_on_the_calling_thread(monkeypatch):
    rows, gamed = _models(3, 60)
    seen = _bootstrap_threads(monkeypatch)
    monkeypatch.setattr(alpaca, "_one_blas_thread", lambda: None)  # as without threadpoolctl
    res = length_controlled_win_rates(rows, gamed, chunk=1, rounds=40, threads=4)
    assert seen == {threading.current_thread().name} and len(res) == 3


def test_the_cycle_collector_runs_again_after_a_leaderboard(tmp_path):
    import gc

    with RunStore(tmp_path / "s.db") as st:
        _fill(st, False)
    settings = {"lc_data": str(FIX / "lc")}
    with RunStore(tmp_path / "s.db", readonly=True) as st:
        assert gc.isenabled()
        leaderboard(st, "alpaca-eval", rounds=20, settings=settings)
        assert gc.isenabled()
        gc.disable()
        try:
            leaderboard(st, "alpaca-eval", rounds=20, settings=settings)
            assert not gc.isenabled()  # left as the caller had it
        finally:
            gc.enable()
        with pytest.raises(LionEvalError):
            leaderboard(st, "alpaca-eval", rounds=20, settings={"lc_data": str(tmp_path / "missing")})
        assert gc.isenabled()


def test_rows_handed_over_one_by_one_give_the_same_lc():
    rows, gamed = _models(5, 80)
    kw = {"chunk": 2, "rounds": 30, "seed": 1, "threads": 2}
    listed = length_controlled_win_rates(rows, gamed, **kw)
    handed: list[int] = []

    def one_by_one():
        for i, r in enumerate(rows):
            handed.append(i)
            yield r

    streamed = length_controlled_win_rates(one_by_one(), gamed, **kw)
    assert handed == list(range(5))
    assert [r.estimate for r in streamed] == [r.estimate for r in listed]
    assert length_controlled_win_rates(iter([]), gamed) == []
    mixed = [rows[0], LCRows(rows[1].preference, rows[1].len_baseline, rows[1].len_model)]
    with pytest.raises(ValueError, match="difficulty of every model's rows, or of none"):
        length_controlled_win_rates(iter(mixed), None)
