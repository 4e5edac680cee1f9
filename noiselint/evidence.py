"""What the twin study measured, attached to findings by rule code; and the model-level exposure.

The figures come from ``noiselint/data/twins.json``, written by ``benchmarks/twins`` (never by
hand): for each rule the study covers, one row per task and twin pair with the measured stage
factor, the noise factor at the logits, the robustness difference with its spread and how many
seeds improved. A rule the study does not cover gets the verdict "not measured".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from noiselint.findings import Basis, Estimate, Evidence, Finding, Severity, StudyRow

#: How far an analytic factor may be from the measured stage factor before it is labelled a bound.
WITHIN = 2.0
UPPER_BOUND = "an upper bound on the gain: the twin study measured less"


@lru_cache(maxsize=1)
def packaged() -> dict[str, Any]:
    """The packaged study figures (``noiselint/data/twins.json``)."""
    return json.loads(resources.files("noiselint").joinpath("data/twins.json").read_text(encoding="utf-8"))


def _rows(entries: Iterable[Mapping[str, Any]]) -> tuple[StudyRow, ...]:
    names = {f.name for f in fields(StudyRow)}
    return tuple(StudyRow(**{k: tuple(v) if k == "stage_factor_range" else v for k, v in e.items() if k in names})
                 for e in entries if e.get("protocol", "sensor") == "sensor")


@lru_cache(maxsize=64)
def _for_rule(code: str) -> Evidence:
    return for_rule(code, packaged())


def for_rule(code: str, table: Mapping[str, Any] | None = None) -> Evidence:
    """The study's :class:`Evidence` for a rule code (``table``: the packaged file by default).

    Only the main protocol (noise at sensor resolution) counts; the resolution rule's
    noise-after-the-resize rows stay in the data file and the benchmark's table.
    """
    if table is None:
        return _for_rule(code)
    rows = _rows(table["rules"].get(code, ()))
    if not rows:
        return Evidence("not measured")
    found = {r.verdict == "effect" for r in rows}
    verdict = "effect" if found == {True} else "no effect" if found == {False} else "mixed"
    ratios = [r.predicted_stage_factor / r.measured_stage_factor for r in rows if r.predicted_stage_factor]
    within = None if not ratios else all(1 / WITHIN <= x <= WITHIN for x in ratios)
    scope = table["scope"]
    return Evidence(verdict, rows, within, f"{scope['architecture']}, {scope['seeds']} seeds, CPU-trained")


def attach(findings: Iterable[Finding], table: Mapping[str, Any] | None = None) -> list[Finding]:
    """Each finding with its rule's :class:`Evidence`; an analytic factor more than 2x away from the
    measured stage factor is labelled an upper bound on the gain."""
    out = []
    for finding in findings:
        evidence = for_rule(finding.code, table)
        estimate = finding.estimate
        if estimate is not None and estimate.factor is not None and evidence.analytic_within is False:
            estimate = replace(estimate, bound=UPPER_BOUND)
        out.append(replace(finding, evidence=evidence, estimate=estimate))
    return out


def transfer(evidence: Evidence) -> float | None:
    """Measured log10 noise reduction at the logits per analytic log10 reduction at the stage.

    The mean over the rule's pairs that showed an effect; 0 when the study found none (the term is
    left out of :func:`exposure`), None when the rule was not measured.
    """
    if evidence.verdict == "not measured":
        return None
    ratios = [max(0.0, -math.log10(r.logit_factor)) / -math.log10(r.predicted_stage_factor)
              for r in evidence.rows
              if r.verdict == "effect" and r.predicted_stage_factor and r.predicted_stage_factor < 1]
    return sum(ratios) / len(ratios) if ratios else 0.0


def term(finding: Finding, table: Mapping[str, Any] | None = None) -> float:
    """A finding's exposure term, in log10 of noise variance at the logits.

    The analytic log10 reduction of its advice (``-log10`` of the variance factor) times its rule's
    :func:`transfer`: what the study measured at the logits per unit of analytic prediction. A rule
    the study found no effect for adds 0; a rule it did not measure keeps the analytic figure.
    """
    estimate = finding.estimate
    sigma = None if estimate is None else estimate.sigma_factor
    if sigma is None or not sigma > 0:
        return 0.0
    analytic = max(0.0, -2 * math.log10(sigma))
    scale = transfer(for_rule(finding.code, table))
    return analytic if scale is None else analytic * scale


def exposure(findings: Iterable[Finding], table: Mapping[str, Any] | None = None) -> float:
    """Static model-level exposure: the sum over rules of each rule's largest :func:`term`.

    A rule counts once: one design choice repeated at every stage (NL302's shortcuts, NL301 in each
    block) is one stage of the estimate, not one per occurrence. No weights are needed.
    """
    best: dict[str, float] = {}
    for finding in findings:
        best[finding.code] = max(best.get(finding.code, 0.0), term(finding, table))
    return sum(best.values())


EXPOSURE_DOCS = """
## What it is
A model's static noise exposure: log10 of the noise variance at the logits that following its
findings would remove, as the twin study measured it. No weights are needed.

## How it is computed
Each finding's analytic factor f (a Lipschitz factor squared) gives -log10 f; that is scaled by its
rule's transfer, the study's measured log10 noise reduction at the logits per unit of analytic
prediction (mean over the rule's twin pairs that showed an effect). A rule counts once, with its
largest term: a design choice repeated at every stage is one choice. Rules the study did not
measure keep their analytic term; rules it found no effect for add 0.

## Why
The analytic factors overstate real gains (trained features are not white noise) and some
predicted gains did not appear at all; the old figure, the sum of every finding's analytic term,
ranked the twins less well than measured robustness does (``benchmarks/README.md``).

## Known problems
Calibrated on small CPU-trained ResNets on two small tasks; the transfer of a rule to large
pretrained models is not measured. A ranking figure, not an accuracy prediction.
"""


def exposure_docs(table: Mapping[str, Any] | None = None) -> str:
    """:data:`EXPOSURE_DOCS` with the rules left out and the transfers, read from the study's data."""
    table = packaged() if table is None else table
    lines = [EXPOSURE_DOCS.strip(), "", "## Terms from the study", ""]
    for code in sorted(table["rules"]):
        found = for_rule(code, table)
        scale = transfer(found)
        lines.append(f"- {code}: {found.verdict}; " + ("left out (transfer 0)" if not scale
                                                       else f"transfer {scale:.2f}"))
    lines.append("- every other rule: not measured; its analytic term counts")
    return "\n".join(lines) + "\n"


def findings_from_dicts(items: Iterable[Mapping[str, Any]], model: str) -> list[Finding]:
    """Findings rebuilt from the benchmark's stored dicts (code, module path, estimate figures)."""
    out = []
    for item in items:
        e = item.get("estimate")
        estimate = None if e is None else Estimate(
            quantity=e["quantity"], factor=e["factor"], basis=Basis(e["basis"]), formula="",
            current=e["current"], proposed=e["proposed"], scales_sigma=e["scales_sigma"])
        out.append(Finding(code=item["code"], rule="", severity=Severity.INFO, message="", model=model,
                           module_path=item.get("module_path"), estimate=estimate))
    return out
