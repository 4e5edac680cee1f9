"""Throughput of ``--verify``'s sigma sweep against plain batched inference of the same model.

Both run on the same device with the same batch size, layout and precision (whatever verify's
calibration picked). The sweep is verify's own code path: per-image seeded noise, clipping,
normalization, rho-correlated inputs and the metric bookkeeping; plain inference feeds the same
number of ready-made normalized inputs through ``model(batch)`` under ``torch.inference_mode``.
Each is timed ``--repeats`` times, alternating; the ratio is given for the best runs (wall time and
process CPU time) and as the median over back-to-back pairs, the steadiest figure on a shared
machine whose load changes from minute to minute. The goal is a ratio of at least 0.9.

    python benchmarks/verify_throughput.py                      # EfficientNet-Lite0, auto device
    python benchmarks/verify_throughput.py --target fixtures/models/mnist_real.py --images 512
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path
from statistics import median

import torch

from noiselint.engine import lint
from noiselint.verify.data import load_images
from noiselint.verify.execute import TorchExecutor, pick_device
from noiselint.verify.options import DEFAULT_RHOS, DEFAULT_SIGMAS, VerifyOptions
from noiselint.verify.runner import ProgressBar, sweep
from noiselint.verify.weights import materialize

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=str(ROOT / "fixtures/models/efficientnet_lite0_real.py"))
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--images", type=int, help="images per run [default: 1024 on CUDA, 16 on the CPU]")
    parser.add_argument("--draws", type=int, default=1)
    parser.add_argument("--batch-size", type=int, help="[default: verify's automatic choice]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads [default: torch's choice]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = pick_device(args.device)
    count = args.images or (1024 if device.type == "cuda" else 16)
    report = lint([args.target]).models[0]
    options = VerifyOptions(images=count, draws=args.draws, batch_size=args.batch_size)
    preprocessing = report.preprocessing
    images = load_images("auto", preprocessing, count, seed=0)
    if len(images) < count:  # small built-in sets: repeat them to fill the run
        times = -(-count // len(images))
        images.images = images.images.repeat(times, 1, 1, 1)[:count]
        images.labels = None
    module = materialize(report, None).module
    executor = TorchExecutor(module, device, preprocessing, images.images.shape[1], args.batch_size)
    executor.calibrate(executor.normalize(images.images[:64].to(device)))
    per_image = 1 + len(DEFAULT_SIGMAS) * args.draws + len(DEFAULT_RHOS) * args.draws
    forwards = count * per_image
    plain_inputs = executor.normalize(images.images.to(device)).repeat(per_image, 1, 1, 1)

    def verify_run() -> None:
        with ProgressBar(False, "") as progress:
            sweep(executor, images, options, DEFAULT_RHOS, progress)

    if executor.channels_last:
        plain_inputs = plain_inputs.contiguous(memory_format=torch.channels_last)
    bf16 = torch.autocast("cuda", dtype=torch.bfloat16) if executor.precision == "bf16" else nullcontext()

    def plain_run() -> None:
        with torch.inference_mode(), bf16:
            for start in range(0, forwards, executor.batch_size):
                executor.module(plain_inputs[start : start + executor.batch_size])

    timed(plain_run, device)  # warm-up: allocator, kernels, bf16 casts
    runs = {"verify sweep": [], "plain inference": []}
    for _ in range(args.repeats):
        runs["verify sweep"].append(timed(verify_run, device))
        runs["plain inference"].append(timed(plain_run, device))
    print(f"model: {report.model}")
    print(
        f"device: {executor.label}; batch {executor.batch_size}; {count} images x {per_image} inputs "
        f"({len(DEFAULT_SIGMAS)} sigmas x {args.draws} draw(s) + {len(DEFAULT_RHOS)} rhos + clean) "
        f"= {forwards}; {torch.get_num_threads()} threads"
    )
    best = {name: (min(w for w, _ in times), min(c for _, c in times)) for name, times in runs.items()}
    for name, (wall, cpu) in best.items():
        print(
            f"{name + ':':17s}{forwards / wall:9.1f} images/s wall ({wall:.2f} s), "
            f"{forwards / cpu:9.1f} images per CPU-second ({cpu:.2f} s)"
        )
    (verify_wall, verify_cpu), (plain_wall, plain_cpu) = best["verify sweep"], best["plain inference"]
    paired = median(p[0] / v[0] for v, p in zip(runs["verify sweep"], runs["plain inference"], strict=True))
    print(
        f"ratio (verify / plain images per s): best runs {plain_wall / verify_wall:.3f} wall, "
        f"{plain_cpu / verify_cpu:.3f} CPU time; median of {args.repeats} back-to-back pairs "
        f"{paired:.3f} (goal >= 0.90)"
    )


def timed(function, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call; on a shared CPU, CPU time is the steadier figure."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
