"""What-ifs measure a finding only when they apply its advice: matched by rule code, not wording."""

from __future__ import annotations

import torch.nn as nn

from noiselint import estimates
from noiselint.findings import Finding, Severity
from noiselint.verify.gains import Probe
from noiselint.verify.whatif import patches


def _finding(code: str, node: str, estimate) -> Finding:
    return Finding(code, code, Severity.WARNING, "m", "model", node=node, module_path=node, estimate=estimate)


def _probe(node: str, module: nn.Module, op: str, stem: bool) -> Probe:
    return Probe(node, {"module_path": node, "op": op, "stem": stem, "attrs": {}}, module)


def test_box_pre_filter_measures_neither_nl101_nor_nl103():
    from noiselint.graph import Op

    stem = _probe("conv", nn.Conv2d(3, 8, 3, stride=2, padding=1), Op.CONV, True)
    found = [_finding("NL101", "conv", estimates.stem_kernel_estimate(3, 7)),
             _finding("NL103", "conv", estimates.antialias_estimate(2))]
    (patch,) = patches(tuple(found), [stem])
    assert "box pre-filter" in patch.name and patch.findings == []


def test_max_pool_swap_measures_nl301_only():
    from noiselint.graph import Op

    pool = _probe("pool", nn.MaxPool2d(2), Op.MAX_POOL, False)
    nl301 = _finding("NL301", "pool", estimates.max_pool_estimate((2, 2)))
    other = _finding("NL303", "pool", estimates.max_pool_estimate((2, 2)))  # same wording, other rule
    (patch,) = patches((nl301, other), [pool])
    assert patch.findings == [nl301]
