"""Output is data, never instructions: untrusted strings made inert for the format they go to.

Untrusted strings are the names read from a model or a file (ONNX node names, module paths, file
paths, model names) and every message built from them. Each reporter passes them through one
function here:

* :func:`plain` (concise, github, stderr) writes control characters, line and paragraph separators
  and bidirectional overrides as ``\\n``, ``\\x1b``, ``\\u202e`` escapes, so no string starts a new
  line or reaches the terminal as an escape sequence; and it breaks the two GitHub runner command
  forms: ``::`` at the start of a string (``::error``, ``::add-mask::``, ``::stop-commands::``) is
  written ``\\x3a:``, and ``##[`` anywhere (the legacy form) ``#\\x23[``.
* :func:`rich` (text): :func:`plain`, then rich markup escaped (``[bold]`` prints as itself).
* :func:`markdown` (markdown) and :func:`code_span`: :func:`plain`, then Markdown and HTML
  metacharacters backslash-escaped (no link, image, autolink, HTML or emphasis renders), or the
  value in a code span with a fence longer than any backtick run in it.
* :func:`json_text` (json, jsonl, sarif): strict JSON; non-finite numbers become ``null`` (see
  :func:`finite`) and ``##[`` is written ``##\\u005b``, which decodes back to the same string.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Bidirectional and invisible formatting characters that reorder or hide text ("Trojan Source").
_FORMATTING = "\u061c\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_FORMATTING}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>!|~&@]|:(?=/))")
_WWW = re.compile(r"(?i)(www)\.")


def _visible(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def plain(value: object, *, wrapped: bool = False) -> str:
    """``value`` on one line, with no control character and no GitHub runner command in it.

    ``wrapped``: the value may be folded onto several lines (a table cell), so every ``::`` is escaped.
    """
    text = _UNSAFE.sub(lambda m: _visible(m.group()), str(value))
    text = text.replace("##[", "#\\x23[")
    if wrapped:
        text = text.replace("::", ":\\x3a")
    stripped = text.lstrip()
    if stripped.startswith("::"):
        text = text[: len(text) - len(stripped)] + "\\x3a" + stripped[1:]
    return text


def rich(value: object, *, wrapped: bool = False) -> str:
    """``value`` for rich markup: :func:`plain`, then ``[`` escaped so it prints as itself."""
    from rich.markup import escape

    return escape(plain(value, wrapped=wrapped))


def markdown(value: object) -> str:
    """``value`` as Markdown text (a table cell, a list item) that renders as itself."""
    return _WWW.sub(r"\1\\.", _MARKDOWN.sub(r"\\\1", plain(value)))


def code_span(value: object) -> str:
    """``value`` as a Markdown code span inside a table; pipes escaped, as GitHub tables need."""
    text = plain(value).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def finite(data: Any, path: str = "") -> tuple[Any, list[dict[str, str]]]:
    """``data`` with NaN and infinities replaced by ``None``; and where they were.

    The second value lists ``{"path": JSON pointer, "value": "NaN" | "Infinity" | "-Infinity"}``.
    """
    notes: list[dict[str, str]] = []

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            notes.append({"path": where, "value": "NaN" if value != value else "Infinity" if value > 0
                          else "-Infinity"})
            return None
        if isinstance(value, dict):
            return {key: walk(item, f"{where}/{_pointer(key)}") for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(item, f"{where}/{index}") for index, item in enumerate(value)]
        return value

    return walk(data, path), notes


def _pointer(key: object) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def json_text(data: Any, indent: int | None = None) -> str:
    """``data`` as strict JSON (RFC 8259): call :func:`finite` first; ``##[`` escaped as ``##\\u005b``."""
    return json.dumps(data, indent=indent, allow_nan=False).replace("##[", "##\\u005b")
