"""Adapted what-ifs (``--adapt``) and the sensor noise protocol (``--noise-at sensor``), on real weights.

Few images, two sigmas, one draw, seeds fixed; clean agreement is over the held-out (odd-position)
images. EfficientNet-Lite0's distillation runs at 128 px (marked slow: minutes on two busy cores).
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from click.testing import CliRunner

from noiselint.cli import main
from noiselint.engine import Options, lint
from noiselint.graph import Preprocessing
from noiselint.verify import VerifyOptions, adapt, gains, verify_report
from noiselint.verify.data import library_transform, load_images
from noiselint.verify.execute import TorchExecutor
from noiselint.verify.runner import ProgressBar, _graph, sweep
from noiselint.verify.weights import materialize
from noiselint.verify.whatif import applied, patches

from .conftest import MODELS

MNIST = MODELS / "mnist_real.py"
LITE0 = MODELS / "efficientnet_lite0_real.py"
FAST = dict(sigmas=(0.1, 0.3), draws=1, rhos=(), gain_images=4)


class Setup:
    """A linted, materialized model with its images, executor, original sweep and what-ifs."""

    def __init__(self, target, images: int, steps: int, input_size=None):
        options = Options(preprocessing=Preprocessing(input_size=input_size))
        self.model = lint([str(target)], options).models[0]
        built = materialize(self.model, None)
        self.module, self.graph = built.module, _graph(self.model, built.module)
        self.options = VerifyOptions(**FAST, images=images, adapt=steps)
        pre = self.model.preprocessing
        self.images = load_images("auto", pre, images, 0, library_transform(self.module))
        self.executor = TorchExecutor(self.module, torch.device("cpu"), pre, self.images.images.shape[1], None)
        self.progress = ProgressBar(False, "")
        self.base = sweep(self.executor, self.images, self.options, (), self.progress)
        found = gains.probes(self.graph, self.module)
        clean = self.executor.normalize(self.images.images[:2])
        gains.capture(self.module, found, clean, clean)
        self.patches = patches(self.model.findings, [p for p in found if p.clean is not None])

    def what_if(self, name: str):
        """(training-free sweep, adapted result) of the patch whose name contains ``name``."""
        patch = next(p for p in self.patches if name in p.name)
        with applied(self.module, [patch], self.executor.device, False):
            free = sweep(self.executor, self.images, self.options, (), self.progress)
        result = adapt.measure(self.module, self.graph, [patch], self.executor, self.images, self.options,
                               self.base, free, self.progress)
        return patch, free, result


def _logits(setup: Setup) -> torch.Tensor:
    return setup.executor.run(setup.executor.normalize(setup.images.images[:8]))


@pytest.fixture(scope="module")
def mnist():
    return Setup(MNIST, images=512, steps=200)


def test_mnist_max_to_avg_pool_adapted(mnist):
    before = _logits(mnist)
    patch, free, adapted = mnist.what_if("avg pool at conv_layers.2")
    assert patch.codes == ("NL301",)
    assert adapted.held_out == 256
    assert adapted.clean_agreement >= 0.95  # measured 253/256 = 98.8 % (training-free 243/256)
    assert adapted.last_loss < adapted.first_loss / 5
    assert adapted.trained == ("conv_layers.0", "conv_layers.3", "conv_layers.2")
    original, training_free, trained = mnist.base.result, free.result, adapted.sweep
    assert len(original.curve()) == len(training_free.curve()) == len(trained.curve()) == 2
    assert adapted.vs_original == pytest.approx(trained.robustness - original.robustness)
    assert adapted.vs_training_free == pytest.approx(trained.robustness - training_free.robustness)
    assert all(0 < sweep.robustness <= 1.5 for sweep in (original, training_free, trained))
    assert torch.equal(_logits(mnist), before)  # the patch is off and the trained weights are back


def test_mnist_box_pre_filter_adapted(mnist):
    # MNIST has no strided conv: its blur before a stride is the box pre-filter before the stem conv,
    # whose output the 2x2/2 max pool subsamples
    patch, free, adapted = mnist.what_if("box pre-filter at conv_layers.0")
    assert adapted.trained == ("conv_layers.0", "conv_layers.3")
    training_free = (free.accumulator.top1 == mnist.base.accumulator.top1)[1::2].float().mean().item()
    assert adapted.clean_agreement >= 0.95  # measured 248/256 = 96.9 % held out (training-free 239/256)
    assert adapted.clean_agreement > training_free
    assert len(adapted.sweep.curve()) == len(free.result.curve()) == len(mnist.base.result.curve()) == 2


def test_adaptation_is_seeded(mnist):
    patch = next(p for p in mnist.patches if "box pre-filter" in p.name)
    runs = []
    for _ in range(2):
        with adapt.adapted(mnist.module, mnist.graph, [patch], mnist.executor, mnist.images.images, 5, 3) as done:
            runs.append((done.first_loss, done.last_loss, _logits(mnist)))
    assert runs[0][:2] == runs[1][:2] and torch.equal(runs[0][2], runs[1][2])


@pytest.mark.slow
def test_lite0_blur_before_stride_adapted():
    # distilled on the 10 even-position built-in images at 128 px, counted on the 10 others: the
    # training-free patch keeps 7/10 of the clean top-1, 60 steps 8/10, short of the 95 % MNIST
    # reaches. The 3x3 box removes detail the stem responds to: the best 3x3 stem on blurred images
    # leaves 13 % of the original stem output's variance unexplained (at 128 and at 224 px), and this
    # model's top-1 on these images is fragile (noise of sigma 0.005 alone changes 23 %)
    lite0 = Setup(LITE0, images=20, steps=60, input_size=(3, 128, 128))
    patch, free, adapted = lite0.what_if("box pre-filter at conv_stem")
    assert patch.module_path == "conv_stem" and adapted.trained[0] == "conv_stem"
    training_free = (free.accumulator.top1 == lite0.base.accumulator.top1)[1::2].float().mean().item()
    assert adapted.held_out == 10
    assert adapted.clean_agreement >= 0.8 and adapted.clean_agreement > training_free  # measured 0.8 vs 0.7
    assert adapted.last_loss < adapted.first_loss
    assert len(adapted.sweep.curve()) == len(free.result.curve()) == len(lite0.base.result.curve()) == 2


def test_adapt_and_sensor_through_the_cli(tmp_path):
    text = tmp_path / "report.txt"
    result = CliRunner().invoke(main, [str(MNIST), "--verify", "--images", "16", "--sigmas", "0.1,0.3", "--draws",
                                       "1", "--adapt", "3", "--noise-at", "sensor", "--format", "json",
                                       "--report", f"text:{text}"])
    assert result.exit_code == 1, result.output  # the max-pooling findings
    check = json.loads(result.stdout)["models"][0]["verification"]
    assert check["noise"]["protocol"] == "sensor" and "own resolution" in check["noise"]["model"]
    singles = [w for w in check["what_ifs"] if w["module_path"]]
    assert singles and all(w["adapted"]["steps"] == 3 and len(w["adapted"]["curve"]) == 2 for w in singles)
    assert all(w["adapted"] is None for w in check["what_ifs"] if not w["module_path"])  # all at once: not
    rendered = text.read_text()
    assert "sensor protocol" in rendered and "adapted (3 steps" in rendered and "vs training-free" in rendered
    bad = CliRunner().invoke(main, [str(MNIST), "--adapt", "10"])
    assert bad.exit_code == 2 and "--adapt needs --verify" in bad.output


def _json(report) -> str:
    from noiselint.reporters.json import render

    out = io.StringIO()
    render(report, out)
    return out.getvalue()


def _text(report) -> str:
    from noiselint.reporters.text import render

    out = io.StringIO()
    render(report, out)
    return out.getvalue()


# ---------------------------------------------------------------------------- --noise-at sensor


def test_sensor_noise_is_added_before_the_resize():
    pre = Preprocessing(input_size=(3, 32, 32))
    images = load_images("natural", pre, 4, 0, sensor=True)
    assert all(raw.shape[-1] > 100 for raw in images.sensor)  # kept at their own resolution
    assert torch.allclose(torch.stack([images.to_input(raw) for raw in images.sensor]), images.images)
    sigma = 0.1
    noisy = images.sensor_noisy(range(4), (sigma,), 0, seed=0)
    # downsampling several hundred pixels to 32 averages the sensor noise away; at the input it stays
    assert (noisy - images.images).std() < 0.25 * sigma
    assert images.sensor_noisy(range(4), (sigma,), 0, seed=0).equal(noisy)
    assert not images.sensor_noisy(range(4), (sigma,), 1, seed=0).equal(noisy)


def test_noise_at_sensor_224_vs_160():
    curves = {}
    for side in (224, 160):
        linted = lint([str(LITE0)], Options(preprocessing=Preprocessing(input_size=(3, side, side))))
        report = verify_report(linted, VerifyOptions(**FAST, images=4, noise_at="sensor"))
        data = json.loads(_json(report))["models"][0]["verification"]
        assert data["noise"]["protocol"] == "sensor" and "own resolution" in data["noise"]["model"]
        assert "sensor protocol" in _text(report)
        curves[side] = [p["agreement"] for p in data["curve"]]
    assert all(len(c) == 2 and all(0 <= v <= 1 for v in c) for c in curves.values())
