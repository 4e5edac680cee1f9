"""SARIF 2.1.0 for code scanning: one descriptor per rule, results at the layer's source line.

Paths are relative to the repository root (the closest folder upwards from the working directory
holding ``.git``, else the working directory) under ``%SRCROOT%``; files outside it get absolute
``file:`` URIs. Load errors and crashed rules are ``toolExecutionNotifications``. The log is strict
JSON: a NaN or infinite number is ``null``, its JSON pointer listed in the run's ``properties.nonFinite``.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from noiselint.findings import Finding, ModelReport, Report, Severity
from noiselint.graph import SourceLocation
from noiselint.loaders import target_file
from noiselint.reporters.escape import finite, json_text
from noiselint.rule import Rule

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
PROBLEM_SEVERITY = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "recommendation"}
FINGERPRINT_KEY = "noiselint/v1"


def repo_root() -> Path:
    """The closest folder with ``.git`` from the working directory upwards, else the working directory."""
    cwd = Path.cwd().resolve()
    return next((folder for folder in (cwd, *cwd.parents) if (folder / ".git").exists()), cwd)


def relative_path(path: str, root: Path) -> str | None:
    """``path`` relative to ``root`` with forward slashes, or ``None`` when it lies outside."""
    relative = os.path.relpath(os.path.abspath(path), root)
    return None if relative.startswith("..") or os.path.isabs(relative) else Path(relative).as_posix()


def _artifact(path: str, root: Path) -> dict[str, Any]:
    relative = relative_path(path, root)
    if relative is None:
        return {"uri": Path(os.path.abspath(path)).as_uri()}
    return {"uri": quote(relative), "uriBaseId": "%SRCROOT%"}


def _location(finding: Finding, model: ModelReport, root: Path) -> dict[str, Any]:
    location: dict[str, Any] = {}
    if finding.location is not None:
        location["physicalLocation"] = _physical(finding.location, root)
    elif target_file(model.target):
        location["physicalLocation"] = {"artifactLocation": _artifact(target_file(model.target), root)}
    name = f"{finding.model}/{finding.module_path}" if finding.module_path else finding.model
    location["logicalLocations"] = [{"fullyQualifiedName": name, "kind": "module"}]
    return location


def _related(finding: Finding, root: Path) -> dict[str, Any]:
    """``relatedLocations``: the helper's line that built a layer located at its call site."""
    if finding.location is None or not finding.location.related:
        return {}
    return {"relatedLocations": [
        {"id": number, "message": {"text": "the layer is built here"}, "physicalLocation": _physical(r, root)}
        for number, r in enumerate(finding.location.related, 1)]}


def _physical(location: SourceLocation, root: Path) -> dict[str, Any]:
    return {"artifactLocation": _artifact(location.path, root),
            "region": {"startLine": max(location.line, 1), "startColumn": max(location.column, 1)}}


def _rule_classes(report: Report) -> list[type[Rule]]:
    """Every discovered rule, plus rules loaded from other folders that this report mentions."""
    from noiselint import registry

    known = {cls.code: cls for cls in registry.discover()}
    wanted = {f.code for f in report.findings} | {e.code for m in report.models for e in m.rule_errors}
    pending = list(Rule.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if getattr(cls, "code", None) in wanted - set(known):
            known[cls.code] = cls
    return sorted(known.values(), key=lambda cls: cls.code)


def descriptor(cls: type[Rule]) -> dict[str, Any]:
    """A ``reportingDescriptor`` for one rule, its help from the rule's docs."""
    docs = cls.docs()
    return {
        "id": cls.code,
        "name": cls.name,
        "shortDescription": {"text": cls.summary()},
        "fullDescription": {"text": docs, "markdown": docs},
        "help": {"text": docs, "markdown": docs},
        "defaultConfiguration": {"level": LEVELS[cls.severity]},
        "properties": {"tags": ["noise-robustness", cls.family],
                       "problem.severity": PROBLEM_SEVERITY[cls.severity]},
    }


def _result(finding: Finding, model: ModelReport, index: dict[str, int], root: Path) -> dict[str, Any]:
    text = finding.message
    if finding.estimate is not None:
        text += f" (estimate: {finding.estimate.summary()})"
    if finding.evidence is not None:
        text += f" ({finding.evidence.summary()})"
    result: dict[str, Any] = {
        "ruleId": finding.code,
        "level": LEVELS[finding.severity],
        "message": {"text": text},
        "locations": [_location(finding, model, root)],
        **_related(finding, root),
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "properties": {"model": finding.model, "modulePath": finding.module_path, "node": finding.node,
                       **({"evidence": asdict(finding.evidence)} if finding.evidence is not None else {})},
    }
    if finding.code in index:
        result["ruleIndex"] = index[finding.code]
    return result


def _notifications(report: Report, index: dict[str, int], root: Path) -> list[dict[str, Any]]:
    notes = []
    for model in report.models:
        if model.load_error:
            note: dict[str, Any] = {"level": "error", "message": {"text": model.load_error}}
            if target_file(model.target):
                note["locations"] = [{"physicalLocation": {"artifactLocation": _artifact(
                    target_file(model.target), root)}}]
            notes.append(note)
        for error in model.rule_errors:
            rule = {"id": error.code, **({"index": index[error.code]} if error.code in index else {})}
            notes.append({"level": "error", "associatedRule": rule,
                          "message": {"text": f"rule {error.code} crashed on {error.model}: {error.error}"}})
    return notes


def sarif_log(report: Report) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log with one run."""
    from noiselint import __version__

    root = repo_root()
    classes = _rule_classes(report)
    index = {cls.code: i for i, cls in enumerate(classes)}
    run = {
        "tool": {"driver": {"name": "noiselint", "version": __version__, "semanticVersion": __version__,
                            "rules": [descriptor(cls) for cls in classes]}},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": root.as_uri() + "/"}},
        "invocations": [{
            "executionSuccessful": report.exit_code != 2,
            "exitCode": report.exit_code,
            "toolExecutionNotifications": _notifications(report, index, root),
        }],
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, m, index, root) for m in report.models for f in m.findings],
    }
    run, notes = finite(run, "/runs/0")
    if notes:
        run["properties"] = {"nonFinite": notes}
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render(report: Report, stream: TextIO) -> None:
    stream.write(json_text(sarif_log(report), indent=2) + "\n")
