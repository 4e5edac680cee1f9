"""Warm cache: re-linting unchanged models answers from the cache, without importing torch or timm.

Fills a fresh cache folder with one cold run per target, checks that a warm run prints the same
report and leaves torch, timm and torchvision out of ``sys.modules``, then times, interleaved,
``python -c pass`` (interpreter start), each warm run, and ``python -c "import torch"``. Goal: a
warm run under 0.5 s wall. Prints medians and ratios measured in this run.

noiselint's modules get bytecode caches in a temporary folder (``PYTHONPYCACHEPREFIX``), as an
installed package has; ``--no-bytecode`` keeps the environment's setting instead.

    python benchmarks/warm_cache.py [--rounds 11] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"resnet50_file.py": str(ROOT / "fixtures" / "models" / "resnet50_file.py"), "timm:resnet50": "timm:resnet50"}
CHECK = """
import json, sys
sys.argv = ["noiselint", *sys.argv[1:]]
try:
    from noiselint.cli import main
    main()
except SystemExit:
    pass
print(json.dumps([m for m in ("torch", "timm", "torchvision", "numpy", "networkx") if m in sys.modules]),
      file=sys.stderr)
"""


def run(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--no-bytecode", action="store_true", help="keep the environment's bytecode setting")
    args = parser.parse_args()
    env = dict(os.environ)
    env.pop("NOISELINT_NO_CACHE", None)
    if not args.no_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="noiselint-pycache-")
    cache_dir = tempfile.mkdtemp(prefix="noiselint-cache-")
    lint = [sys.executable, "-m", "noiselint", "--isolated", "--cache-dir", cache_dir]

    commands = {"python -c pass": [sys.executable, "-c", "pass"]}
    for label, target in TARGETS.items():
        cold_wall, cold = run([*lint, target], env)
        _, warm = run([sys.executable, "-c", CHECK, target, "--isolated", "--cache-dir", cache_dir], env)
        loaded = json.loads(warm.stderr.strip().splitlines()[-1])
        assert warm.stdout == cold.stdout, f"{label}: the warm report differs from the cold one"
        assert not {"torch", "timm", "torchvision"} & set(loaded), f"{label}: a warm run imported {loaded}"
        print(f"{label}: cold run {cold_wall:.1f} s; warm run imports none of torch/timm/torchvision "
              f"(heavy modules it does import: {', '.join(loaded) or 'none'})")
        commands[f"warm {label}"] = [*lint, target]
    commands["import torch"] = [sys.executable, "-c", "import torch"]

    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            walls[name].append(run(command, env)[0])
    medians = {name: statistics.median(values) for name, values in walls.items()}
    print(f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds, medians:")
    for name, values in walls.items():
        print(f"  {name:28s} {medians[name]:5.2f} s (min {min(values):.2f}, max {max(values):.2f})")
    for label in TARGETS:
        warm = medians[f"warm {label}"]
        print(f"warm {label}: {warm:.2f} s (goal < 0.5 s), {warm / medians['import torch']:.2f}x `import torch`, "
              f"{warm - medians['python -c pass']:.2f} s over interpreter start")


if __name__ == "__main__":
    main()
