"""Does the store's write-ahead log stay bounded while readers poll it the whole time?

One writer process stores judgments in small batches, as a judging run does (one transaction per batch, each
judgment carrying a judge's raw output); three reader processes poll the same store through
``RunStore(path, readonly=True)``, as the dashboard does: record counts, the judgment inventory and the most recent
judgments, again and again. SQLite can only restart its WAL when no reader holds an old snapshot, so with readers
always present the ``-wal`` file grows unless the store bounds it (``RunStore._bound_wal``, ``WAL_LIMIT_BYTES``). The
main process samples the ``-wal`` file's size throughout. Target: it never reaches 64 MB.

    python benchmarks/wal_growth.py [--seconds 60] [--store PATH] [--batch 8] [--readers 3] [--pause 0]

Also reported: how long the writer was stalled (commits slower than 1 s), since a bound that holds the WAL down by
stopping the writer is a cost too.

Prints a table (one row per interval) and, as the last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

from lioneval.store import WAL_LIMIT_BYTES, RunStore
from lioneval.types import Judgment

LIMIT_MB = 64
STALL_S = 1.0  # a commit slower than this is a stall of the writer (a judging run waits on it)
MB = 1024 * 1024
RAW = ("The assistant's answer is accurate and well organised, but it misses one of the two constraints the user "
       "gave and the example in the second paragraph does not run as written. ")


def _writer(path: str, batch: int, pause: float, stop, writes, rows, slowest,  # type: ignore[no-untyped-def]
            stalled) -> None:
    store = RunStore(path)
    n = 0
    try:
        while not stop.is_set():
            js = [Judgment(question_id=f"q{n + i}", benchmark="mt-bench", judge="judge-a", model=f"ckpt-{n // 5000}",
                           kind="rating", turn=1, value=float((n + i) % 10 + 1), raw=RAW * 12 + f"Rating: [[{i}]]",
                           inputs=f"in-{n + i}") for i in range(batch)]
            t0 = time.perf_counter()
            store.put_judgments(js)
            dt = time.perf_counter() - t0
            n += batch
            with slowest.get_lock():
                slowest.value = max(slowest.value, dt)
            if dt > STALL_S:
                with stalled.get_lock():
                    stalled.value += dt
            if pause:
                stop.wait(pause)
            with writes.get_lock():
                writes.value += 1
            with rows.get_lock():
                rows.value += batch
    finally:
        store.close()


def _reader(path: str, stop, reads, slowest) -> None:  # type: ignore[no-untyped-def]
    store = RunStore(path, readonly=True)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            counts = store.counts()
            store.judgment_inventory()
            last = counts["judgments"]
            recent = store.judgments_at(range(max(1, last - 19), last + 1))  # rowids: no row is ever deleted
            assert len(recent) <= 20
            dt = time.perf_counter() - t0
            with reads.get_lock():
                reads.value += 1
            with slowest.get_lock():
                slowest.value = max(slowest.value, dt)
    finally:
        store.close()


def _wal_size(path: str) -> int:
    try:
        return os.path.getsize(f"{path}-wal")
    except OSError:
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="How long the writer and readers run (default 60).")
    ap.add_argument("--store", help="Store file to use (default: a new one in a temporary folder).")
    ap.add_argument("--batch", type=int, default=8, help="Judgments per write transaction (default 8).")
    ap.add_argument("--readers", type=int, default=3, help="Reader processes (default 3).")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="Seconds the writer waits between batches (default 0: as fast as it can, the worst case).")
    ap.add_argument("--interval", type=float, default=5.0, help="Seconds per table row (default 5).")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.batch < 1 or args.readers < 1 or args.interval <= 0 or args.pause < 0:
        ap.error("--seconds, --batch, --readers and --interval must be positive, --pause not negative")

    tmp = tempfile.TemporaryDirectory(prefix="lioneval-wal-") if args.store is None else None
    path = args.store or str(Path(tmp.name) / "store.db")  # type: ignore[union-attr]
    RunStore(path).close()  # created and migrated before anyone opens it read-only

    ctx = mp.get_context("spawn")  # each process opens its own connection, nothing inherited
    stop = ctx.Event()
    writes, rows, reads = ctx.Value("l", 0), ctx.Value("l", 0), ctx.Value("l", 0)
    slowest = ctx.Value("d", 0.0)
    slowest_write, stalled = ctx.Value("d", 0.0), ctx.Value("d", 0.0)
    readers = [ctx.Process(target=_reader, args=(path, stop, reads, slowest), daemon=True)
               for _ in range(args.readers)]
    for p in readers:
        p.start()
    writer = ctx.Process(target=_writer, args=(path, args.batch, args.pause, stop, writes, rows, slowest_write,
                                               stalled), daemon=True)
    writer.start()

    t0 = time.monotonic()
    samples: list[tuple[float, int]] = []
    table: list[tuple[float, int, int, int, float, float]] = []
    next_row = args.interval
    window_max = 0
    try:
        while (now := time.monotonic() - t0) < args.seconds:
            size = _wal_size(path)
            samples.append((now, size))
            window_max = max(window_max, size)
            if now >= next_row:
                table.append((now, writes.value, rows.value, reads.value, window_max / MB, size / MB))
                window_max, next_row = 0, next_row + args.interval
            if not writer.is_alive():
                raise SystemExit(f"the writer stopped early (exit code {writer.exitcode})")
            time.sleep(0.05)
    finally:
        stop.set()
        writer.join(timeout=60)
        for p in readers:
            p.join(timeout=60)
    elapsed = time.monotonic() - t0
    final = _wal_size(path)
    table.append((elapsed, writes.value, rows.value, reads.value, window_max / MB, final / MB))
    db_mb = os.path.getsize(path) / MB
    crashed = [p.exitcode for p in [writer, *readers] if p.exitcode not in (0, None)]

    print(f"store {path}: WAL bounded at {WAL_LIMIT_BYTES / MB:.0f} MB by the store; target < {LIMIT_MB} MB")
    print(f"{'t (s)':>7} {'commits':>9} {'judgments':>10} {'reads':>8} {'max WAL MB':>11} {'WAL MB':>8}")
    for t, w, r, rd, mx, cur in table:
        print(f"{t:7.1f} {w:9d} {r:10d} {rd:8d} {mx:11.1f} {cur:8.1f}")
    max_mb = max(size for _, size in samples) / MB if samples else 0.0
    print(f"slowest commit {slowest_write.value:.2f} s; writer stalled (commits over {STALL_S:.0f} s) "
          f"{stalled.value:.1f} of {elapsed:.0f} s; slowest read {slowest.value:.3f} s")
    result = {
        "benchmark": "wal_growth", "seconds": round(elapsed, 1), "writes": writes.value, "judgments": rows.value,
        "reads": reads.value, "readers": args.readers, "batch": args.batch, "pause_s": args.pause,
        "samples": len(samples),
        "max_wal_mb": round(max_mb, 2), "final_wal_mb": round(final / MB, 2), "db_mb": round(db_mb, 1),
        "slowest_read_s": round(slowest.value, 3), "slowest_write_s": round(slowest_write.value, 3),
        "writer_stalled_s": round(stalled.value, 1), "limit_mb": LIMIT_MB,
        "ok": max_mb < LIMIT_MB and not crashed and writes.value > 0 and reads.value > 0,
    }
    if crashed:
        result["crashed_exit_codes"] = crashed
    print(json.dumps(result))
    if tmp is not None:
        tmp.cleanup()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
