"""What evaluation during training costs the training loop, and how late its results come: LionEvalCallback inline
and in background mode, against training without it.

A small Llama (built from a config) trains with SFT-style batches and saves every ``--save-steps`` steps. The
callback runs the real pipeline on each saved checkpoint (bundled MT-Bench demo questions, a local reward-model
judge, everything written to a temporary store): inline (training waits), or in background mode, where a warm
``lioneval watch`` process started by the callback evaluates the newest checkpoint while training goes on (older
ones it had no time for are skipped) and early stopping reads its results from the store. Arms alternate
(``--repeats`` each) and the median loop time counts, because this machine's CPU may be shared. Figures: the
slowdown of the loop (first step to last step end) against training without the callback (target for background
mode: under 5%), and the lag: how many steps after a checkpoint was saved its result was logged, for results that
came in during training. The time spent after the loop waiting for evaluations still running (``wait_at_end``) is
reported apart: training itself never waits for it in background mode.

    python benchmarks/callback_overhead.py [--steps 40] [--save-steps 10] [--repeats 3] [--arms without,inline]

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


def one_run(base: Path, rows: list, workdir: Path, steps: int, save_steps: int, evaluator, mode: str = "background",
            nice: int = 5) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, Trainer, TrainingArguments

    from lioneval.trainers.callback import CheckpointLinker, LionEvalCallback
    from lioneval.trainers.sft import PackedCollator

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    clock = loop_clock()
    callbacks = [clock, CheckpointLinker("bench", workdir)]
    cb = None
    if evaluator is not None:
        cb = LionEvalCallback({"mode": mode, "stop_on_cheat": False, "background_nice": nice}, evaluator=evaluator)
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
    logged = [h for h in trainer.state.log_history if "lioneval/step" in h]
    lags = [h["step"] - h["lioneval/step"] for h in logged if h["step"] < steps]
    return {
        "lags": lags,
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
    ap.add_argument("--arms", default="without,inline,background", help="comma-separated: without, inline, background")
    ap.add_argument("--nice", type=int, default=5, help="niceness of the background evaluator (background_nice)")
    args = ap.parse_args()
    arms = [a for a in args.arms.split(",") if a]
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
        one_run(base, rows, root / "warmup", 2, 2, None)  # first-use costs (imports, allocator) out of the timing
        runs: dict[str, list[dict]] = {a: [] for a in arms}
        for r in range(args.repeats):
            for arm in arms:
                # a store per run: results of an earlier run must not count as this one's
                evaluator = PipelineEvaluator(suite, str(root / f"store-{arm}{r}.db")) if arm != "without" else None
                res = one_run(base, rows, root / f"{arm}{r}", args.steps, args.save_steps, evaluator,
                              mode=arm if arm != "without" else "inline", nice=args.nice)
                runs[arm].append(res)
                print(f"  run {r + 1} {arm:<10} loop {res['loop_s']:6.2f} s  total {res['total_s']:6.2f} s  "
                      f"evaluations {res['evaluations']}  lags {res['lags']}", flush=True)
    med = {a: statistics.median(x["loop_s"] for x in runs[a]) for a in arms}
    ref = med.get("without")
    print()
    print(f"{'arm':<12}{'loop s (median)':>16}{'slowdown':>10}{'evaluated':>10}{'in loop':>8}{'lag med':>8}"
          f"{'lag max':>8}{'wait s':>8}")
    figures: dict = {"benchmark": "callback_overhead", "steps": args.steps, "save_steps": args.save_steps,
                     "repeats": args.repeats, "model": f"llama hidden={args.hidden} layers={args.layers}",
                     "checkpoints": args.steps // args.save_steps, "target_pct": TARGET_PCT,
                     "background_nice": args.nice}
    for arm in arms:
        lags = [lag for x in runs[arm] for lag in x["lags"]]
        slow = 100 * (med[arm] - ref) / ref if ref else None
        evals = statistics.median(x["evaluations"] for x in runs[arm])
        in_loop = statistics.median(len(x["lags"]) for x in runs[arm])
        wait = statistics.median(x["wait_s"] for x in runs[arm])
        lag_med = statistics.median(lags) if lags else None
        print(f"{arm:<12}{med[arm]:>16.2f}{'' if slow is None else f'{slow:+.1f}%':>10}{evals:>10.0f}{in_loop:>8.0f}"
              f"{'-' if lag_med is None else f'{lag_med:.0f}':>8}{'-' if not lags else max(lags):>8}{wait:>8.1f}")
        figures[arm] = {"loop_s": round(med[arm], 3), "slowdown_pct": None if slow is None else round(slow, 2),
                        "evaluations": evals, "results_in_loop": in_loop, "lag_steps_median": lag_med,
                        "lag_steps_max": max(lags) if lags else None, "wait_after_loop_s": round(wait, 2),
                        "failed": sum(x["failed"] for x in runs[arm])}
    if "background" in figures and ref:
        figures["target_met"] = figures["background"]["slowdown_pct"] < TARGET_PCT
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
