"""Turn a target string into models: Python files, timm and torchvision names, ONNX files, Hugging Face models.

``load(target)`` returns :class:`LoadedModel` records. Torch models are built on the meta device
with their construction sites recorded; ONNX files are read straight into a graph. Every failure is a
:class:`~noiselint.errors.LoadError` with a one-line message.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noiselint.errors import LoadError
from noiselint.graph import ModelGraph, Preprocessing, SourceLocation

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pkl")


@dataclass
class LoadedModel:
    """One model ready to be read into a graph: a torch module, or a graph already read (ONNX)."""

    name: str
    target: str
    module: Any = None
    graph: ModelGraph | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    sites: Mapping[Any, SourceLocation] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Values of small tensors the meta device lost (see :mod:`noiselint.build`), or None.
    constants: Any = None
    #: (C, H, W) the model states for itself (an ``img_size`` attribute, a constructor default), and where from.
    size_hint: tuple[tuple[int, int, int], str] | None = None
    weights: str | None = None  # where real weights came from, when the loader loaded some (verify)


def kind_of(target: str) -> str:
    """``timm``, ``torchvision``, ``hf``, ``onnx`` or ``python``, from the target's prefix or suffix.

    A folder with a ``config.json`` (what ``save_pretrained`` writes) is a Hugging Face model.
    """
    if target.startswith("timm:"):
        return "timm"
    if target.startswith("hf:") or os.path.isfile(os.path.join(target, "config.json")):
        return "hf"
    if target.startswith("torchvision:"):
        return "torchvision"
    path = split_python_target(target)[0]
    if path.lower().endswith(".onnx"):
        return "onnx"
    if path.lower().endswith(CHECKPOINT_SUFFIXES):
        return "checkpoint"
    return "python"


def split_python_target(target: str) -> tuple[str, str | None]:
    """``path.py:NAME`` -> (path, NAME); a bare path -> (path, None)."""
    path, sep, name = target.rpartition(":")
    if sep and path and name.isidentifier():
        return path, name
    if sep and path.endswith(".py") and Path(path).is_file():
        raise LoadError(f"{target}: {name!r} after ':' is not a Python name (use {path}:NAME)")
    return target, None


def target_file(target: str) -> str | None:
    """The file a Python or ONNX target names (``net.py:Net`` -> ``net.py``), when it exists."""
    if kind_of(target) not in ("python", "onnx"):
        return None
    path = split_python_target(target)[0]
    return path if Path(path).is_file() else None


def load(target: str, *, device: str = "meta", max_memory: int | None = None) -> list[LoadedModel]:
    """All models named by ``target`` (a wildcard or a file may name several); an ONNX file's weight
    loaders refuse to read more than ``max_memory`` bytes (default: :data:`~noiselint.memory.DEFAULT_MAX_MEMORY`)."""
    kind = kind_of(target)
    if kind == "onnx":
        from noiselint.loaders.onnx_loader import load_onnx

        path = split_python_target(target)[0]
        graph = load_onnx(path, max_memory=max_memory)
        return [LoadedModel(name=target, target=target, graph=graph, preprocessing=graph.preprocessing)]
    if kind == "checkpoint":
        raise LoadError(
            f"{target}: a checkpoint holds weights, not an architecture; lint the Python file that "
            f"defines the model (and pass the checkpoint to --verify with --weights)"
        )
    if kind == "timm":
        from noiselint.loaders.zoo import load_timm

        return load_timm(target, device=device)
    if kind == "torchvision":
        from noiselint.loaders.zoo import load_torchvision

        return load_torchvision(target, device=device)
    if kind == "hf":
        from noiselint.loaders.hf import load_hf

        return load_hf(target, device=device)
    from noiselint.loaders.pyfile import load_python_file

    path, name = split_python_target(target)
    if not Path(path).exists():
        raise missing(path)
    return load_python_file(path, name, device=device)


def missing(path: str) -> LoadError:
    """The one-line error for a path that does not exist: a symlink loop (ELOOP) or no such file."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return LoadError(f"{path}: a symlink loop (ELOOP: too many levels of symbolic links); "
                             "point the link at a real file")
        if exc.errno != errno.ENOENT:
            return LoadError(f"{path}: cannot read it ({exc.strerror})")
    return LoadError(f"{path}: no such file")


def expand(target: str) -> list[str]:
    """Wildcard timm targets expand to one target per matching model; others stay as they are."""
    if target.startswith("timm:") and any(c in target for c in "*?["):
        from noiselint.loaders.zoo import timm_names

        return [f"timm:{name}" for name in timm_names(target[len("timm:"):])]
    return [target]
