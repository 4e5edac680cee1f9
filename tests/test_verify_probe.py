"""The noise-to-signal probe: seeded, grows with sigma, smaller for the average-pool what-if."""

from __future__ import annotations

import torch

from noiselint.engine import lint
from noiselint.verify.data import load_images
from noiselint.verify.execute import TorchExecutor
from noiselint.verify.probe import noise_to_signal
from noiselint.verify.weights import materialize

from .conftest import MODELS


def test_probe_on_mnist_is_seeded_and_grows_with_sigma():
    torch.set_num_threads(1)
    report = lint([str(MODELS / "mnist_real.py")]).models[0]
    module = materialize(report, None).module
    images = load_images("digits", report.preprocessing, 32, 0)
    executor = TorchExecutor(module, torch.device("cpu"), report.preprocessing, 1, None)
    first = noise_to_signal(executor, images.images, seed=0)
    again = noise_to_signal(executor, images.images, seed=0)
    other = noise_to_signal(executor, images.images, seed=1)
    print("MNIST noise-to-signal:", first)
    assert first == again and first != other
    ratios = [r for _, r in first]
    assert 0 < ratios[0] < ratios[1] < ratios[2]


def test_probe_reported_per_model_and_what_if_in_json_and_text():
    import json

    from click.testing import CliRunner

    from noiselint.cli import main

    torch.set_num_threads(1)
    args = [str(MODELS / "mnist_real.py"), "--verify", "--images", "16", "--sigmas", "0.2", "--draws", "1"]
    data = json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)["models"][0]["verification"]
    assert [p["sigma"] for p in data["probe"]] == [0.01, 0.02, 0.04]
    swaps = [w for w in data["what_ifs"] if w["name"].startswith("avg pool")]
    assert swaps and all(len(w["probe"]) == 3 for w in swaps)
    print("model", data["probe"][1], "what-ifs", [(w["name"], w["probe"][1]) for w in data["what_ifs"]])
    text = CliRunner().invoke(main, args).stdout
    assert "noise-to-signal at the logits: sigma 0.01:" in text
