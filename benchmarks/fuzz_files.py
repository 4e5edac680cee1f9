"""Fuzz the files noiselint reads besides models: configurations, baselines and cache entries.

    python benchmarks/fuzz_files.py [--cases 2000] [--seed 0] [--kind config|baseline|cache|all]

Each case (``fixtures/file_fuzz.py``) is a structured edit of a valid file (a value of another type
or out of range, a key added or dropped, deep nesting), a byte mutation of one, a document of the
wrong shape, or a special file (FIFO, ``/dev/zero``, ``/dev/null``, a folder, a symlink loop) in its
place or named by it. A configuration that validates is then used to lint a small ONNX model; a
cache hit is rendered in every format (the JSON ones parsed strictly). Every case must be accepted
or rejected with a one-line error (a cache entry: a miss); a traceback, a hang (20 s) or a rule
that crashes under validated options is a failure. Prints the counts per kind; exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_fuzzer():
    """``fixtures/file_fuzz.py`` (the fixtures folder is no package)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "fixtures")]
    spec = importlib.util.spec_from_file_location("file_fuzz", ROOT / "fixtures" / "file_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(kind: str, cases: int, seed: int, fuzz) -> Counter:
    """Run ``cases`` cases of ``kind``; print the counts and the first failures."""
    counts: Counter = Counter()
    failures = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{kind}-") as tmp:
        old = os.getcwd()
        os.chdir(tmp)
        try:
            fuzzer = fuzz.Fuzzer(Path(tmp))
            for index in range(cases):
                outcome, detail = fuzzer.case(kind, f"{seed}-{index}")
                counts[outcome] += 1
                if outcome not in ("accepted", "rejected"):
                    failures.append((index, outcome, detail))
        finally:
            os.chdir(old)
    seconds = time.perf_counter() - start
    print(f"{kind}: {cases} cases in {seconds:.0f} s: " + ", ".join(f"{o} {counts[o]}" for o in fuzz.OUTCOMES))
    for index, outcome, detail in failures[:5]:
        print(f"\n[{outcome}] {kind} case {seed}-{index}\n{detail}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases per kind (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--kind", choices=["config", "baseline", "cache", "all"], default="all")
    args = parser.parse_args(argv)
    fuzz = load_fuzzer()
    kinds = fuzz.KINDS if args.kind == "all" else (args.kind,)
    totals = [run(kind, args.cases, args.seed, fuzz) for kind in kinds]
    failed = sum(c[o] for c in totals for o in ("traceback", "hang", "rule crash"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
