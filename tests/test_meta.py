"""Formula shapes agree with torch's meta kernels; meta initializers are skipped, CPU ones are not."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from noiselint.meta import FormulaShapeProp, module_shape, skip_meta_init
from noiselint.tracing import _LeafTracer

MODULES = [
    (nn.Conv2d(3, 8, 7, stride=2, padding=3), (1, 3, 33, 31)),
    (nn.Conv2d(8, 8, 3, stride=2, dilation=2, groups=4, padding_mode="reflect", padding=2), (2, 8, 17, 16)),
    (nn.Conv2d(3, 4, 5, padding="same"), (1, 3, 9, 9)),
    (nn.Conv1d(3, 4, 3, padding="valid"), (1, 3, 10)),
    (nn.MaxPool2d(3, stride=2, padding=1), (1, 4, 15, 14)),
    (nn.MaxPool2d(3, stride=2, ceil_mode=True), (1, 4, 15, 14)),
    (nn.MaxPool2d(2, dilation=2), (1, 4, 9, 9)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 4, 14, 15)),
    (nn.AdaptiveAvgPool2d((None, 3)), (1, 4, 9, 8)),
    (nn.AdaptiveMaxPool2d(1), (1, 4, 9, 8)),
    (nn.BatchNorm2d(4), (2, 4, 5, 5)),
    (nn.GroupNorm(2, 4), (2, 4, 5, 5)),
    (nn.LayerNorm(5), (2, 3, 5)),
    (nn.Linear(5, 7), (2, 3, 5)),
    (nn.Flatten(), (2, 3, 4, 5)),
    (nn.GELU(), (2, 3)),
]


@pytest.mark.parametrize(("module", "shape"), MODULES, ids=[type(m).__name__ for m, _ in MODULES])
def test_module_formula_matches_the_meta_kernel(module, shape):
    module = module.to("meta")
    assert module_shape(module, shape) == tuple(module(torch.empty(shape, device="meta")).shape)


@pytest.mark.parametrize(("module", "shape"), [
    (nn.Conv2d(3, 8, 3), (1, 4, 9, 9)),  # wrong channels
    (nn.BatchNorm2d(4), (2, 4, 5)),  # wrong rank
    (nn.Linear(5, 7), (2, 6)),
    (nn.MaxPool2d(2, return_indices=True), (1, 1, 4, 4)),
])
def test_inputs_that_do_not_fit_get_no_formula(module, shape):
    assert module_shape(module.to("meta"), shape) is None


class Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4, 1, 1))

    def forward(self, x):
        y = F.relu(x) * self.scale + 1.0
        y = torch.cat([y, x ** 2], 1).flatten(2)
        q = y.mean(-1, keepdim=True).expand(-1, -1, 5).reshape(1, 2, 4, 5)
        a = F.scaled_dot_product_attention(q, q, q[..., :3].contiguous().expand(1, 2, 4, 3))
        n = F.layer_norm(y, (y.shape[-1],)) + F.group_norm(x, 2).flatten(2).sum(1, keepdim=True)
        return a, n, operator.add(y, y)


def test_formula_propagation_matches_shapeprop():
    from torch.fx.passes.shape_prop import ShapeProp

    model = Functional().to("meta")
    tracer = _LeafTracer()
    graph = tracer.trace(model)
    module = torch.fx.GraphModule(tracer.root, graph)
    x = torch.empty(1, 4, 6, 6, device="meta")
    ShapeProp(module).propagate(x)
    expected = {n.name: getattr(n.meta.get("tensor_meta"), "shape", None) for n in graph.nodes}
    for node in graph.nodes:
        node.meta.pop("tensor_meta", None)
    FormulaShapeProp(module).propagate(x)
    assert {n.name: getattr(n.meta.get("tensor_meta"), "shape", None) for n in graph.nodes} == expected


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_recurrent_layers(cls):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cls(6, 5, num_layers=2, batch_first=True, bidirectional=True)

        def forward(self, x):
            return self.rnn(x)[0]

    model = Net().to("meta")
    tracer = _LeafTracer()
    graph = tracer.trace(model)
    module = torch.fx.GraphModule(tracer.root, graph)
    assert FormulaShapeProp(module).propagate(torch.empty(2, 7, 6, device="meta")).shape == (2, 7, 10)


def test_initializers_are_skipped_on_meta_only():
    with torch.device("meta"), skip_meta_init():
        layer = nn.Linear(4, 4)
        nn.init.trunc_normal_(layer.weight, std=0.02)
        layer.weight.normal_()
    assert layer.weight.is_meta
    with skip_meta_init(), torch.no_grad():
        cpu = nn.Linear(4, 4)
        nn.init.constant_(cpu.weight, 0.5)
        cpu.bias.normal_()
    assert torch.all(cpu.weight == 0.5) and cpu.bias.std() > 0
