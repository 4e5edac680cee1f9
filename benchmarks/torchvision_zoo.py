"""Every torchvision classification model, linted: ``noiselint torchvision:NAME ... --format jsonl``.

Goal: every architecture reported with a full graph (trace level fx, export or hooks), no traceback.
Prints the counts per trace level and build (meta, or CPU with initializers skipped), and every
failure with its one-line error.

    python benchmarks/torchvision_zoo.py [--jobs 1] [--out torchvision.jsonl]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="torchvision.jsonl")
    args = parser.parse_args()
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    command = [sys.executable, "-m", "noiselint", *(f"torchvision:{n}" for n in names), "--jobs", str(args.jobs),
               "--format", "jsonl", "--no-cache", "--isolated", "--timeout", "300"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    with open(args.out, "w") as out:
        out.write(result.stdout)
    models = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    models = [m for m in models if m.get("type", "model") == "model" and "target" in m]
    levels = Counter((m.get("graph") or {}).get("trace_level", "failed") for m in models)
    cpu_built = sum(any("built on the CPU" in n for n in (m.get("graph") or {}).get("notes", ())) for m in models)
    failed = [m for m in models if m.get("error") or not m.get("graph")]
    print(f"{len(names)} torchvision classification models (torchvision {torchvision.__version__}), "
          f"{len(models)} reported in {wall:.0f} s")
    print("trace levels: " + ", ".join(f"{k} {v}" for k, v in sorted(levels.items())))
    print(f"built on the CPU with initializers skipped (the constructor reads tensor values): {cpu_built}")
    print(f"tracebacks in stderr: {result.stderr.count('Traceback (most recent call last)')}")
    for model in failed:
        print(f"  FAILED {model['target']}: {model.get('error')}")
    print(f"failures: {len(failed)}")


if __name__ == "__main__":
    main()
