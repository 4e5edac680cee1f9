"""Baselines: record today's findings once, then fail only on new ones.

``--write-baseline FILE`` stores one entry per finding; ``--baseline FILE`` hides every finding whose
fingerprint is recorded (each entry hides one finding, so a second max pool in the same module is
new). The fingerprint is :attr:`Finding.fingerprint` (rule, model, module path: no line numbers),
taken with the model's file path relative to the baseline's folder, so it does not depend on the
directory noiselint runs from.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from noiselint.errors import UsageError, brief
from noiselint.findings import Finding, ModelReport, Report
from noiselint.loaders import kind_of, split_python_target
from noiselint.readers import load_json, read_bytes

SCHEMA = "noiselint-baseline"
SCHEMA_VERSION = 1


def fingerprint(finding: Finding, root: str | os.PathLike) -> str:
    """``finding.fingerprint`` with its model's file path made relative to ``root``."""
    return replace(finding, model=_relative_model(finding.model, root)).fingerprint


def _relative_model(model: str, root: str | os.PathLike) -> str:
    if kind_of(model) not in ("python", "onnx"):
        return model
    path, name = split_python_target(model)
    if not os.path.isfile(path):
        return model
    relative = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()
    return f"{relative}:{name}" if name else relative


def write(report: Report, path: str | os.PathLike) -> int:
    """Record every finding of ``report`` in ``path``; returns how many."""
    root = Path(path).resolve().parent
    entries = sorted(
        ({"fingerprint": fingerprint(f, root), "code": f.code, "model": _relative_model(f.model, root),
          "module_path": f.module_path or f.node, "message": f.message} for f in report.findings),
        key=lambda e: (e["model"], e["code"], e["module_path"] or "", e["fingerprint"]),
    )
    from noiselint import __version__

    data = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "noiselint_version": __version__,
            "findings": entries}
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO would block, a device swallow it
        raise UsageError(f"{path}: cannot write the baseline: not a regular file")
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the baseline: {exc.strerror}") from None
    return len(entries)


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline: how many findings of each fingerprint it records, and its folder."""

    counts: Counter[str]
    root: Path


def load(path: str | os.PathLike) -> Baseline:
    """Read and check the baseline at ``path``."""
    try:
        data = load_json(read_bytes(path))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such baseline (create it with --write-baseline)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the baseline: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not a noiselint baseline: {exc} (write one with --write-baseline)") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("findings"), list):
        raise UsageError(f"{path}: not a noiselint baseline (write one with --write-baseline)")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"{path}: baseline schema version {brief(data.get('schema_version'))} is not supported")
    entries = data["findings"]
    if not all(isinstance(e, dict) and isinstance(e.get("fingerprint"), str) for e in entries):
        raise UsageError(f"{path}: a baseline entry has no fingerprint (write it again with --write-baseline)")
    return Baseline(Counter(e["fingerprint"] for e in entries), Path(path).resolve().parent)


def apply(report: Report, baseline: Baseline) -> Report:
    """``report`` without the findings ``baseline`` records (each entry hides one finding)."""
    return Hider(baseline).report(report)


class Hider:
    """Hides the findings a baseline records, model by model as a run reports them, each entry once
    over the whole run: a model streamed early (``--format jsonl``) and the final report agree."""

    def __init__(self, baseline: Baseline) -> None:
        self.remaining = Counter(baseline.counts)
        self.root = baseline.root
        self.hidden: dict[int, tuple[ModelReport, ModelReport]] = {}  # id -> (the model, without them)

    def model(self, model: ModelReport) -> ModelReport:
        """``model`` without the baseline's findings; the same answer every time it is asked."""
        if id(model) not in self.hidden:
            kept = []
            for finding in model.findings:
                key = fingerprint(finding, self.root)
                if self.remaining[key] > 0:
                    self.remaining[key] -= 1
                else:
                    kept.append(finding)
            self.hidden[id(model)] = (model, replace(model, findings=tuple(kept)))
        return self.hidden[id(model)][1]

    def report(self, report: Report) -> Report:
        return replace(report, models=tuple(self.model(m) for m in report.models))
