"""Third-party rule packs: a real install of fixtures/plugin_pack (``noiselint.rules`` entry point)
and the same rules loaded with ``--rules-dir``."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from noiselint import registry
from noiselint.cli import main

from .conftest import FIXTURES, MODELS

PACK = FIXTURES / "plugin_pack"
PACK_RULES = PACK / "noiselint_example_pack"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """fixtures/plugin_pack installed with pip into a folder of its own (offline when hatchling is here)."""
    source = tmp_path_factory.mktemp("src") / "plugin_pack"
    shutil.copytree(PACK, source)
    target = tmp_path_factory.mktemp("site")
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("hatchling") else []
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *offline, "--target", str(target),
                    str(source)], check=True, capture_output=True, timeout=300)
    return target


def noiselint(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "noiselint", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_installed_pack_declares_its_entry_point(site):
    (dist,) = site.glob("noiselint_example_pack-*.dist-info")
    assert 'example = noiselint_example_pack.rules' in (dist / "entry_points.txt").read_text()


def test_installed_pack_is_listed_explained_and_run(site, tmp_path):
    listed = noiselint(site, "rules")
    assert listed.returncode == 0, listed.stderr
    assert "XP101" in listed.stdout and "too-many-convolutions" in listed.stdout and "NL301" in listed.stdout
    explained = noiselint(site, "explain", "XP101")
    assert explained.returncode == 0 and "project-specific budget" in explained.stdout
    result = noiselint(site, str(MODELS / "resnet_maxpool.py"), "--select", "XP101,NL301", "--format", "json")
    assert result.returncode == 1, result.stderr
    (model,) = json.loads(result.stdout)["models"]
    codes = sorted(f["code"] for f in model["findings"])
    assert codes == ["NL301", "XP101"]
    xp = next(f for f in model["findings"] if f["code"] == "XP101")
    assert xp["message"] == "6 convolutions, more than the 2 allowed" and xp["location"]["line"] > 0


def test_entry_points_are_discovered_in_process(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    cls = registry.find("XP101")
    assert cls.__module__ == "noiselint_example_pack.rules"
    assert "XP101" not in {c.code for c in registry.discover(plugins=False)}


def test_rules_dir_lists_and_runs_the_same_rules():
    result = CliRunner().invoke(main, ["rules", "--rules-dir", str(PACK_RULES)])
    assert result.exit_code == 0 and "XP101" in result.output
    result = CliRunner().invoke(main, ["explain", "XP101", "--rules-dir", str(PACK_RULES)])
    assert result.exit_code == 0 and "max_convolutions = 2" in result.output
    result = CliRunner().invoke(main, [str(MODELS / "resnet_maxpool.py"), "--select", "XP101", "--rules-dir",
                                       str(PACK_RULES), "--format", "concise"])
    assert result.exit_code == 1 and "XP101 6 convolutions, more than the 2 allowed" in result.output


def test_the_same_rule_from_an_entry_point_and_a_folder_is_a_duplicate(site):
    result = noiselint(site, "rules", "--rules-dir", str(PACK_RULES))
    assert result.returncode == 2
    assert result.stderr.startswith("noiselint: error: duplicate rule 'XP101'") and result.stderr.count("\n") == 1


def test_a_missing_rules_dir_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, [str(MODELS / "robust_net.py"), "--rules-dir", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such rules folder" in result.stderr


def test_assert_clean_takes_rules_dirs():
    import noiselint

    spec = importlib.util.spec_from_file_location("plugin_test_resnet", MODELS / "resnet_maxpool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(AssertionError, match="XP101 too-many-convolutions"):
        noiselint.assert_clean(module.TinyResNet(), select=["XP101"], rules_dirs=[str(PACK_RULES)])
