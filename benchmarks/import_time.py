"""Time `import lioneval, lioneval.judges` in fresh interpreters, beyond the interpreter's own start-up.

Prints a small table and, as the last line, one JSON object. Target: under 0.5 s beyond interpreter start.
"""

import json
import statistics
import subprocess
import sys
import time


def _time(code: str, repeats: int = 7) -> float:
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    bare = _time("pass")
    full = _time("import lioneval, lioneval.judges")
    print(f"{'interpreter start':<28}{bare:8.3f} s")
    print(f"{'import lioneval(+judges)':<28}{full:8.3f} s")
    print(f"{'difference':<28}{full - bare:8.3f} s   (target < 0.5 s)")
    print(json.dumps({"interpreter_s": round(bare, 4), "import_s": round(full, 4), "extra_s": round(full - bare, 4)}))


if __name__ == "__main__":
    main()
