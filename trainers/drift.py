"""Drift analysis of an evaluated checkpoint against its stage's reference (starting, usually SFT) model.

On the first ``prompts`` questions of the suite's first benchmark (first turns, rendered with the policy's chat
template):

* KL(policy || reference): ``samples`` answers per prompt sampled from the policy at temperature 1 with no top-k or
  top-p cut (so they are draws from the policy itself), at most ``max_new_tokens`` tokens each (through the
  end-of-turn token when the policy stops); each answer's token log-probabilities are summed under both models and
  their difference averaged (lioneval.stats.drift.kl_estimate: Student-t interval over prompts). The KL is that of
  answers truncated at ``max_new_tokens``.
* Length and near-copies: the policy's and the reference's greedy answers to the same prompts; lengths in tokens
  (without the end-of-turn token), near-copy share by character 5-gram Jaccard similarity at least
  ``near_copy_threshold``.

The result goes into the meta of every report of the evaluation (``meta["drift"]``, the report stored again), the
callback logs it as ``lioneval/drift/*`` and promotion may bound it (``max_kl``, ``max_drift_length_growth``). The
reference model and its greedy answers are loaded once per process. torch and transformers are imported on use.
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

from lioneval.errors import ConfigError, LionEvalError
from lioneval.pipeline import load_inputs
from lioneval.stats.drift import kl_estimate, length_stats, near_copy_share
from lioneval.store import RunStore
from lioneval.types import Report, content_hash

__all__ = ["DRIFT_LOGS", "add_drift", "analyze", "drift_exclusion", "drift_logs", "sequence_logps", "with_reference"]

# meta["drift"] path -> logged name (under lioneval/drift/)
DRIFT_LOGS = {
    ("kl", "value"): "kl", ("kl", "ci_low"): "kl_ci_low", ("kl", "ci_high"): "kl_ci_high",
    ("length", "mean"): "length_mean", ("length", "median"): "length_median", ("length", "p90"): "length_p90",
    ("length", "growth"): "length_growth", ("near_copy", "share"): "near_copy_share",
}

_REFERENCES: dict[tuple, tuple[Any, Any, list[tuple[list[int], str]]]] = {}


def _load(path: str) -> tuple[Any, Any]:
    from lioneval.trainers.models import load_policy

    model, tok = load_policy(path)
    return model.eval(), tok


def _prompt_ids(tok: Any, chat: list[dict[str, str]]) -> list[int]:
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _cut(ids: list[int], eos: int | None, keep_eos: bool) -> list[int]:
    if eos is not None and eos in ids:
        at = ids.index(eos)
        return ids[: at + 1] if keep_eos else ids[:at]
    return ids


def _generate(model: Any, tok: Any, prompt: list[int], *, n: int, sample: bool, max_new_tokens: int,
              seed: int) -> list[list[int]]:
    """``n`` answers (token ids, through the end-of-turn token when the model stopped) to one prompt."""
    import torch
    from transformers import GenerationConfig

    torch.manual_seed(seed)
    ids = torch.tensor([prompt], dtype=torch.long)
    kw: dict[str, Any] = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else \
        {"do_sample": False}
    # a config of its own: the checkpoint's generation defaults (repetition penalty, min_p ...) would change the
    # distribution the samples come from, and the KL estimate needs draws from the policy itself
    settings = GenerationConfig(max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=tok.pad_token_id,
                                eos_token_id=tok.eos_token_id, **kw)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=settings)
    return [_cut(row[len(prompt):].tolist(), tok.eos_token_id, keep_eos=True) for row in out]


def sequence_logps(model: Any, prompts: list[list[int]], answers: list[list[int]]) -> list[float]:
    """Sum of the log-probabilities of each answer's tokens given its prompt (one forward pass per pair)."""
    import torch

    out = []
    for p, a in zip(prompts, answers, strict=True):
        if not a:
            out.append(0.0)
            continue
        ids = torch.tensor([p + a], dtype=torch.long)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(p) - 1 : len(p) + len(a) - 1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(a).unsqueeze(1)).sum()
        out.append(float(logp))
    return out


def _reference(path: str, chats: list[list[dict[str, str]]], max_new_tokens: int) -> tuple[Any, Any, list]:
    key = (path, content_hash(chats), max_new_tokens)
    if key not in _REFERENCES:
        _REFERENCES.clear()  # one reference at a time in memory
        model, tok = _load(path)
        greedy = []
        for chat in chats:
            p = _prompt_ids(tok, chat)
            ids = _cut(_generate(model, tok, p, n=1, sample=False, max_new_tokens=max_new_tokens, seed=0)[0],
                       tok.eos_token_id, keep_eos=False)
            greedy.append((ids, tok.decode(ids, skip_special_tokens=True)))
        _REFERENCES[key] = (model, tok, greedy)
    return _REFERENCES[key]


def analyze(policy: str | tuple[Any, Any], reference: str, chats: list[list[dict[str, str]]], *, samples: int = 2,
            max_new_tokens: int = 64, near_copy_threshold: float = 0.8, seed: int = 0) -> dict[str, Any]:
    """The drift of ``policy`` (a checkpoint path, or a loaded (model, tokenizer)) from ``reference`` on ``chats``."""
    if not chats:
        raise LionEvalError("drift analysis got no prompt", fix="evaluate on a benchmark with questions")
    gc.collect()  # the evaluation's own copy of the policy, before another one is loaded
    model, tok = _load(policy) if isinstance(policy, str) else policy
    ref_model, ref_tok, ref_greedy = _reference(reference, chats, max_new_tokens)
    if ref_tok.get_vocab() != tok.get_vocab():
        raise LionEvalError(f"the reference model {reference} has another tokenizer than the policy, so their "
                            "token log-probabilities cannot be compared",
                            fix="set eval.drift.reference to the checkpoint the stage started from")
    prompts, answers, groups, lengths, texts = [], [], [], [], []
    for i, chat in enumerate(chats):
        p = _prompt_ids(tok, chat)
        for a in _generate(model, tok, p, n=samples, sample=True, max_new_tokens=max_new_tokens, seed=seed + i):
            prompts.append(p)
            answers.append(a)
            groups.append(i)
        g = _cut(_generate(model, tok, p, n=1, sample=False, max_new_tokens=max_new_tokens, seed=0)[0],
                 tok.eos_token_id, keep_eos=False)
        lengths.append(len(g))
        texts.append(tok.decode(g, skip_special_tokens=True))
    mine = sequence_logps(model, prompts, answers)
    del model  # only the reference stays loaded between evaluations
    theirs = sequence_logps(ref_model, prompts, answers)
    per_seq = [a - b for a, b in zip(mine, theirs, strict=True)]
    return {
        "reference": reference,
        "prompts": len(chats),
        "samples": samples,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "kl": kl_estimate(per_seq, groups),
        "length": length_stats(lengths, [len(ids) for ids, _ in ref_greedy]),
        "near_copy": near_copy_share(texts, [t for _, t in ref_greedy], threshold=near_copy_threshold),
    }


def add_drift(store: RunStore, reports: list[Report], suite: Any, checkpoint: str, cfg: Any) -> list[Report]:
    """The reports with the checkpoint's drift in their meta, stored again (``cfg``: the eval block's drift
    settings, with the reference filled in)."""
    if not cfg.reference:
        raise ConfigError("drift analysis has no reference model",
                          fix="set eval.drift.reference (a stage sets its starting checkpoint by itself)")
    if not reports:
        return reports
    questions = load_inputs(suite.bench[0], suite).questions[: cfg.prompts]
    chats = [[{"role": "user", "content": q.turns[0]}] for q in questions]
    drift = analyze(checkpoint, cfg.reference, chats, samples=cfg.samples, max_new_tokens=cfg.max_new_tokens,
                    near_copy_threshold=cfg.near_copy_threshold, seed=cfg.seed)
    drift["benchmark"] = suite.bench[0]
    out = []
    for r in reports:
        r = r.model_copy(update={"meta": {**r.meta, "drift": drift}})
        store.put_report(r)
        out.append(r)
    return out


def drift_logs(reports: list[Report]) -> dict[str, float]:
    """``lioneval/drift/<name>`` values of the first report that carries a drift analysis."""
    for r in reports:
        drift = r.meta.get("drift")
        if not drift:
            continue
        logs = {}
        for (part, key), name in DRIFT_LOGS.items():
            value = (drift.get(part) or {}).get(key)
            if isinstance(value, (int, float)):
                logs[f"lioneval/drift/{name}"] = float(value)
        return logs
    return {}


def with_reference(cfg: Any, reference: str) -> Any:
    """The drift settings with ``reference`` filled in where they name none."""
    return cfg if cfg is None or cfg.reference else dataclasses.replace(cfg, reference=reference)


def drift_exclusion(reports: list[Report], max_kl: float | None, max_growth: float | None) -> str | None:
    """Why a checkpoint's drift analysis excludes it from promotion (None when it does not, or there is none)."""
    drift = next((r.meta["drift"] for r in reports if r.meta.get("drift")), None)
    if drift is None:
        return None
    kl = (drift.get("kl") or {}).get("value")
    if max_kl is not None and kl is not None and kl > max_kl:
        return f"KL from the reference model {kl:.3g} exceeds max_kl {max_kl:g}"
    growth = (drift.get("length") or {}).get("growth")
    if max_growth is not None and growth is not None and growth > max_growth:
        return f"answers grew {growth:.0%} over the reference model's, above max_drift_length_growth {max_growth:.0%}"
    return None
