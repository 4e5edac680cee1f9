"""Run the twin study: ``python -m benchmarks.twins.run [--quick]`` from the repository root.

Full mode: both tasks, every variant, 5 seeds (about 40 minutes on one core). ``--quick``: 6 variants,
2 seeds, shorter training (under 5 minutes). Raw records go to ``results/<mode>.jsonl`` one line per
trained model (a rerun resumes where it stopped); the summary, the markdown table and, in full mode,
the packaged ``noiselint/data/twins.json`` are written from them by :mod:`benchmarks.twins.summary`.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.twins import data, models, study, summary

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1, 2, 3, 4)
QUICK_VARIANTS = ("base", "k7", "avgpool", "resnetd", "std05", "res48")
QUICK_SEEDS = (0, 1)
NL201_CONFIG = "[tool.noiselint.rules.NL201]\nmax_resolution = {limit}\n"


def plan(quick: bool) -> list[tuple[str, str, int]]:
    """(task, variant, seed) in run order: seed-major, so a stopped run still has paired seeds."""
    seeds = QUICK_SEEDS if quick else SEEDS
    jobs = []
    for task in ("natural", "digits"):
        variants = [v for v in models.TASK_VARIANTS[task] if not quick or v in QUICK_VARIANTS]
        jobs += [(task, v, s) for s in seeds for v in variants]
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 variants, 2 seeds, 120 training steps")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    args.out.mkdir(parents=True, exist_ok=True)
    raw_path = args.out / f"{mode}.jsonl"
    done = set()
    if raw_path.exists():
        for line in raw_path.read_text().splitlines():
            r = json.loads(line)
            done.add((r["task"], r["variant"], r["seed"]))
    recipes = study.QUICK_RECIPES if args.quick else study.RECIPES
    tasks = {"natural": data.natural(), "digits": data.digits()}
    start = time.perf_counter()
    with raw_path.open("a") as raw:
        for task, variant, seed in plan(args.quick):
            if (task, variant, seed) in done:
                continue
            record = study.run_one(tasks[task], variant, seed, recipes[task])
            raw.write(json.dumps(record) + "\n")
            raw.flush()
            print(f"{task:8s} {variant:11s} seed {seed}: clean {record['accuracy']['clean']:.3f} "
                  f"robustness {record['robustness']['sensor']:.3f} ({record['seconds']:.0f} s)", flush=True)
    lints = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks.values():
            config = Path(tmp) / f"{task.name}.toml"
            limit = 32 if task.name == "natural" else 16
            config.write_text(NL201_CONFIG.format(limit=limit))
            for variant in models.TASK_VARIANTS[task.name]:
                lints[f"{task.name}/{variant}"] = study.lint(variant, task, models.input_size(variant, task.name),
                                                             str(config))
    meta = {
        "mode": mode, "seeds": list(QUICK_SEEDS if args.quick else SEEDS), "sigmas": list(study.SIGMAS),
        "probe_sigma": study.PROBE_SIGMA, "recipes": {k: study.recipe_dict(v) for k, v in recipes.items()},
        "threads": args.threads, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "device": "cpu", "run_seconds": round(time.perf_counter() - start, 1),
    }
    (args.out / f"{mode}_lint.json").write_text(json.dumps({"meta": meta, "lint": lints}, indent=1) + "\n")
    summary.write(args.out, mode, package=not args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
