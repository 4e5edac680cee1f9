"""noiselint: a static linter for vision models' robustness to Gaussian noise."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "assert_clean", "lint"]


def __getattr__(name: str):
    # The API is imported on first use, so `import noiselint` stays cheap for the CLI.
    if name in ("lint", "assert_clean"):
        from noiselint import api

        return getattr(api, name)
    raise AttributeError(f"module 'noiselint' has no attribute {name!r}")
