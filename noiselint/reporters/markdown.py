"""A Markdown summary (GitHub job summaries, pull-request comments): counts, then a findings table.

Names and messages are escaped (:mod:`noiselint.reporters.escape`): locations and model names are
code spans, module paths and messages escaped text, so nothing from a model renders as a link, an
image or HTML.
"""

from __future__ import annotations

from typing import TextIO

from rich.text import Text

from noiselint.findings import Report
from noiselint.reporters.escape import code_span, markdown
from noiselint.reporters.text import location, summary_line


def render(report: Report, stream: TextIO) -> None:
    stream.write(f"## noiselint\n\n{Text.from_markup(summary_line(report)).plain}\n\n")
    if report.findings:
        stream.write("| Severity | Rule | Location | Model | Module | Message |\n")
        stream.write("| --- | --- | --- | --- | --- | --- |\n")
        for finding in report.findings:
            stream.write(
                f"| {finding.severity.label} | `{finding.code}` {finding.rule} | {code_span(location(finding))} | "
                f"{code_span(finding.model)} | {markdown(finding.module_path or '')} | {markdown(finding.message)} |\n"
            )
        stream.write("\n")
    failures = [(m.model, m.load_error) for m in report.models if m.load_error]
    failures += [(m.model, f"rule {e.code} crashed: {e.error}") for m in report.models for e in m.rule_errors]
    if failures:
        stream.write("### Errors\n\n")
        for model, error in failures:
            stream.write(f"- {code_span(model)}: {markdown(error)}\n")
        stream.write("\n")
