"""Backends for judge specs: each kind imported only when a spec names it."""

from __future__ import annotations

from lioneval.backends.base import Backend
from lioneval.errors import LionEvalError
from lioneval.judges.spec import JudgeSpec


def backend_for(spec: JudgeSpec) -> Backend:
    """The chat backend a judge spec names (ensembles and reward models are judged by their own classes)."""
    transport = {"api_key_env": spec.api_key_env, "max_in_flight": spec.max_in_flight, "timeout": spec.timeout,
                 "max_retries": spec.max_retries}
    if spec.kind == "openai":
        from lioneval.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(spec.model, list(spec.base_urls) or None, **transport)
    if spec.kind == "openai-compatible":
        from lioneval.backends.openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(spec.model, list(spec.base_urls), **transport)
    if spec.kind == "hf":
        from lioneval.backends.transformers_backend import TransformersBackend

        return TransformersBackend(spec.model)
    if spec.kind == "vllm":
        from lioneval.backends.vllm_backend import VLLMBackend

        return VLLMBackend(spec.model)
    raise LionEvalError(
        f"judge kind {spec.kind!r} has no chat backend", fix="use openai, openai-compatible, hf or vllm"
    )
