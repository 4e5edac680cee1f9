"""Recover input normalization written inside a torch model's ``forward``: ``(x - self.mean) / self.std``.

RobustBench's models and many others normalize inside the model. The fx graph shows the chain of
arithmetic on the input; the constants' values come from the model's tensors, or, for a model built
on the meta device, from the values :mod:`noiselint.build` remembered while it was built.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.fx

from noiselint.graph import Preprocessing

_AFFINE_FUNCTIONS = {
    operator.sub: "sub", operator.isub: "sub", torch.sub: "sub",
    operator.truediv: "div", operator.itruediv: "div", torch.div: "div", torch.true_divide: "div",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
    operator.add: "add", operator.iadd: "add", torch.add: "add",
}
_AFFINE_METHODS = {"sub": "sub", "sub_": "sub", "div": "div", "div_": "div", "mul": "mul", "mul_": "mul",
                   "add": "add", "add_": "add"}
#: Ops that reshape a constant on its way to the arithmetic (``self.mean.view(1, 3, 1, 1)``).
_CONSTANT_METHODS = frozenset({"view", "reshape", "unsqueeze", "expand", "to", "float", "type_as", "contiguous"})
_PASS_THROUGH_METHODS = frozenset({"float", "contiguous"})


def forward_normalization(fx_graph: torch.fx.Graph, root: torch.nn.Module,
                          constants: Any = None) -> tuple[list[torch.fx.Node], Preprocessing] | None:
    """(the nodes of a per-channel affine chain on the input, the mean and std it applies), or None."""
    inputs = [node for node in fx_graph.nodes if node.op == "placeholder"]
    if not inputs:
        return None
    current, chain = inputs[0], []
    scale, shift = np.ones(1), np.zeros(1)
    while len(current.users) == 1:
        user = next(iter(current.users))
        if user.op == "call_method" and user.target in _PASS_THROUGH_METHODS and not chain:
            current = user
            continue
        step = _affine_step(user, current, root, constants)
        if step is None:
            break
        step_scale, step_shift = step
        scale, shift = scale * step_scale, shift * step_scale + step_shift
        chain.append(user)
        current = user
    channels = _per_channel(scale, shift) if chain else None
    if channels is None:
        return None
    a, b = channels
    std, mean = 1.0 / a, -b / a
    if np.all(std > 0):
        origin = "normalization in the model's forward"
        if np.any(std > 1.5) or np.any(np.abs(mean) > 1.5):  # constants in 0..255 pixel units
            std, mean = std / 255.0, mean / 255.0
            origin += " (in 0..255 pixel units, reported for pixels in [0, 1])"
        return chain, Preprocessing(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                                    origin=origin)
    return None


def _affine_step(node: torch.fx.Node, x: torch.fx.Node, root, constants) -> tuple[np.ndarray, np.ndarray] | None:
    """``(scale, shift)`` with ``y = x * scale + shift`` when ``node`` is ``x <op> constant``."""
    if node.op == "call_function":
        kind = _AFFINE_FUNCTIONS.get(node.target) if _hashable(node.target) else None
    elif node.op == "call_method":
        kind = _AFFINE_METHODS.get(node.target)
    else:
        kind = None
    if kind is None or len(node.args) != 2 or node.kwargs or list(node.args).count(x) != 1:
        return None
    x_first = node.args[0] is x
    c = _constant(node.args[1] if x_first else node.args[0], root, constants, depth=0)
    if c is None or c.size == 0 or not np.all(np.isfinite(c)):
        return None
    if kind == "add":
        return np.ones(1), c
    if kind == "mul":
        return c, np.zeros(1)
    if not x_first or (kind == "div" and np.any(c == 0)):
        return None
    return (np.ones(1), -c) if kind == "sub" else (1.0 / c, np.zeros(1))


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _constant(arg: Any, root: torch.nn.Module, constants: Any, depth: int) -> np.ndarray | None:
    """The value of a constant operand: a number, a tensor attribute, or a reshape of one."""
    if isinstance(arg, (int, float)) and not isinstance(arg, bool):
        return np.asarray(float(arg))
    if not isinstance(arg, torch.fx.Node) or depth > 4:
        return None
    if arg.op == "get_attr":
        tensor = _attribute(root, arg.target)
        return _tensor_value(tensor, constants)
    if arg.op == "call_method" and arg.target in _CONSTANT_METHODS and arg.args:
        base = _constant(arg.args[0], root, constants, depth + 1)
        if base is None:
            return None
        try:
            rest = [a for a in arg.args[1:] if not isinstance(a, torch.fx.Node)]
            if arg.target in ("to", "float", "type_as", "contiguous"):
                return base
            value = getattr(torch.from_numpy(base), arg.target)(*rest)
        except (RuntimeError, TypeError, ValueError):
            return None
        return value.numpy()
    return None


def _attribute(root: torch.nn.Module, target: str) -> Any:
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part, None)
    return value


def _tensor_value(tensor: Any, constants: Any) -> np.ndarray | None:
    if not isinstance(tensor, torch.Tensor) or tensor.numel() > 64:
        return None
    if tensor.is_meta:
        tensor = constants.value(tensor) if constants is not None else None
        if tensor is None:
            return None
    return tensor.detach().double().cpu().numpy()


def _per_channel(scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (scale, shift) when both broadcast over an NCHW input's channels only."""
    channels = []
    for value in (scale, shift):
        if value.size == 1:
            channels.append(value.reshape(1))
        elif value.ndim in (3, 4) and value.shape[-2:] == (1, 1) and value.size == value.shape[-3]:
            channels.append(value.reshape(-1))
        else:
            return None
    a, b = channels
    if a.size != b.size and 1 not in (a.size, b.size):
        return None
    size = max(a.size, b.size)
    return np.broadcast_to(a, size).copy(), np.broadcast_to(b, size).copy()
