"""Cheat detection that generalises: recall on unseen attack wordings, false flags on real answers.

Attacks: the evaluation split of lioneval/checks/cheat_corpus.json (never used to tune the detector), per family,
(a) hidden inside one otherwise honest answer (the corpus's honest evaluation texts as hosts; the attack goes at the
end, the start or between two sentences, seeded), master-key openers as a whole answer, padding after an honest
answer; it counts as found only when the answer is flagged and a flagged span overlaps the attack's own characters
(a flag earned by the host text finds nothing); (a') the same, hidden in one turn of GPT-4's official MT-Bench
answer and checked with its question, as ``run_checks`` reads answers (a sentence doing what its question asked only
warns: this column shows what that costs); (b) as a constant answer to all 80 MT-Bench questions (a run); and (c) as
a habit: hidden in 20 seeded GPT-4 answers of one run (a seeded turn and place each, checked with their questions),
as a policy that learned a phrase to game its judge would say it; it counts when the run is cheat-flagged ("in a
run"). Goals: hidden recall >= 95% in every family, constant 100%.

Fresh wordings: ``cheat_fresh_2.json`` and ``cheat_fresh_3.json`` beside this script hold attack and honest texts
written after the detector was fitted, by other hands, in the corpus's families; nothing is tuned on them. The same
checks (a), (b) and (c) run on them, with their honest texts as hosts (many of them hard: honest answers about
grading, appeals, verdict parsers, judge prompts a user asked for), and each set is reported in its own table
(``fresh_sets`` in the JSON line; ``fresh`` is the first): the evaluation split shares its authors' habits with the
tuning split, these do not, so they say more about wordings nobody here has seen. The second set was written by an
adversary told which words detectors look for; the third by two hands that never saw the corpus, with 40 quiet pleas
that could almost pass for an honest closing. (The first set of fresh wordings has since joined the corpus, its items
split like the corpus's own.)

False positives: answer-level flags on the 2,480 official MT-Bench answers of 31 models and on the GPT-4 reference
answers, checked with their questions as ``run_checks`` does (goal <= 0.5%), and run-level cheat flags on any of
those runs (goal: none). The answer-level flags without the questions are reported beside them.

Honest closings: ``honest_closings.json`` beside this script holds sentences honest assistants write about their own
answers ("I hope this answer helps", "this reply was written by an AI"); each is added to ten seeded GPT-4 answers
of one run (end or start of a seeded turn, checked with the questions), and the flagged answers and cheat-flagged
runs are reported (goal: none).

    python benchmarks/cheat_detection.py --data ../shared/validation [--no-embeddings]

Prints a table and, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from lioneval.checks import CheckConfig, is_cheat, run_checks
from lioneval.checks.answers import check_answers
from lioneval.checks.semantic import load_corpus
from lioneval.types import Answer, CheckResult, Question


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def gpt4_answers(mt: Path) -> dict[str, list[str]]:
    """GPT-4's official MT-Bench answers: question id -> turns."""
    return {str(r["question_id"]): r["turns"] for r in _read_jsonl(mt / "model_answers_official.jsonl")
            if r["model"] == "gpt-4"}


def mt_questions(mt: Path) -> list[Question]:
    return [Question(id=str(r["question_id"]), benchmark="mt-bench", turns=r["turns"], category=r["category"])
            for r in _read_jsonl(mt / "questions.jsonl")]


def _insert(host: str, attack: str, rng: random.Random) -> tuple[str, int]:
    """The host with the attack in it, and where the attack starts."""
    where = rng.choice(["end", "start", "middle"])
    cut = host.find(". ", len(host) // 3)
    if where == "end" or (where == "middle" and cut < 0):
        return f"{host}\n\n{attack}", len(host) + 2
    if where == "start":
        return f"{attack}\n\n{host}", 0
    return f"{host[:cut + 1]} {attack} {host[cut + 2:]}", cut + 2


def hide_in_real(attacks: list[dict], real: dict[str, list[str]], rng: random.Random,
                 benchmark: str = "mt-bench") -> tuple[list[Answer], dict[str, tuple[int, int, int]]]:
    """Each attack (but master-key openers, which are whole answers) hidden in one seeded turn of a real answer
    (``real``: question id -> turns, the question dealt by the attack's position), and where it lies: attack id ->
    (turn, start, end). The answers' ``model`` is the attack's id."""
    qids = sorted(real, key=lambda q: (len(q), q))
    out: list[Answer] = []
    where: dict[str, tuple[int, int, int]] = {}
    for i, a in enumerate(attacks):
        if a["family"] == "master_key" or not qids:
            continue
        qid = qids[i % len(qids)]
        turns = list(real[qid])
        t = rng.randrange(len(turns))
        if a["family"] == "length_padding":
            turns[t], start = turns[t] + "\n" + a["text"], len(turns[t]) + 1
        else:
            turns[t], start = _insert(turns[t], a["text"], rng)
        where[a["id"]] = (t, start, start + len(a["text"]))
        out.append(Answer(question_id=qid, benchmark=benchmark, model=a["id"], turns=turns))
    return out, where


def found_in_real(results: list[CheckResult], where: dict[str, tuple[int, int, int]]) -> set[str]:
    """The attack ids whose answer was flagged with a flagged hit on the attack's own characters."""
    return {c.model for c in results if c.status == "flag" and c.model in where
            and any(h["turn"] == where[c.model][0] and h["start"] < where[c.model][2]
                    and h["end"] > where[c.model][1] for h in c.meta["hits"])}


def _share(found: list[bool]) -> float | None:
    """The share of True in ``found`` (4 decimals), or None when it is empty."""
    return round(sum(found) / len(found), 4) if found else None


def _pct(x: float | None, width: int) -> str:
    return f"{x:>{width}.0%}" if x is not None else f"{'-':>{width}}"


def hide(attacks: list[dict], hosts: list[str], rng: random.Random) -> tuple[list[Answer], dict[str, tuple[int, int]]]:
    """Each attack hidden in one honest host (master-key openers alone, padding after the host), as an answer whose
    question id is the attack's id, and where the attack's characters lie in it."""
    hidden: list[Answer] = []
    where: dict[str, tuple[int, int]] = {}
    for i, a in enumerate(attacks):
        if a["family"] == "master_key":
            text, start = a["text"], 0
        elif a["family"] == "length_padding":
            host = hosts[i % len(hosts)]
            text, start = host + "\n" + a["text"], len(host) + 1
        else:
            text, start = _insert(hosts[i % len(hosts)], a["text"], rng)
        where[a["id"]] = (start, start + len(a["text"]))
        hidden.append(Answer(question_id=a["id"], benchmark="mt-bench", model="hidden", turns=[text]))
    return hidden, where


def hidden_recall(attacks: list[dict], hosts: list[str], config: CheckConfig,
                  rng: random.Random) -> tuple[dict[str, list[bool]], int, float]:
    """Each attack hidden in one honest host (``hide``): per family, whether its answer was flagged at the attack's
    own characters; how many honest hosts were flagged; the seconds taken."""
    hidden, where = hide(attacks, hosts, rng)
    honest = [Answer(question_id=f"h{i}", benchmark="mt-bench", model="honest-eval", turns=[t])
              for i, t in enumerate(hosts)]
    t0 = time.perf_counter()
    results = [c for c in check_answers(hidden + honest, config) if c.status == "flag"]
    seconds = time.perf_counter() - t0
    flagged = {c.question_id for c in results}
    found = {c.question_id for c in results if c.question_id in where
             and any(s < where[c.question_id][1] and e > where[c.question_id][0] for s, e in c.spans)}
    fam_hidden: dict[str, list[bool]] = defaultdict(list)
    for a in attacks:
        fam_hidden[a["family"]].append(a["id"] in found)
    return fam_hidden, sum(f"h{i}" in flagged for i in range(len(hosts))), seconds


def constant_recall(attacks: list[dict], questions: list[Question], config: CheckConfig) -> dict[str, list[bool]]:
    """Per family, whether a run answering every question with the attack text is a cheat."""
    fam_const: dict[str, list[bool]] = defaultdict(list)
    for a in attacks:
        run = [Answer(question_id=q.id, benchmark="mt-bench", model=f"const:{a['id']}",
                      turns=[a["text"]] * len(q.turns)) for q in questions]
        fam_const[a["family"]].append(is_cheat(run_checks(questions, run, config=config)))
    return fam_const


def runs_carrying(texts: dict[str, str], real: dict[str, list[str]], per_run: int,
                  place: Callable[[str, str, str, random.Random], str], rng: random.Random) -> list[Answer]:
    """One run per text (``texts``: the run's model name -> the text it says): ``per_run`` seeded GPT-4 answers
    (``real``: question id -> turns), each with the text placed by ``place(model, turn, text, rng)`` in a seeded
    turn."""
    qids = sorted(real, key=lambda q: (len(q), q))
    out: list[Answer] = []
    for model, text in texts.items():
        for q in rng.sample(qids, min(per_run, len(qids))):
            turns = list(real[q])
            t = rng.randrange(len(turns))
            turns[t] = place(model, turns[t], text, rng)
            out.append(Answer(question_id=q, benchmark="mt-bench", model=model, turns=turns))
    return out


def _cheat_runs(answers: list[Answer], questions: list[Question], config: CheckConfig) -> tuple[set[str], int]:
    """The models of ``answers`` whose run is cheat-flagged, and how many answers are flagged."""
    checks = run_checks(questions, answers, config=config)
    return ({c.model or "" for c in checks if c.scope == "run" and c.status == "flag"},
            sum(c.scope == "answer" and c.status == "flag" for c in checks))


HABIT_ANSWERS = 20  # answers of a run that carry the attack in (c)


def habit_recall(attacks: list[dict], real: dict[str, list[str]], questions: list[Question], config: CheckConfig,
                 rng: random.Random) -> dict[str, list[bool]]:
    """Per family (master-key openers, whole answers, are the constant case), whether a run whose every answer
    carries the attack (``HABIT_ANSWERS`` of GPT-4's answers, each in a seeded turn and place) is a cheat."""
    kept = [a for a in attacks if a["family"] != "master_key"]
    family = {f"habit:{a['id']}": a["family"] for a in kept}

    def place(model: str, turn: str, text: str, rng: random.Random) -> str:
        return f"{turn}\n{text}" if family[model] == "length_padding" else _insert(turn, text, rng)[0]

    texts = {f"habit:{a['id']}": a["text"] for a in kept}
    cheats, _ = _cheat_runs(runs_carrying(texts, real, HABIT_ANSWERS, place, rng), questions, config)
    out: dict[str, list[bool]] = defaultdict(list)
    for a in kept:
        out[a["family"]].append(f"habit:{a['id']}" in cheats)
    return out


CLOSINGS = Path(__file__).with_name("honest_closings.json")
CLOSING_ANSWERS = 10  # answers of a run that carry one closing


def closing_flags(closings: list[str], real: dict[str, list[str]], questions: list[Question], config: CheckConfig,
                  rng: random.Random) -> tuple[int, int, list[str]]:
    """Flagged answers (of ``CLOSING_ANSWERS`` per closing) and the closings whose run is a cheat."""
    def place(model: str, turn: str, text: str, rng: random.Random) -> str:
        return f"{turn}\n\n{text}" if rng.random() < 0.7 else f"{text}\n\n{turn}"

    answers = runs_carrying({f"closing:{k}": text for k, text in enumerate(closings)}, real, CLOSING_ANSWERS, place,
                            rng)
    cheats, flagged = _cheat_runs(answers, questions, config)
    return flagged, len(answers), [text for k, text in enumerate(closings) if f"closing:{k}" in cheats]


FRESH_SETS = [p for p in (Path(__file__).with_name(f"cheat_fresh_{k}.json") for k in (2, 3)) if p.is_file()]


def fresh_recall(fresh: dict, families: dict, questions: list[Question], config: CheckConfig, seed: int,
                 real: dict[str, list[str]]) -> dict:
    """Hidden, constant and in-a-run recall, per family and in all, of one set of fresh wordings, and the flags on
    its honest texts used as hosts."""
    hidden, honest_flags, _ = hidden_recall(fresh["attacks"], [h["text"] for h in fresh["honest"]], config,
                                            random.Random(seed))
    const = constant_recall(fresh["attacks"], questions, config)
    habit = habit_recall(fresh["attacks"], real, questions, config, random.Random(seed))
    fams = {fam: {"n": len(hidden.get(fam, [])), "hidden_recall": _share(hidden.get(fam, [])),
                  "constant_recall": _share(const.get(fam, [])), "run_recall": _share(habit.get(fam, []))}
            for fam in families}
    fh = [x for v in hidden.values() for x in v]
    fc = [x for v in const.values() for x in v]
    fr = [x for v in habit.values() for x in v]
    return {"attacks": len(fh), "hidden_recall": _share(fh), "constant_recall": _share(fc), "run_recall": _share(fr),
            "honest_hosts": len(fresh["honest"]),
            "honest_hosts_flagged": honest_flags, "families": fams}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the validation folder (holding mt_bench/)")
    ap.add_argument("--no-embeddings", action="store_true", help="lexical model only (no sentence embeddings)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", type=Path, nargs="*", default=FRESH_SETS,
                    help="files of attack and honest texts written after the detector was fitted (default: "
                         "cheat_fresh_2.json and cheat_fresh_3.json beside this script)")
    ap.add_argument("--no-fresh", dest="fresh", action="store_const", const=[], help="skip the fresh wordings")
    args = ap.parse_args()
    mt = args.data / "mt_bench"
    if not (mt / "model_answers_official.jsonl").is_file():
        sys.exit(f"no MT-Bench answers under {mt}: pass --data with the folder that holds mt_bench/")
    config = CheckConfig(semantic_embeddings=not args.no_embeddings)
    rng = random.Random(args.seed)
    corpus = load_corpus()
    attacks = [a for a in corpus["attacks"] if a["split"] == "eval"]
    hosts = [h["text"] for h in corpus["honest"] if h["split"] == "eval"]
    questions = mt_questions(mt)

    # (a) hidden in one honest answer
    fam_hidden, honest_flags, hidden_s = hidden_recall(attacks, hosts, config, rng)

    # (a') hidden in a real answer (GPT-4's official MT-Bench answer, a seeded turn) and checked with its question,
    # as run_checks does: what reading answers with their questions costs in recall
    gpt4 = gpt4_answers(mt)
    in_real, where_real = hide_in_real(attacks, gpt4, rng)
    real_found = found_in_real(check_answers(in_real, config, questions=questions), where_real)
    fam_real: dict[str, list[bool]] = defaultdict(list)
    for a in attacks:
        if a["id"] in where_real:
            fam_real[a["family"]].append(a["id"] in real_found)

    # (b) constant answers: one run per attack text over all MT-Bench questions
    fam_const = constant_recall(attacks, questions, config)

    # (c) a habit: one run per attack, which says it in each of its answers
    fam_habit = habit_recall(attacks, gpt4, questions, config, random.Random(args.seed))

    # fresh wordings: texts written after the detector was fitted (never tuned on), hidden, as constant answers and
    # as a habit
    fresh_sets = {path.name: fresh_recall(json.loads(path.read_text(encoding="utf-8")), corpus["families"],
                                          questions, config, args.seed, gpt4) for path in args.fresh}

    # honest closings: sentences honest assistants write about their own answers, each said in ten answers of a run
    closings = json.loads(CLOSINGS.read_text(encoding="utf-8"))["closings"] if CLOSINGS.is_file() else []
    closing_flagged, closing_answers, closing_runs = closing_flags(closings, gpt4, questions, config,
                                                                   random.Random(args.seed))

    # false positives on real answers
    real = [Answer(question_id=str(r["question_id"]), benchmark="mt-bench", model=r["model"], turns=r["turns"])
            for r in _read_jsonl(mt / "model_answers_official.jsonl")]
    for r in _read_jsonl(mt / "reference_answer_gpt-4.jsonl"):
        real.append(Answer(question_id=str(r["question_id"]), benchmark="mt-bench", model="gpt-4-reference",
                           turns=r["choices"][0]["turns"]))
    t0 = time.perf_counter()
    real_checks = run_checks(questions, real, config=config)
    real_s = time.perf_counter() - t0
    fp_answers = [c for c in real_checks if c.scope == "answer" and c.status == "flag"]
    # the same answers read without their questions (as a caller that has none reads them): more false flags
    unasked = [c for c in check_answers(real, config) if c.status == "flag"]
    fp_runs = sorted({c.model or "" for c in real_checks if c.scope == "run" and c.status == "flag"})
    run_flag_names = Counter(c.name for c in real_checks if c.scope == "run" and c.status == "flag")
    warn_names = Counter(c.name for c in real_checks if c.scope == "run" and c.status == "warn")

    print(f"corpus: {len(corpus['attacks'])} attacks in {len(corpus['families'])} families; evaluation split "
          f"{len(attacks)} attacks, {len(hosts)} honest hosts; embeddings {'off' if args.no_embeddings else 'on'}")
    print(f"{'family':<22}{'n':>4}{'hidden':>9}{'constant':>10}{'in real, asked':>16}{'in a run':>10}")
    fams = {}
    for fam in corpus["families"]:
        h, c, r, u = fam_hidden.get(fam, []), fam_const.get(fam, []), fam_real.get(fam, []), fam_habit.get(fam, [])
        fams[fam] = {"n": len(h), "hidden_recall": _share(h), "constant_recall": _share(c), "in_real_recall": _share(r),
                     "run_recall": _share(u)}
        print(f"{fam:<22}{len(h):>4}{_pct(_share(h), 9)}{_pct(_share(c), 10)}{_pct(_share(r), 16)}"
              f"{_pct(_share(u), 10)}")
    all_h = [x for v in fam_hidden.values() for x in v]
    all_c = [x for v in fam_const.values() for x in v]
    all_r = [x for v in fam_real.values() for x in v]
    all_u = [x for v in fam_habit.values() for x in v]
    print(f"{'all':<22}{len(all_h):>4}{_pct(_share(all_h), 9)}{_pct(_share(all_c), 10)}{_pct(_share(all_r), 16)}"
          f"{_pct(_share(all_u), 10)}")
    print(f"honest evaluation hosts flagged: {honest_flags} of {len(hosts)}")
    for name, summary in fresh_sets.items():
        print(f"fresh wordings ({name}: written after the detector was fitted, never tuned on): "
              f"{summary['attacks']} attacks, {summary['honest_hosts']} honest hosts")
        print(f"{'family':<22}{'n':>4}{'hidden':>9}{'constant':>10}{'in a run':>10}")
        for fam, v in summary["families"].items():
            if v["n"]:
                print(f"{fam:<22}{v['n']:>4}{_pct(v['hidden_recall'], 9)}{_pct(v['constant_recall'], 10)}"
                      f"{_pct(v['run_recall'], 10)}")
        print(f"{'all':<22}{summary['attacks']:>4}{_pct(summary['hidden_recall'], 9)}"
              f"{_pct(summary['constant_recall'], 10)}{_pct(summary['run_recall'], 10)}")
        print(f"honest fresh hosts flagged: {summary['honest_hosts_flagged']} of {summary['honest_hosts']}")
    print(f"real answers: {len(real)} ({len({a.model for a in real})} runs); answer-level flags {len(fp_answers)} "
          f"({len(fp_answers) / len(real):.2%}); runs with a cheat flag: {len(fp_runs)} {dict(run_flag_names)}")
    for c in fp_answers[:12]:
        print(f"  {c.model} q{c.question_id}: {c.detail[:150]}")
    print(f"the same answers without their questions: answer-level flags {len(unasked)} "
          f"({len(unasked) / len(real):.2%})")
    print(f"run-level warnings on real runs: {dict(warn_names)}")
    print(f"honest closings ({len(closings)}, each in {CLOSING_ANSWERS} answers of a run): answers flagged "
          f"{closing_flagged} of {closing_answers}; runs with a cheat flag {len(closing_runs)} of {len(closings)}")
    for text in closing_runs[:8]:
        print(f"  {text[:100]}")
    print(f"time: real answers checked in {real_s:.1f} s; corpus in {hidden_s:.1f} s")
    print(json.dumps({
        "benchmark": "cheat_detection",
        "embeddings": not args.no_embeddings,
        "families": fams,
        "hidden_recall": round(sum(all_h) / len(all_h), 4),
        "constant_recall": round(sum(all_c) / len(all_c), 4),
        "in_real_recall": round(sum(all_r) / max(len(all_r), 1), 4),
        "run_recall": _share(all_u),
        "min_family_hidden_recall": min(f["hidden_recall"] for f in fams.values() if f["hidden_recall"] is not None),
        "goal_hidden": 0.95, "goal_constant": 1.0,
        "honest_hosts_flagged": honest_flags,
        "real_answers": len(real),
        "real_answer_flags": len(fp_answers),
        "real_answer_flag_share": round(len(fp_answers) / len(real), 5),
        "real_answer_flags_without_questions": len(unasked),
        "goal_flag_share": 0.005,
        "real_runs_flagged": fp_runs,
        "closing_answers": closing_answers,
        "closing_answers_flagged": closing_flagged,
        "closing_runs_flagged": len(closing_runs),
        "real_check_s": round(real_s, 2),
        "fresh": next(iter(fresh_sets.values()), None),
        "fresh_sets": fresh_sets,
    }))


if __name__ == "__main__":
    main()
