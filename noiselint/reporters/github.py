"""GitHub Actions workflow commands: one ``::warning file=...,line=...::message`` annotation per finding.

Errors become ``::error``, info ``::notice``; load errors and crashed rules are ``::error``. Paths
are relative to the repository root, as GitHub expects. The last line is a plain summary. Names and
messages pass through :func:`~noiselint.reporters.escape.plain` before the command's own escaping,
so no control character and no ``##[`` legacy command reaches the runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from rich.text import Text

from noiselint.findings import Finding, Report, Severity
from noiselint.loaders import target_file
from noiselint.reporters.escape import plain
from noiselint.reporters.sarif import relative_path, repo_root
from noiselint.reporters.text import summary_line

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(value: str) -> str:
    """Escape a command's message: ``%``, carriage return and newline."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a property value: as data, plus ``:`` and ``,``."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str, **properties: str | int | None) -> str:
    """One workflow command line, properties that are ``None`` left out."""
    props = ",".join(f"{key}={escape_property(str(value))}" for key, value in properties.items() if value is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}\n"


def _path(path: str | None, root: Path) -> str | None:
    return None if path is None else plain(relative_path(path, root) or path)


def _finding(finding: Finding, target: str, root: Path) -> str:
    where = f" in {plain(finding.model)}" + (f" ({plain(finding.module_path)})" if finding.module_path else "")
    message = f"{finding.code} {plain(finding.message)}{where}"
    if finding.estimate is not None:
        message += f"\nestimate: {plain(finding.estimate.summary())}"
    location = finding.location
    return command(
        COMMANDS[finding.severity], message,
        file=_path(location.path if location else target_file(target), root),
        line=location.line if location else None,
        col=location.column if location else None,
        title=f"noiselint {finding.code} ({finding.rule})",
    )


def render(report: Report, stream: TextIO) -> None:
    root = repo_root()
    for model in report.models:
        if model.load_error:
            stream.write(command("error", plain(model.load_error), file=_path(target_file(model.target), root),
                                 title=f"noiselint could not lint {plain(model.model)}"))
        for finding in model.findings:
            stream.write(_finding(finding, model.target, root))
        for error in model.rule_errors:
            stream.write(command("error", f"rule {error.code} crashed on {plain(error.model)}: {plain(error.error)}",
                                 title=f"noiselint rule {error.code} crashed"))
    stream.write(Text.from_markup(summary_line(report)).plain + "\n")
