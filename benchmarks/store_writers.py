"""Many writer processes on one store at once, as evaluators and trainers on a cluster: rows per second, and whether
anything was lost or stored twice, on SQLite and (given a URL) PostgreSQL.

Each writer process stores ``--batches`` batches of ``--batch`` judgments (one transaction per batch, as a judging run
does); a tenth of each batch is the same records in every writer, in an order of its own, so writers also race for
the same keys. Writers connect first and start together, so the figures are of writing, not of starting Python.
After each round the store is counted: every writer's own records must be there once, and every shared one once.

    python benchmarks/store_writers.py [--url postgresql://USER@HOST/DB] [--writers 1 2 4] [--batches 20]
                                       [--batch 200] [--store PATH]

The PostgreSQL database may already hold a lioneval store: the records written here carry a fresh tag and only
they are counted (they stay in it). Prints a table and, as the last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
import uuid

from lioneval.store import RunStore, is_url
from lioneval.types import Judgment


def _judgment(tag: str, model: str, q: str) -> Judgment:
    return Judgment(question_id=q, benchmark="mt-bench", judge=f"bench-{tag}", model=model, kind="rating",
                    value=5.0, raw="The answer follows the instructions and is correct; a clearer example would help.")


def _writer(location: str, tag: str, w: int, batches: int, batch: int, go, added) -> None:  # type: ignore[no-untyped-def]
    store = RunStore(location)
    shared_n = max(1, batch // 10)
    rng = random.Random(w)
    go.wait()
    total = 0
    for b in range(batches):
        rows = [_judgment(tag, f"w{w}", f"{b}-{i}") for i in range(batch - shared_n)]
        shared = [_judgment(tag, "shared", f"{b}-{i}") for i in range(shared_n)]
        rng.shuffle(shared)
        total += store.put_judgments(shared + rows)
    added[w] = total
    store.close()


def _deadlocks(location: str) -> int | None:
    """Deadlocks the PostgreSQL server broke in this database so far (each cost a writer one retry)."""
    if not is_url(location):
        return None
    import psycopg

    with psycopg.connect(location) as db:
        row = db.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else None


def _round(location: str, writers: int, batches: int, batch: int) -> dict:
    tag = uuid.uuid4().hex[:10]
    deadlocks = _deadlocks(location)
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    added = ctx.Array("l", writers)
    procs = [ctx.Process(target=_writer, args=(location, tag, w, batches, batch, go, added)) for w in range(writers)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # every writer imported and connected (a slow one only delays its own start)
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - t0
    if deadlocks is not None:
        deadlocks = (_deadlocks(location) or 0) - deadlocks
    shared_n = max(1, batch // 10)
    with RunStore(location, readonly=True) as st:
        rows = st.judgment_columns("mt-bench", judges=[f"bench-{tag}"])
    per_model: dict[str, set] = {}
    duplicated = 0
    for r in rows:
        seen = per_model.setdefault(r[2], set())
        duplicated += r[1] in seen
        seen.add(r[1])
    expected = {f"w{w}": batches * (batch - shared_n) for w in range(writers)} | {"shared": batches * shared_n}
    lost = sum(max(0, n - len(per_model.get(m, ()))) for m, n in expected.items())
    return {"writers": writers, "rows": len(rows), "seconds": round(seconds, 3),
            "rows_per_s": round(len(rows) / seconds), "lost": lost, "duplicated": duplicated,
            "added_counted": sum(added[:]), "deadlocks_retried": deadlocks,
            "crashed": [p.exitcode for p in procs if p.exitcode != 0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a PostgreSQL store to measure too (postgresql://USER@HOST/DB)")
    ap.add_argument("--store", help="the SQLite file (default: a new one in a temporary folder)")
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch", type=int, default=200)
    args = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    backends = {"sqlite": args.store or os.path.join(tmp.name, "writers.db")}
    if args.url:
        if not is_url(args.url):
            ap.error("--url takes a postgresql:// URL")
        backends["postgresql"] = args.url
    results = []
    for name, location in backends.items():
        RunStore(location).close()  # created and migrated before the writers race to open it
        for n in args.writers:
            results.append({"backend": name, **_round(location, n, args.batches, args.batch)})
    print(f"{args.batches} batches of {args.batch} judgments per writer, a tenth of each shared by all writers")
    print(f"{'backend':<11} {'writers':>7} {'rows':>7} {'seconds':>8} {'rows/s':>8} {'lost':>5} {'dup':>4} "
          f"{'deadlocks':>9}")
    for r in results:
        deadlocks = "-" if r["deadlocks_retried"] is None else r["deadlocks_retried"]
        print(f"{r['backend']:<11} {r['writers']:>7} {r['rows']:>7} {r['seconds']:>8.2f} {r['rows_per_s']:>8} "
              f"{r['lost']:>5} {r['duplicated']:>4} {deadlocks:>9}")
    ok = all(r["lost"] == 0 and r["duplicated"] == 0 and r["added_counted"] == r["rows"] and not r["crashed"]
             for r in results)
    print(json.dumps({"benchmark": "store_writers", "batches": args.batches, "batch": args.batch,
                      "cpus": os.cpu_count(), "results": results, "ok": ok}))
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
