"""``noiselint.assert_clean`` and the ``noiselint_check`` fixture of the pytest plugin (pytest11)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import noiselint
from noiselint.sites import class_sites

from .conftest import MODELS

POOL = "self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)"


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"test_model_{path.stem}_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_assert_clean_lists_findings_at_their_construction_lines():
    path = MODELS / "resnet_maxpool.py"
    with pytest.raises(AssertionError) as info:
        noiselint.assert_clean(import_file(path).TinyResNet(), select=["NL301"])
    message = str(info.value)
    assert message.startswith("noiselint: 1 problem(s) at or above warning:\n  ")
    assert f"resnet_maxpool.py:{line_of(path, POOL)}:24: NL301 max-pooling maxpool: 3x3 max pooling" in message


def test_assert_clean_returns_the_report_when_clean():
    net = import_file(MODELS / "resnet_maxpool.py").TinyResNet()
    report = noiselint.assert_clean(net, select=["NL301"], ignore=["max-pooling"])
    assert report.exit_code == 0 and report.models[0].model == "TinyResNet"
    assert noiselint.assert_clean(net, select=["NL301"], fail_on="error").findings


def test_assert_clean_fails_on_a_model_it_cannot_lint():
    with pytest.raises(AssertionError, match="missing.py: could not lint it: missing.py: no such file"):
        noiselint.assert_clean("missing.py")


def test_noqa_in_the_model_source_applies_to_modules_passed_directly(tmp_path):
    path = tmp_path / "net.py"
    path.write_text((MODELS / "resnet_maxpool.py").read_text().replace(POOL, POOL + "  # noqa: NL301"))
    noiselint.assert_clean(import_file(path).TinyResNet(), select=["NL301"])


def test_class_sites_point_at_the_assignment_or_the_container():
    path = MODELS / "resnet_maxpool.py"
    net = import_file(path).TinyResNet()
    sites = class_sites(net)
    assert (sites[net.maxpool].line, sites[net.maxpool].column) == (line_of(path, POOL), 24)
    downsample = net.layer2.downsample
    assert sites[downsample[0]] == sites[downsample]
    assert sites[downsample].line == line_of(path, "self.downsample = nn.")
    assert net not in sites


def test_fixture_in_a_projects_own_test_suite(tmp_path):
    """A real pytest run in another project: the fixture comes from the pytest11 entry point."""
    (tmp_path / "pyproject.toml").write_text('[tool.noiselint]\nselect = ["NL301"]\n')
    for name in ("resnet_maxpool.py", "robust_net.py"):
        (tmp_path / name).write_text((MODELS / name).read_text())
    (tmp_path / "test_models.py").write_text(textwrap.dedent("""
        from resnet_maxpool import TinyResNet
        from robust_net import RobustNet


        def test_robust(noiselint_check):
            noiselint_check(RobustNet())


        def test_maxpool(noiselint_check):
            noiselint_check(TinyResNet())


        def test_maxpool_ignored(noiselint_check):
            noiselint_check(TinyResNet(), ignore=["NL301"])
    """))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                             str(tmp_path), "test_models.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert "1 failed, 2 passed" in result.stdout, result.stdout + result.stderr
    assert "AssertionError: noiselint: 1 problem(s) at or above warning:" in result.stdout
    assert "NL301 max-pooling maxpool: 3x3 max pooling" in result.stdout
