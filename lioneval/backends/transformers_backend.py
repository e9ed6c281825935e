"""Local transformers causal LMs as a Backend: batched, left-padded generation on CPU or GPU.

The checkpoint's own chat template formats the chats. A tokenizer without one is an error unless a template is
given explicitly as a Jinja string: guessing a format silently changes what the model sees and so its scores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lioneval.backends.base import Chat, Completion, OnResult, Sampling
from lioneval.checkpoint import weights_hash
from lioneval.errors import LionEvalError
from lioneval.registry import require


class TransformersBackend:
    """Generate with a local Hugging Face causal LM (a directory, or a .gguf file through transformers' gguf loader)."""

    @classmethod
    def from_spec(cls, spec: Any, **options: Any) -> TransformersBackend:
        """From a parsed ``hf:PATH`` spec; ``options`` are constructor settings (batch_size, chat_template, ...)."""
        return cls(spec.model, **options)

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
        chat_template: str | None = None,
        conv_template: str | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ):
        require("torch", "train", what="the transformers backend")
        require("transformers", "train", what="the transformers backend")
        import torch

        self.path = str(path)
        self.name = f"hf:{Path(self.path).name}"
        self.batch_size = max(1, batch_size)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if model is None or tokenizer is None:
            model, tokenizer = self._load(Path(path), dtype)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if chat_template:
            self.tokenizer.chat_template = chat_template
        self.conv_template = conv_template
        if conv_template:
            require("fastchat", "fastchat", what=f"conversation template {conv_template!r}")
            from fastchat.conversation import conv_templates

            if conv_template not in conv_templates:  # an unknown name fails now, not mid-run
                import difflib

                close = difflib.get_close_matches(conv_template, conv_templates, n=3)
                raise LionEvalError(
                    f"FastChat has no conversation template {conv_template!r}"
                    + (f"; did you mean {', '.join(map(repr, close))}?" if close else ""),
                    fix="use a name from fastchat.conversation.conv_templates, e.g. vicuna_v1.1 or llama-2",
                )
        elif not getattr(self.tokenizer, "chat_template", None):
            raise LionEvalError(
                f"the tokenizer of {self.path} has no chat template, so prompts cannot be formatted as the model "
                "was trained",
                fix="add chat_template to the checkpoint's tokenizer_config.json, pass --chat-template FILE (Jinja), "
                "or name a FastChat conversation template with --conv-template (pip install 'lioneval[fastchat]')",
            )

    @staticmethod
    def _load(path: Path, dtype: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not path.exists():
            raise LionEvalError(f"no model at {path}", fix="pass a checkpoint directory or a .gguf file that exists")
        kw: dict[str, Any] = {}
        src = str(path)
        cache = None
        if path.suffix == ".gguf":
            cache = _gguf_cache(path)
            if (cache / "config.json").is_file():
                src, cache = str(cache), None
            else:
                require("gguf", "train", what="loading .gguf checkpoints")
                src, kw["gguf_file"] = str(path.parent), path.name
        elif not (path / "config.json").is_file():
            raise LionEvalError(
                f"{path} is not a model checkpoint (no config.json)",
                fix="pass the directory written by save_pretrained / the trainer (it holds config.json)",
            )
        torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
        tok = AutoTokenizer.from_pretrained(src, **kw)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch_dtype, **kw)
        if cache is not None and path.stat().st_size < _GGUF_CACHE_MAX:
            # Converting a GGUF file (de-quantizing, rebuilding the tokenizer) takes a minute even for a small
            # model; the converted copy loads in seconds next time.
            try:
                _save_plain(model, cache)
                tok.save_pretrained(cache)
            except (OSError, ValueError, RuntimeError):
                pass  # only a cache: the model in hand is fine
        return model, tok

    def generate(
        self, chats: Sequence[Chat], sampling: Sampling, *, on_result: OnResult | None = None
    ) -> list[Completion]:
        import torch

        prompts = [self._format(c) for c in chats]
        # Sort by length so each batch pads little; results go back in the caller's order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[Completion | None] = [None] * len(prompts)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, c in zip(idx, self._batch([prompts[i] for i in idx], sampling), strict=True):
                out[i] = c
                if on_result:
                    on_result(i, c)
        return out  # type: ignore[return-value]

    def _format(self, chat: Chat) -> str:
        # A chat ending with an assistant message is a prefill: the model continues that message.
        prefill = bool(chat) and chat[-1]["role"] == "assistant"
        if self.conv_template:
            return _fastchat_prompt(self.conv_template, chat, prefill)
        return self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=not prefill, continue_final_message=prefill, tokenize=False
        )

    def _batch(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        import torch

        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sample = sampling.temperature > 0
        kw: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_scores": bool(sampling.top_logprobs),
        }
        if sample:
            kw.update(temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        if sampling.stop:
            kw.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        with torch.no_grad():
            gen = self.model.generate(**enc, **kw)
        new = gen.sequences[:, enc["input_ids"].shape[1] :]
        eos = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}
        results = []
        for row in range(new.shape[0]):
            ids = new[row].tolist()
            n = next((k + 1 for k, t in enumerate(ids) if t in eos), len(ids))
            stopped = n < len(ids) or (ids and ids[n - 1] in eos)
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
            top = None
            if sampling.top_logprobs:
                top = []
                for step in range(min(n, len(gen.scores))):
                    logp = torch.log_softmax(gen.scores[step][row].float(), dim=-1)
                    vals, toks = logp.topk(sampling.top_logprobs)
                    top.append({
                        self.tokenizer.decode([t]): float(v) for t, v in zip(toks.tolist(), vals.tolist(), strict=True)
                        if math.isfinite(v)
                    })
            results.append(
                Completion(
                    text=text,
                    finish_reason="stop" if stopped else "length",
                    top_logprobs=top,
                    prompt_tokens=int(enc["attention_mask"][row].sum()),
                    completion_tokens=n,
                )
            )
        return results


def _fastchat_prompt(name: str, chat: Chat, prefill: bool) -> str:
    """The prompt FastChat's conversation template ``name`` builds for ``chat`` (its own rendering code)."""
    from fastchat.conversation import get_conv_template

    conv = get_conv_template(name)
    for m in chat:
        if m["role"] == "system":
            conv.set_system_message(m["content"])
        else:
            conv.append_message(conv.roles[0] if m["role"] == "user" else conv.roles[1], m["content"])
    if prefill:
        # FastChat ends a finished message with a separator; continuing it means cutting that separator off.
        text = conv.get_prompt()
        return text[: text.rindex(chat[-1]["content"]) + len(chat[-1]["content"])]
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


_GGUF_CACHE_MAX = 2 << 30


def _save_plain(model: Any, path: Path) -> None:
    """Save a model loaded from GGUF (already de-quantized) as a plain checkpoint."""
    import copy

    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    plain = AutoModelForCausalLM.from_config(cfg)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    plain.save_pretrained(path)


def _gguf_cache(path: Path) -> Path:
    """Where the transformers copy of a GGUF file is kept (LIONEVAL_CACHE, default ~/.cache/lioneval)."""
    root = Path(os.environ.get("LIONEVAL_CACHE") or Path.home() / ".cache" / "lioneval")
    return root / "gguf" / f"{path.stem}-{weights_hash(path)[:12]}"


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]
