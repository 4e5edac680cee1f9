"""Build a model without its weights: on the meta device, or on the CPU when its constructor reads values.

Most constructors only allocate parameters, and the meta device builds them for free. Some read
tensor values while they build (``torch.linspace(0, rate, depth).item()`` drop-path schedules,
``.tolist()`` of width schedules in torchvision's RegNets): those fail on meta tensors. They are
built again on the CPU with large tensors left uninitialized (their values do not matter and their
pages are never touched), under a memory guard, then moved to the meta device.

While a model's file is imported and built, :func:`constant_values` remembers the values of small
tensors made from Python data (``torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)``), which the
meta device would lose: normalization written inside ``forward`` is recovered from them.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from noiselint.errors import LoadError, one_line
from noiselint.meta import skip_meta_init

#: Resident memory a CPU build may add before it is stopped.
CPU_BUILD_MEMORY_LIMIT = 4 * 2**30
#: In-place initializers leave CPU tensors with at least this many elements as they are (weights).
_SKIP_INIT_NUMEL = 4096
#: Tensors up to this many elements made from Python data keep their values for later analyses.
_CONSTANT_NUMEL = 64

_INITIALIZERS = frozenset({
    "normal_", "uniform_", "trunc_normal_", "fill_", "zero_", "random_", "bernoulli_", "exponential_",
    "log_normal_", "cauchy_", "geometric_", "erfinv_", "mul_", "add_", "sub_", "div_", "clamp_",
    "clamp_min_", "clamp_max_", "copy_", "exp_", "log_", "sqrt_", "abs_", "neg_",
    # torch.nn.init's own functions: inside one, the tensor methods it calls reach no torch function mode
    "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "constant_", "ones_", "zeros_",
    "orthogonal_", "eye_", "dirac_", "sparse_",
})
_FROM_DATA = frozenset({"tensor", "as_tensor", "Tensor", "FloatTensor", "from_numpy"})
#: Factories whose values follow from their arguments (``torch.linspace(0, rate, depth)``).
_RANGES = frozenset({"linspace", "logspace", "arange", "zeros", "ones", "full", "eye"})
#: Ops that split a tensor into several.
_SPLITS = frozenset({"unbind", "split", "chunk", "tensor_split"})
#: Methods that read a tensor's values into Python.
_VALUE_READERS = frozenset({"item", "tolist", "__float__", "__int__", "__bool__", "__index__"})
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Built:
    """A model built without weights, and how: ``meta``, or ``cpu`` with the reason meta failed."""

    model: Any
    device: str = "meta"
    note: str | None = None


def build(factory: Callable[[], Any], label: str, constants: _ConstantValues | None = None, *,
          device: str = "meta") -> Built:
    """``factory()`` on the meta device; when that fails, on the CPU without initializers, then to meta.

    Small tensors of a CPU build keep their values in ``constants`` when they move to the meta device.
    Any other ``device`` builds there as the model's code says (verify runs real weights).
    """
    if device != "meta":
        with torch.device(device):
            return Built(factory(), device)
    try:
        with torch.device("meta"), skip_meta_init() as skipped:
            model = factory()
    except Exception as exc:  # noqa: BLE001 - any failure on meta gets the CPU try
        meta_error = one_line(exc)
    else:
        if isinstance(model, torch.nn.Module):  # torch.FloatTensor([...]) ignores the device: CCT's embedding
            _move_to_meta(model, constants)
        return Built(model, note="the constructor's .cuda() / .to('cuda') calls were kept on the meta device"
                     if skipped.kept_off_cuda else None)
    with torch.device("cpu"), cpu_build(label):
        model = factory()
    if isinstance(model, torch.nn.Module):
        _move_to_meta(model, constants)
    return Built(model, "cpu", f"built on the CPU with initializers skipped, then moved to the meta device "
                               f"(on the meta device the constructor failed: {meta_error})")


def on_meta(model: torch.nn.Module, constants: _ConstantValues | None) -> Built:
    """A model that already exists (a module-level instance): moved to the meta device if it is not there."""
    if all(t.is_meta for t in (*model.parameters(), *model.buffers())):
        return Built(model)
    _move_to_meta(model, constants)
    return Built(model, "cpu", "the file builds the model on the CPU when imported; moved to the meta device")


@contextmanager
def cpu_build(label: str) -> Iterator[None]:
    """Inside the block, initializers skip large CPU tensors and the build stops at the memory limit."""
    with _CpuBuild(label):
        yield


def _move_to_meta(model: torch.nn.Module, constants: _ConstantValues | None) -> None:
    """Parameters, buffers and plain tensor attributes of every submodule onto the meta device (those
    already there are left as they are, shared ones included)."""

    def moved(tensor: torch.Tensor) -> torch.Tensor:
        meta = tensor.detach().to("meta")
        if constants is not None and not tensor.is_meta and tensor.numel() <= _CONSTANT_NUMEL:
            constants.remember(meta, tensor.detach().clone())
        return meta

    for module in model.modules():
        for name, parameter in module._parameters.items():
            if parameter is not None and not parameter.is_meta:
                module._parameters[name] = torch.nn.Parameter(moved(parameter), parameter.requires_grad)
        for name, buffer in module._buffers.items():
            if buffer is not None and not buffer.is_meta:
                module._buffers[name] = moved(buffer)
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and not value.is_meta:
                object.__setattr__(module, name, moved(value))


class _CpuBuild(TorchFunctionMode):
    """Skips initializers on large CPU tensors and stops the build past :data:`CPU_BUILD_MEMORY_LIMIT`."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.start = _resident_bytes()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")
        if (getattr(func, "__name__", None) in _INITIALIZERS and isinstance(target, torch.Tensor)
                and (target.is_meta or target.numel() >= _SKIP_INIT_NUMEL)):
            return target
        if _resident_bytes() - self.start > CPU_BUILD_MEMORY_LIMIT:
            raise LoadError(
                f"{self.label}: building it on the CPU (its constructor reads tensor values) took more than "
                f"{CPU_BUILD_MEMORY_LIMIT / 2**30:.0f} GiB; build it with smaller settings in a factory and lint that"
            )
        return func(*args, **kwargs)


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class _ConstantValues(TorchFunctionMode):
    """Remembers CPU copies of small meta tensors made from Python data, through the ops applied to them."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[int, tuple[weakref.ref, torch.Tensor]] = {}

    def remember(self, tensor: torch.Tensor, value: torch.Tensor) -> None:
        self.values[id(tensor)] = (weakref.ref(tensor), value)

    def value(self, tensor: Any) -> torch.Tensor | None:
        entry = self.values.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _VALUE_READERS and args and (known := self.value(args[0])) is not None:
            return getattr(known, name)(*args[1:], **kwargs)  # drop_path_rate.item(): the remembered value
        result = func(*args, **kwargs)
        if isinstance(result, (tuple, list)) and name in _SPLITS:  # for x in torch.linspace(...): unbind
            try:
                values = self._replay(func, args, kwargs)
            except Exception:  # noqa: BLE001 - values that cannot be replayed are simply unknown
                values = None
            for piece, value in zip(result, values or (), strict=False):
                if isinstance(piece, torch.Tensor) and isinstance(value, torch.Tensor) and value.shape == piece.shape:
                    self.remember(piece, value)
            return result
        if not (isinstance(result, torch.Tensor) and result.is_meta and result.numel() <= _CONSTANT_NUMEL):
            return result
        try:
            if name in _FROM_DATA or name in _RANGES:
                value = func(*args, **{**kwargs, "device": "cpu"}) if name != "from_numpy" else func(*args)
            else:
                value = self._replay(func, args, kwargs)
        except Exception:  # noqa: BLE001 - a value that cannot be replayed is simply unknown
            value = None
        if isinstance(value, torch.Tensor) and value.shape == result.shape:
            self.remember(result, value)
        return result

    def _replay(self, func, args, kwargs) -> torch.Tensor | None:
        """``func`` on the CPU copies of its meta arguments, when every one of them has a copy."""
        known = True

        def swap(value):
            nonlocal known
            if isinstance(value, torch.Tensor) and value.is_meta:
                copy = self.value(value)
                known = known and copy is not None
                return copy
            if isinstance(value, (list, tuple)):
                return type(value)(swap(v) for v in value)
            return value

        args, kwargs = swap(args), {k: swap(v) for k, v in kwargs.items()}
        if not known or "device" in kwargs:
            return None
        return func(*args, **kwargs)


@contextmanager
def constant_values() -> Iterator[_ConstantValues]:
    """Inside the block, small tensors made from Python data keep a CPU copy of their values."""
    with _ConstantValues() as mode:
        yield mode
