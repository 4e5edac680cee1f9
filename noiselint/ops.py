"""Map torch modules, functions and methods to normalized op kinds and attributes."""

from __future__ import annotations

import operator
import re
from typing import Any

from noiselint.graph import Op


def _pair(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, str):
        return None
    return tuple(int(v) for v in value)


_NORM_TYPES = (
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm", "GroupNorm",
    "InstanceNorm1d", "InstanceNorm2d", "LocalResponseNorm", "RMSNorm", "LayerNorm2d",
    "BatchNormAct2d", "GroupNormAct", "LayerNormAct2d", "FrozenBatchNorm2d", "GroupNorm1",
)
_ACTIVATION_TYPES = (
    "ReLU", "ReLU6", "GELU", "SiLU", "Swish", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid",
    "LeakyReLU", "PReLU", "ELU", "Mish", "Softmax", "GELUTanh", "QuickGELU", "HardSwish",
    "HardSigmoid", "Softplus", "SELU", "CELU", "GLU",
)


def module_op(module: Any) -> tuple[str, dict[str, Any]]:
    """The op kind and attributes of a leaf module, by its class and hyperparameters."""
    import torch.nn as nn

    name = type(module).__name__
    if isinstance(module, nn.modules.conv._ConvNd):
        return Op.CONV, {
            "kernel": tuple(module.kernel_size),
            "stride": tuple(module.stride),
            "padding": module.padding if isinstance(module.padding, str) else tuple(module.padding),
            "dilation": tuple(module.dilation),
            "groups": module.groups,
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "transposed": bool(module.transposed),
        }
    if isinstance(module, nn.Linear):
        return Op.LINEAR, {"in_features": module.in_features, "out_features": module.out_features}
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        kernel = _pair(module.kernel_size)
        return Op.MAX_POOL, {
            "kernel": kernel,
            "window": kernel,
            "stride": _pair(module.stride) or kernel,
            "padding": _pair(module.padding),
            "dilation": _pair(module.dilation),
        }
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        kernel = _pair(module.kernel_size)
        return Op.AVG_POOL, {
            "kernel": kernel,
            "window": kernel,
            "stride": _pair(module.stride) or kernel,
            "padding": _pair(module.padding),
        }
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return Op.ADAPTIVE_AVG_POOL, {"output_size": _pair(module.output_size)}
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return Op.ADAPTIVE_MAX_POOL, {"output_size": _pair(module.output_size)}
    if name == "SelectAdaptivePool2d":  # timm: pool_type decides avg / max / avgmax
        pool_type = getattr(module, "pool_type", "avg") or ""
        kind = Op.ADAPTIVE_MAX_POOL if "max" in pool_type else Op.ADAPTIVE_AVG_POOL
        return kind, {"output_size": (1, 1), "pool_type": pool_type}
    if name in ("BlurPool2d", "BlurPool", "Downsample", "AntiAliasDownsampleLayer") and hasattr(module, "filt_size"):
        stride = getattr(module, "stride", 2)
        return Op.BLUR, {"kernel": _pair(module.filt_size), "stride": _pair(stride)}
    if isinstance(module, nn.MultiheadAttention) or name in ("Attention", "AttentionPool2d"):
        return Op.ATTENTION, {}
    if isinstance(module, nn.Upsample):
        return Op.RESIZE, {"scale": module.scale_factor, "mode": module.mode}
    if isinstance(module, (nn.Flatten, nn.Unflatten, nn.Identity)):
        return Op.RESHAPE, {}
    if isinstance(module, nn.Unfold):  # Swin-style patch partition: non-overlapping windows -> vectors
        kernel, stride = _pair(module.kernel_size), _pair(module.stride)
        return Op.RESHAPE, {"kind": name, **({"patch": kernel} if kernel == stride else {})}
    if type(module).__module__.startswith("einops") and name in ("Rearrange", "Reduce"):
        return einops_op(module.pattern, getattr(module, "axes_lengths", {}) or {},
                         getattr(module, "reduction", None), name)
    if name in _NORM_TYPES or isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
        return Op.NORM, {"kind": name}
    if name in _ACTIVATION_TYPES:
        return Op.ACTIVATION, {"kind": name}
    return Op.OTHER, {"kind": name}


def _slice_steps(index: Any) -> tuple[int, int] | None:
    """(step H, step W) of an ``x[:, :, ::2, ::2]`` index on an NCHW tensor, None for any other."""
    if not isinstance(index, tuple) or len(index) != 4 or index[0] is Ellipsis:
        return None
    if not all(isinstance(i, slice) for i in index):
        return None
    steps = tuple(i.step if isinstance(i.step, int) else 1 for i in index[2:])
    if index[0].step not in (None, 1) or index[1].step not in (None, 1) or max(steps) <= 1:
        return None
    return steps


def einops_op(pattern: str, axes_lengths: dict, reduction: str | None, kind: str) -> tuple[str, dict[str, Any]]:
    """An einops ``rearrange``/``reduce`` pattern read as a layer.

    ``b c (h p1) (w p2) -> b (h w) (p1 p2 c)`` with p1, p2 given is a patch partition (``patch``
    (p1, p2)), which a following ``Linear`` turns into a patch embedding; ``reduce`` over grouped
    axes is pooling (``mean`` average, ``max`` max), over whole spatial axes global pooling.
    """
    left, _, right = pattern.partition("->")
    groups = re.findall(r"\(([^)]*)\)", left)
    factors = [next((int(axes_lengths[a]) for a in g.split()[1:] if a in axes_lengths), None) for g in groups]
    factors = [f for f in factors if f]
    attrs: dict[str, Any] = {"kind": kind, "pattern": pattern}
    if reduction in ("mean", "max"):
        pooled = Op.AVG_POOL if reduction == "mean" else Op.MAX_POOL
        if len(factors) == 2 and not any(a in right.split() for g in groups for a in g.split()[1:]):
            return pooled, {**attrs, "kernel": tuple(factors), "window": tuple(factors), "stride": tuple(factors),
                            "padding": (0, 0)}
        if len(left.split()) == 4 and not groups and len(right.split()) == 2:  # b c h w -> b c
            global_kind = Op.ADAPTIVE_AVG_POOL if reduction == "mean" else Op.ADAPTIVE_MAX_POOL
            return global_kind, {**attrs, "output_size": (1, 1)}
    if len(factors) == 2 and reduction is None:
        attrs["patch"] = tuple(factors)
    return Op.RESHAPE, attrs


def _function_names() -> dict[Any, str]:
    import torch
    import torch.nn.functional as F

    return {
        F.max_pool1d: Op.MAX_POOL, F.max_pool2d: Op.MAX_POOL, F.max_pool3d: Op.MAX_POOL,
        torch.max_pool2d: Op.MAX_POOL,
        F.avg_pool1d: Op.AVG_POOL, F.avg_pool2d: Op.AVG_POOL, F.avg_pool3d: Op.AVG_POOL,
        torch.avg_pool1d: Op.AVG_POOL,
        F.adaptive_avg_pool1d: Op.ADAPTIVE_AVG_POOL, F.adaptive_avg_pool2d: Op.ADAPTIVE_AVG_POOL,
        F.adaptive_max_pool1d: Op.ADAPTIVE_MAX_POOL, F.adaptive_max_pool2d: Op.ADAPTIVE_MAX_POOL,
        F.conv1d: Op.CONV, F.conv2d: Op.CONV, F.conv3d: Op.CONV,
        F.linear: Op.LINEAR, torch.matmul: Op.LINEAR, torch.bmm: Op.LINEAR, operator.matmul: Op.LINEAR,
        F.interpolate: Op.RESIZE, F.upsample: Op.RESIZE,
        F.scaled_dot_product_attention: Op.ATTENTION,
        F.layer_norm: Op.NORM, F.batch_norm: Op.NORM, F.group_norm: Op.NORM,
        F.relu: Op.ACTIVATION, F.gelu: Op.ACTIVATION, F.silu: Op.ACTIVATION, F.softmax: Op.ACTIVATION,
        F.sigmoid: Op.ACTIVATION, torch.sigmoid: Op.ACTIVATION, torch.relu: Op.ACTIVATION,
        F.hardswish: Op.ACTIVATION, torch.tanh: Op.ACTIVATION,
        operator.add: Op.ADD, torch.add: Op.ADD, operator.iadd: Op.ADD,
        operator.mul: Op.MUL, torch.mul: Op.MUL,
        torch.cat: Op.CONCAT, torch.stack: Op.CONCAT,
        torch.flatten: Op.RESHAPE, torch.reshape: Op.RESHAPE, torch.permute: Op.RESHAPE,
        torch.transpose: Op.RESHAPE,
    }


_METHOD_OPS = {
    "view": Op.RESHAPE, "reshape": Op.RESHAPE, "flatten": Op.RESHAPE, "permute": Op.RESHAPE,
    "transpose": Op.RESHAPE, "contiguous": Op.RESHAPE, "unsqueeze": Op.RESHAPE, "squeeze": Op.RESHAPE,
    "add": Op.ADD, "add_": Op.ADD, "mul": Op.MUL, "mul_": Op.MUL, "softmax": Op.ACTIVATION,
    "relu": Op.ACTIVATION, "sigmoid": Op.ACTIVATION, "matmul": Op.LINEAR,
}

_FUNCTIONS: dict[Any, str] | None = None


def function_op(function: Any, args: tuple, kwargs: dict) -> tuple[str, dict[str, Any]]:
    """The op kind and attributes of a torch function call (fx ``call_function``)."""
    global _FUNCTIONS
    if _FUNCTIONS is None:
        _FUNCTIONS = _function_names()
    try:
        kind = _FUNCTIONS.get(function, Op.OTHER)
    except TypeError:  # unhashable callables
        kind = Op.OTHER
    attrs: dict[str, Any] = {"function": getattr(function, "__name__", str(function))}
    if function is operator.getitem and len(args) > 1:
        stride = _slice_steps(args[1])
        if stride is not None:
            return Op.SUBSAMPLE, {**attrs, "kernel": (1, 1), "stride": stride, "slice": True}
    if kind == Op.OTHER and str(getattr(function, "__module__", "")).startswith("einops") \
            and len(args) > 1 and isinstance(args[1], str):
        reduction = (args[2] if len(args) > 2 else kwargs.get("reduction")) if attrs["function"] == "reduce" else None
        axes = {k: v for k, v in kwargs.items() if isinstance(v, int)}
        kind, found = einops_op(args[1], axes, reduction if isinstance(reduction, str) else None, attrs["function"])
        return kind, {**attrs, **found}
    if kind in (Op.MAX_POOL, Op.AVG_POOL):
        kernel = _pair(_arg(args, kwargs, 1, "kernel_size"))
        stride = _arg(args, kwargs, 2, "stride")
        attrs.update(kernel=kernel, window=kernel, stride=_pair(stride) or kernel,
                     padding=_pair(_arg(args, kwargs, 3, "padding")) or (0, 0))
    elif kind in (Op.ADAPTIVE_AVG_POOL, Op.ADAPTIVE_MAX_POOL):
        attrs["output_size"] = _pair(_arg(args, kwargs, 1, "output_size"))
    elif kind == Op.CONV:
        attrs.update(stride=_pair(_arg(args, kwargs, 3, "stride")) or (1, 1),
                     padding=_pair(_arg(args, kwargs, 4, "padding")) or (0, 0),
                     groups=_arg(args, kwargs, 6, "groups") or 1)
    return kind, attrs


def method_op(method: str, args: tuple, kwargs: dict) -> tuple[str, dict[str, Any]]:
    """The op kind of a tensor method call; ``x.mean((2, 3))`` is global average pooling."""
    if method in ("mean", "amax", "max"):
        dims = _arg(args, kwargs, 1, "dim")
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        if set(dims) in ({2, 3}, {-1, -2}):
            kind = Op.ADAPTIVE_AVG_POOL if method == "mean" else Op.ADAPTIVE_MAX_POOL
            return kind, {"output_size": (1, 1), "method": method}
    return _METHOD_OPS.get(method, Op.OTHER), {"method": method}


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None
