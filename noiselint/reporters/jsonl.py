"""JSON lines for large runs: one object per model (the JSON report's model schema), then a summary.

Each model line is ``{"type": "model", ...}`` with the fields of a model in the JSON report; the
last line is ``{"type": "summary", ...}`` with the JSON report's top-level fields but no models.
:class:`LiveWriter` writes each model's line as soon as it is linted, so a long run can be followed
(``tail -f``) and a killed run keeps what it finished.
"""

from __future__ import annotations

import sys
from typing import TextIO

from noiselint.errors import NoiselintError
from noiselint.findings import ModelReport, Report
from noiselint.reporters.escape import json_text
from noiselint.reporters.json import model_dict, report_dict


def model_line(model: ModelReport) -> str:
    return json_text({"type": "model", **model_dict(model)})


def summary_line(report: Report) -> str:
    data = report_dict(report)
    data.pop("models")
    return json_text({"type": "summary", **data})


def render(report: Report, stream: TextIO) -> None:
    for model in report.models:
        stream.write(model_line(model) + "\n")
    stream.write(summary_line(report) + "\n")


class LiveWriter:
    """Writes model lines as they come, to ``path`` or stdout."""

    def __init__(self, path: str | None) -> None:
        try:
            self.stream = open(path, "w", encoding="utf-8") if path else sys.stdout
        except OSError as exc:
            raise NoiselintError(f"{path}: cannot write the report: {exc.strerror}") from None

    def model(self, model: ModelReport) -> None:
        self.stream.write(model_line(model) + "\n")
        self.stream.flush()

    def finish(self, report: Report) -> None:
        self.stream.write(summary_line(report) + "\n")
        if self.stream is not sys.stdout:
            self.stream.close()
