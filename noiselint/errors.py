"""Errors that end one target with a one-line message (exit code 2), never a traceback."""

from __future__ import annotations


class NoiselintError(Exception):
    """Base class: the message is one line a user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class UsageError(NoiselintError):
    """The command line or configuration is wrong."""


class LoadError(NoiselintError):
    """A target could not be read as a model (missing file, syntax error, corrupt ONNX, ...)."""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for errors that come from user code or libraries."""
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for a value quoted in an error line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
