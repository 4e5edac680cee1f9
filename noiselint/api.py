"""The Python API: ``noiselint.lint(model_or_target, ...)``, ``noiselint.assert_clean(...)``, and
:func:`check`, the whole ``noiselint check`` run (batches, cache, ``--verify``, baseline) that the CLI calls."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from noiselint.engine import Options, lint_loaded, lint_target, make_rules
from noiselint.findings import ModelReport, Report
from noiselint.graph import Preprocessing
from noiselint.loaders import LoadedModel


def lint(
    model: Any,
    *,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
    fail_on: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: Sequence[int] | None = None,
    name: str | None = None,
    config: str | os.PathLike | bool = False,
    rules_dirs: Sequence[str] = (),
) -> Report:
    """Lint an ``nn.Module`` instance, a target string, or a list of either.

    Preprocessing given here overrides what the model states; ``fail_on`` sets the severity at
    which ``Report.exit_code`` becomes 1 (default: the configuration's, else ``warning``). ``config``
    applies a ``[tool.noiselint]`` table: a file, or ``True`` for the closest pyproject.toml; the
    arguments given here win over it. ``rules_dirs`` are extra folders of rule modules.
    """
    from noiselint import config as configuration
    from noiselint.sites import class_sites

    override = Preprocessing(
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
        input_size=tuple(input_size) if input_size is not None else None,
        origin="lint() arguments",
    )
    settings = configuration.Config()
    if config:
        settings = configuration.resolve(None if config is True else os.fspath(config))
    options = configuration.make_options(settings, select=select, ignore=ignore, fail_on=fail_on,
                                         preprocessing=override, rules_dirs=rules_dirs)
    rules = make_rules(options)
    models = []
    for item in model if isinstance(model, (list, tuple)) else [model]:
        if isinstance(item, str):
            models.extend(lint_target(item, rules, options))
        else:
            label = name or type(item).__name__
            loaded = LoadedModel(name=label, target=label, module=item, sites=class_sites(item))
            models.append(lint_loaded(loaded, rules, options))
    return Report(models=tuple(models), fail_on=options.fail_on)


def assert_clean(model: Any, **kwargs: Any) -> Report:
    """Lint like :func:`lint` and raise ``AssertionError`` listing every finding at or above
    ``fail_on``, every model that failed to load and every crashed rule; returns the report if clean."""
    report = lint(model, **kwargs)
    if report.exit_code == 0:
        return report
    lines = []
    for result in report.models:
        if result.load_error:
            lines.append(f"{result.model}: could not lint it: {result.load_error}")
        for finding in result.findings:
            if finding.severity >= report.fail_on:
                where = str(finding.location) if finding.location else result.model
                module = f" {finding.module_path}:" if finding.module_path else ""
                lines.append(f"{where}: {finding.code} {finding.rule}{module} {finding.message}")
        for error in result.rule_errors:
            lines.append(f"{result.model}: rule {error.code} crashed: {error.error}")
    raise AssertionError(f"noiselint: {len(lines)} problem(s) at or above {report.fail_on.label}:\n  "
                         + "\n  ".join(lines))


@dataclass(frozen=True)
class RunSettings:
    """How :func:`check` runs: worker processes (or ``in_process``: none, no isolation), per-target
    timeout, order, cache folder (None: no cache)."""

    jobs: int | None = None
    timeout: float | None = None
    sort: str = "input"
    cache_dir: str | None = None
    progress: bool = False
    in_process: bool = False


def check(
    targets: Sequence[str],
    options: Options,
    settings: RunSettings = RunSettings(),
    *,
    verify: Any = None,
    baseline: str | os.PathLike | None = None,
    on_report: Callable[[ModelReport], None] | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> Report:
    """Lint ``targets`` in batches (answered from the cache where unchanged), measure them when
    ``verify`` (a ``VerifyOptions``; the budget is ``options.max_memory``) is given, and hide the
    findings recorded in ``baseline``. Each target is linted and verified in a worker process
    unless ``settings.in_process``.

    ``on_report`` sees each model's report, baseline applied, as soon as it is linted.
    """
    from noiselint import baseline as baselines
    from noiselint import batch
    from noiselint.cache import Cache

    hider = baselines.Hider(baselines.load(baseline)) if baseline else None

    def hidden(report: Report) -> Report:
        return hider.report(report) if hider is not None else report

    stream = None if on_report is None else (lambda model: on_report(hider.model(model) if hider else model))
    report = batch.run(targets, options,
                       batch.BatchSettings(jobs=settings.jobs, timeout=settings.timeout, sort=settings.sort,
                                           progress=settings.progress, in_process=settings.in_process),
                       cache=Cache(settings.cache_dir, options) if settings.cache_dir else None, on_report=stream,
                       verify=verify, warn=warn)
    return hidden(report)


@dataclass(frozen=True)
class FixOutcome:
    """What ``--diff`` / ``--fix`` did: the files changed (or that would change), what was refused and
    why, how many fixes wait for ``--unsafe-fixes``, and the report of what remains."""

    files: tuple[Any, ...]  # noiselint.fixes.FileFix, one per file and pass
    refused: tuple[tuple[Any, str], ...]  # (finding, reason) in the final state
    hidden: int  # fixable findings not attempted: --unsafe-fixes not given, or unfixable in the configuration
    report: Report


def fix(
    targets: Sequence[str],
    options: Options,
    settings: RunSettings = RunSettings(),
    *,
    write: bool,
    unsafe: bool,
    fixable: Sequence[str] | None = None,
    unfixable: Sequence[str] = (),
    baseline: str | os.PathLike | None = None,
    passes: int = 4,
) -> FixOutcome:
    """Plan the fixes for ``targets`` (``write=False``: ``--diff``) or apply and check them, pass after
    pass until nothing more applies (one fix can make room for another on the same line)."""
    from noiselint import fixes, registry

    rules = fixes.rules_by_code(make_rules(options))

    def allowed(code: str) -> bool:
        cls = type(rules[code])
        return unsafe and (fixable is None or registry.matches(cls, fixable)) and not registry.matches(cls, unfixable)

    done: list[Any] = []
    for _ in range(passes if write else 1):
        report = check(targets, options, settings, baseline=baseline)
        plans = fixes.plan(report, rules, allowed=allowed)
        if not write:
            done.extend(p for p in plans if p.applied)
            break
        fixes.apply(plans)
        done.extend(p for p in plans if p.applied)
        if not any(p.applied for p in plans):
            break
    else:
        report = check(targets, options, settings, baseline=baseline)
        plans = fixes.plan(report, rules, allowed=allowed)
    attempted = {(f.code, f.model, f.module_path) for p in plans for f in
                 [*(a.finding for a in p.applied), *(f for f, _ in p.refused)]}
    hidden = sum(f.fixable and (f.code, f.model, f.module_path) not in attempted and not allowed(f.code)
                 for f in report.findings)
    refused = tuple(item for p in plans for item in p.refused)
    return FixOutcome(files=tuple(done), refused=refused, hidden=hidden, report=report)
