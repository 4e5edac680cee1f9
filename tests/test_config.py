"""[tool.noiselint] in pyproject.toml: discovery, every key, command-line precedence and bad input."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from noiselint import config
from noiselint.cli import main
from noiselint.errors import UsageError

from .conftest import FIXTURES, MODELS

PACK_RULES = FIXTURES / "plugin_pack" / "noiselint_example_pack"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A project with two model files and a sub-folder to run from; write its pyproject.toml per test."""
    (tmp_path / "models").mkdir()
    shutil.copy(MODELS / "resnet_maxpool.py", tmp_path / "models" / "net.py")
    shutil.copy(MODELS / "robust_net.py", tmp_path / "models" / "good.py")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    return tmp_path


def write_config(project: Path, body: str, name: str = "pyproject.toml") -> Path:
    path = project / name
    path.write_text(textwrap.dedent(body))
    return path


def model_report(result) -> dict:
    (model,) = json.loads(result.stdout)["models"]
    return model


def test_configured_models_relative_to_the_config_file_from_a_subfolder(project):
    write_config(project, """
        [project]
        name = "zoo"

        [tool.noiselint]
        models = ["models/net.py:TinyResNet"]
        select = ["NL301"]
        format = "json"
    """)
    result = run()
    assert result.exit_code == 1, result.output
    model = model_report(result)
    assert model["model"].endswith("models/net.py:TinyResNet")
    assert [f["code"] for f in model["findings"]] == ["NL301"]


def test_model_globs_expand(project):
    write_config(project, """
        [tool.noiselint]
        models = ["models/*.py"]
        select = ["NL301"]
    """)
    result = run("--format", "json")
    names = sorted(Path(m["model"]).name for m in json.loads(result.stdout)["models"])
    assert names == ["good.py:RobustNet", "net.py:TinyResNet"]
    assert result.exit_code == 1


def test_preprocessing_per_target_and_the_command_line_over_it(project):
    write_config(project, """
        [tool.noiselint]
        select = ["NL301"]

        [tool.noiselint.preprocessing."models/net.py"]
        mean = [0.5, 0.5, 0.5]
        std = [0.5, 0.5, 0.5]
        input_size = 32
    """)
    model = model_report(run("../models/net.py", "--format", "json"))
    assert model["preprocessing"]["std"] == [0.5, 0.5, 0.5]
    assert model["graph"]["input_size"] == [3, 32, 32]
    assert model["preprocessing"]["origin"] == str(project / "pyproject.toml")  # every field set there
    model = model_report(run("../models/net.py", "--format", "json", "--std", "0.25"))
    assert model["preprocessing"]["std"] == [0.25]
    assert model["preprocessing"]["origin"].startswith("std from command line, mean, input_size from ")
    assert model["graph"]["input_size"] == [3, 32, 32]


def test_rule_options_and_rules_dirs_from_the_config(project):
    write_config(project, f"""
        [tool.noiselint]
        models = ["models/net.py"]
        select = ["XP101"]
        rules-dirs = ["{PACK_RULES.as_posix()}"]

        [tool.noiselint.rules.too-many-convolutions]
        max_convolutions = 100
    """)
    assert run().exit_code == 0
    (project / "pyproject.toml").write_text((project / "pyproject.toml").read_text().replace("100", "3"))
    result = run("--format", "concise")
    assert result.exit_code == 1
    assert "XP101 6 convolutions, more than the 3 allowed" in result.output


def test_fail_on_from_the_config_and_the_command_line_over_it(project):
    write_config(project, """
        [tool.noiselint]
        models = ["models/net.py"]
        select = ["NL301"]
        fail-on = "error"
    """)
    assert run().exit_code == 0
    assert run("--fail-on", "warning").exit_code == 1


def test_isolated_ignores_the_config_and_config_names_one(project):
    write_config(project, """
        [tool.noiselint]
        models = ["models/net.py"]
    """)
    result = run("--isolated")
    assert result.exit_code == 2 and "no targets" in result.stderr
    other = write_config(project, """
        models = ["models/good.py"]
        select = ["NL3"]
    """, name="noiselint.toml")
    result = run("--config", other, "--format", "json")
    assert result.exit_code == 0, result.output
    assert model_report(result)["model"].endswith("good.py:RobustNet")


def test_select_ignore_and_extend_select_merge_like_ruff(tmp_path):
    path = write_config(tmp_path, """
        [tool.noiselint]
        select = ["NL3"]
        extend-select = ["NL001"]
        ignore = ["NL301"]
    """)
    settings = config.load(path)
    options = config.make_options(settings)
    assert list(options.select) == ["NL3", "NL001"] and list(options.ignore) == ["NL301"]
    options = config.make_options(settings, ignore=["NL302"], extend_select=["NL1"])
    assert list(options.select) == ["NL3", "NL001", "NL1"] and list(options.ignore) == ["NL301", "NL302"]
    options = config.make_options(settings, select=["NL301"])
    assert list(options.select) == ["NL301"] and list(options.ignore) == []


def test_closest_config_wins_and_sections_without_noiselint_are_skipped(tmp_path):
    write_config(tmp_path, """
        [tool.noiselint]
        select = ["NL3"]
    """)
    (tmp_path / "a").mkdir()
    write_config(tmp_path / "a", """
        [project]
        name = "noiselint-user"
    """)
    (tmp_path / "a" / "b").mkdir()
    assert config.find(tmp_path / "a" / "b") == tmp_path / "pyproject.toml"
    write_config(tmp_path / "a", """
        [tool.noiselint]
        select = ["NL1"]
    """)
    assert config.find(tmp_path / "a" / "b") == tmp_path / "a" / "pyproject.toml"


BAD_CONFIGS = [
    ('selct = ["NL3"]', "[tool.noiselint] selct: unknown key"),
    ('select = "NL3"', "select: expected a list of strings"),
    ('fail-on = "fatal"', "fail-on: expected one of info, warning, error"),
    ('format = "xml"', "format: expected one of"),
    ('models = ["nowhere/*.py"]', "matches no file"),
    ('baseline = 3', "baseline: expected a path"),
    ('per-file-ignores = ["x"]', "per-file-ignores: expected a table"),
    ('per-file-ignores = {"x.py" = ["NL999"]}', "unknown rule selector 'NL999'"),
    ('[tool.noiselint.preprocessing."m.py"]\nstdd = [0.5]', "stdd: unknown key"),
    ('[tool.noiselint.preprocessing."m.py"]\nstd = [0, 1]', "every std must be positive"),
    ('[tool.noiselint.preprocessing."m.py"]\ninput_size = [1, 2, 3, 4]', "input_size: expected H"),
    ('[tool.noiselint.preprocessing."m.py"]\nmean = "0.5"', "mean: expected a number"),
    ("[tool.noiselint.rules.NL999]\nx = 1", "[tool.noiselint.rules.NL999] no such rule"),
    ("[tool.noiselint.rules.NL301]\nwindow = 1", "unknown option 'window' (options of NL301: fix_style)"),
    ('[tool.noiselint]\n[tool.noiselint.rules]\nNL301 = 3', "rules: expected tables of rule options"),
    ("select = [", "invalid TOML"),
]


@pytest.mark.parametrize(("body", "message"), BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_bad_configuration_is_one_line_and_exit_2(tmp_path, monkeypatch, body, message):
    header = "" if body.startswith("[tool.noiselint]") else "[tool.noiselint]\n"
    (tmp_path / "pyproject.toml").write_text(header + body + "\n")
    monkeypatch.chdir(tmp_path)
    result = run("m.py")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("noiselint: error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_rule_option_of_the_wrong_type(tmp_path, monkeypatch):
    write_config(tmp_path, f"""
        [tool.noiselint]
        rules-dirs = ["{PACK_RULES.as_posix()}"]

        [tool.noiselint.rules.XP101]
        max_convolutions = "many"
    """)
    monkeypatch.chdir(tmp_path)
    result = run("m.py")
    assert result.exit_code == 2
    assert "max_convolutions must be a int, got 'many'" in result.stderr


def test_config_and_isolated_together_and_a_missing_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "cannot be used together" in run("m.py", "--config", "x.toml", "--isolated").stderr
    result = run("m.py", "--config", "x.toml")
    assert result.exit_code == 2 and "x.toml: no such configuration file" in result.stderr
    with pytest.raises(UsageError, match="no such configuration file"):
        config.resolve("x.toml")


def test_rules_and_explain_use_the_configured_rules_dirs(tmp_path, monkeypatch):
    write_config(tmp_path, f"""
        [tool.noiselint]
        rules-dirs = ["{PACK_RULES.as_posix()}"]
    """)
    monkeypatch.chdir(tmp_path)
    assert "XP101" in run("rules").output
    assert run("explain", "XP101").exit_code == 0
