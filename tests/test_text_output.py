"""The text report compared line for line with a stored expectation.

After a deliberate change of wording or rules, regenerate the file with
``noiselint fixtures/models/resnet_maxpool.py --no-cache > fixtures/expected/resnet_maxpool.txt``
(from the repository root) and review the diff.
"""

from __future__ import annotations

import io

from noiselint.engine import lint
from noiselint.reporters import get

from .conftest import FIXTURES, ROOT


def test_text_report_matches_the_stored_expectation(monkeypatch):
    monkeypatch.chdir(ROOT)
    report = lint(["fixtures/models/resnet_maxpool.py"])
    stream = io.StringIO()
    get("text")(report, stream)
    expected = (FIXTURES / "expected" / "resnet_maxpool.txt").read_text()
    assert stream.getvalue().splitlines() == expected.splitlines()
