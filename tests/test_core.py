"""The main job end to end: targets of every kind, the graph, exit codes and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from noiselint.cli import main
from noiselint.engine import Options, lint
from noiselint.graph import Op
from noiselint.loaders import load

from .conftest import FIXTURES, MODELS

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_max_pool_flagged_at_its_line_with_exit_1():
    path = MODELS / "resnet_maxpool.py"
    result = run(path)
    assert result.exit_code == 1, result.output
    line = line_of(path, "nn.MaxPool2d(")
    assert f"resnet_maxpool.py:{line}:" in result.output
    assert "NL301" in result.output and "max-pooling" in result.output
    assert "[analytic]" in result.output


def test_model_following_the_guidelines_exits_0():
    result = run(MODELS / "robust_net.py", "--no-cache")
    assert result.exit_code == 0, result.output
    assert "0 findings in 1 model" in result.output


def test_json_report_schema():
    result = run(MODELS / "resnet_maxpool.py", "--format", "json")
    data = json.loads(result.output)
    assert data["schema"] == "noiselint-report" and data["schema_version"] == 1
    assert data["exit_code"] == 1 == result.exit_code
    (model,) = data["models"]
    assert model["status"] == "ok" and model["graph"]["trace_level"] == "fx"
    finding = next(f for f in model["findings"] if f["code"] == "NL301")
    assert finding["module_path"] == "maxpool"
    assert finding["location"]["line"] == line_of(MODELS / "resnet_maxpool.py", "nn.MaxPool2d(")
    assert finding["estimate"]["basis"] == "analytic"
    assert finding["estimate"]["factor"] == pytest.approx(0.1111 / 2.5626, rel=1e-3)
    assert len(finding["fingerprint"]) == 16


def test_graph_has_shapes_sources_and_stem():
    (loaded,) = load(f"{MODELS / 'resnet_maxpool.py'}:TinyResNet")
    assert all(p.device.type == "meta" for p in loaded.module.parameters()), "linting must not allocate weights"
    from noiselint.engine import read_graph

    graph = read_graph(loaded)
    assert graph.trace_level == "fx" and graph.coverage == 1.0
    convs = dict(graph.nodes(Op.CONV))
    assert convs["conv1"]["attrs"]["kernel"] == (7, 7) and convs["conv1"]["shape"] == (1, 16, 32, 32)
    assert convs["conv1"]["stem"] and not convs["layer1_conv1"]["stem"]
    (pool_id, pool), = graph.nodes(Op.MAX_POOL)
    assert pool["stem"] and pool["shape"] == (1, 16, 16, 16) and pool["module_path"] == "maxpool"
    subsample = dict(graph.nodes(Op.SUBSAMPLE))
    assert [d["module_path"] for d in subsample.values()] == ["layer2.downsample.0"]
    assert graph.architecture == "cnn"
    assert graph.node(pool_id)["source"].line == line_of(MODELS / "resnet_maxpool.py", "nn.MaxPool2d(")


def test_discovery_picks_root_classes_and_conventional_names():
    names = [m.name.split(":")[-1] for m in load(str(MODELS / "branching_names.py"))]
    assert names == ["SmallNet", "OtherNet"]
    (factory,) = load(f"{MODELS / 'branching_names.py'}:make_small")
    assert type(factory.module).__name__ == "SmallNet"


def test_layer_inside_sequential_points_at_its_own_line():
    path = MODELS / "branching_names.py"
    report = lint([f"{path}:SmallNet"], Options(select=["NL301"]))
    (finding,) = report.findings
    assert finding.location.line == line_of(path, "nn.MaxPool2d(2)")


@pytest.mark.parametrize(
    "target",
    ["timm:resnet50", "timm:vit_base_patch16_clip_224.openai", "torchvision:vgg16", str(LIGHT / "light_resnet50.onnx")],
)
def test_every_kind_of_target_produces_a_report(target):
    report = lint([target])
    (model,) = report.models
    assert model.ok, model.load_error
    assert model.graph.nodes > 20 and model.graph.coverage > 0.9
    assert model.preprocessing is not None


def test_timm_preprocessing_from_pretrained_cfg():
    (model,) = lint(["timm:vit_base_patch16_clip_224.openai"], Options(select=["NL301"])).models
    assert model.preprocessing.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    assert model.graph.architecture == "vit"


def test_timm_wildcard_expands():
    report = lint(["timm:resnet1*"], Options(select=["NL301"]))
    assert len(report.models) >= 2 and all(m.ok for m in report.models)


def test_data_dependent_forward_gets_a_fallback_report():
    report = lint([str(FIXTURES / "bad" / "data_dependent.py")], Options(select=["NL301"]))
    (model,) = report.models
    assert model.ok
    assert model.graph.trace_level == "hooks" and model.graph.coverage == 1.0
    assert any("depends on tensor values" in note for note in model.graph.notes)
    assert [f.module_path for f in model.findings] == ["pool"]


def test_untraceable_forward_falls_back_to_structure():
    report = lint([str(FIXTURES / "bad" / "untraceable.py")], Options(select=["NL301"]))
    (model,) = report.models
    assert model.graph.trace_level == "structural" and model.graph.coverage == 0.0
    assert [f.module_path for f in model.findings] == ["pool"]
    assert model.exposure is None
    assert report.exit_code == 2  # an untraceable model is an error, even with findings from its layers


BAD_INPUTS = [
    ("missing.py", "no such file"),
    ("bad/syntax_error.py", "syntax error"),
    ("bad/no_model.py", "no model to lint"),
    ("bad/needs_args.py:Net", "needs arguments (channels, num_classes)"),
    ("bad/needs_args.py", "no model to lint"),
    ("bad/state_dict.py:weights", "state_dict"),
    ("bad/import_error.py", "ModuleNotFoundError"),
    ("bad/weights.pth", "checkpoint holds weights"),
    ("bad/corrupt.onnx", "corrupt.onnx"),
    ("bad/exit_at_import.py", "called sys.exit(0)"),
    ("bad/exit_in_init.py:Net", "called sys.exit(5)"),
    ("bad/raises_in_init.py", "Net() failed: RuntimeError: needs a dataset on disk"),
    ("bad/bad_std.py", "std must be positive"),
    ("bad/needs_args.py:1abc", "not a Python name"),
]


@pytest.mark.parametrize(("relative", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_one_line_error_and_exit_2(relative, message, tmp_path):
    target = str(FIXTURES / relative)
    if relative.endswith("corrupt.onnx"):
        target = str(tmp_path / "corrupt.onnx")
        Path(target).write_bytes(b"\x08\x07garbage" * 10)
    if relative.endswith(".pth"):
        target = str(tmp_path / "weights.pth")
        Path(target).write_bytes(b"not really a checkpoint")
    result = run(target)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and message in error_lines[0], result.output


def test_one_failure_does_not_stop_the_others():
    result = run(FIXTURES / "bad" / "syntax_error.py", MODELS / "resnet_maxpool.py", "--format", "json")
    assert result.exit_code == 2
    data = json.loads(result.output)
    assert [m["status"] for m in data["models"]] == ["error", "ok"]
    assert data["models"][1]["findings"]


def test_rules_and_explain():
    listing = run("rules")
    assert listing.exit_code == 0 and "NL301" in listing.output and "max-pooling" in listing.output
    docs = run("explain", "NL301")
    assert docs.exit_code == 0 and "Why is this bad?" in docs.output and "Use instead" in docs.output
    assert run("explain", "NL999").exit_code == 2


def test_unknown_selector_is_a_usage_error():
    result = run(MODELS / "robust_net.py", "--select", "NL999")
    assert result.exit_code == 2 and "unknown rule selector" in result.output


def test_crashing_rule_becomes_an_error_record(tmp_path):
    (tmp_path / "crash.py").write_text(
        "from noiselint.rule import Rule\n\n"
        "class Crash(Rule):\n"
        "    '''## What it does\n    Crashes.'''\n"
        "    code = 'NL999'\n    name = 'crash'\n    family = 'test'\n\n"
        "    def check(self, graph):\n        raise ZeroDivisionError('boom')\n"
    )
    result = run(MODELS / "resnet_maxpool.py", "--rules-dir", tmp_path, "--format", "json")
    data = json.loads(result.output)
    (model,) = data["models"]
    assert model["rule_errors"] == [{"code": "NL999", "model": model["model"], "error": "ZeroDivisionError: boom"}]
    assert any(f["code"] == "NL301" for f in model["findings"])
    assert result.exit_code == 2


def test_shape_dependent_forward_falls_back_to_the_eager_meta_forward():
    report = lint([str(MODELS / "shape_branching.py")], Options(select=["NL301"]))
    (model,) = report.models
    assert model.graph.trace_level == "hooks"
    assert any(note.startswith("fx tracing failed") for note in model.graph.notes)
    # The branch not taken (small_pool) is not in the graph: coverage says so.
    assert model.graph.coverage == pytest.approx(2 / 3, abs=1e-3)
    (finding,) = model.findings
    assert finding.module_path == "pool"
    assert finding.location.line == line_of(MODELS / "shape_branching.py", "nn.MaxPool2d(2)")


@pytest.mark.parametrize(
    ("target", "last_stem_layer"),
    [("timm:resnet50", "maxpool"), ("timm:resnet50d", "maxpool"), ("torchvision:vgg16", "features.9"),
     ("timm:vit_base_patch16_224", "patch_embed.proj"), (str(LIGHT / "light_resnet50.onnx"), None)],
)
def test_stem_ends_after_the_first_downsampling_stage(target, last_stem_layer):
    from noiselint.engine import read_graph

    (loaded,) = load(target)
    graph = read_graph(loaded)
    stem = [data for _, data in graph.nodes() if data["stem"]]
    layers = [d for d in stem if d["op"] not in (Op.INPUT, Op.OTHER, Op.RESHAPE, Op.NORM, Op.ACTIVATION)]
    if last_stem_layer is not None:
        assert layers[-1]["module_path"] == last_stem_layer
    else:  # ONNX: conv, then max pool
        assert [d["op"] for d in layers] == [Op.CONV, Op.MAX_POOL]


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--std", "0,0,0"], "std must be positive"), (["--std", "nan,1,1"], "finite"),
     (["--mean", "0.5,0.5", "--std", "0.5,0.5,0.5"], "mean has 2 channels"),
     (["--input-size", "0"], "positive sizes"), (["-o", "/nonexistent/folder/report.txt"], "does not exist")],
)
def test_bad_options_are_usage_errors(options, message):
    result = run(MODELS / "robust_net.py", *options)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.output and "finding" not in result.output  # nothing was linted


def test_config_that_is_not_utf8_is_a_usage_error(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_bytes(b"\xff\xfe")
    result = run(MODELS / "robust_net.py", "--config", config)
    assert result.exit_code == 2 and "invalid TOML" in result.output
