"""Keep work on the meta device cheap: no meta kernels where a formula or a no-op will do.

The first meta-device kernel a process runs imports ``torch._dynamo`` and sympy: 2-3 s on an idle
machine here, more than half of ``import torch``, and 7 s under load. These avoid it:

* :func:`skip_meta_init` makes in-place initializers (``normal_``, ``trunc_normal_``'s steps,
  ``fill_``, ...) no-ops on meta tensors while a model is built: they have no values to set (and
  enters :class:`DispatchFormulaMode`).
* :class:`FormulaShapeProp` is ``ShapeProp`` for fx graphs, with the output shapes of layers of an
  exact known type (convolutions, pooling, norms, timm's norm-act layers, activations, linear,
  flatten, concatenation, elementwise arithmetic) computed by formula as empty meta tensors. Any
  other node, or a known one whose input does not fit it (wrong channels or rank), runs on the meta
  device as ShapeProp would, so a real shape error is still raised by torch. Nodes get
  ``meta["tensor_meta"]`` like ShapeProp's.
* :class:`FormulaMode` applies the same formulas to torch function calls that are not fx nodes:
  inside a leaf layer's own ``forward`` and in the hooks level's eager forward.
* :class:`DispatchFormulaMode` applies formulas at the dispatcher, below the Python API, to the aten
  ops whose meta kernels are Python (every ``torch.Tag.pointwise`` op, matrix products, ...): it
  also sees the ops of TorchScript functions (a scripted hard-swish) and of calls no function
  formula knows.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.node import map_aggregate
from torch.fx.passes.shape_prop import _extract_tensor_metadata
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_SAME_SHAPE = frozenset({
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign,
    nn.Softmax, nn.LogSoftmax, nn.Softmax2d, nn.PReLU,
})
_BATCH_NORMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}
_CONVS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_TRANSPOSED = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}
_POOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}
_ADAPTIVE = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
             nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}
_UNARY_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.mish,
    F.dropout, F.dropout2d, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, operator.neg, F.elu, F.hardtanh,
    F.softplus, F.softmax, F.log_softmax, torch.softmax, F.normalize, torch.clamp, torch.abs, torch.exp,
    torch.floor, torch.ceil, torch.round, torch.sqrt, torch.rsqrt, torch.log, torch.erf, torch.sign,
}
_UNARY_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "contiguous", "float", "clone", "softmax",
                  "clamp", "abs", "exp", "detach"}
_BINARY = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
           operator.truediv, operator.itruediv, torch.add, torch.mul, torch.sub}
_BINARY_METHODS = {"add", "mul", "sub", "div", "add_", "mul_", "__add__", "__radd__", "__mul__", "__rmul__",
                   "__sub__", "__rsub__", "__truediv__", "__rtruediv__"}


#: In-place ops that only set values: nothing to do on a meta tensor.
_VALUE_SETTERS = frozenset({
    "normal_", "uniform_", "trunc_normal_", "fill_", "zero_", "copy_", "random_", "bernoulli_",
    "exponential_", "log_normal_", "cauchy_", "geometric_", "erfinv_", "mul_", "add_", "sub_", "div_",
    "clamp_", "clamp_min_", "clamp_max_", "exp_", "log_", "sqrt_", "abs_", "neg_", "masked_fill_",
})


class _SkipMetaInit(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.kept_off_cuda = False  # a .cuda() or .to("cuda") of a meta tensor was kept on meta

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", None)
        target = args[0] if args else kwargs.get("tensor")  # nn.init passes tensor=...
        if not (isinstance(target, torch.Tensor) and target.is_meta):
            return func(*args, **kwargs)
        if name in _VALUE_SETTERS:
            return target
        if name == "cuda" or (name == "to" and any(_is_cuda(v) for v in (*args[1:], *kwargs.values()))):
            # model.cuda() / model.to("cuda") in a factory: the layers stay on meta (no GPU needed here)
            self.kept_off_cuda = True
            dtype = next((v for v in (*args[1:], kwargs.get("dtype")) if isinstance(v, torch.dtype)), None)
            return target.to(dtype) if name == "to" and dtype is not None else target
        return func(*args, **kwargs)


def _is_cuda(value: Any) -> bool:
    """``"cuda"``, ``"cuda:1"`` or a CUDA ``torch.device``."""
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return isinstance(value, str) and value.split(":")[0] == "cuda"


@contextmanager
def skip_meta_init() -> Iterator[_SkipMetaInit]:
    """Inside the block, value-setting in-place ops on meta tensors return at once, ``.cuda()`` and
    ``.to("cuda")`` of meta tensors keep them on meta (the mode's ``kept_off_cuda`` says it happened),
    and pointwise ops on them run by formula (a constructor's ``torch.randn(n) / n ** 0.5``)."""
    with _SkipMetaInit() as mode, DispatchFormulaMode():
        yield mode


class FormulaShapeProp(torch.fx.Interpreter):
    """``ShapeProp`` for a meta input, with formula shapes where the layer is known."""

    def run_node(self, n: torch.fx.Node) -> Any:
        result = super().run_node(n)
        found = False

        def extract(value: Any) -> Any:
            nonlocal found
            if isinstance(value, torch.Tensor):
                found = True
                return _extract_tensor_metadata(value, include_contiguity=False)
            return value

        meta = map_aggregate(result, extract)
        if found:
            n.meta["tensor_meta"] = meta
        n.meta["type"] = type(result)
        return result

    def propagate(self, *args: Any) -> Any:
        """Run the graph once on ``args``: ``Interpreter.run`` without its tqdm bar (an mp lock)."""
        self.env = {}
        self.args_iter = iter(args)
        with DispatchFormulaMode():
            for node in self.graph.nodes:
                self.env[node] = self.run_node(node)
                if node.op == "output":
                    return self.env[node]
        return None

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        module = self.fetch_attr(target)
        x = args[0] if len(args) == 1 and not kwargs else None
        if type(module) in (nn.LSTM, nn.GRU, nn.RNN) and _is_meta(x):
            outputs = _recurrent(module, x)
            if outputs is not None:
                return outputs
        shape = module_shape(module, x.shape) if _is_meta(x) else None
        if shape is None and type(module) is nn.Linear and _is_meta(x) and x.dim() >= 1:
            # torch would raise this too, after importing sympy for its check (a wrong input size tried)
            raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({math.prod(x.shape[:-1])}x"
                               f"{x.shape[-1]} and {module.in_features}x{module.out_features})")
        if shape is None:
            with FormulaMode():  # a leaf's own forward: its functional calls by formula
                return super().call_module(target, args, kwargs)
        return torch.empty(shape, dtype=x.dtype, device="meta")

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        shape, like = _function_shape(target, args, kwargs, method=False)
        if shape is None:
            with FormulaMode():
                return super().call_function(target, args, kwargs)
        return torch.empty(shape, dtype=like.dtype, device="meta")

    def call_method(self, target: str, args: tuple, kwargs: dict) -> Any:
        shape, like = _function_shape(target, args, kwargs, method=True)
        if shape is None:
            with FormulaMode():
                return super().call_method(target, args, kwargs)
        return torch.empty(shape, dtype=like.dtype, device="meta")


def _is_meta(value: Any) -> bool:
    return type(value) in (torch.Tensor, nn.Parameter) and value.device.type == "meta"


def _tuple(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def module_shape(module: nn.Module, shape: Sequence[int]) -> tuple[int, ...] | None:
    """The output shape of ``module`` on an input of ``shape``, or None when no formula applies."""
    kind, shape = type(module), tuple(shape)
    if kind in _SAME_SHAPE:
        return shape
    if kind.__module__ == "timm.layers.norm_act":  # timm's norm + activation (+ dropout) layers
        channels = getattr(module, "num_features", None)
        return shape if len(shape) >= 2 and channels in (None, shape[1]) else None
    if kind in _BATCH_NORMS:
        fits = len(shape) in _BATCH_NORMS[kind] and shape[1] == module.num_features
        return shape if fits else None
    if kind is nn.GroupNorm:
        return shape if len(shape) >= 2 and shape[1] == module.num_channels else None
    if kind is nn.LayerNorm:
        normalized = tuple(module.normalized_shape)
        return shape if shape[len(shape) - len(normalized):] == normalized else None
    if kind is nn.Linear:
        return (*shape[:-1], module.out_features) if shape and shape[-1] == module.in_features else None
    if kind is nn.Flatten:
        return _flatten(shape, module.start_dim, module.end_dim)
    if kind in _CONVS:
        return _conv(module, shape, _CONVS[kind])
    if kind in _TRANSPOSED:
        return _transposed(module, shape, _TRANSPOSED[kind])
    if kind in _POOLS:
        return _pool(module, shape, _POOLS[kind])
    if kind in _ADAPTIVE and not getattr(module, "return_indices", False):
        n = _ADAPTIVE[kind]
        if len(shape) != n + 2:
            return None
        size = _tuple(module.output_size, n)
        return (*shape[:2], *(s if o is None else o for s, o in zip(shape[2:], size, strict=True)))
    return None


def _recurrent(module: nn.Module, x: torch.Tensor) -> tuple | None:
    """``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) for a batched input and no initial state.

    A meta LSTM runs step by step through python decompositions: seconds on a long sequence.
    """
    if x.dim() != 3 or x.shape[-1] != module.input_size:
        return None
    directions = 2 if module.bidirectional else 1
    batch, length = (x.shape[0], x.shape[1]) if module.batch_first else (x.shape[1], x.shape[0])
    hidden = getattr(module, "proj_size", 0) or module.hidden_size
    output = (batch, length, directions * hidden) if module.batch_first else (length, batch, directions * hidden)
    states = directions * module.num_layers, batch

    def empty(*shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=x.dtype, device="meta")

    if type(module) is nn.LSTM:
        return empty(*output), (empty(*states, hidden), empty(*states, module.hidden_size))
    return empty(*output), empty(*states, hidden)


def _conv(module: nn.Module, shape: tuple[int, ...], n: int) -> tuple[int, ...] | None:
    if len(shape) != n + 2 or shape[1] != module.in_channels:
        return None
    if module.padding == "same":
        return (shape[0], module.out_channels, *shape[2:])
    padding = (0,) * n if module.padding == "valid" else module.padding
    out = [
        (size + 2 * pad - dil * (k - 1) - 1) // stride + 1
        for size, pad, dil, k, stride in zip(shape[2:], padding, module.dilation, module.kernel_size,
                                             module.stride, strict=True)
    ]
    return (shape[0], module.out_channels, *out) if all(o > 0 for o in out) else None


def _transposed(module: nn.Module, shape: tuple[int, ...], n: int) -> tuple[int, ...] | None:
    if len(shape) != n + 2 or shape[1] != module.in_channels or isinstance(module.padding, str):
        return None
    out = [
        (size - 1) * stride - 2 * pad + dil * (k - 1) + extra + 1
        for size, stride, pad, dil, k, extra in zip(shape[2:], module.stride, module.padding, module.dilation,
                                                    module.kernel_size, module.output_padding, strict=True)
    ]
    return (shape[0], module.out_channels, *out) if all(o > 0 for o in out) else None


def _pool(module: nn.Module, shape: tuple[int, ...], n: int) -> tuple[int, ...] | None:
    if len(shape) != n + 2 or getattr(module, "return_indices", False):
        return None
    kernel = _tuple(module.kernel_size, n)
    stride = _tuple(module.stride or module.kernel_size, n)
    padding = _tuple(module.padding, n)
    dilation = _tuple(getattr(module, "dilation", 1), n)
    out = []
    for size, k, s, p, d in zip(shape[2:], kernel, stride, padding, dilation, strict=True):
        if p > k // 2:  # torch rejects this; let it say so
            return None
        span = size + 2 * p - d * (k - 1) - 1
        length = (math.ceil(span / s) if module.ceil_mode else span // s) + 1
        if module.ceil_mode and (length - 1) * s >= size + p:
            length -= 1
        out.append(length)
    return (*shape[:2], *out) if all(o > 0 for o in out) else None


def _flatten(shape: tuple[int, ...], start: int = 0, end: int = -1) -> tuple[int, ...] | None:
    rank = len(shape)
    if not isinstance(start, int) or not isinstance(end, int):
        return None
    start, end = start % rank if rank else 0, end % rank if rank else 0
    if not rank or start > end:
        return None
    return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    out = []
    for x, y in zip(((1,) * len(b) + a)[-max(len(a), len(b)):], ((1,) * len(a) + b)[-max(len(a), len(b)):],
                    strict=True):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y) if 0 not in (x, y) else 0)
    return tuple(out)


def _broadcast_all(shapes: Iterable[Sequence[int]]) -> tuple[int, ...] | None:
    """The broadcast of several shapes, None when they do not broadcast."""
    out: tuple[int, ...] | None = ()
    for shape in shapes:
        out = _broadcast(out, tuple(shape)) if out is not None else None
    return out


def _function_shape(target: Any, args: tuple, kwargs: dict, *, method: bool) -> tuple[Any, Any]:
    """(shape, a tensor to take the dtype from) for simple functions and methods, else (None, None)."""
    x = args[0] if args else None
    if target in _BINARY and len(args) == 2 and not kwargs and isinstance(x, (int, float)) and _is_meta(args[1]):
        return (tuple(args[1].shape), args[1]) if args[1].dtype.is_floating_point else (None, None)
    if target is torch.cat and isinstance(x, (list, tuple)) and len(args) + len(kwargs) <= 2 and set(kwargs) <= {"dim"}:
        return _cat(list(x), args[1] if len(args) > 1 else kwargs.get("dim", 0)), x[0] if x else None
    if not _is_meta(x) or not x.dtype.is_floating_point:
        return None, None
    shape = tuple(x.shape)
    unary, binary = (_UNARY_METHODS, _BINARY_METHODS) if method else (_UNARY_FUNCTIONS, _BINARY)
    if target in unary and not _tensors_in(args[1:], kwargs):  # F.relu(x, inplace=False), F.gelu(x, approximate=)
        return shape, x
    if (target in binary or target is operator.pow) and len(args) == 2 and not kwargs:
        other = args[1]
        if isinstance(other, (int, float)):
            return shape, x
        if _is_meta(other) and other.dtype == x.dtype and target is not operator.pow:
            return _broadcast(shape, tuple(other.shape)), x
        return None, None
    if target == ("flatten" if method else torch.flatten) and not kwargs and len(args) <= 3:
        return _flatten(shape, *args[1:]), x
    if method and target in ("mean", "sum"):
        return _reduce(shape, args[1:], kwargs), x
    if target is F.layer_norm:
        normalized = args[1] if len(args) > 1 else kwargs.get("normalized_shape")
        normalized = (normalized,) if isinstance(normalized, int) else tuple(normalized or ())
        return (shape if normalized and shape[len(shape) - len(normalized):] == normalized else None), x
    if target is F.group_norm:
        groups = args[1] if len(args) > 1 else kwargs.get("num_groups")
        fits = isinstance(groups, int) and groups > 0 and len(shape) >= 2 and shape[1] % groups == 0
        return (shape if fits else None), x
    if target is F.scaled_dot_product_attention:
        return _attention(args, kwargs), x
    if not method and target in _LAYER_FUNCTIONS:
        try:  # the formula takes the function's own parameters
            return _LAYER_FUNCTIONS[target](*args, **kwargs), x
        except TypeError:
            return None, None
    return None, None


def _conv_function(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """``F.conv{1,2,3}d`` by formula."""
    shape, n = tuple(input.shape), input.dim() - 2
    if not _is_meta(weight) or weight.dim() != n + 2 or not isinstance(groups, int) or n < 1:
        return None
    if shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
        return None
    if padding == "same" and any(s != 1 for s in _tuple(stride, n)):
        return None  # torch rejects it
    conv = _Layer(in_channels=shape[1], out_channels=weight.shape[0], kernel_size=tuple(weight.shape[2:]),
                  stride=_tuple(stride, n), dilation=_tuple(dilation, n),
                  padding=padding if isinstance(padding, str) else _tuple(padding, n))
    return _conv(conv, shape, n)


def _linear_function(input, weight, bias=None):  # noqa: A002
    shape = tuple(input.shape)
    if not _is_meta(weight) or weight.dim() != 2 or not shape or shape[-1] != weight.shape[1]:
        return None
    return (*shape[:-1], weight.shape[0])


def _batch_norm_function(input, running_mean, running_var, weight=None, bias=None, training=False,  # noqa: A002
                         momentum=0.1, eps=1e-5):
    shape = tuple(input.shape)
    stats = [t for t in (running_mean, running_var, weight, bias) if t is not None]
    fits = len(shape) >= 2 and all(_is_meta(t) and tuple(t.shape) == (shape[1],) for t in stats)
    return shape if fits and (stats or not training) else None


def _pad_function(input, pad, mode="constant", value=None):  # noqa: A002
    """``F.pad`` in constant mode (``reflect``/``replicate`` run: torch rejects some sizes)."""
    shape = list(input.shape)
    if mode != "constant" or not isinstance(pad, (tuple, list)) or len(pad) % 2 or len(pad) // 2 > len(shape):
        return None
    if not all(isinstance(p, int) for p in pad):
        return None
    for i in range(len(pad) // 2):
        shape[-1 - i] += pad[2 * i] + pad[2 * i + 1]
    return tuple(shape) if all(o > 0 for o in shape) else None


def _max_pool_function(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
                       return_indices=False):
    """``F.max_pool2d`` by formula (``nn.MaxPool2d.forward`` passes dilation positionally)."""
    if return_indices:
        return None
    return _pool_shape(input, kernel_size, stride, padding, dilation, ceil_mode)


def _avg_pool_function(input, kernel_size, stride=None, padding=0, ceil_mode=False,  # noqa: A002
                       count_include_pad=True, divisor_override=None):
    """``F.avg_pool2d`` by formula (``nn.AvgPool2d.forward`` passes every argument positionally)."""
    return _pool_shape(input, kernel_size, stride, padding, 1, ceil_mode)


def _pool_shape(input, kernel_size, stride, padding, dilation, ceil_mode):  # noqa: A002
    if input.dim() != 4:
        return None
    pool = _Layer(kernel_size=kernel_size, stride=stride or kernel_size, padding=padding, dilation=dilation,
                  ceil_mode=bool(ceil_mode))
    values = (pool.kernel_size, pool.stride, pool.padding, pool.dilation)
    if not all(isinstance(v, int) or (isinstance(v, (tuple, list)) and len(v) == 2) for v in values):
        return None
    return _pool(pool, tuple(input.shape), 2)


def _adaptive_function(input, output_size, return_indices=False):  # noqa: A002
    size = _tuple(output_size, 2)
    if return_indices or input.dim() != 4 or len(size) != 2:
        return None
    if not all(o is None or (isinstance(o, int) and o > 0) for o in size):
        return None
    return (*input.shape[:2], *(s if o is None else o for s, o in zip(input.shape[2:], size, strict=True)))


class _Layer:
    """The attributes a layer formula reads, for a functional call."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


_LAYER_FUNCTIONS = {
    F.conv1d: _conv_function, F.conv2d: _conv_function, F.conv3d: _conv_function, F.linear: _linear_function,
    F.batch_norm: _batch_norm_function, F.pad: _pad_function, F.max_pool2d: _max_pool_function,
    F.avg_pool2d: _avg_pool_function, F.adaptive_avg_pool2d: _adaptive_function,
    F.adaptive_max_pool2d: _adaptive_function,
}


_IN_PLACE_DUNDERS = {"__iadd__": "__add__", "__isub__": "__sub__", "__imul__": "__mul__",
                     "__itruediv__": "__truediv__"}


class FormulaMode(TorchFunctionMode):
    """Inside the block, torch functions with a shape formula return an empty meta tensor at once.

    For meta code that is not an fx node: a leaf layer's own ``forward`` (``Conv2dSame`` pads, then
    convolves), and the hooks level's eager forward. Anything without a formula, or whose inputs do
    not fit it, runs as usual, so a real shape error is still torch's.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = by_formula(func, args, kwargs)
        return func(*args, **kwargs) if result is None else result


def by_formula(func: Any, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The result of a torch function or tensor method call on meta tensors by formula, else None.

    Out of place: an empty meta tensor of the formula's shape. In place (``x.add_(y)``, ``x += y``,
    ``F.relu(x, inplace=True)``): ``x`` itself, when the out-of-place formula keeps its shape.
    """
    name = getattr(func, "__name__", "")
    method = getattr(torch.Tensor, name, None) is func
    dunder = name.startswith("__") and name.endswith("__")
    in_place = (name.endswith("_") and not dunder) or name in _IN_PLACE_DUNDERS or kwargs.get("inplace") is True
    if method:
        target = _IN_PLACE_DUNDERS.get(name, name[:-1] if in_place and not dunder else name)
        if in_place and not dunder and target.endswith("_"):
            return None
    else:
        target = func
        if in_place and name.endswith("_"):
            return None  # torch.relu_ and the like: left to torch
    shape, like = _function_shape(target, args, {k: v for k, v in kwargs.items() if k != "inplace"} if in_place
                                  else kwargs, method=method)
    if shape is None:
        return None
    if in_place:
        return args[0] if tuple(args[0].shape) == tuple(shape) else None
    return torch.empty(shape, dtype=like.dtype, device="meta")


def _tensors_in(args: tuple, kwargs: dict) -> bool:
    return any(isinstance(v, torch.Tensor) for v in (*args, *kwargs.values()))


def _reduce(shape: tuple[int, ...], args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    """``x.mean(dim, keepdim)`` / ``x.sum(...)`` with explicit dimensions."""
    dim = args[0] if args else kwargs.get("dim")
    keepdim = args[1] if len(args) > 1 else kwargs.get("keepdim", False)
    if set(kwargs) - {"dim", "keepdim"} or len(args) > 2 or not isinstance(keepdim, bool) or not shape:
        return None
    dims = (dim,) if isinstance(dim, int) else dim
    if not isinstance(dims, (tuple, list)) or not dims or not all(isinstance(d, int) for d in dims):
        return None
    if any(not -len(shape) <= d < len(shape) for d in dims):
        return None
    dims = {d % len(shape) for d in dims}
    return tuple(1 if i in dims else s for i, s in enumerate(shape) if keepdim or i not in dims)


def _attention(args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    """``F.scaled_dot_product_attention``: the query's shape with the value's last dimension."""
    names = ("query", "key", "value")
    if len(args) > 3 or set(kwargs) - {"attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa", *names}:
        return None
    q, k, v = (*args, *(kwargs.get(n) for n in names[len(args):]))
    if not all(_is_meta(t) and t.dim() >= 2 for t in (q, k, v)):
        return None
    if not q.dtype == k.dtype == v.dtype or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        return None
    return (*q.shape[:-1], v.shape[-1])


def _cat(tensors: list, dim: Any) -> tuple[int, ...] | None:
    if not tensors or not isinstance(dim, int) or not all(_is_meta(t) for t in tensors):
        return None
    first = tensors[0]
    if any(t.dtype != first.dtype or t.dim() != first.dim() for t in tensors) or first.dim() == 0:
        return None
    dim %= first.dim()
    rest = [tuple(t.shape[:dim]) + tuple(t.shape[dim + 1:]) for t in tensors]
    if any(r != rest[0] for r in rest):
        return None
    return (*first.shape[:dim], sum(t.shape[dim] for t in tensors), *first.shape[dim + 1:])


class DispatchFormulaMode(TorchDispatchMode):
    """Inside the block, pointwise aten ops on meta tensors of one floating dtype return by formula, and
    the few others whose meta kernels are Python (matrix products, ``stack``, layer norm, softmax,
    ``im2col``, reductions, ``roll``, integer indexing, convolution, and ``randn``-like factories
    and ``linspace``).

    The output takes the broadcast shape of the tensor arguments (Python numbers keep the dtype); an
    in-place op returns its first argument when that shape is its own. Anything else (mixed dtypes,
    integer ops other than those that keep an integer dtype, ``out=``, ops whose result is boolean,
    shapes that do not broadcast, tensors not on the meta device) runs the op's own kernel, so a real
    error is still torch's.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in torch._dynamo.disable unless this says no; the
        # wrapper imports torch._dynamo (and sympy) on its first call, and nothing here is compiled
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        formula = _formula_for(func)
        result = formula(args, kwargs) if formula is not None else None
        return func(*args, **kwargs) if result is None else result


#: Pointwise ops whose result is not of their inputs' dtype.
_NOT_SAME_DTYPE = frozenset({
    "eq", "ne", "lt", "le", "gt", "ge", "isnan", "isinf", "isfinite", "isneginf", "isposinf", "signbit",
    "logical_and", "logical_or", "logical_xor", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    "bitwise_not", "where", "nan_to_num", "polar", "complex", "real", "imag", "angle",
})


#: Pointwise ops that keep an integer dtype (``a - b`` on index tensors; ``a / b`` would not).
_INTEGER_SAFE = frozenset({"add", "sub", "rsub", "mul", "neg", "abs", "maximum", "minimum", "clamp", "remainder"})


@functools.cache
def _formula_for(func: Any) -> Callable[[tuple, dict], torch.Tensor | None] | None:
    """The formula for an aten op (looked up once per op: most ops have none), else None."""
    if func in _FACTORIES:
        return lambda args, kwargs: _factory(*args, **kwargs)
    if func in (torch.ops.aten.linspace.default, torch.ops.aten.logspace.default):
        return lambda args, kwargs: _linspace(*args, **kwargs)
    if func in _STRUCTURED:
        return functools.partial(_structured, _STRUCTURED[func])
    name = func.overloadpacket.__name__
    if torch.Tag.pointwise in func.tags and name.rstrip("_") not in _NOT_SAME_DTYPE:
        return functools.partial(_pointwise, name.rstrip("_"), name.endswith("_"))
    return None


def _structured(formula: Callable, args: tuple, kwargs: dict) -> torch.Tensor | None:
    if kwargs:
        return None
    try:  # the formula takes the op's own arguments
        return formula(*args)
    except TypeError:
        return None


def _pointwise(name: str, in_place: bool, args: tuple, kwargs: dict) -> torch.Tensor | None:
    if "out" in kwargs:
        return None
    tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
    if not tensors or not all(t.is_meta for t in tensors):
        return None
    dtype = tensors[0].dtype
    if any(t.dtype != dtype for t in tensors):
        return None
    if not dtype.is_floating_point and not (dtype in _INTEGERS and name in _INTEGER_SAFE
                                            and not any(isinstance(v, float) for v in args)):
        return None
    if any(not isinstance(v, (torch.Tensor, int, float, bool, str)) and v is not None
           for v in (*args, *kwargs.values())):
        return None  # lists, memory formats, generators: left to the kernel
    shape = _broadcast_all(t.shape for t in tensors)
    if shape is None:
        return None
    if in_place:
        first = args[0] if args else None
        return first if isinstance(first, torch.Tensor) and tuple(first.shape) == shape else None
    return torch.empty(shape, dtype=dtype, device="meta")


def _stack(tensors: Any, dim: Any = 0) -> torch.Tensor | None:
    """``aten.stack`` of meta tensors of one shape and dtype (its meta kernel is Python, like pointwise ones)."""
    if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(dim, int):
        return None
    first = tensors[0]
    if not all(_is_meta(t) and t.shape == first.shape and t.dtype == first.dtype for t in tensors):
        return None
    if not -first.dim() - 1 <= dim <= first.dim():
        return None
    dim %= first.dim() + 1
    return torch.empty((*first.shape[:dim], len(tensors), *first.shape[dim:]), dtype=first.dtype, device="meta")


_INTEGERS = frozenset({torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8})


def _matrices(*tensors: Any) -> bool:
    return all(_is_meta(t) and t.dtype == tensors[0].dtype and t.dtype.is_floating_point for t in tensors)


def _mm(a: Any, b: Any) -> torch.Tensor | None:
    if not _matrices(a, b) or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        return None
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device="meta")


def _addmm(bias: Any, a: Any, b: Any, *, beta: Any = 1, alpha: Any = 1) -> torch.Tensor | None:
    out = _mm(a, b)
    if out is None or not _matrices(bias, a) or _broadcast(tuple(bias.shape), tuple(out.shape)) != tuple(out.shape):
        return None
    return out


def _bmm(a: Any, b: Any) -> torch.Tensor | None:
    if not _matrices(a, b) or a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        return None
    return torch.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=a.dtype, device="meta")


def _layer_norm(x: Any, normalized: Any, weight: Any = None, bias: Any = None, eps: Any = 1e-5) -> tuple | None:
    """``aten.native_layer_norm``: (output, mean, rstd), the statistics with 1s over the normalized dims."""
    normalized = tuple(normalized) if isinstance(normalized, (list, tuple)) else None
    if not _is_meta(x) or not x.dtype.is_floating_point or not normalized or x.dim() < len(normalized):
        return None
    if tuple(x.shape[x.dim() - len(normalized):]) != normalized:
        return None
    if any(t is not None and (not _is_meta(t) or tuple(t.shape) != normalized) for t in (weight, bias)):
        return None
    stats = (*x.shape[:x.dim() - len(normalized)], *(1,) * len(normalized))
    return (torch.empty(x.shape, dtype=x.dtype, device="meta"), torch.empty(stats, dtype=x.dtype, device="meta"),
            torch.empty(stats, dtype=x.dtype, device="meta"))


def _softmax(x: Any, dim: Any, half_to_float: Any = False) -> torch.Tensor | None:
    if not _is_meta(x) or not x.dtype.is_floating_point or half_to_float or not isinstance(dim, int):
        return None
    if not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        return None
    return torch.empty(x.shape, dtype=x.dtype, device="meta")


def _safe_softmax(x: Any, dim: Any, dtype: Any = None) -> torch.Tensor | None:
    return _softmax(x, dim) if dtype is None else None


def _im2col(x: Any, kernel: Any, dilation: Any, padding: Any, stride: Any) -> torch.Tensor | None:
    """``aten.im2col`` (``F.unfold``) of an (N, C, H, W) input: (N, C x kh x kw, blocks)."""
    if not _is_meta(x) or x.dim() != 4 or not x.dtype.is_floating_point:
        return None
    params = [tuple(v) for v in (kernel, dilation, padding, stride)]
    if any(len(v) != 2 or not all(isinstance(i, int) for i in v) for v in params):
        return None
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = params
    blocks = [(size + 2 * p - d * (k - 1) - 1) // s + 1
              for size, k, d, p, s in ((x.shape[2], kh, dh, ph, sh), (x.shape[3], kw, dw, pw, sw))]
    if min(blocks) <= 0 or min(kh, kw, dh, dw, sh, sw) <= 0 or min(ph, pw) < 0:
        return None
    return torch.empty((x.shape[0], x.shape[1] * kh * kw, blocks[0] * blocks[1]), dtype=x.dtype, device="meta")


def _mean(x: Any, dims: Any, keepdim: Any = False, dtype: Any = None) -> torch.Tensor | None:
    """``aten.mean.dim`` / ``aten.sum.dim_IntList`` over explicit dimensions, in the input's dtype."""
    if not _is_meta(x) or not x.dtype.is_floating_point or dtype is not None or not isinstance(dims, (list, tuple)):
        return None
    shape = _reduce(tuple(x.shape), (tuple(dims), keepdim), {})
    return None if shape is None else torch.empty(shape, dtype=x.dtype, device="meta")


def _roll(x: Any, shifts: Any, dims: Any = ()) -> torch.Tensor | None:
    shifts, dims = list(shifts), list(dims)
    if not _is_meta(x) or not shifts or len(dims) not in (0, len(shifts)) or (not dims and len(shifts) > 1):
        return None
    if any(not isinstance(d, int) or not -x.dim() <= d < x.dim() for d in dims):
        return None
    return torch.empty(x.shape, dtype=x.dtype, device="meta")


def _factory(size: Any, *, dtype: Any = None, layout: Any = None, device: Any = None, pin_memory: Any = None,
             **rest: Any) -> torch.Tensor | None:
    """``torch.randn(...)`` / ``rand`` / ``zeros`` / ``ones`` on the meta device (their meta kernels are Python)."""
    if rest or not _on_meta(layout, device, pin_memory):
        return None
    if not isinstance(size, (list, tuple)) or not all(isinstance(n, int) and n >= 0 for n in size):
        return None
    return torch.empty(tuple(size), dtype=dtype or torch.get_default_dtype(), device="meta")


def _on_meta(layout: Any, device: Any, pin_memory: Any) -> bool:
    """A factory's keywords ask for a plain (strided, unpinned) tensor on the meta device."""
    return not pin_memory and layout in (None, torch.strided) and device is not None and \
        torch.device(device).type == "meta"


_FACTORIES = frozenset({torch.ops.aten.randn.default, torch.ops.aten.rand.default, torch.ops.aten.zeros.default,
                        torch.ops.aten.ones.default})


def _index(x: Any, indices: Any) -> torch.Tensor | None:
    """``x[i, j]`` with integer index tensors for the leading dimensions (Swin's relative positions):
    the indices' broadcast shape, then ``x``'s remaining dimensions. Masks and ``None`` gaps are left
    to the kernel."""
    if not _is_meta(x) or not isinstance(indices, (list, tuple)) or not 0 < len(indices) <= x.dim():
        return None
    if not all(_is_meta(i) and i.dtype in (torch.int64, torch.int32) for i in indices):
        return None
    shape = _broadcast_all(i.shape for i in indices)
    if shape is None:
        return None
    return torch.empty((*shape, *x.shape[len(indices):]), dtype=x.dtype, device="meta")


def _convolution(x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, transposed: Any,
                 output_padding: Any, groups: Any) -> torch.Tensor | None:
    """``aten.convolution`` (a conv in a forward run outside any fx node): the ``F.conv2d`` formula."""
    if transposed or not _is_meta(x) or not x.dtype.is_floating_point or (bias is not None and not _is_meta(bias)):
        return None
    checkable = _is_meta(weight) and x.dim() == weight.dim() and isinstance(groups, int)
    if checkable and x.shape[1] != weight.shape[1] * groups:
        # torch raises this too, after importing sympy for its check (a wrong input size tried)
        raise RuntimeError(f"Given groups={groups}, weight of size {list(weight.shape)}, expected input{list(x.shape)} "
                           f"to have {weight.shape[1] * groups} channels, but got {x.shape[1]} channels instead")
    shape = _conv_function(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups)
    return None if shape is None else torch.empty(shape, dtype=x.dtype, device="meta")


def _linspace(start: Any, end: Any, steps: Any, base: Any = None, *, dtype: Any = None, layout: Any = None,
              device: Any = None, pin_memory: Any = None) -> torch.Tensor | None:
    """``torch.linspace`` / ``logspace`` on the meta device: ``steps`` values."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, end))
    if not numbers or not isinstance(steps, int) or steps < 0 or not _on_meta(layout, device, pin_memory):
        return None
    return torch.empty((steps,), dtype=dtype or torch.get_default_dtype(), device="meta")


#: Ops other than pointwise ones whose meta kernels are Python (``F.linear`` on a 2-d input is ``addmm``).
_STRUCTURED = {
    torch.ops.aten.mm.default: _mm, torch.ops.aten.addmm.default: _addmm, torch.ops.aten.bmm.default: _bmm,
    torch.ops.aten.stack.default: _stack, torch.ops.aten.native_layer_norm.default: _layer_norm,
    torch.ops.aten._softmax.default: _softmax, torch.ops.aten._log_softmax.default: _softmax,
    torch.ops.aten._safe_softmax.default: _safe_softmax, torch.ops.aten.im2col.default: _im2col,
    torch.ops.aten.mean.dim: _mean, torch.ops.aten.sum.dim_IntList: _mean, torch.ops.aten.roll.default: _roll,
    torch.ops.aten.index.Tensor: _index, torch.ops.aten.convolution.default: _convolution,
}
