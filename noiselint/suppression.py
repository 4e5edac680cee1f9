"""Suppress findings after the rules ran: ``# noqa`` comments, file-level directives, per-file-ignores.

- ``# noqa: NL301, NL302`` on the line that constructs a layer (any line of that statement)
  suppresses those codes there; a bare ``# noqa`` suppresses every noiselint finding there.
- ``# noiselint: noqa: NL301`` on a line of its own suppresses NL301 in the whole file, and a bare
  ``# noiselint: noqa`` every code. A file counts when it holds the finding's line or is the target.
- ``per-file-ignores`` globs in the configuration, matched against the same files.

Comments in installed packages (``site-packages``) are never read. A line-level ``noqa`` that
suppresses nothing is reported as ``NL001 unused-noqa`` when NL001 is selected.
"""

from __future__ import annotations

import functools
import io
import os
import re
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path

from noiselint.findings import Finding, ModelReport, Severity
from noiselint.graph import ModelGraph, SourceLocation
from noiselint.loaders import target_file
from noiselint.rule import Example, Rule
from noiselint.sites import display_path

_CODES = r"(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?"
LINE_NOQA = re.compile(r"#\s*noqa" + _CODES, re.IGNORECASE)
FILE_NOQA = re.compile(r"#\s*noiselint\s*:\s*noqa" + _CODES, re.IGNORECASE)
THIRD_PARTY = ("site-packages", "dist-packages")


class UnusedNoqa(Rule):
    """
    ## What it does
    Flags ``# noqa`` comments on a layer's construction line that suppress no noiselint finding.

    ## Why is this bad?
    A stale suppression hides the next real finding on that line: once the layer was fixed, the
    comment only makes a regression invisible. This rule is checked by the engine after the other
    rules ran; only codes of rules that ran count (``# noqa: E501`` for other tools is left alone).

    ## Example
    ```python
    self.pool = nn.AvgPool2d(2)  # noqa: NL301
    ```

    ## Use instead
    ```python
    self.pool = nn.AvgPool2d(2)
    ```

    ## References
    - ruff's RUF100 (unused-noqa), which this follows
    """

    code = "NL001"
    name = "unused-noqa"
    family = "suppression"
    severity = Severity.INFO
    valid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 7, padding=3)  # a comment, not a suppression
                    self.pool = nn.AvgPool2d(2)

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 7, padding=3)
                    self.pool = nn.AvgPool2d(2)  # noqa  # noiselint-expect

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """
        ),
    )

    def check(self, graph: ModelGraph) -> Iterator[Finding]:
        """Nothing here: :func:`apply` reports unused directives once suppression is known."""
        return iter(())


@dataclass(frozen=True)
class Directive:
    """One ``noqa`` comment: its position, its codes (``None`` for all) and the lines it covers."""

    line: int
    column: int
    codes: frozenset[str] | None
    covers: range


@dataclass(frozen=True)
class FileDirectives:
    """The suppression comments of one source file."""

    by_line: dict[int, tuple[Directive, ...]]
    file_level: tuple[Directive, ...]


def _codes(match: re.Match) -> frozenset[str] | None:
    codes = match.group("codes")
    return frozenset(c.upper() for c in re.split(r"[\s,]+", codes) if c) if codes else None


def parse(source: str) -> FileDirectives:
    """The directives in Python ``source``; a line noqa covers every line of its statement."""
    by_line: dict[int, list[Directive]] = {}
    file_level, pending = [], []
    start = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                file_match = FILE_NOQA.match(token.string)
                line_match = None if file_match else LINE_NOQA.search(token.string)
                if file_match:
                    file_level.append(Directive(token.start[0], token.start[1] + 1, _codes(file_match),
                                                range(0)))
                elif line_match:
                    pending.append((token.start[0], token.start[1] + line_match.start() + 1, _codes(line_match)))
            elif token.type in (tokenize.NEWLINE, tokenize.NL) and (token.type == tokenize.NEWLINE or start is None):
                first = start if start is not None else token.start[0]
                for line, column, codes in pending:
                    directive = Directive(line, column, codes, range(first, token.start[0] + 1))
                    for covered in directive.covers:
                        by_line.setdefault(covered, []).append(directive)
                pending, start = [], None
            elif start is None and token.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                start = token.start[0]
    except (tokenize.TokenError, SyntaxError):
        pass
    return FileDirectives({k: tuple(v) for k, v in by_line.items()}, tuple(file_level))


@functools.lru_cache(maxsize=256)
def _parse_file(path: str, mtime_ns: int, size: int) -> FileDirectives:
    try:
        return parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return FileDirectives({}, ())


def directives(path: str) -> FileDirectives:
    """The directives of the Python file ``path`` (none for other files and installed packages)."""
    if not path.endswith(".py") or any(part in THIRD_PARTY for part in Path(path).parts):
        return FileDirectives({}, ())
    try:
        stat = os.stat(path)
    except OSError:
        return FileDirectives({}, ())
    return _parse_file(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


def _covers(directive: Directive, code: str) -> bool:
    return directive.codes is None or code in directive.codes


def _selected(finding: Finding, selectors: Sequence[str]) -> bool:
    return any(s == "ALL" or finding.code.startswith(s) or s == finding.rule for s in selectors)


def _glob_matches(pattern: str, path: str) -> bool:
    return fnmatchcase(os.path.basename(path) if "/" not in pattern else path, pattern)


def apply(
    report: ModelReport,
    graph: ModelGraph,
    rules: Sequence[Rule],
    per_file_ignores: Sequence[tuple[str, Sequence[str]]] = (),
) -> ModelReport:
    """``report`` without suppressed findings, plus NL001 findings for unused ``noqa`` when selected."""
    target = target_file(report.target)
    target = os.path.abspath(target) if target else None
    used: set[tuple[str, int, str | None]] = set()
    kept = []
    for finding in report.findings:
        where = os.path.abspath(finding.location.path) if finding.location else None
        files = [f for f in (where, target) if f]
        if any(_glob_matches(pattern, f) and _selected(finding, codes)
               for pattern, codes in per_file_ignores for f in files):
            continue
        if any(_covers(d, finding.code) for f in files for d in directives(f).file_level):
            continue
        if where is not None:
            matching = [d for d in directives(where).by_line.get(finding.location.line, ()) if _covers(d, finding.code)]
            used.update((where, d.line, None if d.codes is None else finding.code) for d in matching)
            if matching:
                continue
        kept.append(finding)
    if any(rule.code == UnusedNoqa.code for rule in rules):
        kept.extend(_unused(graph, {rule.code for rule in rules}, used))
        kept.sort(key=lambda f: (f.location.line if f.location else 0, f.code))
    return replace(report, findings=tuple(kept))


def _unused(graph: ModelGraph, ran: set[str], used: set[tuple[str, int, str | None]]) -> Iterator[Finding]:
    """NL001 findings for line directives on this model's construction lines that suppressed nothing."""
    modules: dict[tuple[str, int], str] = {}
    for node_id, data in graph.nodes():
        source = data.get("source")
        if source is not None:
            modules.setdefault((os.path.abspath(source.path), source.line), data.get("module_path") or node_id)
    seen = set()
    for path, line in sorted(modules):
        for directive in directives(path).by_line.get(line, ()):
            if (path, directive.line) in seen:
                continue
            seen.add((path, directive.line))
            if directive.codes is None:
                if (path, directive.line, None) in used:
                    continue
                message = "unused blanket `noqa` directive: no finding on this line"
            else:
                unused = sorted(c for c in directive.codes & ran if (path, directive.line, c) not in used)
                if not unused:
                    continue
                message = f"unused `noqa` directive (unused: {', '.join(unused)})"
            yield Finding(
                code=UnusedNoqa.code,
                rule=UnusedNoqa.name,
                severity=UnusedNoqa.severity,
                message=message,
                model=graph.name,
                module_path=modules[(path, line)],
                location=SourceLocation(display_path(path), directive.line, directive.column),
            )
