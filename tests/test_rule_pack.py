"""The rule pack on real timm architectures (built on the meta device) and on real torch weights."""

from __future__ import annotations

from functools import cache

import pytest

import noiselint
from noiselint.engine import Options, lint
from noiselint.findings import Basis, ModelReport, Severity

pytest.importorskip("timm")


@cache
def report(target: str) -> ModelReport:
    (model,) = lint([target], Options()).models
    assert model.ok, model.load_error
    assert not model.rule_errors, model.rule_errors
    return model


def modules(target: str, code: str) -> list[str]:
    return [f.module_path for f in report(target).findings if f.code == code]


def test_resnet50_flags_stem_max_pool_and_strided_shortcuts():
    assert modules("timm:resnet50", "NL301") == ["maxpool"]
    assert modules("timm:resnet50", "NL302") == [f"layer{i}.0.downsample.0" for i in (2, 3, 4)]


def test_resnet50d_average_pool_shortcuts_pass():
    assert modules("timm:resnet50d", "NL302") == []
    assert modules("timm:resnet50d", "NL101") == []  # 3x3/s2 > 3x3 > 3x3 composes to receptive field 11
    assert modules("timm:resnet50d", "NL301") == ["maxpool"]


def test_clip_vit_flags_clip_std_on_the_green_channel():
    (finding,) = [f for f in report("timm:vit_base_patch16_clip_224.openai").findings if f.code == "NL402"]
    assert finding.severity == Severity.WARNING
    assert finding.module_path == "patch_embed.proj" and finding.location is not None
    assert round(finding.estimate.current, 2) == 1.91
    assert "channel 1 (green)" in finding.message


def test_supervised_vit_with_inception_std_is_not_flagged():
    target = "timm:vit_base_patch16_224.augreg_in21k_ft_in1k"
    codes = {f.code for f in report(target).findings}
    assert not codes & {"NL401", "NL402", "NL403"}


def test_clip_statistics_on_a_cnn_are_information_only():
    findings = [f for f in report("timm:resnet50_clip.openai").findings if f.code == "NL402"]
    assert [f.severity for f in findings] == [Severity.INFO]


def test_vits_rank_by_patch_size():
    exposure = {p: report(f"timm:vit_base_patch{p}_224").exposure for p in (8, 16, 32)}
    assert exposure[32] < exposure[16] < exposure[8]
    assert exposure[32] == 0.0


def test_resnet_d_shortcuts_add_no_exposure():  # issue 10: the twin study found no gain from them
    assert report("timm:resnet50d").exposure == pytest.approx(report("timm:resnet50").exposure)
    assert {f.code for f in report("timm:resnet50").findings} - {f.code for f in report("timm:resnet50d").findings} \
        == {"NL302"}


def test_test_size_rule_states_an_unknown_gain():
    (finding,) = [f for f in report("timm:resnet50.a1_in1k").findings if f.code == "NL202"]
    assert finding.estimate.factor is None and finding.estimate.basis == Basis.EMPIRICAL
    assert "unknown" in finding.message and finding.location is not None


def test_input_resolution_rule_estimates_the_pre_resize_protocol():  # issue 10: the twin study measures it
    (finding,) = [f for f in report("timm:vit_base_patch16_384").findings if f.code == "NL201"]
    assert finding.estimate.factor == pytest.approx(0.1508, abs=1e-4) and finding.location is not None
    assert "sensor resolution" in finding.message


def test_every_finding_has_a_located_layer_and_an_estimate():
    for target in ("timm:resnet50", "timm:efficientnet_b0", "timm:vit_base_patch16_clip_224.openai"):
        for finding in report(target).findings:
            assert finding.node is not None and finding.location is not None, finding
            assert finding.estimate is not None, finding


@pytest.mark.parametrize("pool", ["max", "avgmax", "catavgmax", "avg"])
def test_global_pool_types(pool):
    import timm
    import torch

    from noiselint import estimates

    with torch.device("meta"):
        net = timm.create_model("resnet18", global_pool=pool).eval()
    (model,) = noiselint.lint(net, select=["NL303"]).models
    expected = {
        "max": estimates.global_max_pool_estimate(49),
        "avgmax": estimates.global_avgmax_pool_estimate(49),
        "catavgmax": estimates.global_max_pool_estimate(49),
    }
    assert [f.estimate for f in model.findings] == ([expected[pool]] if pool in expected else [])


def _real_net():
    import torch
    import torch.nn as nn

    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    with torch.no_grad():
        net[0].weight.fill_(0.5)
        net[1].running_var.fill_(0.01)
    return net.eval()


def test_real_torch_weights_reach_the_weight_rules():
    (model,) = noiselint.lint(_real_net(), select=["NL6"], std=(0.5, 0.5, 0.5)).models
    assert model.graph.weights
    assert {f.code: f.module_path for f in model.findings} == {"NL601": "0", "NL602": "1"}
    conv = next(f for f in model.findings if f.code == "NL601")
    assert conv.estimate.current == pytest.approx(27 * 0.25)


def test_real_torch_weights_use_the_onnx_keys():
    from noiselint.engine import read_graph
    from noiselint.loaders import LoadedModel

    graph = read_graph(LoadedModel(name="net", target="net", module=_real_net()))
    by_path = {graph.node(n)["module_path"]: load() for n, load in graph.parameters.items()}
    assert set(by_path["0"]) == {"weight", "bias"}
    assert set(by_path["1"]) == {"scale", "bias", "mean", "var"}
    assert by_path["1"]["var"] == pytest.approx(0.01)
