"""Cold start: ``noiselint resnet50_file.py --no-cache`` against ``import torch`` and torchinfo.

Three commands, each a fresh interpreter, run interleaved (one of each per round, after a warm-up
round that fills the OS file cache), so load from other processes hits them alike; the report
gives medians and the ratios of the medians measured in this run:

* ``python -c "import torch"``: the floor for any torch-based tool (goal: noiselint <= 1.3x);
* ``noiselint fixtures/models/resnet50_file.py --no-cache --isolated``: build on the meta device,
  trace, shapes, rules, text report;
* ``torchinfo.summary`` of the same model at 1x3x224x224: allocates the weights and runs a
  real forward on CPU (time and peak memory, the maximum resident set of the process).

noiselint's own modules get bytecode caches in a temporary folder (``PYTHONPYCACHEPREFIX``), as an
installed package has; ``--no-bytecode`` keeps the environment's setting instead.

    python benchmarks/cold_start.py [--rounds 7] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "fixtures" / "models" / "resnet50_file.py"
TORCHINFO = (
    "import sys; sys.path.insert(0, {folder!r}); import torchinfo; from resnet50_file import build_model; "
    "torchinfo.summary(build_model(), input_size=(1, 3, 224, 224), verbose=0)"
)
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "noiselint": [sys.executable, "-m", "noiselint", str(MODEL), "--no-cache", "--isolated"],
    "torchinfo": [sys.executable, "-c", TORCHINFO.format(folder=str(MODEL.parent))],
}


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one run of ``command``."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):  # 1: noiselint found something
            errors.seek(0)
            raise SystemExit(f"{command[-1]} failed ({code}): {errors.read().decode(errors='replace')[-500:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-bytecode", action="store_true", help="keep the environment's bytecode setting")
    args = parser.parse_args()
    env = dict(os.environ)
    if not args.no_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="noiselint-pycache-")

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for round_ in range(args.rounds + 1):
        for name, command in COMMANDS.items():
            wall, peak = measure(command, env)
            if round_:  # round 0 warms the file cache (and writes bytecode)
                results[name].append((wall, peak))
        print(f"round {round_}: " + ", ".join(f"{n} {results[n][-1][0]:.2f}s" for n in COMMANDS if round_),
              flush=True)

    walls = {name: statistics.median(w for w, _ in runs) for name, runs in results.items()}
    peaks = {name: statistics.median(p for _, p in runs) for name, runs in results.items()}
    print(f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds, medians:")
    for name in COMMANDS:
        spread = [w for w, _ in results[name]]
        print(f"  {name:13s} {walls[name]:6.2f} s (min {min(spread):.2f}, max {max(spread):.2f})  "
              f"peak {peaks[name]:6.0f} MiB")
    print(f"noiselint / import torch: {walls['noiselint'] / walls['import torch']:.2f}x wall (goal <= 1.3x), "
          f"{peaks['noiselint'] / peaks['import torch']:.2f}x memory")
    print(f"noiselint / torchinfo:    {walls['noiselint'] / walls['torchinfo']:.2f}x wall, "
          f"{peaks['noiselint'] / peaks['torchinfo']:.2f}x memory")


if __name__ == "__main__":
    main()
