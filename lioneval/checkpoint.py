"""Checkpoint identity: where it came from (stage, step) and what it is (a hash of its weights).

Two runs of the same weights share answers, whatever the directory is called; a retrained checkpoint at the same
path gets new ones. The hash covers the weight index (or, without one, the weight files' names and sizes plus their
first and last megabyte): cheap on a 70B checkpoint, and any retraining changes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from lioneval.errors import LionEvalError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_STAGE_STEP = re.compile(r"^(?P<stage>.+?)[-_]step[-_]?(?P<step>\d+)$")
_HF_CHECKPOINT = re.compile(r"^checkpoint-(?P<step>\d+)$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    stage: str | None
    step: int | None
    weights_hash: str

    @property
    def model_id(self) -> str:
        name = Path(self.path).name if not self.path.endswith(".gguf") else Path(self.path).stem
        return f"{name}@{self.weights_hash[:8]}"


# What a trainer saves beside the weights: its state changes while a checkpoint is written, the model does not.
TRAINER_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin")


def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
                  and p.name not in TRAINER_FILES and not p.name.startswith("rng_state"))


ADAPTER_CONFIG = "adapter_config.json"


def adapter_base(path: str | Path) -> Path | None:
    """The checkpoint a PEFT adapter checkpoint applies to (its ``base_model_name_or_path``), or None when ``path``
    is not an adapter. A relative base is read from the adapter's folder first, then from the working directory.
    The base may itself be an adapter: stages trained with LoRA chain their checkpoints that way."""
    path = Path(path)
    config = path / ADAPTER_CONFIG
    if not path.is_dir() or not config.is_file():
        return None
    try:
        base = json.loads(config.read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as e:
        raise LionEvalError(f"cannot read {config}: {e}", fix="check the adapter checkpoint is complete") from e
    if not base:
        raise LionEvalError(f"the adapter {path} does not say which model it applies to",
                            fix=f"set base_model_name_or_path in {config} to the base checkpoint's folder")
    for candidate in (path / base, Path(base)):
        if candidate.exists():
            return candidate
    raise LionEvalError(f"the base model {base!r} of the adapter {path} does not exist",
                        fix=f"restore it, or set base_model_name_or_path in {config} to where it is now")


def weights_hash(path: str | Path) -> str:
    """A hash of the weights; an adapter's covers its base's weights and its adapter settings as well."""
    path = Path(path)
    h = hashlib.sha256()
    base = adapter_base(path)
    if base is not None:
        settings = json.loads((path / ADAPTER_CONFIG).read_text())
        settings.pop("base_model_name_or_path", None)  # where the base lies is no part of what the weights are
        h.update(weights_hash(base).encode())
        h.update(json.dumps(settings, sort_keys=True).encode())
    index = sorted(path.glob("*.index.json")) if path.is_dir() else []
    files = _weight_files(path)
    if not files:
        raise LionEvalError(
            f"{path} holds no model weights ({', '.join(WEIGHT_SUFFIXES)})",
            fix="pass a checkpoint directory written by save_pretrained or a trainer, or a .gguf file",
        )
    try:
        for f in index:
            h.update(f.read_bytes())
        for f in files:
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(_CHUNK))
                if size > 2 * _CHUNK:
                    fh.seek(-_CHUNK, 2)
                    h.update(fh.read(_CHUNK))
    except OSError as e:
        raise LionEvalError(f"cannot read the weights of {path}: {e.filename or path}: {e.strerror}",
                            fix="check the checkpoint's files are readable (permissions, a finished download)") from e
    return h.hexdigest()[:16]


def identify(path: str | Path) -> CheckpointInfo:
    """Stage and step from ``<stage>-step<N>`` or ``checkpoint-<N>`` names and trainer_state.json; the weights hash."""
    p = Path(path)
    if not p.exists():
        raise LionEvalError(f"checkpoint {p} does not exist", fix="check the path (e.g. out/dpo-step2000)")
    if p.is_dir() and not (p / "config.json").is_file() and not _weight_files(p):
        raise LionEvalError(
            f"{p} is not a model checkpoint (no config.json, no weight files)",
            fix="pass the directory that holds config.json and the weights",
        )
    name = p.stem if p.is_file() else p.name
    stage = step = None
    if m := _STAGE_STEP.match(name):
        stage, step = m["stage"], int(m["step"])
    elif m := _HF_CHECKPOINT.match(name):
        step = int(m["step"])
        stage = p.parent.name.split("-step")[0] if p.parent.name else None
    state = p / "trainer_state.json" if p.is_dir() else None
    if state is not None and state.is_file():
        try:
            step = int(json.loads(state.read_text()).get("global_step", step))
        except (ValueError, TypeError, json.JSONDecodeError):
            pass
    return CheckpointInfo(path=str(p), stage=stage, step=step, weights_hash=weights_hash(p))
