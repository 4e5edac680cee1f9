"""The Python API: ``noiselint.lint(model_or_target, ...)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from noiselint.engine import Options, lint_loaded, lint_target, make_rules
from noiselint.findings import Report, Severity
from noiselint.graph import Preprocessing
from noiselint.loaders import LoadedModel


def lint(
    model: Any,
    *,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
    fail_on: str = "warning",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: Sequence[int] | None = None,
    name: str | None = None,
) -> Report:
    """Lint an ``nn.Module`` instance, a target string, or a list of either.

    Preprocessing given here overrides what the model states; ``fail_on`` sets the severity at
    which ``Report.exit_code`` becomes 1.
    """
    override = Preprocessing(
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
        input_size=tuple(input_size) if input_size is not None else None,
        origin="lint() arguments",
    )
    options = Options(select=select, ignore=ignore, fail_on=Severity.parse(fail_on), preprocessing=override)
    rules = make_rules(options)
    models = []
    for item in model if isinstance(model, (list, tuple)) else [model]:
        if isinstance(item, str):
            models.extend(lint_target(item, rules, options))
        else:
            label = name or type(item).__name__
            models.append(lint_loaded(LoadedModel(name=label, target=label, module=item), rules, options))
    return Report(models=tuple(models), fail_on=options.fail_on)
