"""Formula shapes agree with torch's meta kernels; meta initializers are skipped, CPU ones are not."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from noiselint.meta import FormulaMode, FormulaShapeProp, by_formula, module_shape, skip_meta_init
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
    (nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), (1, 8, 7, 9)),
    (nn.ConvTranspose1d(8, 4, 4, stride=3, dilation=2), (2, 8, 5)),
    (nn.Softmax(dim=1), (2, 3, 4)),
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


FUNCTIONS = {  # name: (function, its arguments built with a tensor maker for one device)
    "conv2d-groups": (F.conv2d, lambda t: ((t(1, 4, 11, 10), t(8, 2, 3, 3)), {"stride": 2, "padding": 1, "groups": 2})),
    "conv2d-same": (F.conv2d, lambda t: ((t(1, 4, 11, 10), t(8, 4, 3, 5), None, 1, "same"), {})),
    "conv1d-dilated": (F.conv1d, lambda t: ((t(2, 3, 20), t(5, 3, 4), None, 3, 0, 2), {})),
    "linear": (F.linear, lambda t: ((t(2, 3, 6), t(7, 6)), {})),
    "batch_norm": (F.batch_norm, lambda t: ((t(2, 4, 5, 5), t(4), t(4)), {"training": False})),
    "pad": (F.pad, lambda t: ((t(1, 3, 5, 6), (1, 2, 0, 3)), {})),
    "max_pool2d": (F.max_pool2d, lambda t: ((t(1, 3, 15, 14), 3), {"stride": 2, "padding": 1, "ceil_mode": True})),
    "avg_pool2d": (F.avg_pool2d, lambda t: ((t(1, 3, 15, 14), 2), {})),
    "avg_pool2d-positional": (F.avg_pool2d, lambda t: ((t(1, 3, 15, 14), 3, 2, 1, True, False, None), {})),
    "max_pool2d-positional": (F.max_pool2d, lambda t: ((t(1, 3, 15, 14), 3, 2, 1, 2), {"ceil_mode": True})),
    "tensor-plus-number": (torch.Tensor.__add__, lambda t: ((t(2, 3), 3.0), {})),
    "number-minus-tensor": (torch.Tensor.__rsub__, lambda t: ((t(2, 3), 3.0), {})),
    "adaptive_avg_pool2d": (F.adaptive_avg_pool2d, lambda t: ((t(1, 3, 15, 14), (None, 4)), {})),
    "adaptive_max_pool2d": (F.adaptive_max_pool2d, lambda t: ((t(1, 3, 15, 14), 1), {})),
    "floor": (torch.floor, lambda t: ((t(2, 3),), {})),
    "number-plus-tensor": (operator.add, lambda t: ((1.0, t(2, 3)), {})),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_formula_matches_the_cpu_kernel(name):
    function, build = FUNCTIONS[name]
    args, kwargs = build(lambda *shape: torch.rand(shape))
    expected = tuple(function(*args, **kwargs).shape)
    args, kwargs = build(lambda *shape: torch.empty(shape, device="meta"))
    assert tuple(by_formula(function, args, kwargs).shape) == expected


def test_in_place_calls_return_their_own_tensor():
    x, y = torch.empty(2, 3, 4, device="meta"), torch.empty(3, 1, device="meta")
    assert by_formula(torch.Tensor.__iadd__, (x, y), {}) is x
    assert by_formula(torch.Tensor.mul_, (x, 2.0), {}) is x
    assert by_formula(F.relu, (x,), {"inplace": True}) is x
    assert by_formula(torch.Tensor.__iadd__, (y, x), {}) is None  # would broadcast y: torch raises


def test_functions_that_do_not_fit_get_no_formula():
    x = torch.empty(1, 4, 9, 9, device="meta")
    assert by_formula(F.conv2d, (x, torch.empty(8, 3, 3, 3, device="meta")), {}) is None  # channels
    assert by_formula(F.conv2d, (x, torch.empty(8, 4, 3, 3, device="meta"), None, 2, "same"), {}) is None
    assert by_formula(F.pad, (x, (1, 1)), {"mode": "reflect"}) is None
    assert by_formula(F.max_pool2d, (x, 2), {"return_indices": True}) is None
    assert by_formula(F.linear, (torch.empty(2, 5), torch.empty(3, 5)), {}) is None  # not meta


def test_formula_mode_runs_a_leaf_forward_by_formula_and_keeps_errors():
    class SamePadConv(nn.Conv2d):  # as EfficientNet ports write it: a static pad, then the conv
        def __init__(self):
            super().__init__(3, 8, 3, stride=2)
            self.pad = nn.ZeroPad2d((0, 1, 0, 1))

        def forward(self, x):
            return F.conv2d(self.pad(x), self.weight, self.bias, self.stride, 0)

    layer = SamePadConv()
    expected = tuple(layer(torch.rand(1, 3, 16, 16)).shape)
    with FormulaMode():
        assert tuple(layer.to("meta")(torch.empty(1, 3, 16, 16, device="meta")).shape) == expected
        with pytest.raises(RuntimeError):
            layer(torch.empty(1, 4, 16, 16, device="meta"))


@torch.jit.script
def _scripted_hard_swish(x):  # as geffnet writes its activations: TorchScript, below any TorchFunctionMode
    return x * F.relu6(x + 3.0).div_(6.0)


DISPATCHED = {  # name: a function of a tensor maker; DispatchFormulaMode must give the CPU kernel's shape and dtype
    "scripted-hard-swish": lambda t: _scripted_hard_swish(t(2, 3, 4)),
    "broadcast-sub": lambda t: t(1, 49, 2) - t(49, 1, 2),
    "integer-sub": lambda t: t(1, 5, 2).long() - t(5, 1, 2).long(),
    "in-place-div": lambda t: t(2, 3).div_(6.0),
    "hardtanh": lambda t: F.hardtanh(t(2, 3), -1.0, 1.0),
    "stack": lambda t: torch.stack([t(1, 3, 4), t(1, 3, 4)], dim=-1),
    "addmm": lambda t: torch.addmm(t(7), t(5, 3), t(3, 7)),
    "bmm": lambda t: torch.bmm(t(2, 5, 3), t(2, 3, 4)),
    "layer_norm": lambda t: F.layer_norm(t(2, 5, 6), (6,), t(6), t(6)),
    "softmax": lambda t: torch.softmax(t(2, 5, 6), -1),
    "unfold": lambda t: F.unfold(t(1, 3, 10, 9), (4, 3), stride=(2, 3), padding=1),
    "mean": lambda t: t(2, 5, 6).mean((1, 2), keepdim=True),
    "roll": lambda t: torch.roll(t(1, 6, 6, 2), (-3, -3), (1, 2)),
    "randn": lambda t: torch.randn(5, 4, device=t(1).device) / 4 ** 0.5,
    "zeros": lambda t: torch.zeros((1, 1, 8), device=t(1).device),
    "linspace": lambda t: torch.linspace(0, 0.1, 12, device=t(1).device),
    "convolution": lambda t: torch.ops.aten.convolution(t(1, 4, 11, 10), t(8, 2, 3, 3), t(8), [2, 2], [1, 1],
                                                        [1, 1], False, [0, 0], 2),
    "index": lambda t: t(13, 13, 2)[torch.zeros(49, 49, dtype=torch.long, device=t(1).device),
                                    torch.ones(1, 49, dtype=torch.long, device=t(1).device)],
}


@pytest.mark.parametrize("name", DISPATCHED)
def test_pointwise_mode_matches_the_cpu_kernel(name):
    from noiselint.meta import DispatchFormulaMode

    expected = DISPATCHED[name](lambda *shape: torch.rand(shape))
    with DispatchFormulaMode():
        got = DISPATCHED[name](lambda *shape: torch.empty(shape, device="meta"))
    assert got.is_meta and (tuple(got.shape), got.dtype) == (tuple(expected.shape), expected.dtype)


def test_pointwise_mode_keeps_torch_errors_and_other_dtypes():
    from noiselint.meta import DispatchFormulaMode

    x, y = torch.empty(2, 3, device="meta"), torch.empty(4, 3, device="meta")
    with DispatchFormulaMode():
        with pytest.raises(RuntimeError):
            x + y  # does not broadcast: torch's own kernel raises
        with pytest.raises(RuntimeError):
            x.add_(torch.empty(3, 2, 3, device="meta"))  # in place would broadcast x
        with pytest.raises(RuntimeError, match="expected input.* to have 4 channels, but got 3"):
            torch.ops.aten.convolution(torch.empty(1, 3, 8, 8, device="meta"), torch.empty(8, 4, 3, 3, device="meta"),
                                       None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
        assert (x > 0).dtype == torch.bool  # a comparison is left to its kernel
        assert (x.long() / 2).dtype == torch.float32  # integer true division gives floats
        assert (x.half() + x).dtype == torch.float32  # mixed dtypes promote as torch does


def test_no_meta_kernel_imports_dynamo_for_the_formula_ops():
    """In a fresh process: building and shape-propagating these ops on meta never imports torch._dynamo."""
    import subprocess
    import sys

    code = (
        "import sys, torch, torch.nn.functional as F\n"
        "from noiselint.meta import DispatchFormulaMode, skip_meta_init\n"
        "with torch.device('meta'), skip_meta_init():\n"
        "    w = torch.randn(8, 4) / 4 ** 0.5\n"
        "    x = torch.empty(2, 3, 4)\n"
        "with DispatchFormulaMode():\n"
        "    y = F.relu6(x + 3.0).div_(6.0) * x\n"
        "    z = torch.stack([F.layer_norm(x, (4,)), x]).softmax(-1) @ w.t()[:4, :4]\n"
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr[-2000:]


def test_cpu_build_skips_torch_nn_init_functions_on_large_tensors():
    """nn.init.kaiming_uniform_ (nn.Linear's reset_parameters) calls uniform_ where no mode sees it: the
    function itself is skipped on a weight-sized tensor, and still runs on a small one."""
    from noiselint.build import cpu_build

    large, small = torch.full((256, 64), 7.0), torch.full((4, 4), 7.0)
    with cpu_build("test"):
        nn.init.kaiming_uniform_(large, a=5 ** 0.5)
        nn.init.xavier_normal_(small)
    assert torch.all(large == 7.0) and not torch.all(small == 7.0)


def test_values_read_from_a_meta_range_are_the_cpu_values():
    from noiselint.build import constant_values

    with constant_values(), torch.device("meta"):
        schedule = [x.item() for x in torch.linspace(0, 0.2, 5)]
        depth = int(torch.arange(3).sum())
    assert schedule == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2]) and depth == 3


def test_cuda_calls_keep_a_meta_build_on_meta():
    """``model.half().cuda()`` and ``.to("cuda", non_blocking=True)`` in a factory (airbench's make_net94):
    the layers stay on the meta device, without a GPU, and the build says so."""
    from noiselint.build import build

    def factory():
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 2))
        net[1].to("cuda:0", non_blocking=True)
        return net.half().cuda()

    built = build(factory, "test")
    assert all(p.is_meta and p.dtype == torch.float16 for p in built.model.parameters())
    assert built.device == "meta" and ".cuda()" in built.note
    assert build(lambda: nn.Linear(2, 2), "test").note is None
