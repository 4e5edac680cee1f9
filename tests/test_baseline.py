"""Baselines: adopt noiselint on an existing zoo and fail only on new findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from noiselint.cli import main

from .conftest import MODELS

POOL = "        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)\n"
EXTRA = "        self.extra = nn.MaxPool2d(3, stride=1, padding=1)\n"


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "net.py").write_text((MODELS / "resnet_maxpool.py").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_write_then_fail_only_on_new_findings(zoo, monkeypatch):
    result = run("net.py", "--select", "NL301", "--write-baseline", "baseline.json")
    assert result.exit_code == 0, result.output
    assert "recorded 1 finding(s) in baseline.json" in result.stderr
    data = json.loads((zoo / "baseline.json").read_text())
    assert data["schema"] == "noiselint-baseline" and data["schema_version"] == 1
    (entry,) = data["findings"]
    assert entry["code"] == "NL301" and entry["model"] == "net.py:TinyResNet" and entry["module_path"] == "maxpool"

    result = run("net.py", "--select", "NL301", "--baseline", "baseline.json")
    assert result.exit_code == 0, result.output
    assert "0 findings in 1 model" in result.output

    source = (zoo / "net.py").read_text()
    moved = "\n\n\n" + source.replace(POOL, POOL + EXTRA).replace(
        "x = self.layer2(self.layer1(x))", "x = self.layer2(self.layer1(self.extra(x)))")
    (zoo / "net.py").write_text(moved)
    result = run("net.py", "--select", "NL301", "--baseline", "baseline.json", "--format", "json")
    assert result.exit_code == 1
    (model,) = json.loads(result.stdout)["models"]
    assert [f["module_path"] for f in model["findings"]] == ["extra"]

    monkeypatch.chdir(zoo / "sub")
    result = run("../net.py", "--select", "NL301", "--baseline", "../baseline.json", "--format", "json")
    (model,) = json.loads(result.stdout)["models"]
    assert [f["module_path"] for f in model["findings"]] == ["extra"]


def test_baseline_from_the_config(zoo):
    run("net.py", "--select", "NL301", "--write-baseline", "noiselint-baseline.json")
    (zoo / "pyproject.toml").write_text('[tool.noiselint]\nbaseline = "noiselint-baseline.json"\n')
    assert run("net.py", "--select", "NL301").exit_code == 0
    assert run("net.py", "--select", "NL301", "--isolated").exit_code == 1


def test_write_baseline_with_a_failed_model_exits_2(zoo):
    result = run("net.py", "missing.py", "--select", "NL301", "--write-baseline", "b.json")
    assert result.exit_code == 2
    assert (zoo / "b.json").exists()


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such baseline"),
    ("{not json", "not a noiselint baseline"),
    ('{"schema": "other", "findings": []}', "not a noiselint baseline"),
    ('{"schema": "noiselint-baseline", "schema_version": 9, "findings": []}', "schema version 9"),
    ('{"schema": "noiselint-baseline", "schema_version": 1, "findings": [{}]}', "has no fingerprint"),
])
def test_bad_baseline_is_one_line_and_exit_2(zoo, content, message):
    if content is not None:
        (zoo / "b.json").write_text(content)
    result = run("net.py", "--select", "NL301", "--baseline", "b.json")
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_streamed_lines_and_the_summary_hide_each_entry_once(zoo):
    """A baseline written for one target, then the same target twice with JSONL streaming: each entry
    hides one finding over the whole run, so the second model's line keeps its findings and the
    summary counts exactly what the lines show (it used to say 4 findings under two 0-finding lines)."""
    assert run("net.py", "--write-baseline", "b.json", "--jobs", "1").exit_code == 0
    result = run("net.py", "net.py", "--baseline", "b.json", "--format", "jsonl", "--jobs", "1")
    *models, summary = [json.loads(line) for line in result.stdout.splitlines()]
    assert [len(m["findings"]) for m in models][0] == 0 and len(models[1]["findings"]) > 0
    assert summary["summary"]["findings"] == sum(len(m["findings"]) for m in models)
    assert result.exit_code == 1
