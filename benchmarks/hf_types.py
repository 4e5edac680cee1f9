"""Lint every vision model type transformers registers for image classification, offline.

Runs ``noiselint hf:TYPE ...`` over ``MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES`` (each type's
default configuration from ``AutoConfig.for_model``, preprocessing from its image processor's class
defaults) with ``--format jsonl``. Goal: at least 95 % reported (linted: a graph and findings came
back, at any trace level), no traceback. Prints reported and failed counts, how many have shapes (fx,
export or hooks) and how many are untraced (structural: the layer list only), the slowest types and
every failure or untraced type with its reason. The JSON lines are kept in ``--out``.

    python benchmarks/hf_types.py [--jobs 2] [--timeout 300] [--out hf_types.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter

GOAL = 0.95
SHAPED_LEVELS = ("fx", "export", "hooks")


def model_types() -> list[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    return sorted(MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="per model type")
    parser.add_argument("--out", default="hf_types.jsonl")
    args = parser.parse_args()

    import transformers

    types = model_types()
    targets = [f"hf:{t}" for t in types]
    command = [sys.executable, "-m", "noiselint", *targets, "--jobs", str(args.jobs), "--format", "jsonl",
               "--no-cache", "--isolated", "--timeout", str(args.timeout)]
    print(f"transformers {transformers.__version__}: {len(types)} image-classification model types", flush=True)
    models, arrivals = [], []
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process, \
            open(args.out, "w", encoding="utf-8") as out:
        for line in process.stdout:
            out.write(line)
            record = json.loads(line)
            if record["type"] == "model":
                models.append(record)
                arrivals.append(time.perf_counter() - start)
        stderr = process.stderr.read()
    wall = time.perf_counter() - start

    reported = [m for m in models if m["status"] != "error"]  # linted: a graph and findings came back
    failed = [m for m in models if m["status"] == "error"]
    missing = sorted(set(targets) - {m["model"] for m in models})
    levels = Counter(m["graph"]["trace_level"] for m in reported)
    shaped = sum(levels[level] for level in SHAPED_LEVELS)
    share = len(reported) / len(types)
    print(f"\nmachine: {os.cpu_count()} cores; exit code {process.returncode}; wall {wall:.0f} s")
    print(f"reported (linted) {len(reported)}/{len(types)} = {share:.1%} (goal {GOAL:.0%}): "
          f"{'OK' if share >= GOAL else 'BELOW'}; failed to load {len(failed)}; missing {len(missing)} {missing}")
    print(f"with shapes (fx/export/hooks): {shaped}/{len(types)} = {shaped / len(types):.1%}; untraced "
          f"(structural: the layer list only) {levels['structural']}")
    print("per trace level: " + ", ".join(f"{level} {levels[level]}" for level in
                                          (*SHAPED_LEVELS, "structural") if levels[level]))
    print("traceback in stderr: " + ("YES" if "Traceback" in stderr else "none"))
    by_code = Counter(f["code"] for m in reported for f in m["findings"])
    print("findings by code: " + ", ".join(f"{code} {n}" for code, n in sorted(by_code.items())))
    print("architecture: " + ", ".join(f"{a} {n}" for a, n in Counter(
        m["graph"]["architecture"] for m in reported).most_common()))
    gaps = sorted(((b - a, m["model"]) for a, b, m in zip([0.0, *arrivals], arrivals, models, strict=False)),
                  reverse=True)[:5]
    print("slowest results: " + ", ".join(f"{name} {gap:.1f} s" for gap, name in gaps))
    print("per type:")
    for m in sorted(models, key=lambda m: m["model"]):
        if m["status"] == "error":
            print(f"  {m['model']:<28} FAILED  {m['error']}")
            continue
        graph = m["graph"]
        codes = ",".join(sorted(f["code"] for f in m["findings"])) or "-"
        print(f"  {m['model']:<28} {graph['trace_level']:<10} {graph['architecture']:<7} "
              f"coverage {graph['coverage']:.2f}  {codes}")
        if graph["trace_level"] == "structural":
            print(f"      why: {'; '.join(n for n in graph['notes'] if 'tracing failed' in n)[:400]}")
    return 0 if share >= GOAL and "Traceback" not in stderr else 1


if __name__ == "__main__":
    sys.exit(main())
