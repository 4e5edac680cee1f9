"""Human output: ``path:line:col CODE name message`` and the estimate, grouped by model (rich)."""

from __future__ import annotations

from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from noiselint.findings import Finding, ModelReport, Report, Severity
from noiselint.reporters.escape import rich

_STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _console(stream: TextIO) -> Console:
    return Console(file=stream, highlight=False, soft_wrap=True)


def location(finding: Finding) -> str:
    if finding.location is None:
        return finding.model
    return str(finding.location)


def _header(model: ModelReport) -> str:
    graph = model.graph
    size = "x".join(str(d) for d in graph.input_size) if graph and graph.input_size else "unknown"
    pre = model.preprocessing
    stats = "unknown"
    if pre is not None and pre.std is not None:
        stats = f"std {', '.join(f'{v:.3g}' for v in pre.std)} from {pre.origin}"
    parts = [
        f"{graph.trace_level} graph, {graph.coverage:.0%} of layers with shapes",
        graph.architecture,
        f"input {size}",
        f"preprocessing {stats}",
    ]
    if model.exposure is not None:
        parts.append(f"noise exposure {model.exposure:.3g} (log10 at the logits, from the twin study)")
    return f"[bold]{rich(model.model)}[/]  [dim]({rich('; '.join(parts))})[/]"


def render(report: Report, stream: TextIO) -> None:
    console = _console(stream)
    for model in report.models:
        if model.load_error:
            console.print(f"[red]error:[/] {rich(model.load_error)}")
            continue
        console.print(_header(model))
        if model.untraced:
            console.print(f"  [red]error:[/] {rich(model.model)}: no tracing level could run its forward "
                          "(see the notes); the findings below come from its layer list alone")
        for note in model.graph.notes if model.graph else ():
            console.print(f"  [dim]note: {rich(note)}[/]")
        for finding in model.findings:
            style = _STYLES[finding.severity]
            where = f" [dim]{rich(finding.module_path)}:[/]" if finding.module_path else ""
            console.print(
                f"  {rich(location(finding))} [{style}]{finding.code}[/] {_fix_mark(finding)}{finding.rule}{where} "
                f"{rich(finding.message)}"
            )
            estimate = f"; estimate: {rich(finding.estimate.summary())}" if finding.estimate else ""
            console.print(f"      [{style}]{finding.severity.label}[/][dim]{estimate}[/]")
            if finding.evidence is not None:
                console.print(f"      [dim]{rich(finding.evidence.summary())}[/]")
        for error in model.rule_errors:
            console.print(f"  [red]rule {error.code} crashed:[/] {rich(error.error)}")
        if model.verification is not None:
            from noiselint.reporters.verify_text import render_verification

            render_verification(model.verification, console)
        console.print()
    if len(report.models) > 1:
        console.print(summary_table(report))
        console.print()
    console.print(summary_line(report))
    _fixable_line(report, console)


def _fix_mark(finding: Finding) -> str:
    """``[*]`` (as ruff writes it) before a finding that ``--fix --unsafe-fixes`` can rewrite."""
    return escape("[*] ") if finding.fixable else ""


def _fixable_line(report: Report, console: Console) -> None:
    count = sum(f.fixable for f in report.findings)
    if count:
        from noiselint.fixes import UNSAFE_NOTE

        console.print(escape(f"[*] {count} fixable with --fix --unsafe-fixes ({UNSAFE_NOTE})"))


def summary_table(report: Report) -> Table:
    """One row per model: how it was read, its findings by severity, its noise exposure."""
    table = Table(box=None, pad_edge=False)
    table.add_column("model", overflow="fold")  # wrapped, never cut: the name is how a row is found
    for column in ("graph", "shapes", "errors", "warnings", "info", "exposure"):
        table.add_column(column, no_wrap=True)
    for model in report.models:
        counts = Counter(f.severity for f in model.findings)
        graph = model.graph
        table.add_row(
            rich(model.model, wrapped=True), graph.trace_level if graph else "[red]failed[/]",
            f"{graph.coverage:.0%}" if graph else "",
            *(str(counts[s]) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)),
            f"{model.exposure:.3g}" if model.exposure is not None else "unknown" if graph else "",
        )
    return table


def render_concise(report: Report, stream: TextIO) -> None:
    console = _console(stream)
    for model in report.models:
        if model.load_error:
            console.print(f"[red]error:[/] {rich(model.load_error)}")
        for finding in model.findings:
            console.print(f"{rich(location(finding))}: {finding.code} {_fix_mark(finding)}{rich(finding.message)}")
        for error in model.rule_errors:
            console.print(f"{rich(model.model)}: rule {error.code} crashed: {rich(error.error)}")
    console.print(summary_line(report))
    _fixable_line(report, console)


def summary_line(report: Report) -> str:
    findings = report.findings
    failed = sum(not m.ok for m in report.models)
    counts = Counter(f.severity for f in findings)
    detail = ", ".join(f"{counts[s]} {s.label}" for s in sorted(counts, reverse=True))
    linted = len(report.models) - failed
    untraced = sum(m.untraced for m in report.models)
    text = f"{len(findings)} finding{'s' * (len(findings) != 1)} in {linted} model{'s' * (linted != 1)}"
    if detail:
        text += f" ({detail})"
    if untraced:
        text += f"; [red]{untraced} could not be traced[/]"
    if failed:
        text += f"; [red]{failed} failed to load[/]"
    return text + "."
