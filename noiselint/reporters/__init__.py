"""Reporters turn a :class:`~noiselint.findings.Report` into text for a stream, chosen by name."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TextIO

from noiselint.errors import UsageError
from noiselint.findings import Report

#: format name -> "module:function"; each function is ``render(report, stream) -> None``.
REPORTERS = {
    "text": "noiselint.reporters.text:render",
    "concise": "noiselint.reporters.text:render_concise",
    "json": "noiselint.reporters.json:render",
    "jsonl": "noiselint.reporters.jsonl:render",
    "sarif": "noiselint.reporters.sarif:render",
    "github": "noiselint.reporters.github:render",
    "markdown": "noiselint.reporters.markdown:render",
}


def get(name: str) -> Callable[[Report, TextIO], None]:
    """The render function of format ``name``."""
    try:
        module, function = REPORTERS[name].split(":")
    except KeyError:
        raise UsageError(f"unknown format {name!r} (choose from {', '.join(REPORTERS)})") from None
    return getattr(import_module(module), function)
