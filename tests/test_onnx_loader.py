"""The ONNX loader on real ONNX files: small models built with onnx.helper and onnx's light models."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from noiselint.errors import LoadError
from noiselint.graph import ModelGraph, Op, SourceLocation
from noiselint.loaders.onnx_loader import load_onnx

ROOT = Path(__file__).resolve().parents[1]
LIGHT_DIR = Path(onnx.__file__).parent / "backend/test/data/light"
LIGHT_MODELS = sorted(LIGHT_DIR.glob("light_*.onnx"))
SCHEMA = {"op", "attrs", "shape", "module_path", "module_type", "source", "stem", "order"}


def _load_fixtures():
    spec = importlib.util.spec_from_file_location("onnx_models", ROOT / "fixtures" / "onnx_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


models = _load_fixtures()


def _load(tmp_path: Path, name: str, external: bool = False) -> tuple[ModelGraph, Path]:
    path = models.save(models.BUILDERS[name](), tmp_path / f"{name}.onnx", external=external)
    return load_onnx(path), path


def _ops(model: ModelGraph) -> list[str]:
    return [data["op"] for _, data in model.nodes()]


# -- small models -----------------------------------------------------------------------------


def test_resnet_stem_ops_attrs_and_shapes(tmp_path):
    model, path = _load(tmp_path, "resnet_stem")
    assert _ops(model) == [
        Op.INPUT,
        Op.CONV,
        Op.NORM,
        Op.ACTIVATION,
        Op.MAX_POOL,
        Op.ADAPTIVE_AVG_POOL,
        Op.RESHAPE,
        Op.LINEAR,
        Op.OUTPUT,
    ]
    conv = model.node("conv1")
    assert conv["attrs"] == {
        "kernel": (7, 7),
        "stride": (2, 2),
        "dilation": (1, 1),
        "padding": (3, 3),
        "pads": (3, 3, 3, 3),
        "auto_pad": "NOTSET",
        "groups": 1,
        "transposed": False,
        "in_channels": 3,
        "out_channels": 8,
    }
    assert conv["shape"] == (1, 8, 112, 112)
    assert conv["module_path"] == "conv1" and conv["module_type"] == "Conv"
    assert conv["source"] == SourceLocation(path=str(path), line=1, column=1)
    pool = model.node("maxpool")["attrs"]
    assert pool["kernel"] == pool["window"] == (3, 3)
    assert pool["stride"] == (2, 2) and pool["padding"] == (1, 1)
    assert model.node("maxpool")["shape"] == (1, 8, 56, 56)
    assert model.node("avgpool")["attrs"] == {"output_size": (1, 1)}
    assert model.node("fc")["attrs"] == {"in_features": 8, "out_features": 10}
    assert model.node("bn1")["attrs"]["epsilon"] == pytest.approx(1e-5)
    assert model.node("input:image")["shape"] == (1, 3, 224, 224)  # symbolic batch reads as 1
    assert model.node("output:logits")["shape"] == (1, 10)


def test_every_node_has_the_schema_and_orders_are_topological(tmp_path):
    model, _ = _load(tmp_path, "resnet_stem")
    for node_id, data in model.graph.nodes(data=True):
        assert set(data) == SCHEMA, node_id
        assert data["stem"] is False
    orders = [data["order"] for _, data in model.graph.nodes(data=True)]
    assert sorted(orders) == list(range(len(orders)))
    for u, v in model.graph.edges:
        assert model.node(u)["order"] < model.node(v)["order"]


def test_edges_follow_tensors(tmp_path):
    model, _ = _load(tmp_path, "resnet_stem")
    chain = ["input:image", "conv1", "bn1", "relu", "maxpool", "avgpool", "flatten", "fc", "output:logits"]
    assert set(model.graph.edges) == set(zip(chain, chain[1:], strict=False))


def test_model_graph_fields(tmp_path):
    model, _ = _load(tmp_path, "resnet_stem")
    assert model.name == "resnet_stem"
    assert model.trace_level == "onnx"
    assert model.coverage == 1.0
    assert model.traced_input_size == (3, 224, 224)
    assert model.weights is True
    assert model.preprocessing.input_size == (3, 224, 224)
    assert model.preprocessing.mean is None and model.preprocessing.std is None
    assert model.preprocessing.origin == "unknown"
    assert load_onnx(tmp_path / "resnet_stem.onnx", name="custom").name == "custom"


def test_parameters_are_the_initializers(tmp_path):
    model, _ = _load(tmp_path, "resnet_stem")
    graph = models.build_resnet_stem().graph
    expected = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    conv = model.parameters["conv1"]()
    assert set(conv) == {"weight", "bias"}
    np.testing.assert_array_equal(conv["weight"], expected["conv1.weight"])
    np.testing.assert_array_equal(conv["bias"], expected["conv1.bias"])
    bn = model.parameters["bn1"]()
    assert set(bn) == {"scale", "bias", "mean", "var"}
    np.testing.assert_array_equal(bn["var"], expected["bn1.var"])
    assert set(model.parameters) == {"conv1", "bn1", "fc"}


def test_external_data_loads_lazily(tmp_path):
    model, path = _load(tmp_path, "resnet_stem", external=True)
    assert (tmp_path / "resnet_stem.onnx.data").stat().st_size > 0
    assert path.stat().st_size < 4000  # the weights are not in the .onnx file
    assert model.node("conv1")["attrs"]["out_channels"] == 8
    assert model.coverage == 1.0 and model.weights is True
    expected = onnx.numpy_helper.to_array(models.build_resnet_stem().graph.initializer[0])
    np.testing.assert_array_equal(model.parameters["conv1"]()["weight"], expected)


def test_missing_external_data_is_a_load_error(tmp_path):
    path = models.save(models.build_resnet_stem(), tmp_path / "ext.onnx", external=True)
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(LoadError, match="ext.onnx"):
        load_onnx(path)


def test_vit_patch_conv_stays_a_conv(tmp_path):
    model, _ = _load(tmp_path, "vit_patch")
    patch = model.node("patch_embed")
    assert patch["op"] == Op.CONV
    assert patch["attrs"]["kernel"] == (16, 16) and patch["attrs"]["stride"] == (16, 16)
    assert patch["attrs"]["padding"] == (0, 0)
    assert patch["shape"] == (1, 32, 14, 14)
    assert model.node("to_tokens")["op"] == Op.RESHAPE and model.node("transpose")["op"] == Op.RESHAPE
    assert model.node("norm")["op"] == Op.NORM
    assert model.node("head")["attrs"] == {"in_features": 32, "out_features": 10}
    assert model.node("token_mean")["op"] == Op.OTHER  # a mean over tokens, not over space


def test_sub_div_normalization_is_recovered(tmp_path):
    model, _ = _load(tmp_path, "sub_div")
    pre = model.preprocessing
    assert pre.origin == "onnx graph"
    assert pre.mean == pytest.approx(models.MEAN, abs=1e-6)
    assert pre.std == pytest.approx(models.STD, abs=1e-6)
    assert pre.input_size == (3, 32, 32)
    assert model.node("sub_mean")["op"] == Op.NORMALIZE and model.node("div_std")["op"] == Op.NORMALIZE
    assert model.node("std_const")["op"] == Op.OTHER
    assert model.metadata["input_pixel_scale"] == 1.0


def test_mul_add_normalization_after_255_is_recovered(tmp_path):
    model, _ = _load(tmp_path, "mul_add_255")
    pre = model.preprocessing
    assert pre.mean == pytest.approx(models.MEAN, abs=1e-6)
    assert pre.std == pytest.approx(models.STD, abs=1e-6)
    assert [n for n, d in model.nodes(Op.NORMALIZE)] == ["to_unit", "mul_scale", "add_shift"]
    assert model.metadata["input_pixel_scale"] == 255.0
    assert any("255" in note for note in model.notes)


def test_channels_last_normalization_in_255_units(tmp_path):
    model, _ = _load(tmp_path, "nhwc_caffe")
    pre = model.preprocessing
    assert pre.mean == pytest.approx(models.MEAN, abs=1e-6)
    assert pre.std == pytest.approx(models.STD, abs=1e-6)
    assert pre.input_size == model.traced_input_size == (3, 64, 48)
    assert model.metadata["input_layout"] == "NHWC"
    assert model.metadata["input_pixel_scale"] == 255.0
    assert [n for n, _ in model.nodes(Op.NORMALIZE)] == ["sub_mean", "mul_inv_std"]


def test_unknown_spatial_size(tmp_path):
    proto = models.build_sub_div()
    for dim in proto.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "size"
    del proto.graph.output[0].type.tensor_type.shape.dim[:]
    model = load_onnx(models.save(proto, tmp_path / "dynamic.onnx"))
    assert model.traced_input_size is None and model.preprocessing.input_size is None
    assert model.node("conv")["shape"] is None and model.coverage < 1.0
    assert model.preprocessing.mean == pytest.approx(models.MEAN, abs=1e-6)


def test_failed_shape_inference_keeps_the_graph_with_a_note(tmp_path):
    proto = models.build_sub_div()
    conflicting = onnx.helper.make_tensor_value_info("mean", onnx.TensorProto.FLOAT, [2, 3, 1, 1])
    proto.graph.input.append(conflicting)  # declared shape disagrees with the initializer's
    model = load_onnx(models.save(proto, tmp_path / "conflict.onnx"))
    assert any(note.startswith("shape inference failed") for note in model.notes)
    assert model.node("conv")["shape"] is None and 0 < model.coverage < 1
    assert model.node("conv")["attrs"]["out_channels"] == 4
    assert model.preprocessing.mean == pytest.approx(models.MEAN, abs=1e-6)


def test_same_upper_padding_and_spatial_reduce_mean(tmp_path):
    model, _ = _load(tmp_path, "mul_add_255")
    conv = model.node("conv")["attrs"]
    assert conv["auto_pad"] == "SAME_UPPER"
    assert conv["pads"] == (0, 0, 1, 1) and conv["padding"] == (0, 0)
    assert model.node("conv")["shape"] == (1, 4, 16, 16)
    mean = model.node("spatial_mean")
    assert mean["op"] == Op.ADAPTIVE_AVG_POOL and mean["attrs"]["output_size"] == (1, 1)


def test_transposed_conv_resize_and_spatial_reduce_max(tmp_path):
    model, _ = _load(tmp_path, "upsample")
    up = model.node("up")
    assert up["op"] == Op.CONV and up["attrs"]["transposed"] is True
    assert (up["attrs"]["in_channels"], up["attrs"]["out_channels"]) == (3, 5)
    assert up["shape"] == (1, 5, 16, 16)
    resize = model.node("resize")
    assert resize["op"] == Op.RESIZE and resize["attrs"] == {"mode": "nearest", "scale": (2.0, 2.0)}
    assert resize["shape"] == (1, 5, 32, 32)
    spatial_max = model.node("spatial_max")
    assert spatial_max["op"] == Op.ADAPTIVE_MAX_POOL and spatial_max["attrs"]["output_size"] == (1, 1)


def test_ids_for_empty_and_duplicate_names(tmp_path):
    model, _ = _load(tmp_path, "unnamed")
    assert [n for n, _ in model.nodes()] == [
        "input:image",
        "Relu_0_2",
        "Sigmoid_1",
        "Tanh_2",
        "Relu_0",
        "output:out",
    ]
    assert model.node("Sigmoid_1")["module_path"] == "dup"
    assert model.node("Relu_0_2")["module_path"] == "Relu_0_2"
    assert set(model.predecessors("Relu_0")) == {"Relu_0_2", "Tanh_2"}
    assert model.weights is False and model.parameters == {}


# -- onnx's light architecture graphs --------------------------------------------------------


def test_light_resnet50():
    model = load_onnx(LIGHT_DIR / "light_resnet50.onnx")
    pools = [data for _, data in model.nodes(Op.MAX_POOL)]
    assert len(pools) == 1 and pools[0]["attrs"]["window"] == (3, 3)
    convs = [data for _, data in model.nodes(Op.CONV)]
    assert len(convs) == 53
    assert convs[0]["attrs"]["kernel"] == (7, 7) and convs[0]["attrs"]["stride"] == (2, 2)
    assert convs[0]["attrs"]["in_channels"] == 3 and convs[0]["attrs"]["out_channels"] == 64
    shaped = sum(1 for _, data in model.nodes() if data["shape"] is not None)
    assert shaped >= 0.95 * len(model.graph) and model.coverage >= 0.95
    assert model.traced_input_size == (3, 224, 224)
    assert any("ConstantOfShape" in note for note in model.notes)  # placeholder weights


@pytest.mark.parametrize("path", LIGHT_MODELS, ids=lambda p: p.stem)
def test_light_models_load(path):
    try:
        model = load_onnx(path)
    except LoadError as exc:
        assert "\n" not in str(exc)
        return
    assert len(model.graph) > 10
    assert next(model.nodes(Op.CONV), None) is not None


def test_light_models_are_present():
    assert len(LIGHT_MODELS) >= 5


# -- bad input --------------------------------------------------------------------------------


def _bad_files(tmp_path: Path) -> list[Path]:
    real = (LIGHT_DIR / "light_resnet50.onnx").read_bytes()
    files = {
        "empty.onnx": b"",
        "text.onnx": b"this is a text file\nnot a model\n",
        "truncated.onnx": real[: len(real) // 3],
        "random.onnx": random.Random(0).randbytes(4096),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / "missing.onnx", tmp_path, *(tmp_path / name for name in files)]


def test_bad_inputs_raise_one_line_load_errors(tmp_path):
    for path in _bad_files(tmp_path):
        with pytest.raises(LoadError) as info:
            load_onnx(path)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"{path}: "), message


def test_fuzzed_bytes_load_or_raise_load_error(tmp_path):
    data = models.save(models.build_resnet_stem(), tmp_path / "seed.onnx").read_bytes()
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for case in range(50):
        _, mutated = models.mutate_bytes(data, rng)
        path = tmp_path / f"case_{case}.onnx"
        path.write_bytes(mutated)
        try:
            model = load_onnx(path)
            for load in model.parameters.values():
                load()
            outcomes["ok"] += 1
        except LoadError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["ok"] + outcomes["error"] == 50


def test_loading_onnx_does_not_import_torch(tmp_path):
    path = models.save(models.build_resnet_stem(), tmp_path / "m.onnx")
    code = (
        "import sys\n"
        "from noiselint.loaders.onnx_loader import load_onnx\n"
        f"model = load_onnx({str(path)!r})\n"
        "[load() for load in model.parameters.values()]\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_fuzz_benchmark_smoke(tmp_path):
    options = ["--cases", "40", "--seed", "7", "--keep", str(tmp_path / "failures")]
    command = [sys.executable, str(ROOT / "benchmarks" / "fuzz_onnx.py"), *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cases run:        40" in done.stdout and "tracebacks:       0" in done.stdout
