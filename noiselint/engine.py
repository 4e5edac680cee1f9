"""The engine: load each target, read it into a graph, run the rules, return a report.

It never prints. A target that fails to load becomes a ``ModelReport`` with ``load_error``; a rule
that crashes becomes a ``RuleError`` record; neither stops the other targets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field, replace
from typing import Any

from noiselint import evidence, suppression
from noiselint.errors import NoiselintError, one_line
from noiselint.findings import Finding, GraphSummary, ModelReport, Report, RuleError, Severity
from noiselint.graph import DEFAULT_INPUT_SIZE, ModelGraph, Preprocessing
from noiselint.loaders import LoadedModel, expand, load
from noiselint.loaders.pyfile import NoModelError
from noiselint.memory import DEFAULT_MAX_MEMORY
from noiselint.rule import Rule


@dataclass(frozen=True)
class Options:
    """What a run lints with; the CLI and the Python API both fill this in."""

    select: Sequence[str] | None = None
    ignore: Sequence[str] = ()
    fail_on: Severity = Severity.WARNING
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    rules_dirs: Sequence[str] = ()
    rule_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_file_ignores: Sequence[tuple[str, Sequence[str]]] = ()  # (glob, selectors), see noiselint.suppression
    preprocessing_by_target: Sequence[tuple[str, Preprocessing]] = ()  # from [tool.noiselint.preprocessing]
    skip_no_model: bool = False  # hook mode: a file that defines no model is skipped, not an error
    max_memory: int = DEFAULT_MAX_MEMORY  # bytes: the budget checked before allocating (noiselint.memory)

    def preprocessing_for(self, target: str) -> Preprocessing:
        """``preprocessing`` (the command line) over what the configuration sets for ``target``."""
        from noiselint.config import configured_preprocessing

        configured = configured_preprocessing(self.preprocessing_by_target, target)
        return self.preprocessing if configured is None else configured.merged(self.preprocessing)


def make_rules(options: Options) -> list[Rule]:
    """Instantiate the selected rules with their options."""
    from noiselint import registry

    classes = registry.select(registry.discover(options.rules_dirs), options.select, options.ignore)
    rules = []
    for cls in classes:
        settings = options.rule_options.get(cls.code, options.rule_options.get(cls.name, {}))
        try:
            rules.append(cls(**settings))
        except ValueError as exc:
            raise NoiselintError(str(exc)) from None
    return rules


def lint(targets: Iterable[str], options: Options | None = None) -> Report:
    """Lint every target (wildcards expanded) and collect one report."""
    options = options or Options()
    rules = make_rules(options)
    return Report(models=tuple(r for t in targets for r in lint_target(t, rules, options)),
                  fail_on=options.fail_on)


def lint_target(target: str, rules: Sequence[Rule], options: Options) -> Iterator[ModelReport]:
    """Reports for every model one target names; failures are reports too."""
    try:
        names = expand(target)
    except NoiselintError as exc:
        yield ModelReport(target=target, model=target, load_error=str(exc))
        return
    for name in names:
        try:
            with _exits_raise():
                models = load(name, max_memory=options.max_memory)
        except NoModelError as exc:
            if not options.skip_no_model:
                yield ModelReport(target=target, model=name, load_error=str(exc))
            continue
        except NoiselintError as exc:
            yield ModelReport(target=target, model=name, load_error=str(exc))
            continue
        except SystemExit as exc:
            yield ModelReport(target=target, model=name, load_error=_exit_message(name, exc))
            continue
        for loaded in models:
            with _exits_raise():
                report = lint_loaded(loaded, rules, options)
            yield report


@contextmanager
def _exits_raise():
    """While a model's own code runs, ``os._exit`` raises ``SystemExit`` instead of ending noiselint,
    and what it prints goes to stderr (:func:`stdout_to_stderr`)."""
    original = os._exit

    def refuse(code: int) -> None:
        raise SystemExit(code)

    os._exit = refuse
    try:
        with stdout_to_stderr():
            yield
    finally:
        os._exit = original


@contextmanager
def stdout_to_stderr():
    """Send stdout to stderr inside the block, for Python's ``print`` and for file descriptor 1
    (C extensions, subprocesses): stdout carries the report (``--format json``) and nothing else."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no usable stdout (closed, None, embedded): Python's stream only
        saved = None
    try:
        if saved is not None:
            os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _exit_message(name: str, exc: SystemExit) -> str:
    return f"{name}: the model's code called sys.exit({exc.code!r}) (or os._exit) while noiselint built or traced it"


def lint_loaded(loaded: LoadedModel, rules: Sequence[Rule], options: Options) -> ModelReport:
    """Read one loaded model into a graph and run the rules on it."""
    try:
        graph = read_graph(loaded, options.preprocessing_for(loaded.target), options.max_memory)
    except NoiselintError as exc:
        return ModelReport(target=loaded.target, model=loaded.name, load_error=str(exc))
    except Exception as exc:  # noqa: BLE001 - reading a model must never end the run
        return ModelReport(target=loaded.target, model=loaded.name,
                           load_error=f"{loaded.name}: could not read the model: {one_line(exc)}")
    except SystemExit as exc:
        return ModelReport(target=loaded.target, model=loaded.name, load_error=_exit_message(loaded.name, exc))
    return suppression.apply(check_graph(graph, rules, target=loaded.target), graph, rules, options.per_file_ignores)


def read_graph(loaded: LoadedModel, override: Preprocessing | None = None,
               max_memory: int = DEFAULT_MAX_MEMORY) -> ModelGraph:
    """The model's graph with every analysis pass run, preprocessing overrides applied; tracing stays
    within ``max_memory`` bytes."""
    from noiselint import passes

    preprocessing = loaded.preprocessing.merged(override or Preprocessing())
    if loaded.graph is not None:
        graph = loaded.graph
        graph.preprocessing = preprocessing
    else:
        from noiselint.tracing import trace

        sizes = input_sizes(loaded, preprocessing)
        graph = trace(loaded.module, loaded.name, sizes, loaded.sites, preprocessing, loaded.constants, max_memory)
        if preprocessing.input_size is None:
            graph.notes.append(_size_note(loaded, sizes, graph.traced_input_size))
    graph.notes.extend(loaded.notes)
    return passes.run_all(graph)


#: Input sides tried, in order, when neither the user nor the model states its input size.
COMMON_SIZES = (224, 32, 28, 64, 96, 128, 256, 299, 384, 512)


def input_sizes(loaded: LoadedModel, preprocessing: Preprocessing) -> list[tuple[int, int, int]]:
    """The input sizes to trace at: the known one, else the model's own hint, then the common sizes."""
    if preprocessing.input_size is not None:
        return [preprocessing.input_size]
    channels = input_channels(loaded.module)
    sizes = [loaded.size_hint[0]] if loaded.size_hint else []
    sizes += [(channels, side, side) for side in COMMON_SIZES]
    return list(dict.fromkeys(sizes))


def input_channels(module: Any) -> int:
    """The input channels of the model's first convolution when plausible for an image (1 to 4), else 3.

    The first conv registered is not always the first one run, so larger counts are not trusted.
    """
    import torch.nn as nn

    first = next((m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    channels = int(first.in_channels) if first is not None else DEFAULT_INPUT_SIZE[0]
    return channels if 1 <= channels <= 4 else DEFAULT_INPUT_SIZE[0]


def _size_note(loaded: LoadedModel, sizes: Sequence[tuple[int, int, int]], traced: tuple[int, int, int]) -> str:
    shown = "x".join(str(v) for v in traced)
    if loaded.size_hint and traced == loaded.size_hint[0]:
        return f"input size {shown} from {loaded.size_hint[1]} (set it with --input-size)"
    if traced == sizes[0]:
        return f"input size unknown: traced at {shown} (set it with --input-size)"
    tried = ", ".join("x".join(str(v) for v in size) for size in sizes[:sizes.index(traced)])
    return (f"input size unknown: {tried} did not fit the model; traced at {shown}, the first common size "
            f"that fits (set it with --input-size)")


def check_graph(graph: ModelGraph, rules: Sequence[Rule], *, target: str) -> ModelReport:
    """Run every rule on one graph; a crashing rule becomes a :class:`RuleError`."""
    findings, errors = [], []
    for rule in rules:
        try:
            findings.extend(rule.check(graph))
        except Exception as exc:  # noqa: BLE001 - one rule's bug must not hide the others
            errors.append(RuleError(code=rule.code, model=graph.name, error=one_line(exc)))
    findings.sort(key=lambda f: (f.location.line if f.location else 0, f.code))
    findings = evidence.attach(findings)  # what the twin study measured for each rule (issue 10)
    findings = _mark_fixable(findings, rules)
    summary = GraphSummary(
        trace_level=graph.trace_level,
        coverage=graph.coverage,
        nodes=graph.graph.number_of_nodes(),
        input_size=graph.traced_input_size,
        architecture=graph.architecture,
        weights=graph.weights,
        notes=tuple(graph.notes),
    )
    return ModelReport(target=target, model=graph.name, findings=tuple(findings), rule_errors=tuple(errors),
                       graph=summary, preprocessing=graph.preprocessing,
                       exposure=exposure(findings) if rules and graph.trace_level != "structural" else None)


def _mark_fixable(findings: list[Finding], rules: Sequence[Rule]) -> list[Finding]:
    """Findings whose rule offers a fix for them, marked ``fixable`` (text output shows ``[*]``)."""
    from noiselint import fixes

    by_code = fixes.rules_by_code(rules)
    return [replace(f, fixable=True) if fixes.fixable(f, by_code) else f for f in findings]


def exposure(findings: Iterable[Finding]) -> float:
    """Static ranking figure, log10 of the noise variance at the logits that following the findings
    would remove, as the twin study measured it: :func:`noiselint.evidence.exposure` (each rule once,
    rules the study found no effect for left out). Computed before ``noqa`` suppression."""
    return evidence.exposure(findings)
