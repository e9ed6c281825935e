"""A saved checkpoint's ``trainer_state.json`` brought up to date with the evaluation of that checkpoint.

The trainer writes ``trainer_state.json`` into ``checkpoint-<N>`` before it calls ``on_save``, so a score computed in
``on_save`` (or later, in the background) would be missing from the state saved with the very checkpoint it scores,
and appear only in the next one. :func:`add_log_entry` appends the evaluation's log entry to the checkpoint's own
state file (atomically: a reader sees the old file or the new one, never half of one), so resuming from, or
inspecting, a checkpoint shows its own score.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("lioneval.train")

__all__ = ["STATE_FILE", "add_log_entry"]

STATE_FILE = "trainer_state.json"


def add_log_entry(checkpoint: str | Path, entry: dict[str, Any]) -> bool:
    """Append ``entry`` (a ``log_history`` item; its ``step`` becomes the checkpoint's own step) to the checkpoint's
    ``trainer_state.json`` unless it is there already; False when there is no state file (yet) to update."""
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        return False  # not saved yet (on_evaluate scores before the save): the trainer writes the entry itself
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        history = state.setdefault("log_history", [])
        # the step the other entries of this file use (a later round of online DPO keeps its round's own count)
        own = {**entry, "step": state.get("round_global_step", state.get("global_step", entry.get("step")))}
        if own in history:
            return False
        history.append(own)
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError) as e:  # the score is logged and stored either way: never end training for this
        log.warning("lioneval: cannot add the evaluation to %s: %s", path, e)
        return False
    return True
