"""Throughput of ``--verify``'s sigma sweep against plain batched inference of the same model.

Both run on the same device with the same batch size, layout and precision (whatever verify's
calibration picked). The sweep is verify's own code path: per-image seeded noise, clipping,
normalization, rho-correlated inputs and the metric bookkeeping; plain inference feeds the same
number of ready-made normalized inputs through ``model(batch)`` under ``torch.inference_mode``.
Each is timed ``--repeats`` times, alternating, and the best run counts (the machine may be shared).
The goal is a ratio of at least 0.9.

    python benchmarks/verify_throughput.py                      # EfficientNet-Lite0, auto device
    python benchmarks/verify_throughput.py --target fixtures/models/mnist_real.py --images 512
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path

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
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

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

    def verify_run() -> float:
        started = time.perf_counter()
        with ProgressBar(False, "") as progress:
            sweep(executor, images, options, DEFAULT_RHOS, progress)
        _sync(device)
        return time.perf_counter() - started

    if executor.channels_last:
        plain_inputs = plain_inputs.contiguous(memory_format=torch.channels_last)
    bf16 = torch.autocast("cuda", dtype=torch.bfloat16) if executor.precision == "bf16" else nullcontext()

    def plain_run() -> float:
        started = time.perf_counter()
        with torch.inference_mode(), bf16:
            for start in range(0, forwards, executor.batch_size):
                executor.module(plain_inputs[start : start + executor.batch_size])
        _sync(device)
        return time.perf_counter() - started

    plain_run()  # warm-up: allocator, kernels, bf16 casts
    best_verify, best_plain = float("inf"), float("inf")
    for _ in range(args.repeats):
        best_verify = min(best_verify, verify_run())
        best_plain = min(best_plain, plain_run())
    verify_rate, plain_rate = forwards / best_verify, forwards / best_plain
    print(f"model: {report.model}")
    print(
        f"device: {executor.label}; batch {executor.batch_size}; {count} images x {per_image} inputs "
        f"({len(DEFAULT_SIGMAS)} sigmas x {args.draws} draw(s) + {len(DEFAULT_RHOS)} rhos + clean) "
        f"= {forwards}"
    )
    print(f"verify sweep:    {verify_rate:9.1f} images/s ({best_verify:.2f} s)")
    print(f"plain inference: {plain_rate:9.1f} images/s ({best_plain:.2f} s)")
    print(f"ratio: {verify_rate / plain_rate:.3f} (goal >= 0.90)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
