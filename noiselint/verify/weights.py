"""Materialize a linted model for verify: build it on the CPU, then load ``--weights`` if given.

Linting never leaves the meta device; only verify builds real tensors. A Python model file gets
whatever weights it loads itself; timm and torchvision targets are built with random weights
(noiselint never downloads any), so their verification says so. ``--weights`` takes a state_dict
saved with ``torch.save`` (read with ``weights_only=True``: no code is unpickled) or a
``.safetensors`` file; keys must match the model exactly. The keys and shapes are read first, without
the tensor data (a zip checkpoint's records are never inflated for a file that does not match), and
what the file would take in memory is checked against the budget (``--max-memory``) before reading.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from noiselint.errors import one_line
from noiselint.findings import ModelReport
from noiselint.loaders import LoadedModel, kind_of, load, split_python_target
from noiselint.memory import DEFAULT_MAX_MEMORY, MemoryBudgetError, shown
from noiselint.verify.options import VerifyError

#: Wrapper keys under which training scripts often nest the state_dict.
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema", "net")


@dataclass
class Materialized:
    """A runnable model: a CPU ``module`` (eval mode) or an ONNX file, and where its weights came from."""

    module: Any = None
    onnx_path: str | None = None
    weights: str = ""
    notes: list[str] = field(default_factory=list)


def load_again(report: ModelReport, device: str) -> LoadedModel:
    """The model a lint report describes, loaded again on ``device`` (ONNX files: the graph)."""
    source = report.target if kind_of(report.target) == "onnx" else report.model
    loaded = load(source, device=device)
    names = (report.model, report.target)
    return next(
        (m for m in loaded if m.name in names or (m.graph is not None and m.graph.name in names)), loaded[0]
    )


def materialize(report: ModelReport, weights: str | None, max_memory: int = DEFAULT_MAX_MEMORY) -> Materialized:
    """Build the model of a lint report on the CPU with its real weights (``weights`` read within
    ``max_memory`` bytes)."""
    model = report.model
    kind = kind_of(report.target)
    if kind == "onnx":
        if weights is not None:
            raise VerifyError(f"--weights: {model} is an ONNX file and carries its own weights")
        return Materialized(
            onnx_path=split_python_target(report.target)[0], weights="the ONNX file's initializers"
        )
    loaded = load_again(report, "cpu")
    module = loaded.module.eval()
    if weights is not None:
        apply_weights(module, weights, model, max_memory)
        return Materialized(module=module, weights=f"--weights {weights}")
    if loaded.weights:  # a Hugging Face folder's own safetensors
        return Materialized(module=module, weights=loaded.weights)
    if kind in ("timm", "torchvision", "hf"):
        note = (
            f"{model} is built with random weights (noiselint never downloads weights): accuracy and "
            "agreement describe an untrained network; pass --weights CKPT"
        )
        return Materialized(module=module, weights="random initialization", notes=[note])
    return Materialized(module=module, weights=(
        "as the model file builds the model; if the file loads no trained weights it is randomly "
        "initialized, and these figures say nothing about a trained model"))


def read_state_dict(path: str, max_memory: int = DEFAULT_MAX_MEMORY, *, data: bool = True) -> dict[str, Any]:
    """The tensors of a state_dict file (torch.save, weights_only) or a .safetensors file; with
    ``data`` false, meta tensors (keys, shapes, dtypes) read without the tensor data. Either way the
    data the file declares must fit in ``max_memory`` bytes."""
    import torch

    if path.endswith(".safetensors"):
        _check_budget(path, os.path.getsize(path), "the file takes", max_memory)
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            if data:
                return load_file(path, device="cpu")
            with safe_open(path, framework="pt") as stream:
                return {k: torch.empty(stream.get_slice(k).get_shape(), device="meta") for k in stream.keys()}
        except Exception as exc:  # noqa: BLE001 - safetensors raises several kinds for bad files
            raise VerifyError(
                f"--weights {path}: not a readable safetensors file ({one_line(exc)})"
            ) from None
    if zipfile.is_zipfile(path):  # torch.save's format: each record is inflated whole when read
        with zipfile.ZipFile(path) as archive:
            _check_budget(path, sum(i.file_size for i in archive.infolist()), "its zip records inflate to", max_memory)
    try:
        if data:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            with torch.serialization.skip_data():
                state = torch.load(path, map_location="meta", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # garbage, not a pickled object
            raise VerifyError(
                f"--weights {path}: cannot be read as a torch checkpoint ({one_line(exc)})"
            ) from None
        raise VerifyError(
            f"--weights {path}: holds pickled objects (a whole model?), not a state_dict; save "
            "model.state_dict() instead (noiselint loads weights with weights_only=True)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds for corrupt files
        raise VerifyError(
            f"--weights {path}: cannot be read as a torch checkpoint ({one_line(exc)})"
        ) from None
    state = _unwrap(state, path)
    if not data:
        _check_budget(path, sum(t.numel() * t.element_size() for t in state.values()), "its tensors take",
                      max_memory)
    return state


def _check_budget(path: str, size: int, what: str, max_memory: int) -> None:
    if size > max_memory:
        raise MemoryBudgetError(f"--weights {path}: {what} {shown(size)}, over the memory budget of "
                                f"{shown(max_memory)} (--max-memory)")


def _unwrap(state: Any, path: str) -> dict[str, Any]:
    import torch

    if isinstance(state, Mapping):
        for key in NESTED_KEYS:
            if isinstance(state.get(key), Mapping) and _tensors_only(state[key]):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not state or not _tensors_only(state):
        raise VerifyError(f"--weights {path}: not a state_dict (a mapping of parameter names to tensors)")
    keys = list(state)
    if all(k.startswith("module.") for k in keys):  # saved from DataParallel / DDP
        state = {k[len("module.") :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _tensors_only(mapping: Mapping) -> bool:
    import torch

    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in mapping.items())


def apply_weights(module: Any, path: str, model: str, max_memory: int = DEFAULT_MAX_MEMORY) -> None:
    """Load the state_dict at ``path`` into ``module``; any missing, extra or misshapen key is an error,
    found before any tensor data is read."""
    declared = read_state_dict(path, max_memory, data=False)
    own = module.state_dict()
    missing = [k for k in own if k not in declared]
    unexpected = [k for k in declared if k not in own]
    misshapen = [k for k in declared if k in own and tuple(declared[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshapen:
        parts = [
            f"{len(names)} {label} ({_first(names)})"
            for label, names in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("with another shape", misshapen),
            )
            if names
        ]
        raise VerifyError(f"--weights {path} does not match {model}: keys " + "; ".join(parts))
    module.load_state_dict(read_state_dict(path, max_memory), strict=True)


def _first(names: list[str], count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return shown + (", ..." if len(names) > count else "")
