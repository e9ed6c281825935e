"""Inputs of the training stages, small enough for a test: data files in each stage's format and a scripted judge.

:func:`write_stage_data` writes what the SFT, DPO and online-DPO (or rejection-sampling) stages read;
:func:`rating_by_length` answers a judge request of the scripted OpenAI-compatible server
(lioneval.testing.openai_server) with a rating in MT-Bench's verdict format that depends on the judged text, so
samples seldom tie. Neither needs torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PREFERENCES", "rating_by_length", "write_stage_data"]

# Pairs with an obvious preference (an answer over a bare "no"), as plain strings.
PREFERENCES: list[dict[str, Any]] = [
    {"prompt": f"question {i} about rain", "chosen": "the answer is 42 because of rain", "rejected": "no"}
    for i in range(4)
]


def write_stage_data(folder: str | Path, conversations: Sequence[list[dict[str, str]]], prompts: Sequence[str], *,
                     preferences: Sequence[dict[str, Any]] = ()) -> dict[str, Path]:
    """Write ``sft.jsonl`` (one ``{"messages": ...}`` per conversation), ``prefs.jsonl`` (:data:`PREFERENCES`, then
    ``preferences``) and ``prompts.txt`` (one prompt a line) into ``folder``; their paths by stage input name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"sft": folder / "sft.jsonl", "prefs": folder / "prefs.jsonl", "prompts": folder / "prompts.txt"}
    paths["sft"].write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations), encoding="utf-8")
    rows = [*PREFERENCES, *preferences]
    paths["prefs"].write_text("".join(json.dumps(p) + "\n" for p in rows), encoding="utf-8")
    paths["prompts"].write_text("".join(p + "\n" for p in prompts), encoding="utf-8")
    return paths


def rating_by_length(request: dict[str, Any]) -> str:
    """A scripted judge's reply: ``Rating: [[n]]``, n from 1 to 9 by the length of the last message it was sent."""
    return f"Rating: [[{1 + len(request['messages'][-1]['content']) % 9}]]"
