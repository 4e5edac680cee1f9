"""Shared test helpers: paths to fixtures, and a skip for GPU tests without CUDA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
MODELS = FIXTURES / "models"

# The CLI caches results by default; in tests a cached result would hide what a test changes
# (monkeypatched tracing, plugins), so tests (and the subprocesses they start) opt in explicitly.
os.environ["NOISELINT_NO_CACHE"] = "1"


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
