"""GitHub Actions annotations (``--format github``) and the Markdown job summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from noiselint.cli import main
from noiselint.reporters import github

from .conftest import MODELS

POOL = "self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)"
BN = "self.bn1 = nn.BatchNorm2d(16)"


@pytest.mark.parametrize(("value", "data", "prop"), [
    ("plain text", "plain text", "plain text"),
    ("100% sure", "100%25 sure", "100%25 sure"),
    ("two\nlines\r\n", "two%0Alines%0D%0A", "two%0Alines%0D%0A"),
    ("a:b,c", "a:b,c", "a%3Ab%2Cc"),
    ("%0A", "%250A", "%250A"),
])
def test_escaping(value, data, prop):
    assert github.escape_data(value) == data
    assert github.escape_property(value) == prop


def test_command_leaves_out_missing_properties():
    assert github.command("warning", "m,1: x%", file="a,b.py", line=3, col=None, title="T: 1") == (
        "::warning file=a%2Cb.py,line=3,title=T%3A 1::m,1: x%25\n")
    assert github.command("error", "boom") == "::error::boom\n"


def test_annotations_for_findings_info_and_errors(tmp_path: Path, monkeypatch):
    (tmp_path / ".git").mkdir()
    (tmp_path / "models").mkdir()
    source = (MODELS / "resnet_maxpool.py").read_text().replace(BN, BN + "  # noqa: NL301")
    (tmp_path / "models" / "net.py").write_text(source)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    result = CliRunner().invoke(main, ["../models/net.py", "../models/missing.py", "--select", "NL301,NL001",
                                       "--format", "github", "--report", "json:report.json"])
    assert result.exit_code == 2
    lines = source.splitlines()
    pool_line = next(n for n, line in enumerate(lines, 1) if POOL in line)
    bn_line = next(n for n, line in enumerate(lines, 1) if BN in line)
    report = json.loads(Path("report.json").read_text())
    pool = next(f for m in report["models"] for f in m["findings"] if f["code"] == "NL301")
    out = result.stdout.splitlines()
    assert out[0].startswith(f"::notice file=models/net.py,line={bn_line},col=")
    assert out[0].endswith("unused `noqa` directive (unused: NL301) in ../models/net.py:TinyResNet (bn1)")
    assert out[1] == (
        f"::warning file=models/net.py,line={pool_line},col={pool['location']['column']},"
        f"title=noiselint NL301 (max-pooling)::NL301 {pool['message']} in ../models/net.py:TinyResNet (maxpool)"
        f"%0Aestimate: {github.escape_data(json_estimate(pool))}"
    )
    assert out[2] == "::error title=noiselint could not lint ../models/missing.py::../models/missing.py: no such file"
    assert out[3] == "2 findings in 1 model (1 warning, 1 info); 1 failed to load."


def json_estimate(finding: dict) -> str:
    estimate = finding["estimate"]
    bound = f" ({estimate['bound']})" if estimate["bound"] else ""
    return (f"{estimate['quantity']} x{estimate['factor']:.3g} (input sigma x{estimate['sigma_factor']:.3g})"
            f"{bound} [{estimate['basis']}]")


def test_markdown_summary(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [str(MODELS / "resnet_maxpool.py"), "missing.py", "--select", "NL301",
                                       "--format", "markdown"])
    text = result.stdout
    assert text.startswith("## noiselint\n\n1 finding in 1 model (1 warning); 1 failed to load.\n")
    assert "| Severity | Rule | Location | Model | Module | Message |" in text
    assert "| warning | `NL301` max-pooling | `" in text and "| maxpool | 3x3 max pooling" in text
    assert "### Errors\n\n- `missing.py`: missing.py: no such file\n" in text
