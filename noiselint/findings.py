"""Frozen records the engine returns: estimates, findings, per-model reports, the whole report."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from noiselint.graph import Preprocessing, SourceLocation


class Severity(enum.IntEnum):
    """How serious a finding is; a run fails on findings at or above its threshold."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Severity:
        try:
            return cls[value.upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {value!r} (choose from {choices})") from None


class Basis(enum.StrEnum):
    """Where a predicted gain comes from."""

    ANALYTIC = "analytic"  # a formula, with its assumptions stated
    EMPIRICAL = "empirical"  # an observed trend (the paper's zoo study), not a formula
    MEASURED = "measured"  # measured on this model by --verify


@dataclass(frozen=True)
class Estimate:
    """What following a finding's advice is predicted to buy at that stage.

    ``factor`` multiplies the ``quantity`` (noise variance, MSE, or a Lipschitz bound) at that
    stage when the advice is followed: 0.25 means a 4x reduction. ``sigma_factor`` is the equivalent
    change of the input noise sigma (the square root of a variance factor, the factor itself for a
    Lipschitz bound). ``None`` means the figure is unknown, and the report says so.
    """

    quantity: str
    factor: float | None
    basis: Basis
    formula: str
    assumptions: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    current: float | None = None
    proposed: float | None = None
    measured_factor: float | None = None
    scales_sigma: bool = False  # the quantity scales like the noise sigma (a Lipschitz bound), not its variance
    bound: str | None = None  # set when the factor is only a bound, e.g. the twin study measured a smaller gain

    @property
    def sigma_factor(self) -> float | None:
        """The factor's input-sigma equivalent; None when unknown (no factor, or a negative variance factor)."""
        if self.factor is None or (self.factor < 0 and not self.scales_sigma):
            return None
        return self.factor if self.scales_sigma else self.factor**0.5

    def summary(self) -> str:
        """One line: the factor, its sigma equivalent and its basis."""
        if self.factor is None:
            return f"{self.quantity}: gain unknown ({self.basis.value})"
        sigma = "unknown" if self.sigma_factor is None else f"x{self.sigma_factor:.3g}"
        predicted = f"x{self.factor:.3g} (input sigma {sigma})"
        if self.bound:
            predicted += f" ({self.bound})"
        if self.measured_factor is None:
            return f"{self.quantity} {predicted} [{self.basis.value}]"
        return f"{self.quantity}: predicted {predicted}, measured x{self.measured_factor:.3g} [{self.basis.value}]"


@dataclass(frozen=True)
class StudyRow:
    """One twin pair of the twin study on one task, paired by seed (advice followed minus flagged)."""

    task: str
    change: str
    stage: str
    seeds: int
    predicted_stage_factor: float | None
    measured_stage_factor: float
    stage_factor_range: tuple[float, float]
    logit_factor: float
    robustness_difference: float
    robustness_difference_sd: float | None
    seeds_better: int
    verdict: Literal["effect", "none", "opposite"]

    def text(self) -> str:
        sd = "" if self.robustness_difference_sd is None else f" ± {self.robustness_difference_sd:.2f}"
        lo, hi = self.stage_factor_range
        found = {"effect": "", "none": ", no effect found", "opposite": ", the opposite effect"}[self.verdict]
        return (f"{self.task}, {self.change}: robustness {self.robustness_difference:+.2f}{sd}, "
                f"{self.seeds_better}/{self.seeds} seeds better, stage factor x{self.measured_stage_factor:.2g} "
                f"({lo:.2g}-{hi:.2g}){found}")


@dataclass(frozen=True)
class Evidence:
    """The twin study's word on a finding's rule (``noiselint.evidence`` builds it from packaged data).

    ``verdict``: "effect" (every studied pair showed one), "no effect", "mixed", or "not measured".
    ``analytic_within``: every predicted factor within 2x of the measured stage factor (None: no figures).
    """

    verdict: Literal["effect", "no effect", "mixed", "not measured"]
    rows: tuple[StudyRow, ...] = ()
    analytic_within: bool | None = None
    scope: str = ""

    def summary(self) -> str:
        if self.verdict == "not measured":
            return "twin study: not measured"
        head = {"effect": "twin study found an effect", "no effect": "twin study found no effect",
                "mixed": "twin study found an effect in some twins only"}[self.verdict]
        return f"{head} ({'; '.join(r.text() for r in self.rows)}; {self.scope})"


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one place in one model."""

    code: str
    rule: str
    severity: Severity
    message: str
    model: str
    node: str | None = None
    module_path: str | None = None
    location: SourceLocation | None = None
    estimate: Estimate | None = None
    evidence: Evidence | None = None  # what the twin study measured for this rule (noiselint.evidence)
    fixable: bool = False  # the rule offers a fix for it (``--fix --unsafe-fixes``, noiselint.fixes)

    @property
    def fingerprint(self) -> str:
        """Stable identity for baselines: rule, model and module path, never line numbers."""
        key = "\0".join((self.code, self.model, self.module_path or self.node or ""))
        return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RuleError:
    """A rule that crashed on a model; the run goes on and the report carries this record."""

    code: str
    model: str
    error: str


@dataclass(frozen=True)
class GraphSummary:
    """How a model was read: the trace level used and how much of the model it covers."""

    trace_level: str
    coverage: float
    nodes: int
    input_size: tuple[int, int, int] | None
    architecture: str
    weights: bool
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelReport:
    """Everything known about one model: its findings, or why it could not be linted."""

    target: str
    model: str
    findings: tuple[Finding, ...] = ()
    rule_errors: tuple[RuleError, ...] = ()
    graph: GraphSummary | None = None
    preprocessing: Preprocessing | None = None
    exposure: float | None = None
    load_error: str | None = None
    verification: Any = None  # a noiselint.verify.report.Verification, set by --verify

    @property
    def ok(self) -> bool:
        return self.load_error is None

    @property
    def untraced(self) -> bool:
        """No tracing level could run the forward: only the layer list was read (exit code 2)."""
        return self.graph is not None and self.graph.trace_level == "structural"


@dataclass(frozen=True)
class Report:
    """The result of one run over one or more targets."""

    models: tuple[ModelReport, ...] = field(default_factory=tuple)
    fail_on: Severity = Severity.WARNING

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for m in self.models for f in m.findings)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 findings at or above ``fail_on``, 2 a model failed to load or to trace, or a rule crashed."""
        if any(not m.ok or m.rule_errors or m.untraced for m in self.models):
            return 2
        if any(f.severity >= self.fail_on for f in self.findings):
            return 1
        return 0
