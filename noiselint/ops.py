"""Map torch modules, functions and methods to normalized op kinds and attributes."""

from __future__ import annotations

import operator
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
    if name in _NORM_TYPES or isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
        return Op.NORM, {"kind": name}
    if name in _ACTIVATION_TYPES:
        return Op.ACTIVATION, {"kind": name}
    return Op.OTHER, {"kind": name}


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
