"""``--verify``: run each linted model on noisy images and measure what the lint predicted.

Imported only when ``--verify`` is given; plain lints never load this package. The entry point is
:func:`verify_report`, which returns the lint report with a ``verification`` attached to every
model and the findings it could measure marked :attr:`~noiselint.findings.Basis.MEASURED`.
"""

from __future__ import annotations

from noiselint.verify.options import DEFAULT_SIGMAS, VerifyError, VerifyOptions
from noiselint.verify.runner import verify_report

__all__ = ["DEFAULT_SIGMAS", "VerifyError", "VerifyOptions", "verify_report"]
