"""Lint the whole timm zoo: ``noiselint 'timm:*' --jobs 2 --format jsonl --no-cache``.

Goal: under 6 minutes on a 2-core machine, every architecture reported (no traceback), at least
99 % with a full graph with shapes: trace level fx, export or hooks (the structural level lists
layers without shapes or data flow). Prints the wall time against the 6-minute budget, counts per
trace level, coverage (share of leaf layers with a shape), the slowest finishing gaps, and every
failure with its one-line error. The JSON lines are kept in ``--out``.

    python benchmarks/zoo.py [--pattern 'timm:*'] [--jobs 2] [--timeout 120] [--out zoo.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter

BUDGET_S = 360.0
FULL_LEVELS = ("fx", "export", "hooks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="timm:*")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0, help="per model (a hang must not stall the run)")
    parser.add_argument("--out", default="zoo.jsonl", help="where the JSON lines go")
    args = parser.parse_args()

    command = [sys.executable, "-m", "noiselint", args.pattern, "--jobs", str(args.jobs), "--format", "jsonl",
               "--no-cache", "--isolated", "--timeout", str(args.timeout)]
    print("command:", " ".join(command[1:]), flush=True)
    models, summary, arrivals = [], None, []
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process, \
            open(args.out, "w", encoding="utf-8") as out:
        for line in process.stdout:
            out.write(line)
            record = json.loads(line)
            if record["type"] == "model":
                models.append(record)
                arrivals.append((time.perf_counter() - start, record["model"]))
            else:
                summary = record
    wall = time.perf_counter() - start
    report(models, summary, arrivals, wall, process.returncode, args.pattern)


def expected_names(pattern: str) -> list[str]:
    import timm

    return [f"timm:{name}" for name in timm.list_models(pattern.removeprefix("timm:"))]


def report(models: list[dict], summary: dict | None, arrivals: list, wall: float, code: int, pattern: str) -> None:
    expected = expected_names(pattern)
    reported = {m["model"] for m in models}
    missing = [name for name in expected if name not in reported]
    levels = Counter((m["graph"] or {}).get("trace_level", "failed") for m in models)
    full = sum(levels[level] for level in FULL_LEVELS)
    coverages = [m["graph"]["coverage"] for m in models if m["graph"]]
    failures = [m for m in models if m["status"] != "ok"]

    print(f"\nmachine: {os.cpu_count()} cores; exit code {code}")
    print(f"wall time: {wall:.0f} s = {wall / 60:.1f} min ({wall / BUDGET_S:.2f}x the 6-minute budget)")
    print(f"architectures: {len(expected)} in timm, {len(reported)} reported "
          f"({len(reported) / max(len(expected), 1):.1%}), missing {len(missing)} {missing[:5]}")
    print("per trace level: " + ", ".join(f"{level} {levels[level]}" for level in
                                          (*FULL_LEVELS, "structural", "failed") if levels[level]))
    print(f"full graph with shapes (fx/export/hooks): {full}/{len(expected)} = {full / max(len(expected), 1):.2%}")
    if coverages:
        print(f"coverage (leaf layers with a shape): median {statistics.median(coverages):.3f}, "
              f"mean {statistics.fmean(coverages):.3f}, >= 0.9 for {sum(c >= 0.9 for c in coverages)}")
    if summary:
        print(f"findings: {summary['summary']['findings']} {summary['summary']['by_code']}")
    gaps = sorted(((b[0] - a[0], b[1]) for a, b in zip(arrivals, arrivals[1:], strict=False)), reverse=True)[:5]
    print("longest gaps between results (a slow model, or a worker restart): "
          + ", ".join(f"{name} {gap:.1f} s" for gap, name in gaps))
    print(f"failures: {len(failures)}")
    for model in failures:
        print(f"  {model['error']}")


if __name__ == "__main__":
    main()
