"""The verify run: for each linted model, materialize it, sweep the sigmas, measure node gains, try
the what-ifs, and attach a :class:`~noiselint.verify.report.Verification` to its report."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from statistics import median

import torch

from noiselint.errors import NoiselintError, one_line
from noiselint.findings import Basis, Finding, ModelReport, Report
from noiselint.graph import DEFAULT_INPUT_SIZE, ModelGraph
from noiselint.verify import adapt
from noiselint.verify import gains as gain_probes
from noiselint.verify.data import ImageSet, library_transform, load_images
from noiselint.verify.execute import OnnxExecutor, TorchExecutor, pick_device
from noiselint.verify.metrics import SweepAccumulator
from noiselint.verify.noise import PIXEL_STREAM, RHO_STREAM, InputBuilder, standard_normal
from noiselint.verify.options import VerifyOptions
from noiselint.verify.probe import PROBE_IMAGES, noise_to_signal
from noiselint.verify.report import NodeGain, Sweep, Verification, WhatIf
from noiselint.verify.weights import load_again, materialize
from noiselint.verify.whatif import Patch, applied, patches

Warn = Callable[[str], None]


def verify_report(report: Report, options: VerifyOptions, warn: Warn = lambda message: None) -> Report:
    """The report with every model that linted cleanly verified in this process (see
    :mod:`noiselint.verify`); a model whose verification fails gets that failure as its error."""
    device = prepare(options, any(m.ok for m in report.models), warn)
    models = tuple(verify_or_error(m, options, device) if m.ok else m for m in report.models)
    plot_all(models, options)
    return replace(report, models=models)


def prepare(options: VerifyOptions, any_model: bool, warn: Warn) -> torch.device:
    """Check the options and pick the device once for the run (warning when it is the CPU)."""
    options.validate()
    device = pick_device(options.device)
    if device.type == "cpu" and any_model:
        warn(
            "--verify runs on the CPU (no CUDA device): expect minutes for large models; "
            "--images and --draws trade precision for time"
        )
    return device


def plot_all(models, options: VerifyOptions) -> None:
    """``--plot``: the curves of every verified model."""
    if options.plot:
        from noiselint.verify.plot import plot

        plot([m.verification for m in models if m.verification is not None], options.plot)


def verify_or_error(
    model: ModelReport, options: VerifyOptions, device: torch.device, *, in_worker: bool = False
) -> ModelReport:
    """:func:`verify_model`, with any failure (bad ``--weights`` for this model, the model's own code
    raising, ``BaseException`` included) as the model's one-line error; in this process (``in_worker``
    false) a ``KeyboardInterrupt`` still stops the run."""
    from noiselint.engine import stdout_to_stderr

    try:
        with stdout_to_stderr():  # the model's own prints never reach the report on stdout
            return verify_model(model, options, device)
    except NoiselintError as exc:
        return replace(model, load_error=f"{model.model}: --verify: {exc}")
    except BaseException as exc:  # noqa: BLE001 - user models may fail in any way on real inputs
        if isinstance(exc, KeyboardInterrupt) and not in_worker:
            raise
        return replace(model, load_error=f"{model.model}: --verify failed: {one_line(exc)}")


def verify_model(
    model: ModelReport, options: VerifyOptions, device: torch.device, graph: ModelGraph | None = None
) -> ModelReport:
    """Verify one model; its findings come back with measured factors where a what-if measured them.

    ``graph`` is the lint's graph when the caller kept it; otherwise the model built here is traced
    once (one load, one trace: never a second load on the meta device)."""
    started = time.perf_counter()
    built = materialize(model, options.weights, options.max_memory)
    graph = graph if graph is not None else _graph(model, built.module)
    preprocessing = model.preprocessing or graph.preprocessing
    notes = list(built.notes)
    if preprocessing.mean is None or preprocessing.std is None:
        notes.append("mean/std unknown: inputs are fed as [0, 1] pixels (pass --mean and --std)")
    if preprocessing.input_size is None:
        notes.append("input size unknown: images are fed at 3x224x224 (pass --input-size)")
        preprocessing = replace(preprocessing, input_size=DEFAULT_INPUT_SIZE)
    images = load_images(
        options.data, preprocessing, options.images, options.seed,
        library_transform(built.module, model.target), sensor=options.noise_at == "sensor",
    )
    if images.sensor is not None:
        notes.append("--noise-at sensor: the curves' noise is at each image's own resolution; node gains "
                     "and the noise-to-signal probe keep the input protocol")
    channels = images.images.shape[1]
    if built.module is not None:
        executor = TorchExecutor(built.module, device, preprocessing, channels, options.batch_size)
    else:
        executor = OnnxExecutor(built.onnx_path, device, graph, preprocessing, channels, options.batch_size)
    if executor.device.type == "cuda":  # keep the images on the GPU if under a quarter of its free memory
        fits = images.images.numel() * 4 < torch.cuda.mem_get_info(executor.device)[0] // 4
        images.images = images.images.to(executor.device) if fits else images.images.pin_memory()
    executor.calibrate(executor.normalize(images.images[:64].to(executor.device)))
    with ProgressBar(options.progress, model.model) as progress:
        base = sweep(executor, images, options, options.rhos, progress)
        probe = noise_to_signal(executor, images.images[:PROBE_IMAGES], options.seed)
        findings, gains, what_ifs = model.findings, (), ()
        if built.module is not None:
            findings, gains, what_ifs = _measure(
                built.module, graph, executor, images, base, model, options, progress, notes
            )
        else:
            notes.append("node gains and what-ifs need a torch model (hooks); the ONNX model was only run")
    notes += images.notes + executor.notes
    verification = Verification(
        model=model.model,
        device=executor.label,
        batch_size=executor.batch_size,
        weights=built.weights,
        data=images.source,
        images=len(images),
        labelled=images.labels is not None,
        sigmas=options.sigmas,
        draws=options.draws,
        seed=options.seed,
        sweep=base.result,
        gains=gains,
        what_ifs=what_ifs,
        notes=tuple(notes),
        seconds=time.perf_counter() - started,
        probe=probe,
        noise_at=options.noise_at,
    )
    return replace(model, findings=findings, verification=verification)


def _graph(model: ModelReport, module) -> ModelGraph:
    """The lint's graph again (same node ids), traced from the model verify built (ONNX: re-read)."""
    from noiselint.engine import read_graph
    from noiselint.graph import Preprocessing
    from noiselint.loaders import LoadedModel

    loaded = load_again(model, "meta") if module is None else LoadedModel(model.model, model.target, module)
    return read_graph(loaded, model.preprocessing or Preprocessing())


class SweepRun:
    """A finished sweep: its :class:`Sweep` record and the per-image accumulator behind it."""

    def __init__(self, accumulator: SweepAccumulator, result: Sweep) -> None:
        self.accumulator, self.result = accumulator, result


def sweep(executor, images: ImageSet, options: VerifyOptions, rhos: tuple[float, ...], progress) -> SweepRun:
    """Clean, noisy (every sigma and draw) and rho-correlated forwards of every image, in full batches.

    One chunk's logits are copied to the host while the next chunk runs (pinned memory and an event
    on CUDA), so the device is not left waiting for the bookkeeping.
    """
    device, count = executor.device, len(images)
    shape = tuple(images.images.shape[1:])
    sigmas, draws = tuple(options.sigmas), options.draws
    per_image = 1 + len(sigmas) * draws + len(rhos) * draws
    builder = InputBuilder(sigmas, rhos, executor.scale, executor.shift)
    accumulator = SweepAccumulator(count, sigmas, rhos, draws, images.labels)
    progress.start(count * per_image)
    started, start, pending = time.perf_counter(), 0, None
    while start < count:
        rows = slice(start, min(count, start + images_per_stack(executor.batch_size, per_image)))
        indices = range(rows.start, rows.stop)
        x = images.images[rows].to(device, non_blocking=True)
        stack = torch.empty((len(indices) * per_image, *shape), device=device)
        blocks = stack.split(
            [len(indices)]
            + [len(indices) * len(sigmas)] * draws
            + [len(indices) * len(rhos)] * (draws if rhos else 0)
        )
        clean = executor.normalize(x, out=blocks[0])
        for draw in range(draws):
            if images.sensor is not None:  # --noise-at sensor: noise before the resize and crop
                pixels = images.sensor_noisy(indices, sigmas, draw, options.seed).to(device)
                executor.normalize(pixels, out=blocks[1 + draw])
                continue
            z = standard_normal(
                shape, indices, seed=options.seed, stream=PIXEL_STREAM, draw=draw, device=device
            )
            builder.noisy(clean, z, out=blocks[1 + draw])
        for draw in range(draws if rhos else 0):
            z = standard_normal(
                shape, indices, seed=options.seed, stream=RHO_STREAM, draw=draw, device=device
            )
            builder.correlated(clean, z, out=blocks[1 + draws + draw])
        logits = _to_host(executor.run(stack))
        if pending is not None:
            _record(accumulator, images, *pending)
        progress.advance(len(stack))
        pending = (rows, *logits)
        start = rows.stop
    if pending is not None:
        _record(accumulator, images, *pending)
    return SweepRun(accumulator, accumulator.result(count * per_image, time.perf_counter() - started))


def _to_host(logits: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    """Start copying ``logits`` to the host; on CUDA without waiting (pinned buffer and an event)."""
    if not logits.is_cuda:
        return logits, None
    host = torch.empty(logits.shape, dtype=logits.dtype, pin_memory=True)
    host.copy_(logits, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return host, event


def _record(
    accumulator: SweepAccumulator,
    images: ImageSet,
    rows: slice,
    logits: torch.Tensor,
    event: torch.cuda.Event | None,
) -> None:
    """Add one chunk's logits (clean, then every draw x sigma, then every draw x rho) to the accumulator."""
    if event is not None:
        event.synchronize()
    sigmas, rhos, draws = accumulator.sigmas, accumulator.rhos, accumulator.draws
    parts = logits.split(rows.stop - rows.start)
    accumulator.add_clean(rows, parts[0])
    if images.labels is not None and rows.start == 0 and int(images.labels.max()) >= parts[0].shape[1]:
        images.drop_labels(f"the model has {parts[0].shape[1]} outputs, fewer than the label values")
        accumulator.labels = None
    for draw in range(draws):
        for i in range(len(sigmas)):
            accumulator.add_noisy(rows, i, draw, parts[1 + draw * len(sigmas) + i])
    offset = 1 + draws * len(sigmas)
    for draw in range(draws if rhos else 0):
        for i in range(len(rhos)):
            accumulator.add_correlated(rows, i, draw, parts[offset + draw * len(rhos) + i])


def images_per_stack(batch: int, per_image: int) -> int:
    """Images whose inputs (``per_image`` each) fill whole batches: batch // per_image, or when one
    image needs more than a batch, the fewest images whose inputs split into full batches."""
    if batch >= per_image:
        return batch // per_image
    return batch // math.gcd(batch, per_image)


def _measure(module, graph, executor, images, base: SweepRun, model: ModelReport, options, progress, notes):
    """Node gains through hooks, then one sweep per what-if; the findings get measured factors."""
    device = executor.device
    sigma = float(median(options.sigmas))
    count = min(options.gain_images, len(images))
    clean = images.images[:count].to(device)
    z = standard_normal(
        tuple(clean.shape[1:]),
        range(count),
        seed=options.seed,
        stream=PIXEL_STREAM,
        draw=options.draws,
        device=device,
    )
    found = gain_probes.probes(graph, module)
    clean = executor.normalize(clean)
    noisy = InputBuilder((sigma,), (), executor.scale, executor.shift).noisy(clean, z)
    gain_probes.capture(module, found, clean, noisy)
    found = [p for p in found if p.clean is not None]
    meter = gain_probes.GainMeter(options.seed)
    gains = tuple(gain_probes.node_gain(p, meter, sigma) for p in found)
    by_node = {g.node: g for g in gains}
    chosen = patches(model.findings, found)
    covered = {f.fingerprint for p in chosen for f in p.findings}
    unmeasured = [
        f
        for f in model.findings
        if f.node
        and f.fingerprint not in covered
        and f.estimate is not None
        and f.estimate.factor is not None
    ]
    if unmeasured:
        notes.append(
            "no training-free what-if for: "
            + ", ".join(sorted({f"{f.code} at {f.module_path or f.node}" for f in unmeasured}))
        )
    what_ifs, measured = [], {}
    variants = [[p] for p in chosen] + ([chosen] if len(chosen) > 1 else [])
    for variant in variants:
        ratios, low_pass = (
            _ratios(variant[0], by_node, meter, sigma) if len(variant) == 1 else ((None,) * 3, None)
        )
        with applied(module, variant, device, executor.channels_last):
            run = sweep(executor, images, options, (), progress)
            probe = noise_to_signal(executor, images.images[:PROBE_IMAGES], options.seed)
        kept = (run.accumulator.top1 == base.accumulator.top1).float().mean().item()
        trained = (
            adapt.measure(module, graph, variant, executor, images, options, base, run, progress)
            if options.adapt and len(variant) == 1  # one patch at a time: each costs a training
            else None
        )
        single = variant[0] if len(variant) == 1 else None
        what_ifs.append(
            WhatIf(
                name=single.name if single else f"all {len(variant)} patches",
                change=single.change if single else "every patch above at once",
                module_path=single.module_path if single else "",
                findings=tuple(f"{f.code} {f.fingerprint}" for p in variant for f in p.findings),
                predicted=single.predicted if single else None,
                measured_noise_only=ratios[0],
                measured_real_input=ratios[1],
                measured_in_model=ratios[2],
                clean_agreement=kept,
                low_pass=low_pass,
                sweep=run.result,
                probe=probe,
                adapted=trained,
            )
        )
        if single and ratios[1] is not None:
            for finding in single.findings:
                measured[finding.fingerprint] = (ratios[1], single)
    findings = tuple(
        _measured(f, *measured[f.fingerprint], len(images), images.source) if f.fingerprint in measured else f
        for f in model.findings
    )
    return findings, gains, tuple(what_ifs)


def _ratios(patch: Patch, by_node, meter, sigma: float) -> tuple[tuple[float | None, ...], NodeGain]:
    """(patched / original) node gain (noise only, on the real input, in the model), and the gain of
    the patch's new averaging filter alone on the node's input."""
    probe, original = patch.probe, by_node[patch.probe.node]
    replacement = patch.build(probe.module).to(probe.clean.device)
    only, real, in_model, _ = meter.measure(replacement, probe.clean, probe.noisy)

    def ratio(new, old):
        return new / old if new is not None and old else None

    f_only, f_real, f_model, samples = meter.measure(patch.low_pass(replacement), probe.clean, probe.noisy)
    low_pass = NodeGain(
        node=f"{probe.node}:what-if",
        module_path=patch.module_path,
        op=f"what-if {patch.low_pass_label}",
        analytic=patch.low_pass_gain,
        formula=f"{patch.low_pass_label}: sum(h^2)",
        noise_only=f_only,
        real_input=f_real,
        in_model=f_model,
        sigma=sigma,
        samples=samples,
    )
    return (
        ratio(only, original.noise_only),
        ratio(real, original.real_input),
        ratio(in_model, original.in_model),
    ), low_pass


def _measured(finding: Finding, factor: float, patch: Patch, images: int, source: str) -> Finding:
    """The finding with its estimate's measured factor set and its basis marked measured."""
    estimate = finding.estimate
    if estimate is None:
        return finding
    how = (
        f"measured_factor by --verify: {patch.change}; node noise gain with white noise on the node's real "
        f"input from {images} images ({source}); factor stays the analytic prediction"
    )
    return replace(
        finding,
        estimate=replace(
            estimate, measured_factor=factor, basis=Basis.MEASURED, assumptions=(*estimate.assumptions, how)
        ),
    )


class ProgressBar:
    """A rich progress bar on stderr while a model's sweeps run (a no-op when disabled)."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled, self.label = enabled, label
        self.bar, self.task = None, None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("forwards"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.__enter__()
        return self

    def start(self, total: int) -> None:
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(f"verify {self.label}", total=total)

    def advance(self, amount: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, amount)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
