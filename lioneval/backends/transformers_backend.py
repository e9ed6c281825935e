"""Local transformers causal LMs as a Backend, on CPU or GPU.

The checkpoint's own chat template formats the chats. A tokenizer without one is an error unless a template is
given explicitly as a Jinja string: guessing a format silently changes what the model sees and so its scores.

Three schedulers (``scheduler=``), all returning the caller's order and calling ``on_result`` as each answer ends:

- ``continuous`` (the default): up to ``batch_size`` sequences decode together, each in its own row of one
  preallocated KV cache; a sequence that ends (EOS, ``max_tokens`` or a stop string) leaves its row at once and the
  next prompt, prefilled by itself, takes it. One long answer no longer holds the short ones of its batch. No prompt is
  padded and no row attends to another's keys, so greedy outputs are those of generating one prompt at a time. Calls
  it cannot serve exactly (a logits processor that needs each sequence's history, such as a repetition penalty;
  sliding-window or linear-attention layers; flash or flex attention) go to the static path.
- ``static``: ``model.generate`` on fixed, left-padded batches of prompts sorted by length (the original path); a
  batch lasts as long as its longest answer, and its results are reported together. Its cache grows by
  concatenation, a copy of every row's keys and values at each step, so large batches of long answers pay for it.
- ``paged``: transformers' own continuous batching (``init_continuous_batching``, a paged cache). It gives the same
  greedy outputs, but on CPU each step attends over the keys of every sequence in flight, which makes it slower there
  than ``continuous`` (see benchmarks/generation_speed.py); it cannot return top_logprobs (the static path does).

The default ``batch_size`` is 32: decoding one token costs about the same for 8 sequences as for 32 on a small model
(reading the weights dominates), so wide batches are where the throughput is. Rows are capped so that their keys and
values fit ``kv_cache_gb`` (default: a quarter of the machine's memory on CPU, half the free memory on a GPU); a call
that must use fewer rows than asked says so once.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lioneval.backends.adapters import is_adapter, load_with_adapter
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
        batch_size: int = 32,
        chat_template: str | None = None,
        conv_template: str | None = None,
        model: Any = None,
        tokenizer: Any = None,
        scheduler: str = "continuous",
        kv_cache_gb: float | None = None,
    ):
        require("torch", "train", what="the transformers backend")
        require("transformers", "train", what="the transformers backend")
        import torch

        if scheduler not in SCHEDULERS:
            raise LionEvalError(
                f"unknown scheduler {scheduler!r} for the transformers backend",
                fix=f"use one of {', '.join(map(repr, SCHEDULERS))}",
            )
        self.path = str(path)
        # The scheduler is not part of the name: greedy outputs are the same under both, so ids must not change.
        self.name = f"hf:{Path(self.path).name}"
        self.batch_size = max(1, batch_size)
        self.scheduler = scheduler
        self.kv_cache_gb = kv_cache_gb
        self._cut_said = False  # whether a call has announced fewer rows than batch_size
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
        if is_adapter(path):  # a LoRA checkpoint: its base (itself maybe an adapter) with the adapter merged in
            return load_with_adapter(path, lambda base: TransformersBackend._load(base, dtype))
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
        if not prompts:
            return []
        with _cpu_threads(self.device), torch.inference_mode():
            if self.scheduler == "continuous":
                plan = self._slot_plan(sampling)
                if plan is not None:
                    try:
                        return self._slots(prompts, sampling, plan, on_result)
                    except _Unsupported:
                        pass  # found out at the first prompt, before any result was reported
            elif self.scheduler == "paged":
                gen_cfg = self._paged_config(sampling)
                if gen_cfg is not None:
                    out = self._paged(prompts, sampling, gen_cfg, on_result)
                    if out is not None:
                        return out
            return self._static(prompts, sampling, on_result)

    def _format(self, chat: Chat) -> str:
        # A chat ending with an assistant message is a prefill: the model continues that message.
        prefill = bool(chat) and chat[-1]["role"] == "assistant"
        if self.conv_template:
            return _fastchat_prompt(self.conv_template, chat, prefill)
        return self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=not prefill, continue_final_message=prefill, tokenize=False
        )

    # -- continuous: sequences in the rows of one KV cache, each replaced as it ends -----------------------------------
    def _slot_plan(self, sampling: Sampling) -> list[Any] | None:
        """The logits processors of a continuous call, or None when the model or the settings need the static path."""
        config = self.model.config
        cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
        if getattr(cfg, "is_encoder_decoder", False) or config._attn_implementation not in ("sdpa", "eager"):
            return None  # flash kernels take no 4D mask; flex and paged ones have their own cache layouts
        types = getattr(cfg, "layer_types", None)
        if types is not None:  # where a config lists its layers' kinds, only that list counts (as for the cache)
            local = any(t != "full_attention" for t in types)
        else:
            local = getattr(cfg, "sliding_window", None) is not None or getattr(cfg, "attention_chunk_size", None)
        if local:
            return None  # sliding-window, chunked or linear-attention layers need masks and caches of other shapes
        try:
            with warnings.catch_warnings():  # it warns about prompt-dependent processors given no prompt: only a probe
                warnings.simplefilter("ignore")
                processors = list(self.model._get_logits_processor(self._generation_config(sampling)))
        except Exception:  # a private transformers API: if it changes, the static path still serves the call
            return None
        # Only warpers that look at the scores alone: a repetition penalty or a minimum length would need each
        # sequence's own history, which the static path (model.generate) handles.
        if not all(type(p).__name__ in _SCORE_ONLY for p in processors):
            return None
        return processors

    def _slots(
        self, prompts: list[str], sampling: Sampling, processors: list[Any], on_result: OnResult | None
    ) -> list[Completion]:
        """Up to ``batch_size`` sequences decode together, each in its own row of a preallocated KV cache; one that
        ends leaves at once and the next prompt takes its row.

        Each prompt is prefilled by itself (exactly as ``model.generate`` does for one prompt) and its keys and values
        are copied into a free row, from column 0. A decoding step feeds every row its last token at its own position
        and writes its keys and values in place at its own length; a mask hides each row's unused columns. No row is
        padded on the left and none sees another's keys, so greedy outputs are those of one prompt at a time.
        """
        import torch

        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        eos = self._eos_ids()
        stops = tuple(s for s in sampling.stop if s)
        sample = sampling.temperature > 0
        gen = None
        if sample:
            # A generator of our own: a seeded call is reproducible, and an unseeded one draws its seed from (and so
            # moves on) the global generator, as model.generate would.
            seed = sampling.seed if sampling.seed is not None else int(torch.randint(0, 2**62, (1,)))
            gen = torch.Generator(device=self.model.device).manual_seed(seed)
        keep = {"logits_to_keep": 1} if _accepts(self.model, "logits_to_keep") else {}
        cache_kw = "cache" if _accepts(self.model, "cache") else "past_key_values"
        eager = self.model.config._attn_implementation == "eager"
        length = max(map(len, ids)) + sampling.max_tokens
        width = self._rows(min(self.batch_size, len(ids)), length)
        slots = _SlotCache(width, length)
        out: list[Completion | None] = [None] * len(ids)
        rows: list[_Row] = []
        # Shortest prompts first, as the static path does; each result is reported the moment its sequence ends.
        waiting = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        checked = False

        def choose(logits: Any) -> tuple[list[int], list[dict[str, float]] | None]:
            scores = logits.float()
            for proc in processors:
                scores = proc(None, scores)
            if sample:
                toks = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=gen).squeeze(1)
            else:
                toks = scores.argmax(dim=-1)
            tops = self._top(scores, sampling.top_logprobs) if sampling.top_logprobs else None
            return toks.tolist(), tops

        def ended(r: _Row) -> bool:
            if r.tokens[-1] in eos or len(r.tokens) >= sampling.max_tokens:
                return True
            return bool(stops) and _has_stop(self.tokenizer, r.tokens, stops)

        def finish(r: _Row) -> None:
            c = self._completion(r.tokens, len(ids[r.index]), sampling, eos)
            if sampling.top_logprobs:
                c.top_logprobs = r.tops[: c.completion_tokens]
            out[r.index] = c
            if on_result:
                on_result(r.index, c)

        while waiting or rows:
            while waiting and len(rows) < width:
                i = waiting.pop()
                dyn = _dynamic_cache(self.model)
                logits = self.model(
                    input_ids=torch.tensor([ids[i]], device=self.model.device), use_cache=True,
                    **{cache_kw: dyn}, **keep,
                ).logits[:, -1]
                if not checked:
                    _check_layers(dyn, self.model)  # raises _Unsupported before anything was reported
                    slots.allocate(dyn)  # so does a cache layer this transformers version cannot build
                    checked = True
                toks, tops = choose(logits)
                r = _Row(i, len(ids[i]), toks, tops or [])
                if ended(r):
                    finish(r)
                    continue
                slots.put(len(rows), dyn)
                rows.append(r)
            if not rows:
                break
            pos = torch.tensor([r.cached for r in rows], device=self.model.device)
            slots.pos, slots.view = pos, int(pos.max()) + 1
            mask = (torch.arange(slots.view, device=pos.device)[None, :] <= pos[:, None])[:, None, None, :]
            if eager:  # eager attention adds the mask to the scores
                mask = torch.zeros(mask.shape, dtype=self.model.dtype, device=pos.device).masked_fill(
                    ~mask, torch.finfo(self.model.dtype).min)
            logits = self.model(
                input_ids=torch.tensor([[r.tokens[-1]] for r in rows], device=pos.device),
                attention_mask=mask, position_ids=pos[:, None], use_cache=True, **{cache_kw: slots.cache}, **keep,
            ).logits[:, -1]
            toks, tops = choose(logits)
            for k, r in enumerate(rows):
                r.tokens.append(toks[k])
                if tops is not None:
                    r.tops.append(tops[k])
            # Remove ended rows from the highest down, moving the last row into each freed one so that rows in use
            # stay 0..n-1.
            for k in reversed([k for k, r in enumerate(rows) if ended(r)]):
                finish(rows[k])
                last = len(rows) - 1
                if k != last:
                    slots.move(last, k, rows[last].cached)
                    rows[k] = rows[last]
                rows.pop()
        return out  # type: ignore[return-value]

    def _top(self, scores: Any, k: int) -> list[dict[str, float]]:
        import torch

        vals, toks = torch.log_softmax(scores.float(), dim=-1).topk(k)
        return [
            {self.tokenizer.decode([t]): float(v) for t, v in zip(tr, vr, strict=True) if math.isfinite(v)}
            for tr, vr in zip(toks.tolist(), vals.tolist(), strict=True)
        ]

    # -- paged: transformers' own continuous batching -----------------------------------------------------------------
    def _paged_config(self, sampling: Sampling) -> Any:
        """The generation config of a continuous-batching call, or None when this call must take the static path."""
        if sampling.top_logprobs or not hasattr(self.model, "init_continuous_batching"):
            return None  # continuous batching returns the chosen token's logprob only, never the top-k
        cfg = self._generation_config(sampling)
        try:
            with warnings.catch_warnings():  # it warns about prompt-dependent processors given no prompt: only a probe
                warnings.simplefilter("ignore")
                processors = self.model._get_logits_processor(cfg)
        except Exception:  # a private transformers API: if it changes, the static path still serves the call
            return None
        # A processor continuous batching does not support would be dropped, changing the outputs: go static instead.
        if any(getattr(p, "supports_continuous_batching", None) is not True for p in processors):
            return None
        return cfg

    def _generation_config(self, sampling: Sampling) -> Any:
        """The model's own generation config with this call's settings, as ``model.generate`` would merge them."""
        cfg = copy.deepcopy(self.model.generation_config)
        sample = sampling.temperature > 0
        cfg.max_new_tokens = sampling.max_tokens
        cfg.do_sample = sample
        cfg.pad_token_id = self.tokenizer.pad_token_id
        cfg.eos_token_id = sorted(self._eos_ids()) or None
        if sample:
            cfg.temperature, cfg.top_p = sampling.temperature, sampling.top_p
        else:
            cfg.temperature = cfg.top_p = cfg.top_k = None
        return cfg

    def _paged(
        self, prompts: list[str], sampling: Sampling, gen_cfg: Any, on_result: OnResult | None
    ) -> list[Completion] | None:
        """Generate with transformers' continuous batching; None if it cannot start here (the caller goes static)."""
        import torch
        from transformers import ContinuousBatchingConfig

        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        stops = tuple(s for s in sampling.stop if s)
        eos = sorted(self._eos_ids())
        concurrent = min(self.batch_size, len(ids))
        longest = max(len(x) for x in ids)
        blocks_each = -(-(longest + sampling.max_tokens + 1) // _PAGE)
        cb_cfg = ContinuousBatchingConfig(
            page_size=_PAGE,
            # every sequence in flight can reach its full length without eviction; the FIFO scheduler stops
            # admitting prompts once less than 15% of the cache is free, hence the margin
            num_blocks=-(-concurrent * blocks_each * 100 // 80) + 2,
            # a whole prompt fits one forward pass (no chunked prefill, which would change the numerics)
            max_batch_tokens=max(min(longest, _MAX_PREFILL) + concurrent, 64),
            max_requests_per_batch=concurrent,
            # shared prefixes would reuse KV computed in another forward pass: keep each sequence's own numerics
            allow_block_sharing=False,
            auto_switch_to_flash=False,
            seed=sampling.seed,
        )
        # Continuous batching reseeds the global generator. A greedy or seeded call gives the caller's random state
        # back as it was; an unseeded sampling call draws from it and moves it on, as model.generate does.
        keep = sampling.temperature <= 0 or sampling.seed is not None
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=keep):
            try:
                manager = self.model.init_continuous_batching(
                    generation_config=gen_cfg, continuous_batching_config=cb_cfg
                )
            except (ValueError, NotImplementedError, MemoryError, AttributeError, TypeError):
                return None  # e.g. an attention implementation continuous batching cannot use
            try:
                return self._run_manager(manager, ids, sampling, stops, eos, on_result)
            finally:
                manager.stop(block=True, hard_stop=True)  # restores the model's attention implementation
                manager.destroy()

    def _run_manager(
        self, manager: Any, ids: list[list[int]], sampling: Sampling, stops: tuple[str, ...], eos: list[int],
        on_result: OnResult | None,
    ) -> list[Completion]:
        # Every request is queued before the loop starts, so the first batches (and with them the random draws of
        # a seeded sampling call) do not depend on thread timing.
        for i, x in enumerate(ids):
            manager.add_request(
                x, request_id=f"r{i}", max_new_tokens=sampling.max_tokens, streaming=bool(stops), eos_token_id=eos
            )
        manager.start()
        out: list[Completion | None] = [None] * len(ids)
        left = len(ids)

        def finish(i: int, c: Completion) -> None:
            nonlocal left
            out[i] = c
            left -= 1
            if on_result:
                on_result(i, c)

        while left:
            res = manager.get_result(timeout=0.5)
            if res is None:
                if not manager.is_running():
                    err = manager.background_thread_status.fatal_error
                    for i, c in enumerate(out):
                        if c is None:
                            finish(i, Completion(text=None, prompt_tokens=len(ids[i]),
                                                 error=f"continuous batching stopped: {err or 'unknown error'}"))
                continue
            i = int(res.request_id[1:])
            if out[i] is not None:
                continue  # a request cut at a stop string may still send one more token before it is cancelled
            if res.error is not None:
                finish(i, Completion(text=None, prompt_tokens=len(ids[i]), error=f"generation failed: {res.error}"))
                continue
            toks = list(res.generated_tokens)
            if res.is_finished():
                finish(i, self._completion(toks, len(ids[i]), sampling, set(eos)))
            elif stops and _has_stop(self.tokenizer, toks, stops):
                manager.cancel_request(res.request_id)
                finish(i, self._completion(toks, len(ids[i]), sampling, set(eos)))
        return out  # type: ignore[return-value]

    # -- fixed batches ------------------------------------------------------------------------------------------------
    def _static(self, prompts: list[str], sampling: Sampling, on_result: OnResult | None) -> list[Completion]:
        import torch

        # Sort by length so each batch pads little; results go back in the caller's order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[Completion | None] = [None] * len(prompts)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        start = 0
        while start < len(order):
            idx = order[start : start + self.batch_size]
            # the longest prompt of the batch sets every row's width (left padding)
            longest = len(self.tokenizer(prompts[idx[-1]], add_special_tokens=False)["input_ids"])
            idx = idx[: self._rows(len(idx), longest + sampling.max_tokens)]
            start += len(idx)
            for i, c in zip(idx, self._batch([prompts[i] for i in idx], sampling), strict=True):
                out[i] = c
                if on_result:
                    on_result(i, c)
        return out  # type: ignore[return-value]

    def _batch(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False,
                             return_token_type_ids=False).to(self.device)  # causal LMs take none (transformers<5)
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
        stops = tuple(s for s in sampling.stop if s)
        if stops:
            # our own check rather than transformers' stop_strings, so that both schedulers end a sequence at the same
            # token: the first whose text completes a stop string
            kw["stopping_criteria"] = _stop_on_text(self.tokenizer, stops, enc["input_ids"].shape[1])
        gen = self.model.generate(**enc, **kw)
        new = gen.sequences[:, enc["input_ids"].shape[1] :]
        eos = self._eos_ids()
        results = []
        for row in range(new.shape[0]):
            c = self._completion(new[row].tolist(), int(enc["attention_mask"][row].sum()), sampling, eos)
            if sampling.top_logprobs:
                steps = min(c.completion_tokens, len(gen.scores))
                c.top_logprobs = [self._top(gen.scores[step][row : row + 1], sampling.top_logprobs)[0]
                                  for step in range(steps)]
            results.append(c)
        return results

    # -- shared -------------------------------------------------------------------------------------------------------
    def _rows(self, wanted: int, length: int) -> int:
        """How many of ``wanted`` sequences of ``length`` tokens decode together: as many as their keys and values fit
        in the KV budget (``kv_cache_gb``), at least one; a cut is announced once per backend."""
        per_token = _kv_bytes_per_token(self.model)
        if not per_token or wanted <= 1:
            return max(1, wanted)
        budget = self.kv_cache_gb * 2**30 if self.kv_cache_gb is not None else _default_kv_budget(self.device)
        fit = max(1, int(budget // (per_token * length)))
        if fit < wanted and not self._cut_said:
            self._cut_said = True
            warnings.warn(
                f"{self.name}: decoding {fit} sequences at a time instead of {wanted}: {wanted} sequences of "
                f"{length} tokens need {per_token * length * wanted / 2**30:.1f} GiB of keys and values, over the "
                f"{budget / 2**30:.1f} GiB budget; raise kv_cache_gb or lower max-new-tokens or the batch size",
                stacklevel=3,
            )
        return min(wanted, fit)

    def _eos_ids(self) -> set[int]:
        ids = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}
        return {int(t) for t in ids if t is not None and int(t) >= 0}

    def _completion(self, ids: list[int], prompt_tokens: int, sampling: Sampling, eos: set[int]) -> Completion:
        """The completion for the new tokens ``ids``: cut after the first EOS (counted, as a server counts it) or
        before the first stop string (which, as with OpenAI and vLLM, is not part of the text)."""
        n = next((k + 1 for k, t in enumerate(ids) if t in eos), None)
        stopped = n is not None
        n = len(ids) if n is None else n
        text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
        stops = [s for s in sampling.stop if s]
        hits = [text.find(s) for s in stops if s in text]
        if hits:
            text = text[: min(hits)]
            n = _first_prefix(n, lambda k: any(s in self.tokenizer.decode(ids[:k], skip_special_tokens=True)
                                             for s in stops))
            stopped = True
        return Completion(
            text=text,
            finish_reason="stop" if stopped else "length",
            prompt_tokens=prompt_tokens,
            completion_tokens=n,
        )


SCHEDULERS = ("continuous", "static", "paged")
# logits warpers that read the scores alone (no history of the sequence): safe to apply to rows of any length
_SCORE_ONLY = {"TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper"}
_PAGE = 32  # tokens per KV-cache page: small pages waste little memory on short answers
_MAX_PREFILL = 4096  # a longer prompt is prefilled in chunks


@contextlib.contextmanager
def _cpu_threads(device: str):
    """On CPU, never more intra-op threads than the cores this process may run on (a container or ``taskset`` often
    allows fewer than the machine has, and oversubscribed threads spin-wait on each other)."""
    import torch

    before = torch.get_num_threads()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else before
    if str(device).startswith("cpu") and 0 < usable < before:
        torch.set_num_threads(usable)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    else:
        yield


def _kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys and values one token takes in the cache of ``model`` (0 when its config does not say)."""
    config = model.config
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers, heads = getattr(cfg, "num_hidden_layers", None), getattr(cfg, "num_attention_heads", None)
    hidden = getattr(cfg, "hidden_size", None)
    if not (isinstance(layers, int) and isinstance(heads, int) and isinstance(hidden, int) and heads):
        return 0
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    return 2 * layers * kv_heads * head_dim * model.dtype.itemsize


def _default_kv_budget(device: str) -> float:
    """A quarter of the machine's memory on CPU; half of the GPU memory still free on a GPU."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.mem_get_info(torch.device(device))[0] / 2
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


class _Unsupported(Exception):
    """The model's cache does not have the layout the continuous scheduler writes into."""


class _Row:
    """A sequence being decoded: its prompt's place in the call, prompt length, new tokens and their top-k."""

    __slots__ = ("index", "prompt", "tokens", "tops")

    def __init__(self, index: int, prompt: int, tokens: list[int], tops: list[dict[str, float]]):
        self.index, self.prompt, self.tokens, self.tops = index, prompt, tokens, tops

    @property
    def cached(self) -> int:
        """Tokens whose keys and values are in the cache (all but the last new token, which is the next input)."""
        return self.prompt + len(self.tokens) - 1


def _accepts(model: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _dynamic_cache(model: Any) -> Any:
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:  # older signature
        return DynamicCache()


def _check_layers(dyn: Any, model: Any) -> None:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(dyn, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer or layer.keys is None for layer in layers):
        raise _Unsupported(f"{type(model).__name__} keeps a cache the continuous scheduler cannot hold")


class _SlotCache:
    """Keys and values of up to ``rows`` sequences, one per row of a buffer per layer, each from column 0.

    Rows 0..n-1 are in use. Before a decoding step the scheduler sets ``pos`` (each row's write column, its length
    so far) and ``view`` (the columns attention reads); each layer then writes its new keys and values in place and
    returns views of the used part, never copies.
    """

    def __init__(self, rows: int, length: int):
        self.rows, self.length = rows, length
        self.pos: Any = None
        self.view = 0
        self.layers: list[Any] = []
        self.cache: Any = None

    def put(self, row: int, dyn: Any) -> None:
        """Copy a prefilled prompt's cache (batch of one) into ``row``."""
        if self.cache is None:
            self.allocate(dyn)
        for layer, src in zip(self.layers, dyn.layers, strict=True):
            n = src.keys.shape[-2]
            layer.keys[row, :, :n] = src.keys[0]
            layer.values[row, :, :n] = src.values[0]

    def move(self, src: int, dst: int, n: int) -> None:
        for layer in self.layers:
            layer.keys[dst, :, :n] = layer.keys[src, :, :n]
            layer.values[dst, :, :n] = layer.values[src, :, :n]

    def allocate(self, dyn: Any) -> None:
        import torch
        from transformers.cache_utils import Cache

        for src in dyn.layers:
            k, v = src.keys, src.values
            try:
                layer = _slot_layer_class()(self)
            except TypeError as e:  # a transformers version whose cache layers ask for more (before any result)
                raise _Unsupported(f"this transformers version's cache layers do not fit: {e}") from e
            layer.keys = torch.zeros((self.rows, k.shape[1], self.length, k.shape[3]), dtype=k.dtype, device=k.device)
            layer.values = torch.zeros((self.rows, v.shape[1], self.length, v.shape[3]), dtype=v.dtype,
                                       device=v.device)
            layer.is_initialized = True
            self.layers.append(layer)
        self.cache = Cache(layers=self.layers)


@functools.lru_cache(maxsize=1)
def _slot_layer_class() -> type:
    from transformers.cache_utils import CacheLayerMixin

    class SlotLayer(CacheLayerMixin):
        """One layer of a _SlotCache, seen by the model as a cache layer."""

        def __init__(self, owner: _SlotCache):
            super().__init__()
            self.owner = owner

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:  # allocated by the owner
            return None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            import torch

            o = self.owner
            n = key_states.shape[0]
            rows = torch.arange(n, device=key_states.device)
            self.keys[rows, :, o.pos, :] = key_states[:, :, 0, :]
            self.values[rows, :, o.pos, :] = value_states[:, :, 0, :]
            return self.keys[:n, :, : o.view], self.values[:n, :, : o.view]

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.owner.view, 0

        def get_seq_length(self) -> int:
            return self.owner.view - 1

        def get_max_length(self) -> int:
            return self.owner.length

        def get_max_cache_shape(self) -> int:  # the same, under its name in transformers < 4.57
            return self.owner.length

    return SlotLayer


def _has_stop(tokenizer: Any, tokens: list[int], stops: tuple[str, ...]) -> bool:
    """Whether the text of the last new tokens holds a stop string (checked after every token, so the tail is
    enough: the longest stop string plus a few tokens that may decode to nothing)."""
    tail = tokens[-(max(map(len, stops)) + 8):]
    text = tokenizer.decode(tail, skip_special_tokens=True)
    return any(s in text for s in stops)


def _stop_on_text(tokenizer: Any, stops: tuple[str, ...], prompt_width: int) -> Any:
    """A transformers stopping criterion: a row ends once its new tokens' text holds a stop string."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            new = input_ids[:, prompt_width:].tolist()
            return torch.tensor([_has_stop(tokenizer, row, stops) for row in new], device=input_ids.device)

    return StoppingCriteriaList([StopOnText()])


def _first_prefix(n: int, holds: Any) -> int:
    """The smallest ``k`` in ``1..n`` with ``holds(k)``, given ``holds(n)`` and that it stays true once true."""
    lo, hi = 1, n
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


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
