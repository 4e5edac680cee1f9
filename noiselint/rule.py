"""The base class every rule derives from: one class holds a rule's code, docs, examples and check.

A rule module in ``rules/`` (or a plugin) defines subclasses of :class:`Rule`. The docstring holds
the rule's documentation under the headings What it does / Why is this bad? / Example /
Use instead / References; ``noiselint explain CODE`` renders it and SARIF descriptors use it.
``valid`` and ``invalid`` examples are model files (Python source) that the test suite lints with
this rule alone: valid ones must give no finding, invalid ones must give one at each line marked
``# noiselint-expect``.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from noiselint.findings import Estimate, Finding, Severity
from noiselint.graph import ModelGraph

EXPECT_MARKER = "# noiselint-expect"


@dataclass(frozen=True)
class Range:
    """The values a numeric rule option may take: ``low`` to ``high``, inclusive unless ``low_open``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        low = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = None if self.high is None else f"<= {self.high:g}"
        return " and ".join(part for part in (low, high) if part)


@dataclass(frozen=True)
class Example:
    """A model file used as a rule's documentation and test.

    ``source`` is the Python file; ``target`` names the model in it (``file.py:NAME``), or is a
    full target such as ``timm:resnet50`` when ``source`` is empty. ``options`` are preprocessing
    overrides (``mean``, ``std``, ``input_size``) applied when linting the example.
    """

    source: str = ""
    target: str = "model"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str:
        return textwrap.dedent(self.source).strip("\n") + "\n"

    @property
    def expected_lines(self) -> list[int]:
        return [n for n, line in enumerate(self.code.splitlines(), 1) if EXPECT_MARKER in line]


class Rule:
    """Base class for rules. Subclasses set the class attributes and implement :meth:`check`."""

    code: ClassVar[str]
    name: ClassVar[str]
    family: ClassVar[str]
    severity: ClassVar[Severity] = Severity.WARNING
    options: ClassVar[dict[str, Any]] = {}
    #: The allowed values of numeric options, checked when the configuration is read.
    option_ranges: ClassVar[dict[str, Range]] = {}
    valid: ClassVar[tuple[Example, ...]] = ()
    invalid: ClassVar[tuple[Example, ...]] = ()
    #: A rule with a fix defines ``fix(self, context)`` (see :mod:`noiselint.fixes`) and says here what it
    #: rewrites; ``fix_scope`` is ``line`` (the finding's line) or ``target`` (the linted model's file).
    fix_summary: ClassVar[str | None] = None
    fix_scope: ClassVar[str] = "line"

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(f"{self.code}: unknown option(s) {', '.join(sorted(unknown))}")
        self.config = {**self.options, **options}

    def check(self, graph: ModelGraph) -> Iterator[Finding]:
        """Yield findings for ``graph``; use :meth:`finding` to build them."""
        raise NotImplementedError

    def finding(
        self,
        graph: ModelGraph,
        message: str,
        *,
        node: str | None = None,
        estimate: Estimate | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        """A finding at ``node`` (its module path and source line), or at model level."""
        data = graph.node(node) if node is not None else {}
        return Finding(
            code=self.code,
            rule=self.name,
            severity=severity or self.severity,
            message=message,
            model=graph.name,
            node=node,
            module_path=data.get("module_path"),
            location=data.get("source"),
            estimate=estimate,
        )

    @classmethod
    def option_problem(cls, name: str, value: Any) -> str | None:
        """What is wrong with ``value`` for option ``name`` (not finite, out of its range), or None."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        allowed = cls.option_ranges.get(name)
        return None if allowed is None or value in allowed else f"must be {allowed}"

    @classmethod
    def docs(cls) -> str:
        """The rule's documentation (its docstring, dedented)."""
        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def summary(cls) -> str:
        """The first sentence under "What it does"."""
        docs = cls.docs()
        body = docs.split("## What it does", 1)[-1].strip().split("\n\n", 1)[0]
        return " ".join(body.replace("``", "`").split())

