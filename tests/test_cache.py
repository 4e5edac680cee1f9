"""The results cache: reports survive a JSON round trip, and every input that matters invalidates them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import noiselint
from noiselint import batch, cache
from noiselint.cli import main
from noiselint.engine import Options
from noiselint.findings import Basis, Estimate, Finding, GraphSummary, ModelReport, Report, RuleError, Severity
from noiselint.graph import Preprocessing, SourceLocation

from .test_lazy_imports import run_cli

MODEL = '''\
import torch.nn as nn

from blocks import Block

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
INPUT_SIZE = (3, 32, 32)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 7, padding=3)
        self.block = Block()

    def forward(self, x):
        return self.block(self.stem(x))
'''
BLOCKS = '''\
import torch.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.{pool}(2)

    def forward(self, x):
        return self.pool(x)
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A model file importing a local module, in the working directory."""
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "blocks.py").write_text(BLOCKS.format(pool="MaxPool2d"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lint(project: Path, options: Options = Options(), target: str = "model.py") -> tuple[Report, cache.Cache]:
    results = cache.Cache(project / "cache", options)
    return batch.run([target], options, batch.BatchSettings(in_process=True), cache=results), results


def codes(report: Report) -> list[str]:
    return [f.code for f in report.findings]


def test_round_trip_through_json_gives_an_equal_report():
    estimate = Estimate(quantity="noise MSE", factor=0.25, basis=Basis.ANALYTIC, formula="1/k^2",
                        assumptions=("white noise",), references=("arXiv 2509.20939",), current=4.0, proposed=1.0)
    report = ModelReport(
        target="net.py", model="net.py:Net",
        findings=(Finding(code="NL301", rule="max-pooling", severity=Severity.WARNING, message="3x3 max",
                          model="net.py:Net", node="pool", module_path="pool",
                          location=SourceLocation("net.py", 12, 5), estimate=estimate),),
        rule_errors=(RuleError(code="NL999", model="net.py:Net", error="ValueError: boom"),),
        graph=GraphSummary(trace_level="fx", coverage=0.97, nodes=12, input_size=(3, 224, 224),
                           architecture="cnn", weights=False, notes=("a note",)),
        preprocessing=Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=(3, 224, 224),
                                    crop_pct=0.875, origin="module constants"),
        exposure=1.25,
    )
    data = json.loads(json.dumps(cache.to_dict(report)))
    assert cache.from_dict(data) == report
    failed = ModelReport(target="x.py", model="x.py", load_error="x.py: no such file")
    assert cache.from_dict(json.loads(json.dumps(cache.to_dict(failed)))) == failed


def test_unchanged_model_comes_from_the_cache(project):
    first, cold = lint(project)
    assert (cold.hits, cold.misses) == (0, 1)
    assert "NL301" in codes(first)
    second, warm = lint(project)
    assert (warm.hits, warm.misses) == (1, 0)
    assert second == first
    (entry,) = [p for p in (project / "cache").glob("*.json")]
    deps = json.loads(entry.read_text())["deps"]
    assert {Path(p).name for p in deps} == {"model.py", "blocks.py"}
    assert (project / "cache" / ".gitignore").read_text().strip().endswith("*")


def test_editing_an_imported_local_file_relints(project):
    lint(project)
    (project / "blocks.py").write_text(BLOCKS.format(pool="AvgPool2d"))
    report, results = lint(project)
    assert results.misses == 1
    assert "NL301" not in codes(report)  # the new blocks.py was imported, not a stale copy


def test_editing_the_model_file_relints(project):
    lint(project)
    (project / "model.py").write_text(MODEL.replace("nn.Conv2d(3, 8, 7, padding=3)", "nn.Conv2d(3, 8, 3, padding=1)"))
    assert lint(project)[1].misses == 1


@pytest.mark.parametrize("changed", [
    Options(select=["NL3"]),
    Options(ignore=["NL301"]),
    Options(preprocessing=Preprocessing(std=(0.25, 0.25, 0.25), origin="command line")),
    Options(rule_options={"NL101": {"min_kernel": 9}}),
    Options(per_file_ignores=(("*.py", ("NL301",)),)),
])
def test_changing_the_configuration_relints(project, changed):
    lint(project)
    assert lint(project, changed)[1].misses == 1


def test_fail_on_only_sets_the_exit_code_so_it_shares_entries(project):
    lint(project)
    report, results = lint(project, Options(fail_on=Severity.ERROR))
    assert results.hits == 1 and report.exit_code == 0


def test_a_new_noiselint_version_relints(project, monkeypatch):
    lint(project)
    monkeypatch.setattr(noiselint, "__version__", "999.0")
    assert lint(project)[1].misses == 1


def test_editing_a_rules_folder_relints(project):
    rules = project / "rules"
    rules.mkdir()
    (rules / "extra.py").write_text('"""No rules yet."""\n')
    options = Options(rules_dirs=(str(rules),))
    lint(project, options)
    assert lint(project, options)[1].hits == 1
    (rules / "extra.py").write_text('"""Still no rules, but a different source."""\n')
    assert lint(project, options)[1].misses == 1


def test_load_errors_are_not_cached(project):
    (project / "broken.py").write_text("def broken(:\n")
    report, _ = lint(project, target="broken.py")
    assert not report.models[0].ok
    assert lint(project, target="broken.py")[1].misses == 1


def test_a_corrupt_entry_is_a_miss(project):
    lint(project)
    for entry in (project / "cache").glob("*.json"):
        entry.write_text("{not json")
    report, results = lint(project)
    assert results.misses == 1 and "NL301" in codes(report)


def test_warm_cache_run_never_imports_torch(project, monkeypatch):
    monkeypatch.delenv("NOISELINT_NO_CACHE")
    code, loaded, first = run_cli("model.py", "--isolated", "--in-process", cwd=project)
    assert code == 1 and "torch" in loaded, first
    code, loaded, second = run_cli("model.py", "--isolated", cwd=project)  # no worker is started either
    assert code == 1 and second == first
    assert not loaded & {"torch", "timm", "torchvision", "networkx"}, loaded
    assert list((project / ".noiselint_cache").glob("*.json"))


def test_cache_dir_and_no_cache_options(project, monkeypatch):
    monkeypatch.delenv("NOISELINT_NO_CACHE")
    runner = CliRunner()
    result = runner.invoke(main, ["model.py", "--isolated", "--no-cache"])
    assert result.exit_code == 1 and not (project / ".noiselint_cache").exists(), result.output
    result = runner.invoke(main, ["model.py", "--isolated", "--cache-dir", "elsewhere"])
    assert result.exit_code == 1 and list((project / "elsewhere").glob("*.json")), result.output
    assert not (project / ".noiselint_cache").exists()
