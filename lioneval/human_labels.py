"""Human preference labels in FastChat's format, stored as the pairwise judgments of a human judge.

The MT-Bench paper ("Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", Zheng et al., 2023) published its
expert and author votes as the ``mt_bench_human_judgments`` dataset: one record per vote with ``question_id``,
``model_a``, ``model_b``, ``winner`` ("model_a", "model_b", "tie" or "tie (bothbad)"), ``judge`` (the annotator,
e.g. "expert_0", "author_2"), ``turn`` and the two conversations. Each vote becomes a pairwise
:class:`~lioneval.types.Judgment` of the judge ``human`` (or the id given) on ``model_a`` against ``model_b``: value
1 when model_a won, 0 when model_b won, 0.5 for either tie. The annotator and the verdict as written stay in
``meta``, and the annotator is part of the record's key, so every annotator's vote on an item is kept and the same
file imported twice is stored once.

A judge id is a human judge's when it is ``human`` or starts with ``human:`` (:func:`is_human`): the dashboard's
judge report card compares every other judge with their votes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lioneval.benchmarks.base import ImportBundle, build, json_id, read_jsonl
from lioneval.errors import DataError
from lioneval.registry import BENCHMARKS
from lioneval.store import RunStore
from lioneval.types import Judgment, content_hash

__all__ = ["HUMAN", "FORMAT", "VERDICTS", "is_human", "load_fastchat_human", "store_votes"]

HUMAN = "human"
FORMAT = "fastchat-human"
# the verdict as written -> model_a's share of the win
VERDICTS = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


def is_human(judge: str) -> bool:
    """Whether a judge id names human annotators (``human`` or ``human:<group>``)."""
    return judge == HUMAN or judge.startswith(HUMAN + ":")


def _records(path: Path, bundle: ImportBundle) -> Iterator[tuple[str, Any]]:
    """(location, record) of a JSONL file, or of a JSON file holding a list of records (optionally under a split
    name such as ``{"human": [...]}``, as the dataset's JSON export is laid out)."""
    try:
        with path.open("rb") as f:
            first = f.readline().lstrip(b"\xef\xbb\xbf \t\r\n")
            while not first and f.peek(1):
                first = f.readline().strip()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}", fix="pass a readable FastChat human-judgment file") from e
    if not first.startswith(b"["):
        try:
            json.loads(first)
            whole = False
        except ValueError:  # a pretty-printed JSON object: its first line does not close it
            whole = first.startswith(b"{")
        if not whole:
            yield from read_jsonl(path, bundle)
            return
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is neither JSONL nor a JSON list of votes ({e})",
                        fix="pass the human judgments as JSONL (one vote per line) or a JSON list, saved as UTF-8"
                        ) from e
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        obj = lists[0] if len(lists) == 1 else None
    if not isinstance(obj, list):
        raise DataError(f"{path} holds no list of votes",
                        fix="pass the human judgments as JSONL (one vote per line) or a JSON list")
    for i, rec in enumerate(obj, 1):
        yield f"{path.name}[{i}]", rec


def load_fastchat_human(path: str | Path, bench: str, *, judge: str = HUMAN) -> ImportBundle:
    """Votes in FastChat's human-judgment format as pairwise judgments of ``judge`` on benchmark ``bench``.

    A vote without question, models, turn or a known winner is skipped and counted; a vote of the same annotator on
    the same item with the same conversations, repeated in the file, is kept once per repetition.
    """
    BENCHMARKS.get(bench)  # an unknown name says "did you mean"
    if not is_human(judge):
        raise DataError(f"judge id {judge!r} does not name human annotators",
                        fix=f"use {HUMAN!r} or {HUMAN + ':<group>'!r} (e.g. {HUMAN + ':experts'!r})")
    path = Path(path)
    bundle = ImportBundle()
    seen: Counter = Counter()
    for where, obj in _records(path, bundle):
        if not isinstance(obj, dict):
            bundle.skip("vote is not a JSON object", where)
            continue
        qid, a, b, turn = json_id(obj.get("question_id")), obj.get("model_a"), obj.get("model_b"), obj.get("turn", 1)
        winner, annotator = obj.get("winner"), obj.get("judge")
        if qid is None or not isinstance(a, str) or not a or not isinstance(b, str) or not b or a == b:
            bundle.skip("vote without question_id or two different models", where)
            continue
        if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
            bundle.skip("vote whose turn is not a positive integer", where)
            continue
        if winner not in VERDICTS:
            bundle.skip(f"vote whose winner is not one of {', '.join(VERDICTS)}", where)
            continue
        if not isinstance(annotator, str) or not annotator:
            bundle.skip("vote without an annotator name (judge)", where)
            continue
        try:
            convs = content_hash([obj.get("conversation_a"), obj.get("conversation_b")])
        except ValueError:
            bundle.skip("vote with a NaN or infinite number in its conversations", where)
            continue
        item = (annotator, qid, a, b, turn, convs)
        seen[item] += 1
        inputs = content_hash({"format": FORMAT, "annotator": annotator, "conversations": convs,
                               "winner": winner, "repeat": seen[item]})
        judgment = build(bundle, "vote", where, Judgment, question_id=qid, benchmark=bench, judge=judge, model=a,
                         kind="pairwise", turn=turn, baseline=b, value=VERDICTS[winner], inputs=inputs,
                         meta={"annotator": annotator, "winner": winner, "source": FORMAT})
        if judgment is not None:
            bundle.judgments.append(judgment)
    if not bundle.judgments:  # a file that gives no vote is an error (exit 2), not an import of nothing
        why = f": every record was skipped ({bundle.why_skipped()})" if bundle.skipped else " (it is empty)"
        raise DataError(f"no human votes in {path}{why}",
                        fix="pass FastChat's human judgments (question_id, model_a, model_b, winner, judge, turn)")
    return bundle


def store_votes(store: RunStore, bundle: ImportBundle) -> dict[str, Any]:
    """Store loaded votes; returns what was read, added (new rows: the same vote imported again adds none) and
    skipped, with the warnings and the number of annotators."""
    added = store.put_judgments(bundle.judgments)
    annotators = {str(j.meta.get("annotator")) for j in bundle.judgments}
    return {"read": {"judgments": len(bundle.judgments)}, "added": {"judgments": added},
            "skipped": dict(bundle.skipped), "warnings": bundle.warnings, "annotators": len(annotators)}
