"""A verified model is loaded once and traced once by verify; with the lint's graph, not traced at all."""

from __future__ import annotations

import torch

from noiselint.engine import lint
from noiselint.verify import VerifyOptions, verify_report, weights

from .conftest import MODELS

FAST = VerifyOptions(sigmas=(0.2,), draws=1, rhos=(), gain_images=2, images=8)


def test_verify_loads_and_traces_once(monkeypatch):
    torch.set_num_threads(1)
    report = lint([str(MODELS / "mnist_real.py")])
    loads, traces = [], []
    real_load = weights.load
    from noiselint import engine

    real_read = engine.read_graph
    monkeypatch.setattr(weights, "load", lambda *a, **k: loads.append(k.get("device")) or real_load(*a, **k))
    monkeypatch.setattr(engine, "read_graph", lambda *a, **k: traces.append(1) or real_read(*a, **k))
    verified = verify_report(report, FAST).models[0]
    assert loads == ["cpu"] and len(traces) == 1
    assert any(w.findings for w in verified.verification.what_ifs)  # node ids of the traced graph line up
