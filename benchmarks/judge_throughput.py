"""Judge throughput of OpenAICompatibleBackend against the scripted server, clean and with transient faults.

1,000 judge-like requests, 100 ms server latency, 32 in flight: ideal time is 1000 * 0.1 / 32 s. Targets: clean
within 1.3x ideal; with 20% of attempts failing (429 with a short Retry-After, 500, and answers slower than the
client timeout), every request still completes, no prompt gets two successful answers, and the run takes at most
2x the clean time.

    python benchmarks/judge_throughput.py [--n 1000] [--latency 0.1] [--in-flight 32]

Prints a table; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import Counter

from lioneval.backends.base import Sampling
from lioneval.backends.openai_compat import OpenAICompatibleBackend
from lioneval.testing.openai_server import Faults, ScriptedServerProcess

VERDICT = "Both answers are correct; A is more rigorous and B more intuitive. My final verdict is [[A>B]]"


def judge_chats(n: int) -> list[list[dict[str, str]]]:
    """Pairwise-judge prompts shaped like Arena-Hard's (system rubric, question, two answers), all distinct."""
    system = (
        "You are an impartial judge. Compare the two assistant answers to the user's question for helpfulness, "
        "correctness and concision, then give your verdict as one of [[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]]."
    )
    chats = []
    for i in range(n):
        user = (
            f"<|User Prompt|>\nQuestion {i}: explain why the sum of the first {i + 2} odd numbers is a square.\n\n"
            f"<|The Start of Assistant A's Answer|>\nThe sum 1 + 3 + ... is {(i + 2) ** 2}, by induction on n; "
            "each step adds 2n + 1, which turns n^2 into (n + 1)^2.\n<|The End of Assistant A's Answer|>\n\n"
            "<|The Start of Assistant B's Answer|>\nDraw the squares as L-shaped layers: each odd number is one "
            "more layer around the previous square.\n<|The End of Assistant B's Answer|>"
        )
        chats.append([{"role": "system", "content": system}, {"role": "user", "content": user}])
    return chats


def run(server: ScriptedServerProcess, backend: OpenAICompatibleBackend, chats, sampling: Sampling) -> dict:
    server.reset()
    finished = Counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = backend.generate(chats, sampling, on_result=lambda i, c: finished.update([i]))
    elapsed = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    recs = server.chat_requests()
    statuses = Counter(r.status for r in recs)
    return {
        "seconds": elapsed,
        # the client's own CPU (the server runs in another process): what bounds throughput on a small machine
        "client_cpu_s": cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime,
        "completed": sum(c.ok for c in out),
        "errors": [c.error for c in out if not c.ok][:3],
        "callbacks_once": len(finished) == len(chats) and max(finished.values()) == 1,
        "requests": len(recs),
        "statuses": dict(sorted(statuses.items())),
        "faults": dict(Counter(r.fault for r in recs if r.fault)),
        "duplicates": sum(n - 1 for n in server.duplicates().values()),
        "peak_in_flight": server.peak_in_flight,
        "max_attempts": max(c.attempts for c in out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=0.5, help="client timeout per attempt (s)")
    parser.add_argument("--slow", type=float, default=1.0, help="how long a 'slow' answer takes (s)")
    args = parser.parse_args()

    chats = judge_chats(args.n)
    sampling = Sampling(temperature=0.0, max_tokens=64)
    ideal = args.n * args.latency / args.in_flight
    faults = Faults(
        rate=args.fault_rate,
        kinds={"rate_limit": 1.0, "server_error": 1.0, "slow": 1.0},
        retry_after="0.05",
        slow_s=args.slow,
        seed=1,
    )
    # The server runs in its own process, as an inference server would: in this one it would take the interpreter
    # lock from the client on every request and the benchmark would measure the two together.
    with ScriptedServerProcess(text=VERDICT, latency=args.latency) as server:
        backend = OpenAICompatibleBackend(
            "judge", server.base_url, max_in_flight=args.in_flight, timeout=args.timeout, backoff_base=0.1
        )
        backend.generate(judge_chats(8), sampling)  # warm-up: imports and the TLS context, built once per process
        clean = run(server, backend, chats, sampling)
        server.faults = faults
        faulty = run(server, backend, chats, sampling)

    rows = [("clean", clean), (f"{args.fault_rate:.0%} faults", faulty)]
    print(f"{args.n} judge requests, {args.latency * 1000:.0f} ms latency, {args.in_flight} in flight")
    print(f"ideal {ideal:.2f} s; client timeout {args.timeout} s, slow answers {args.slow} s")
    header = (
        f"{'run':<12} {'seconds':>8} {'x ideal':>8} {'cpu s':>6} {'ok':>6} {'requests':>9} {'dupes':>6} {'peak':>5}"
        "  statuses"
    )
    print(header)
    print("-" * len(header))
    for label, r in rows:
        print(
            f"{label:<12} {r['seconds']:>8.2f} {r['seconds'] / ideal:>8.2f} {r['client_cpu_s']:>6.2f} "
            f"{r['completed']:>6} {r['requests']:>9} {r['duplicates']:>6} {r['peak_in_flight']:>5}  {r['statuses']}"
        )
    for label, r in rows:
        if r["errors"]:
            print(f"{label} errors (first 3): {r['errors']}")
    figures = {
        "n": args.n,
        "latency_s": args.latency,
        "max_in_flight": args.in_flight,
        "ideal_s": round(ideal, 3),
        "clean_s": round(clean["seconds"], 3),
        "faulty_s": round(faulty["seconds"], 3),
        "clean_over_ideal": round(clean["seconds"] / ideal, 3),
        "faulty_over_clean": round(faulty["seconds"] / clean["seconds"], 3),
        "completed_clean": clean["completed"],
        "completed_faulty": faulty["completed"],
        "duplicate_requests": clean["duplicates"] + faulty["duplicates"],
        "requests_faulty": faulty["requests"],
        "client_cpu_clean_s": round(clean["client_cpu_s"], 3),
        "client_cpu_faulty_s": round(faulty["client_cpu_s"], 3),
        "faults_injected": faulty["faults"],
        "peak_in_flight": max(clean["peak_in_flight"], faulty["peak_in_flight"]),
        "callbacks_once": clean["callbacks_once"] and faulty["callbacks_once"],
        "targets_met": clean["seconds"] <= 1.3 * ideal
        and faulty["seconds"] <= 2 * clean["seconds"]
        and clean["completed"] == faulty["completed"] == args.n
        and clean["duplicates"] + faulty["duplicates"] == 0,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
