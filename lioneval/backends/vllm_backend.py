"""vLLM in-process generation (`vllm.LLM`), for GPU machines. Needs the `vllm` extra."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lioneval.backends.base import Chat, Completion, OnResult, Sampling
from lioneval.registry import require


class VLLMBackend:
    """Generation with an in-process vLLM engine; one `llm.chat` call per batch (vLLM schedules it)."""

    @classmethod
    def from_spec(cls, spec: Any, **options: Any) -> VLLMBackend:
        """From a parsed ``vllm:PATH`` spec; generation-only options of other backends do not apply."""
        return cls(spec.model)

    def __init__(self, path: str | Path, **engine_kwargs):
        require("vllm", "vllm", what="the vLLM backend")
        from vllm import LLM

        self.path = str(path)
        self.name = f"vllm:{Path(self.path).name}"
        self.llm = LLM(model=self.path, **engine_kwargs)

    def generate(
        self, chats: Sequence[Chat], sampling: Sampling, *, on_result: OnResult | None = None
    ) -> list[Completion]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
            seed=sampling.seed, stop=list(sampling.stop) or None, logprobs=sampling.top_logprobs,
        )
        outs = self.llm.chat(list(chats), params, use_tqdm=False)
        results = []
        for i, o in enumerate(outs):
            c = o.outputs[0]
            top = None
            if sampling.top_logprobs and c.logprobs:
                top = [{lp.decoded_token: lp.logprob for lp in step.values()} for step in c.logprobs]
            comp = Completion(
                text=c.text, finish_reason=c.finish_reason, top_logprobs=top,
                prompt_tokens=len(o.prompt_token_ids or []), completion_tokens=len(c.token_ids),
            )
            results.append(comp)
            if on_result:
                on_result(i, comp)
        return results
