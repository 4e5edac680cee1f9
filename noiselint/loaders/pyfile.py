"""Load models from a Python file: ``model.py`` or ``model.py:NAME``.

The file is imported (its directory importable, so sibling imports work) with modules built on the
meta device and their construction lines recorded. NAME may be an ``nn.Module`` instance, an
``nn.Module`` subclass that constructs without arguments, or a zero-argument callable returning a
module. Without NAME: the conventional names first, otherwise the root ``nn.Module`` classes of the
file (those no other class there uses as a submodule) that construct without arguments.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from noiselint.errors import LoadError, NoiselintError, one_line
from noiselint.graph import Preprocessing
from noiselint.loaders import LoadedModel

CONVENTIONAL_NAMES = ("model", "MODEL", "build_model", "create_model", "get_model")


class NoModelError(LoadError):
    """The file defines no model noiselint can build (hook mode skips such files quietly)."""


def load_python_file(path: str, name: str | None, *, device: str = "meta") -> list[LoadedModel]:
    """Import ``path`` and build the named model, or every root model it defines."""
    import torch

    from noiselint.meta import skip_meta_init
    from noiselint.sites import recording

    folder = str(Path(path).resolve().parent)
    with recording(prefer=[folder]) as sites, torch.device(device), skip_meta_init(), _importable(folder):
        module = _import_file(path)
        preprocessing = _file_preprocessing(path, module)
        if name is not None:
            built = [(name, _build(path, module, name))]
        else:
            built = _discover(path, module)
    return [
        LoadedModel(
            name=f"{path}:{attr}",
            target=f"{path}:{attr}",
            module=model,
            preprocessing=_model_preprocessing(model, preprocessing),
            sites=sites,
        )
        for attr, model in built
    ]


@contextmanager
def _importable(folder: str):
    """The model's folder on ``sys.path``, and no bytecode written for what it imports.

    Python trusts a ``.pyc`` whose source has the same size and modification second, so a file
    edited twice within a second (``MaxPool2d`` -> ``AvgPool2d``) could run stale: writing none keeps
    a re-lint after an edit honest.
    """
    sys.path.insert(0, folder)
    write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        yield
    finally:
        sys.dont_write_bytecode = write_bytecode
        if folder in sys.path:
            sys.path.remove(folder)


def _import_file(path: str) -> ModuleType:
    resolved = str(Path(path).resolve())
    module_name = "noiselint_target_" + hashlib.sha1(resolved.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise LoadError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise LoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except SystemExit as exc:
        raise LoadError(f"{path}: importing it called sys.exit({exc.code})") from None
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise LoadError(f"{path}: importing it failed: {one_line(exc)}") from None
    return module


def _is_module_class(value: Any) -> bool:
    import torch.nn as nn

    return inspect.isclass(value) and issubclass(value, nn.Module)


def _build(path: str, module: ModuleType, name: str) -> Any:
    """Build the module named ``name``: an instance, a class, or a zero-argument factory."""
    import torch.nn as nn

    if not hasattr(module, name):
        found = ", ".join(_candidates(module)) or "none"
        raise LoadError(f"{path}: no {name!r} in the file (models and factories found: {found})")
    value = getattr(module, name)
    if isinstance(value, nn.Module):
        return value
    if isinstance(value, dict):
        raise LoadError(
            f"{path}:{name} is a dict (a state_dict?), not a model: name the nn.Module class or a "
            f"factory that builds it, and pass weights to --verify with --weights"
        )
    if not callable(value):
        raise LoadError(f"{path}:{name} is of type {type(value).__name__}, not an nn.Module or a factory")
    missing = _required_parameters(value)
    if missing:
        raise LoadError(
            f"{path}:{name} needs arguments ({', '.join(missing)}): add a zero-argument factory, "
            f"e.g. `def build_model(): return {name}(...)`, and lint {path}:build_model"
        )
    try:
        built = value()
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        raise LoadError(f"{path}:{name}() failed: {one_line(exc)}") from None
    except SystemExit as exc:
        raise LoadError(f"{path}:{name}() called sys.exit({exc.code!r})") from None
    if not isinstance(built, nn.Module):
        raise LoadError(f"{path}:{name}() returned a {type(built).__name__}, not an nn.Module")
    return built


def _required_parameters(factory: Any) -> list[str]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _candidates(module: ModuleType) -> list[str]:
    """Names in the file that could be linted, with what each needs."""
    import torch.nn as nn

    names = []
    for attr, value in vars(module).items():
        if isinstance(value, nn.Module):
            names.append(attr)
        elif _is_module_class(value) and value.__module__ == module.__name__:
            missing = _required_parameters(value)
            names.append(f"{attr} (needs {', '.join(missing)})" if missing else attr)
        elif attr in CONVENTIONAL_NAMES and callable(value):
            names.append(f"{attr}()")
    return names


def _discover(path: str, module: ModuleType) -> list[tuple[str, Any]]:
    for name in CONVENTIONAL_NAMES:
        if hasattr(module, name):
            return [(name, _build(path, module, name))]
    classes = {
        attr: value
        for attr, value in vars(module).items()
        if _is_module_class(value) and value.__module__ == module.__name__ and not _required_parameters(value)
    }
    built, failures = {}, {}
    for attr, cls in classes.items():
        try:
            built[attr] = cls()
        except Exception as exc:  # noqa: BLE001 - a class that cannot build alone may be a building block
            failures[attr] = one_line(exc)
    used = {type(sub) for model in built.values() for sub in list(model.modules())[1:]}
    roots = [(attr, model) for attr, model in built.items() if type(model) not in used]
    if not roots and failures:
        raise LoadError(f"{path}: no model could be built: "
                        + "; ".join(f"{attr}() failed: {error}" for attr, error in failures.items()))
    if not roots:
        found = ", ".join(_candidates(module)) or "no nn.Module classes or instances"
        raise NoModelError(
            f"{path}: no model to lint (found: {found}); name one as {path}:NAME or define "
            f"`model = YourNet(...)` in the file"
        )
    return roots


def _as_size(value: Any) -> tuple[int, int, int] | None:
    """``INPUT_SIZE`` as (C, H, W): it may be H, (H, W) or (C, H, W)."""
    if value is None:
        return None
    if isinstance(value, int):
        return (3, value, value)
    value = tuple(int(v) for v in value)
    if len(value) not in (2, 3):
        raise ValueError(f"expected H, (H, W) or (C, H, W), got {len(value)} numbers")
    return value if len(value) == 3 else (3, *value)


def _file_preprocessing(path: str, module: ModuleType) -> Preprocessing:
    """MEAN / STD / INPUT_SIZE constants, or a torchvision ``Normalize`` among the file's globals."""
    try:
        return _constants_preprocessing(module)
    except (TypeError, ValueError, NoiselintError) as exc:
        raise LoadError(f"{path}: bad MEAN / STD / INPUT_SIZE: {exc}") from None


def _constants_preprocessing(module: ModuleType) -> Preprocessing:
    mean = getattr(module, "MEAN", None)
    std = getattr(module, "STD", None)
    origin = "module constants"
    if mean is None or std is None:
        for value in vars(module).values():
            normalize = _find_normalize(value)
            if normalize is not None:
                mean, std = normalize.mean, normalize.std
                origin = "torchvision Normalize in the module"
                break
    size = _as_size(getattr(module, "INPUT_SIZE", None))
    if mean is None and std is None and size is None:
        return Preprocessing()
    return Preprocessing(
        mean=tuple(float(v) for v in mean) if mean is not None else None,
        std=tuple(float(v) for v in std) if std is not None else None,
        input_size=size,
        origin=origin,
    )


def _find_normalize(value: Any) -> Any:
    if type(value).__name__ == "Normalize" and hasattr(value, "mean") and hasattr(value, "std"):
        return value
    for inner in getattr(value, "transforms", []) or []:  # a transforms.Compose
        if type(inner).__name__ == "Normalize":
            return inner
    return None


def _model_preprocessing(model: Any, from_file: Preprocessing) -> Preprocessing:
    """A timm ``pretrained_cfg`` on the built model, overridden by what the file states."""
    from noiselint.loaders.zoo import preprocessing_from_cfg

    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("mean") is not None:
        return preprocessing_from_cfg(cfg, "timm pretrained_cfg on the model").merged(from_file)
    return from_file
