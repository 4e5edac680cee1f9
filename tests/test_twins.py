"""The twin study (benchmarks/twins): packaged figures, evidence on findings, and exposure's ranking."""

from __future__ import annotations

import io
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from noiselint import estimates, evidence
from noiselint.findings import Basis, Estimate, Finding, Severity
from noiselint.reporters import get

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "twins" / "results"


@pytest.fixture(scope="module")
def full():
    from benchmarks.twins import summary

    return summary.compute(RESULTS, "full")


def test_packaged_figures_are_what_the_committed_raw_results_give(full):
    from benchmarks.twins import summary

    packaged = json.loads((ROOT / "noiselint" / "data" / "twins.json").read_text())
    assert packaged == json.loads(summary.dumps(full["evidence"]))
    assert packaged == evidence.packaged()
    assert packaged["mode"] == "full" and packaged["scope"]["seeds"] >= 5


def test_committed_summary_and_table_are_regenerated_from_the_raw_results(full):
    from benchmarks.twins import summary

    stored = json.loads((RESULTS / "full_summary.json").read_text())
    assert stored == json.loads(summary.dumps({k: v for k, v in full.items() if k != "evidence"}))
    table = (RESULTS / "full.md").read_text()
    assert table == summary.markdown(full["variants"], full["pairs"], full["exposure"], full["meta"])


def test_a_quick_mode_record_is_reproduced(tmp_path):
    """One quick-mode model trained again gives the committed record (CPU, one thread)."""
    import torch

    from benchmarks.twins import data, study

    committed = [json.loads(line) for line in (RESULTS / "quick.jsonl").read_text().splitlines()]
    (old,) = [r for r in committed if (r["task"], r["variant"], r["seed"]) == ("digits", "k7", 0)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        new = study.run_one(data.digits(), "k7", 0, study.QUICK_RECIPES["digits"])
    finally:
        torch.set_num_threads(threads)
    assert new["accuracy"]["clean"] == pytest.approx(old["accuracy"]["clean"], abs=0.01)
    assert new["robustness"]["sensor"] == pytest.approx(old["robustness"]["sensor"], abs=0.02)
    assert new["nsr"]["logits"] == pytest.approx(old["nsr"]["logits"], rel=0.1)


def test_new_exposure_ranks_the_variants_like_measured_robustness(full):
    for task, check in full["exposure"].items():
        assert check["spearman_new"] <= -0.8, (task, check)
        assert len(check["variants"]) >= 10


def test_the_engine_computes_the_exposure_the_study_checked(full, tmp_path):
    """Linting the built twins through noiselint.lint gives the findings and exposures the summary ranked."""
    from benchmarks.twins import data, models, run, study

    lint = json.loads((RESULTS / "full_lint.json").read_text())["lint"]
    check = full["exposure"]["natural"]
    config = tmp_path / "pyproject.toml"
    config.write_text(run.NL201_CONFIG.format(limit=32))
    task = data.Task("natural", *(None,) * 4, classes=17, channels=3)
    for variant in ("base", "k7", "res48", "resnetd"):
        linted = study.lint(variant, task, models.input_size(variant, "natural"), str(config))
        assert [f["code"] for f in linted["findings"]] == [f["code"] for f in lint[f"natural/{variant}"]["findings"]]
        assert linted["exposure"] == pytest.approx(check["new_exposure"][check["variants"].index(variant)], abs=1e-4)


def test_analytic_factors_are_within_2x_or_labelled_an_upper_bound():
    table = evidence.packaged()
    for code, rows in table["rules"].items():
        found = evidence.for_rule(code)
        for row in rows:
            predicted, measured = row["predicted_stage_factor"], row["measured_stage_factor"]
            if predicted is None or row["protocol"] != "sensor":
                continue
            if not 0.5 <= predicted / measured <= 2:
                assert found.analytic_within is False, (code, row)
        estimate = Estimate("q", 0.25, Basis.ANALYTIC, "f")
        (attached,) = evidence.attach([Finding(code, "r", Severity.INFO, "m", "model", estimate=estimate)])
        assert (attached.estimate.bound == evidence.UPPER_BOUND) == (found.analytic_within is False)
        assert attached.evidence == found


def test_rules_without_an_effect_say_so_and_leave_exposure():
    assert evidence.for_rule("NL302").verdict == "no effect"
    assert evidence.transfer(evidence.for_rule("NL302")) == 0.0
    assert evidence.for_rule("NL403").verdict == "not measured"
    assert evidence.transfer(evidence.for_rule("NL403")) is None
    assert "not measured" in evidence.for_rule("NL403").summary()


def _model():
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1)
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.down = nn.Conv2d(16, 32, 1, stride=2)
            self.head = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.head(self.down(self.pool(self.conv(x))))

    return Net()


@pytest.fixture(scope="module")
def report():
    import noiselint

    return noiselint.lint(_model(), input_size=(3, 32, 32))


def test_evidence_appears_in_json_text_and_sarif(report):
    codes = {f.code for f in report.findings}
    assert {"NL101", "NL301", "NL302", "NL403"} <= codes
    for f in report.findings:
        assert f.evidence == evidence.for_rule(f.code)

    out = io.StringIO()
    get("json")(report, out)
    by_code = {f["code"]: f for f in json.loads(out.getvalue())["models"][0]["findings"]}
    assert by_code["NL302"]["evidence"]["verdict"] == "no effect"
    assert by_code["NL302"]["estimate"]["bound"] == evidence.UPPER_BOUND
    assert by_code["NL301"]["evidence"]["rows"][0]["seeds"] >= 5
    assert by_code["NL403"]["evidence"] == {"verdict": "not measured", "rows": [], "analytic_within": None,
                                            "scope": ""}

    out = io.StringIO()
    get("text")(report, out)
    text = out.getvalue()
    assert "twin study found no effect (natural" in text and "twin study: not measured" in text

    out = io.StringIO()
    get("sarif")(report, out)
    results = json.loads(out.getvalue())["runs"][0]["results"]
    nl302 = next(r for r in results if r["ruleId"] == "NL302")
    assert "twin study found no effect" in nl302["message"]["text"]
    assert nl302["properties"]["evidence"]["verdict"] == "no effect"


def test_exposure_counts_a_rule_once(report):
    findings = [f for f in report.findings if f.code == "NL301"]
    twice = findings + [replace(findings[0], module_path="other")]
    assert evidence.exposure(twice) == pytest.approx(evidence.exposure(findings))
    assert report.models[0].exposure == pytest.approx(evidence.exposure(report.findings))


def test_sensor_resize_estimate_matches_torch_resize():
    import torch
    import torch.nn.functional as F

    noise = torch.randn(400, 1, 48, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    resized = F.interpolate(noise, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    assert estimates.resize_noise_gain(48, 32) == pytest.approx(float(resized.var()), rel=0.02)
    estimate = estimates.sensor_resize_estimate(384, 224)
    assert estimate.factor == pytest.approx(0.1508, abs=1e-4) and math.isclose(estimates.resize_noise_gain(64, 64), 1)
