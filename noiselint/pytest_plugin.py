"""pytest plugin (registered as ``pytest11``): the ``noiselint_check`` fixture for a project's own tests.

It imports nothing heavy until a test uses the fixture, so installing noiselint does not slow down
other test suites.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def noiselint_check(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``noiselint_check(model, **kwargs)``: :func:`noiselint.assert_clean` with the project's settings.

    The settings come from the closest pyproject.toml with ``[tool.noiselint]`` from pytest's
    rootdir upwards; keyword arguments (``select``, ``ignore``, ``fail_on``, ``input_size``, ...)
    win over them.
    """
    from noiselint import config
    from noiselint.api import assert_clean

    found = config.find(request.config.rootpath)

    def check(model: Any, **kwargs: Any):
        kwargs.setdefault("config", found or False)
        return assert_clean(model, **kwargs)

    return check
