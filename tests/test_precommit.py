"""pre-commit, for real: the hook in .pre-commit-hooks.yaml on a temporary git repository.

The fast test runs the hook definition as a ``repo: local`` / ``language: system`` hook (the setup
that uses the project's own environment). The slow one runs ``pre-commit try-repo`` on a git copy of
this checkout: pre-commit builds its ``language: python`` venv and pip installs noiselint into it.
torch and the other requirements are found already installed through ``PYTHONPATH`` (this
environment's site-packages), so nothing is downloaded and the install takes seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from noiselint.cli import main

from .conftest import MODELS, ROOT

HOOK = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
POOL_LINE = next(n for n, line in enumerate((MODELS / "resnet_maxpool.py").read_text().splitlines(), 1)
                 if "nn.MaxPool2d(" in line)
CHECKOUT_FILES = ("pyproject.toml", "README.md", "constraints.txt", ".pre-commit-hooks.yaml", "noiselint", "rules")


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def init_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "test")
    git(path, "config", "commit.gpgsign", "false")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A model repository: a bad model, a good one, a helper file with no model, and its config."""
    repo = init_repo(tmp_path / "project")
    shutil.copy(MODELS / "resnet_maxpool.py", repo / "bad.py")
    shutil.copy(MODELS / "robust_net.py", repo / "good.py")
    (repo / "helpers.py").write_text("def normalize(x):\n    return (x - 0.5) / 0.5\n")
    (repo / "pyproject.toml").write_text('[tool.noiselint]\nselect = ["NL301"]\n')
    git(repo, "add", "-A")
    return repo


def pre_commit(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pre_commit", *args, "--color", "never"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)


def test_hook_definition():
    assert HOOK["id"] == "noiselint" and HOOK["language"] == "python"
    assert HOOK["entry"].split() == ["noiselint", "--hook"]
    assert set(HOOK["types_or"]) == {"python", "file"}
    assert HOOK["files"] == r"\.(py|onnx)$"


def test_hook_mode_skips_a_file_without_a_model(project, monkeypatch):
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["--hook", "helpers.py", "good.py"])
    assert result.exit_code == 0, result.output
    assert "0 findings in 1 model" in result.output
    result = CliRunner().invoke(main, ["helpers.py"])
    assert result.exit_code == 2 and "helpers.py: no model to lint" in result.output


def test_local_system_hook_fails_on_a_bad_model_and_skips_files_without_one(project):
    entry = HOOK["entry"].replace("noiselint", f"{sys.executable} -m noiselint", 1)
    local = {**HOOK, "language": "system", "entry": entry}
    (project / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    result = pre_commit(project, "run", "noiselint", "--files", "good.py", "helpers.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "noiselint" in result.stdout and "Passed" in result.stdout
    result = pre_commit(project, "run", "noiselint", "--files", "bad.py", "helpers.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"bad.py:{POOL_LINE}:24 NL301 [*] max-pooling" in result.stdout and "helpers.py" not in result.stdout


@pytest.mark.slow
def test_try_repo_installs_this_checkout_and_runs_the_hook(project, tmp_path):
    checkout = init_repo(tmp_path / "checkout")
    for name in CHECKOUT_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, checkout / name)
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "noiselint")
    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PIP_CONSTRAINT": str(checkout / "constraints.txt")}
    if importlib.util.find_spec("hatchling"):
        env.update(PIP_NO_BUILD_ISOLATION="0", PIP_NO_INDEX="1")
    result = pre_commit(project, "try-repo", str(checkout), "noiselint", "--files", "bad.py", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"bad.py:{POOL_LINE}:24 NL301 [*] max-pooling" in result.stdout
    result = pre_commit(project, "try-repo", str(checkout), "noiselint", "--files", "good.py", "helpers.py", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout
