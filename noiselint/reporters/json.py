"""The JSON report: a versioned, documented schema (docs/json-schema.md); strict JSON (RFC 8259)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any, TextIO

from noiselint.findings import Finding, ModelReport, Report
from noiselint.graph import SourceLocation
from noiselint.reporters.escape import finite, json_text

SCHEMA_VERSION = 1


def location_dict(location: SourceLocation) -> dict[str, Any]:
    """``{path, line, column, related}``, ``related`` the helper lines behind the location."""
    return {"path": location.path, "line": location.line, "column": location.column,
            "related": [{"path": r.path, "line": r.line, "column": r.column} for r in location.related]}


def finding_dict(finding: Finding) -> dict[str, Any]:
    estimate = finding.estimate
    return {
        "code": finding.code,
        "rule": finding.rule,
        "severity": finding.severity.label,
        "message": finding.message,
        "model": finding.model,
        "node": finding.node,
        "module_path": finding.module_path,
        "location": location_dict(finding.location) if finding.location else None,
        "fingerprint": finding.fingerprint,
        "estimate": None if estimate is None else {
            "quantity": estimate.quantity,
            "factor": estimate.factor,
            "sigma_factor": estimate.sigma_factor,
            "scales_sigma": estimate.scales_sigma,
            "current": estimate.current,
            "proposed": estimate.proposed,
            "measured_factor": estimate.measured_factor,
            "bound": estimate.bound,
            "basis": estimate.basis.value,
            "formula": estimate.formula,
            "assumptions": list(estimate.assumptions),
            "references": list(estimate.references),
        },
        "evidence": None if finding.evidence is None else asdict(finding.evidence),  # the twin study's figures
        "fixable": finding.fixable,
    }


def model_dict(model: ModelReport) -> dict[str, Any]:
    """The model's object; a NaN or infinite number is ``null``, listed in ``non_finite``."""
    verified = {"verification": model.verification.to_dict()} if model.verification is not None else {}
    data, notes = finite({
        "target": model.target,
        "model": model.model,
        "status": "error" if not model.ok else "untraced" if model.untraced else "ok",
        "error": model.load_error,
        "graph": asdict(model.graph) if model.graph else None,
        "preprocessing": asdict(model.preprocessing) if model.preprocessing else None,
        "exposure": model.exposure,
        "findings": [finding_dict(f) for f in model.findings],
        "rule_errors": [asdict(e) for e in model.rule_errors],
        **verified,  # only with --verify: see README.md, section "Verify"
    })
    return {**data, "non_finite": notes} if notes else data


def report_dict(report: Report) -> dict[str, Any]:
    from noiselint import __version__

    findings = report.findings
    return {
        "schema": "noiselint-report",
        "schema_version": SCHEMA_VERSION,
        "noiselint_version": __version__,
        "exit_code": report.exit_code,
        "fail_on": report.fail_on.label,
        "summary": {
            "models": len(report.models),
            "failed": sum(not m.ok for m in report.models),
            "findings": len(findings),
            "by_severity": dict(Counter(f.severity.label for f in findings)),
            "by_code": dict(sorted(Counter(f.code for f in findings).items())),
        },
        "models": [model_dict(m) for m in report.models],
    }


def render(report: Report, stream: TextIO) -> None:
    stream.write(json_text(report_dict(report), indent=2) + "\n")
