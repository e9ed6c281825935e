"""What background evaluation costs the training loop: train steps with and without LionEvalCallback (background).

A small Llama (built from a config) trains with SFT-style batches and saves every ``--save-steps`` steps. The
callback runs the real pipeline on each saved checkpoint (bundled MT-Bench demo questions, a local reward-model
judge, everything written to a temporary store) in its worker process. Both arms save the same checkpoints; the
only difference is the callback. Arms alternate (``--repeats`` each) and the median loop time counts, because this
machine's CPU may be shared. Target: the loop (first step to last step end) takes under 5% longer with the callback.
The time spent after the loop waiting for evaluations still running (``wait_at_end``) is reported apart: training
itself never waits for it.

    python benchmarks/callback_overhead.py [--steps 40] [--save-steps 10] [--repeats 3]

Prints a table; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

TARGET_PCT = 5.0
# torch, transformers and the trainers are imported inside the functions: the evaluation worker is a spawned
# process that re-imports this module, and it should not pay for them before it has lowered its priority.


def loop_clock():
    """A callback timing the start of training to the end of its last step (the end-of-training wait excluded)."""
    from transformers import TrainerCallback

    class LoopClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()
            self.t_last = self.t0

        def on_step_end(self, args, state, control, **kwargs):
            self.t_last = time.perf_counter()

    return LoopClock()


def conversations(n: int) -> list[list[dict[str, str]]]:
    topics = ["rain on a tin roof", "the number 42", "a lazy dog", "a quick fox", "judging answers", "ratings"]
    out = []
    for i in range(n):
        t = topics[i % len(topics)]
        out.append([{"role": "user", "content": f"Write two sentences about {t}, version {i}."},
                    {"role": "assistant", "content": f"Here is something about {t}. " * (2 + i % 4)}])
    return out


def one_run(base: Path, rows: list, workdir: Path, steps: int, save_steps: int, evaluator) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, Trainer, TrainingArguments

    from lioneval.trainers.callback import CheckpointLinker, LionEvalCallback
    from lioneval.trainers.sft import PackedCollator

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    clock = loop_clock()
    callbacks = [clock, CheckpointLinker("bench", workdir)]
    cb = None
    if evaluator is not None:
        cb = LionEvalCallback({"mode": "background", "stop_on_cheat": False}, evaluator=evaluator)
        callbacks.append(cb)
    args = TrainingArguments(output_dir=str(workdir / "bench"), max_steps=steps, save_steps=save_steps,
                             save_strategy="steps", per_device_train_batch_size=4, learning_rate=1e-4,
                             logging_steps=save_steps, report_to=[], disable_tqdm=True, save_only_model=True,
                             dataloader_pin_memory=False)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=PackedCollator(tok.pad_token_id),
                      processing_class=tok, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the loss lines would bury the table
    if cb is not None:
        cb.attach(trainer)
    t0 = time.perf_counter()
    try:
        trainer.train()
        total = time.perf_counter() - t0
    finally:
        if cb is not None:
            cb.close()
    evals = cb.evaluations if cb is not None else []
    return {
        "loop_s": clock.t_last - clock.t0,
        "total_s": total,
        "wait_s": total - (clock.t_last - t0),
        "evaluations": len(evals),
        "failed": sum(e.error is not None for e in evals),
        "arrived_in_loop": sum(1 for h in trainer.state.log_history
                               if "lioneval/step" in h and h["step"] < steps) if evals else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--save-steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from lioneval.pipeline import DEMO_DATA, RunConfig
    from lioneval.testing.tiny import make_tiny_causal_lm, make_tiny_reward_model
    from lioneval.trainers.callback import PipelineEvaluator
    from lioneval.trainers.sft import build_rows, tokenize_conversation

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = make_tiny_causal_lm(root / "base", hidden=args.hidden, layers=args.layers)
        rm = make_tiny_reward_model(root / "rm")
        tok = AutoTokenizer.from_pretrained(base)
        docs = [tokenize_conversation(tok, c, 256) for c in conversations(64)]
        rows = build_rows(docs, 256, packing=True)
        suite = RunConfig(bench=("mt-bench",), judge=f"reward-model:{rm}", limit=2, max_new_tokens=32, rounds=200,
                          data={"mt-bench": str(DEMO_DATA / "mt_bench")})
        evaluator = PipelineEvaluator(suite, str(root / "store.db"))
        one_run(base, rows, root / "warmup", 2, 2, None)  # first-use costs (imports, allocator) out of the timing
        runs: dict[str, list[dict]] = {"without": [], "with": []}
        for r in range(args.repeats):
            for arm in ("without", "with"):
                res = one_run(base, rows, root / f"{arm}{r}", args.steps, args.save_steps,
                              evaluator if arm == "with" else None)
                runs[arm].append(res)
                print(f"  run {r + 1} {arm:<8} loop {res['loop_s']:6.2f} s  total {res['total_s']:6.2f} s  "
                      f"evaluations {res['evaluations']}", flush=True)
    base_loop = statistics.median(x["loop_s"] for x in runs["without"])
    cb_loop = statistics.median(x["loop_s"] for x in runs["with"])
    overhead = 100 * (cb_loop - base_loop) / base_loop
    wait = statistics.median(x["wait_s"] for x in runs["with"])
    evals = runs["with"][-1]["evaluations"]
    print()
    print(f"{'arm':<28}{'loop s (median)':>18}{'min':>8}{'max':>8}{'per step ms':>14}")
    for name, arm, med in (("without callback", "without", base_loop), ("with callback (background)", "with", cb_loop)):
        loops = [x["loop_s"] for x in runs[arm]]
        print(f"{name:<28}{med:>18.2f}{min(loops):>8.2f}{max(loops):>8.2f}{1000 * med / args.steps:>14.1f}")
    print(f"overhead on the training loop: {overhead:+.2f}% (target < {TARGET_PCT:g}%)")
    print(f"evaluations per run: {evals} ({args.steps // args.save_steps} checkpoints); waited {wait:.1f} s after "
          f"the loop for those still running; failed: {sum(x['failed'] for x in runs['with'])}")
    figures = {
        "benchmark": "callback_overhead",
        "steps": args.steps,
        "save_steps": args.save_steps,
        "repeats": args.repeats,
        "model": f"llama hidden={args.hidden} layers={args.layers}",
        "loop_without_s": round(base_loop, 3),
        "loop_with_s": round(cb_loop, 3),
        "overhead_pct": round(overhead, 2),
        "wait_after_loop_s": round(wait, 2),
        "evaluations_per_run": evals,
        "evaluations_failed": sum(x["failed"] for x in runs["with"]),
        "target_pct": TARGET_PCT,
        "target_met": overhead < TARGET_PCT and evals == args.steps // args.save_steps,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
