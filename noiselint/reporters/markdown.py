"""A Markdown summary (GitHub job summaries, pull-request comments): counts, then a findings table."""

from __future__ import annotations

from typing import TextIO

from rich.text import Text

from noiselint.findings import Report
from noiselint.reporters.text import location, summary_line


def _cell(value: str) -> str:
    return " ".join(value.split()).replace("|", "\\|")


def render(report: Report, stream: TextIO) -> None:
    stream.write(f"## noiselint\n\n{Text.from_markup(summary_line(report)).plain}\n\n")
    if report.findings:
        stream.write("| Severity | Rule | Location | Model | Module | Message |\n")
        stream.write("| --- | --- | --- | --- | --- | --- |\n")
        for finding in report.findings:
            stream.write(
                f"| {finding.severity.label} | `{finding.code}` {finding.rule} | `{_cell(location(finding))}` | "
                f"`{_cell(finding.model)}` | {_cell(finding.module_path or '')} | {_cell(finding.message)} |\n"
            )
        stream.write("\n")
    failures = [(m.model, m.load_error) for m in report.models if m.load_error]
    failures += [(m.model, f"rule {e.code} crashed: {e.error}") for m in report.models for e in m.rule_errors]
    if failures:
        stream.write("### Errors\n\n")
        for model, error in failures:
            stream.write(f"- `{_cell(model)}`: {_cell(error)}\n")
        stream.write("\n")
