"""Keep work on the meta device cheap: no meta kernels where a formula or a no-op will do.

The first meta-device kernel a process runs imports ``torch._dynamo`` and sympy: 2-3 s on an idle
machine here, more than half of ``import torch``, and 7 s under load. Two things avoid it:

* :func:`skip_meta_init` makes in-place initializers (``normal_``, ``trunc_normal_``'s steps,
  ``fill_``, ...) no-ops on meta tensors while a model is built: they have no values to set.
* :class:`FormulaShapeProp` is ``ShapeProp`` for fx graphs, with the output shapes of layers of an
  exact known type (convolutions, pooling, norms, timm's norm-act layers, activations, linear,
  flatten, concatenation, elementwise arithmetic) computed by formula as empty meta tensors. Any
  other node, or a known one whose input does not fit it (wrong channels or rank), runs on the meta
  device as ShapeProp would, so a real shape error is still raised by torch. Nodes get
  ``meta["tensor_meta"]`` like ShapeProp's.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.node import map_aggregate
from torch.fx.passes.shape_prop import _extract_tensor_metadata
from torch.overrides import TorchFunctionMode

_SAME_SHAPE = frozenset({
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign,
})
_BATCH_NORMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}
_CONVS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_POOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}
_ADAPTIVE = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
             nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}
_UNARY_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.mish,
    F.dropout, F.dropout2d, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, operator.neg, F.elu, F.hardtanh,
    F.softplus, F.softmax, F.log_softmax, torch.softmax, F.normalize, torch.clamp, torch.abs, torch.exp,
}
_UNARY_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "contiguous", "float", "clone", "softmax",
                  "clamp", "abs", "exp", "detach"}
_BINARY = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, operator.isub,
           operator.truediv, operator.itruediv, torch.add, torch.mul, torch.sub}
_BINARY_METHODS = {"add", "mul", "sub", "div", "add_", "mul_"}


#: In-place ops that only set values: nothing to do on a meta tensor.
_VALUE_SETTERS = frozenset({
    "normal_", "uniform_", "trunc_normal_", "fill_", "zero_", "copy_", "random_", "bernoulli_",
    "exponential_", "log_normal_", "cauchy_", "geometric_", "erfinv_", "mul_", "add_", "sub_", "div_",
    "clamp_", "clamp_min_", "clamp_max_", "exp_", "log_", "sqrt_", "abs_", "neg_", "masked_fill_",
})


class _SkipMetaInit(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        target = args[0] if args else (kwargs or {}).get("tensor")  # nn.init passes tensor=...
        if (getattr(func, "__name__", None) in _VALUE_SETTERS and isinstance(target, torch.Tensor)
                and target.is_meta):
            return target
        return func(*args, **(kwargs or {}))


@contextmanager
def skip_meta_init() -> Iterator[None]:
    """Inside the block, value-setting in-place ops on meta tensors return at once."""
    with _SkipMetaInit():
        yield


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
        if shape is None:
            return super().call_module(target, args, kwargs)
        return torch.empty(shape, dtype=x.dtype, device="meta")

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        shape, like = _function_shape(target, args, kwargs, method=False)
        if shape is None:
            return super().call_function(target, args, kwargs)
        return torch.empty(shape, dtype=like.dtype, device="meta")

    def call_method(self, target: str, args: tuple, kwargs: dict) -> Any:
        shape, like = _function_shape(target, args, kwargs, method=True)
        if shape is None:
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


def _function_shape(target: Any, args: tuple, kwargs: dict, *, method: bool) -> tuple[Any, Any]:
    """(shape, a tensor to take the dtype from) for simple functions and methods, else (None, None)."""
    x = args[0] if args else None
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
    return None, None


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
