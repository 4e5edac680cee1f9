"""Peak memory of linting a ~1 B-parameter model: it must stay far below the weights' size.

Runs `noiselint timm:vit_giant_patch14_224` in a fresh process and prints its peak resident memory
(the whole process: Python, torch, timm and the traced graph) against the 1.5 GB target and against
the 4 GB that the float32 weights alone would take.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

TARGET_GB = 1.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="timm:vit_giant_patch14_224")
    args = parser.parse_args()
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "noiselint", args.model, "--format", "concise", "--in-process"],  # one process
        capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    import timm
    import torch

    with torch.device("meta"):
        parameters = sum(p.numel() for p in timm.create_model(args.model.split(":", 1)[1]).parameters())
    print(f"model: {args.model} ({parameters / 1e9:.2f} B parameters, {parameters * 4 / 1e9:.1f} GB as float32)")
    print(f"exit code: {result.returncode} (1 = findings reported)")
    print(f"wall time: {elapsed:.1f} s")
    print(f"peak memory: {peak_gb:.2f} GB (target < {TARGET_GB} GB): {'OK' if peak_gb < TARGET_GB else 'OVER'}")
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr.strip())
    return 0 if peak_gb < TARGET_GB and result.returncode in (0, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
