"""Fan-out throughput: judge requests over 1, 2 and 4 scripted OpenAI-compatible servers, and one server killed.

Each server answers after ``--latency`` seconds and takes at most ``--cap`` requests at once (the backend's
per-server bound), so one server's ceiling is cap / latency requests per second. Targets: with 2 and 4 servers the
throughput is at least 80% of linear (n times one server's); with 4 servers and one of them killed (SIGKILL) after a
quarter of the requests, every request completes and none is answered twice by the servers that stayed up.

    python benchmarks/fanout.py [--n 2000] [--latency 0.1] [--cap 8]

The servers run as child processes (``python -m lioneval.testing.openai_server``), as real inference servers
would. Prints a table; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter

from lioneval.backends.base import Sampling
from lioneval.backends.fanout import FanoutBackend

VERDICT = "A is more rigorous and B more intuitive. My final verdict is [[A>B]]"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Server:
    """One scripted server process, started by its command line so that it can be killed like a real one."""

    def __init__(self, latency: float):
        self.proc = subprocess.Popen([sys.executable, "-m", "lioneval.testing.openai_server", "--port", "0",
                                      "--latency", str(latency), "--text", VERDICT], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"(http://\S+/v1)", line)
        if not found:
            self.proc.kill()
            raise SystemExit(f"the scripted server did not start: {line!r}")
        self.base_url = found.group(1)

    def answered(self) -> Counter:
        """Prompt hash -> successful answers, from the server's own log."""
        with _DIRECT.open(self.base_url.removesuffix("/v1") + "/_scripted/requests", timeout=10) as resp:
            recs = json.loads(resp.read())["requests"]
        return Counter(r[0] for r in recs if r[1] == 200 and r[5].endswith("/chat/completions"))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def chats(n: int) -> list[list[dict[str, str]]]:
    """Both games of n/2 pairwise judgments, Arena-Hard style (rubric, question, two answers), all distinct."""
    system = ("You are an impartial judge. Compare the two assistant answers to the user's question for helpfulness, "
              "correctness and concision; answer with [[A>>B]], [[A>B]], [[A=B]], [[B>A]] or [[B>>A]].")
    out = []
    for i in range(n):
        q, a, b = i // 2, f"The sum is {(i // 2 + 2) ** 2}, by induction.", "Draw the squares as L-shaped layers."
        first, second = (a, b) if i % 2 == 0 else (b, a)
        user = (f"<|User Prompt|>\nQuestion {q}: why is the sum of the first {q + 2} odd numbers a square?\n\n"
                f"<|The Start of Assistant A's Answer|>\n{first}\n<|The End of Assistant A's Answer|>\n\n"
                f"<|The Start of Assistant B's Answer|>\n{second}\n<|The End of Assistant B's Answer|>")
        out.append([{"role": "system", "content": system}, {"role": "user", "content": user}])
    return out


def measure(servers: list[Server], requests, cap: int, kill_after: int | None = None) -> dict:
    backend = FanoutBackend("judge", [s.base_url for s in servers], max_in_flight=cap, health_interval=0.5,
                            timeout=30, max_retries=3)
    done = Counter()
    killed: list[Server] = []

    def on_result(i: int, c) -> None:
        done.update(["ok" if c.ok else "failed"])
        if kill_after is not None and not killed and sum(done.values()) >= kill_after:
            killed.append(servers[-1])
            servers[-1].kill()

    warm = [[{"role": "user", "content": f"warm-up {i}"}] for i in range(len(servers))]
    backend.generate(warm, Sampling(max_tokens=32, temperature=0.0))  # imports and first connections
    t0 = time.perf_counter()
    out = backend.generate(requests, Sampling(max_tokens=32, temperature=0.0), on_result=on_result)
    seconds = time.perf_counter() - t0
    answered = Counter()
    for s in servers:
        if s not in killed:
            answered.update(s.answered())
    return {"servers": len(servers), "killed": len(killed), "seconds": round(seconds, 2),
            "per_s": round(len(requests) / seconds, 1), "ok": sum(c.ok for c in out),
            "failed": sum(not c.ok for c in out), "failovers": sum(c.meta.get("failovers", 0) for c in out if c.ok),
            "answered_twice": sum(1 for v in answered.values() if v > 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="judge requests per run")
    ap.add_argument("--latency", type=float, default=0.1, help="seconds each server takes per answer")
    ap.add_argument("--cap", type=int, default=8, help="requests in flight per server")
    args = ap.parse_args()
    requests = chats(args.n)
    rows = []
    for n in (1, 2, 4):
        servers = [Server(args.latency) for _ in range(n)]
        try:
            rows.append(measure(servers, requests, args.cap))
        finally:
            for s in servers:
                s.stop()
    servers = [Server(args.latency) for _ in range(4)]
    try:
        rows.append(measure(servers, requests, args.cap, kill_after=args.n // 4))
    finally:
        for s in servers:
            s.stop()
    base = rows[0]["per_s"]
    for r in rows:
        r["ideal_per_s"] = round(r["servers"] * args.cap / args.latency, 1)
        r["vs_linear"] = round(r["per_s"] / (base * r["servers"]), 3)
    print(f"{args.n} requests, {args.latency * 1000:.0f} ms per answer, {args.cap} in flight per server")
    print(f"{'servers':>7} {'killed':>6} {'seconds':>8} {'req/s':>7} {'ideal':>7} {'vs linear':>9} {'ok':>5} "
          f"{'failed':>6} {'failovers':>9} {'twice':>5}")
    for r in rows:
        print(f"{r['servers']:>7} {r['killed']:>6} {r['seconds']:>8.2f} {r['per_s']:>7.1f} {r['ideal_per_s']:>7.1f} "
              f"{r['vs_linear']:>9.2f} {r['ok']:>5} {r['failed']:>6} {r['failovers']:>9} {r['answered_twice']:>5}")
    scaling = [r["vs_linear"] for r in rows[1:3]]
    kill = rows[3]
    passed = min(scaling) >= 0.8 and kill["ok"] == args.n and kill["answered_twice"] == 0
    print(f"scaling within 80% of linear: {min(scaling) >= 0.8}; with a server killed all complete: "
          f"{kill['ok'] == args.n}")
    print(json.dumps({"n": args.n, "latency_s": args.latency, "cap": args.cap, "runs": rows,
                      "min_vs_linear": min(scaling), "killed_all_complete": kill["ok"] == args.n, "pass": passed}))


if __name__ == "__main__":
    main()
