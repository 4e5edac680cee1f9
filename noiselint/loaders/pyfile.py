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
import weakref
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from noiselint.errors import LoadError, NoiselintError, one_line
from noiselint.graph import Preprocessing
from noiselint.loaders import LoadedModel

if TYPE_CHECKING:
    from noiselint.build import Built

CONVENTIONAL_NAMES = ("model", "MODEL", "build_model", "create_model", "get_model")


class NoModelError(LoadError):
    """The file defines no model noiselint can build (hook mode skips such files quietly)."""


def load_python_file(path: str, name: str | None, *, device: str = "meta") -> list[LoadedModel]:
    """Import ``path`` and build the named model, or every root model it defines."""
    from noiselint.build import constant_values
    from noiselint.sites import recording

    root, module_name = module_identity(path)
    with recording(prefer=[root]) as sites, constant_values() as constants, _constructor_sizes() as sizes, \
            _importable(root):
        module, imported_on = _import(path, module_name, device)
        preprocessing = _file_preprocessing(path, module, name)
        if name is not None:
            built = [(name, _build(path, module, name, imported_on, constants))]
        else:
            built = _discover(path, module, imported_on, constants)
    return [
        LoadedModel(
            name=f"{path}:{attr}",
            target=f"{path}:{attr}",
            module=result.model,
            preprocessing=_model_preprocessing(result.model, preprocessing),
            sites=sites,
            notes=[result.note] if result.note else [],
            constants=constants,
            size_hint=size_hint(result.model, getattr(module, attr, None), sizes.get(result.model)),
        )
        for attr, result in built
    ]


def module_identity(path: str) -> tuple[str, str | None]:
    """(the folder to import from, the file's dotted module name) for a file inside a package.

    As ``python -m`` would: the package root is the highest folder upwards with an ``__init__.py``,
    so relative imports (``from .layers import ...``) and absolute ones from the repository root
    (``import dinov2.layers``) both resolve. A file outside any package: (its folder, None).
    """
    file = Path(path).resolve()
    parts = [] if file.stem == "__init__" else [file.stem]
    folder = file.parent
    while (folder / "__init__.py").is_file() and folder.name.isidentifier():
        parts.insert(0, folder.name)
        folder = folder.parent
    if not parts or folder == file.parent or not all(p.isidentifier() for p in parts):
        return str(file.parent), None
    return str(folder), ".".join(parts)


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


def _import(path: str, module_name: str | None, device: str) -> tuple[ModuleType, str]:
    """Import the file on ``device``; when that fails on the meta device, once more on the CPU.

    Returns the module and the device it was imported on (``cpu`` after the retry).
    """
    import torch

    from noiselint.build import cpu_build
    from noiselint.meta import skip_meta_init

    try:
        with torch.device(device), skip_meta_init():
            return _import_file(path, module_name), device
    except LoadError:
        if device != "meta":
            raise
    with torch.device("cpu"), cpu_build(path):
        return _import_file(path, module_name), "cpu-fallback"


def _import_file(path: str, module_name: str | None) -> ModuleType:
    resolved = str(Path(path).resolve())
    if module_name is None:
        name = "noiselint_target_" + hashlib.sha1(resolved.encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, resolved)
        if spec is None or spec.loader is None:
            raise LoadError(f"{path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        run = partial(spec.loader.exec_module, module)
    else:
        _forget_other_copies(module_name, resolved)
        module = None
        run = partial(importlib.import_module, module_name)
    try:
        imported = run()
    except SyntaxError as exc:
        raise LoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except SystemExit as exc:
        raise LoadError(f"{path}: importing it called sys.exit({exc.code})") from None
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        if isinstance(exc, KeyboardInterrupt):
            raise
        if module_name is not None:
            _forget_package(module_name)
        raise LoadError(f"{path}: importing it failed: {one_line(exc)}") from None
    return module if module is not None else imported


def _forget_other_copies(module_name: str, resolved: str) -> None:
    """Drop a same-named package imported from elsewhere (another repository's ``models``), or a failed try."""
    top = module_name.split(".")[0]
    loaded = sys.modules.get(module_name)
    if loaded is not None and getattr(loaded, "__file__", None) == resolved:
        _forget_package(module_name)  # a retry after a failed meta import runs the file again
        return
    package = sys.modules.get(top)
    if package is not None and not str(getattr(package, "__file__", "") or "").startswith(
            str(Path(resolved).parents[module_name.count(".") - 1])):
        _forget_package(top)


def _forget_package(name: str) -> None:
    top = name.split(".")[0]
    for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
        del sys.modules[key]


def _is_module_class(value: Any) -> bool:
    import torch.nn as nn

    return inspect.isclass(value) and issubclass(value, nn.Module)


def _build(path: str, module: ModuleType, name: str, device: str, constants: Any) -> Built:
    """Build the module named ``name``: an instance, a class, or a zero-argument factory."""
    import torch.nn as nn

    from noiselint.build import Built, build, on_meta

    if not hasattr(module, name):
        found = ", ".join(_candidates(module)) or "none"
        raise LoadError(f"{path}: no {name!r} in the file (models and factories found: {found})")
    value = getattr(module, name)
    if isinstance(value, nn.Module):
        return on_meta(value, constants) if device == "cpu-fallback" else Built(value, device)
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
        built = build(value, f"{path}:{name}", constants, device=_build_device(device))
    except NoiselintError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        raise LoadError(f"{path}:{name}() failed: {one_line(exc)} (noiselint calls it with no arguments: fix that "
                        f"error, or lint a zero-argument factory that builds the model as you use it)") from None
    except SystemExit as exc:
        raise LoadError(f"{path}:{name}() called sys.exit({exc.code!r})") from None
    if not isinstance(built.model, nn.Module):
        raise LoadError(f"{path}:{name}() returned a {type(built.model).__name__}, not an nn.Module")
    return built


def _build_device(imported_on: str) -> str:
    """Models are built on the meta device (with its CPU fallback) even when the import needed the CPU."""
    return "meta" if imported_on == "cpu-fallback" else imported_on


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


def _discover(path: str, module: ModuleType, device: str, constants: Any) -> list[tuple[str, Built]]:
    from noiselint.build import build

    for name in CONVENTIONAL_NAMES:
        if hasattr(module, name):
            return [(name, _build(path, module, name, device, constants))]
    classes = {
        attr: value
        for attr, value in vars(module).items()
        if _is_module_class(value) and value.__module__ == module.__name__ and not _required_parameters(value)
    }
    built, failures = {}, {}
    for attr, cls in classes.items():
        try:
            built[attr] = build(cls, f"{path}:{attr}", constants, device=_build_device(device))
        except Exception as exc:  # noqa: BLE001 - a class that cannot build alone may be a building block
            failures[attr] = one_line(exc)
    used = {type(sub) for result in built.values() for sub in list(result.model.modules())[1:]}
    roots = [(attr, result) for attr, result in built.items() if type(result.model) not in used]
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


def _file_preprocessing(path: str, module: ModuleType, name: str | None) -> Preprocessing:
    """MEAN / STD / INPUT_SIZE constants, a torchvision ``Normalize``, or a ``default_cfg``-style dict."""
    try:
        return _constants_preprocessing(module, name)
    except (TypeError, ValueError, NoiselintError) as exc:
        raise LoadError(f"{path}: bad MEAN / STD / INPUT_SIZE: {exc}") from None


def _constants_preprocessing(module: ModuleType, name: str | None) -> Preprocessing:
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
    if size is None:
        size = next((crop for crop in map(_center_crop, vars(module).values()) if crop is not None), None)
        if size is not None:
            crop = "torchvision CenterCrop in the module"
            origin = f"{origin}; input size from a {crop}" if mean is not None else crop
    constants = None
    if mean is not None or std is not None or size is not None:
        constants = Preprocessing(
            mean=tuple(float(v) for v in mean) if mean is not None else None,
            std=tuple(float(v) for v in std) if std is not None else None,
            input_size=size,
            origin=origin,
        )
    config = _config_dict_preprocessing(module, name)
    if config is None:
        return constants or Preprocessing()
    return config.merged(constants) if constants is not None else config


#: Module-level dicts where model files state their pretrained configuration (timm, pretrainedmodels).
_CONFIG_DICTS = ("default_cfg", "default_cfgs", "pretrained_cfg", "pretrained_cfgs", "pretrained_settings")


def _config_dict_preprocessing(module: ModuleType, name: str | None) -> Preprocessing | None:
    """Mean, std and input size from a ``default_cfgs`` / ``pretrained_settings`` dict in the file.

    The entry whose key names the linted model wins; otherwise the entries must agree.
    """
    from noiselint.loaders.zoo import preprocessing_from_cfg

    for dict_name in _CONFIG_DICTS:
        value = getattr(module, dict_name, None)
        entries = list(_cfg_entries(value, dict_name, depth=0)) if isinstance(value, dict) else []
        if not entries:
            continue
        wanted = (name or "").lower()
        named = [(key, cfg) for key, cfg in entries if wanted and wanted in key.lower().split("/")[1:2]]
        chosen = named or entries
        distinct = {tuple(_tuple(cfg.get(k)) for k in ("mean", "std", "input_size")) for _, cfg in chosen}
        if len(distinct) == 1:
            key, cfg = chosen[0]
            return preprocessing_from_cfg(_numbers_only(cfg), f"{key} in the file")
    return None


def _cfg_entries(value: dict, path: str, depth: int) -> Any:
    """(``dict/key/...``, cfg) for nested dicts that state a mean and a std."""
    if "mean" in value and "std" in value:
        yield path, value
        return
    if depth >= 3:
        return
    for key, inner in value.items():
        if isinstance(inner, dict):
            yield from _cfg_entries(inner, f"{path}/{key}", depth + 1)


def _tuple(value: Any) -> tuple | None:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _numbers_only(cfg: dict) -> dict:
    """The cfg keys noiselint reads, when they hold numbers (a cfg may say ``input_size=None``).

    Mean and std stated on another pixel range (pretrainedmodels' ``input_range: [0, 255]``) are
    rescaled to [0, 1] pixels: BNInception's std 1 on 0..255 is std 1/255.
    """
    keys = ("mean", "std", "input_size", "test_input_size", "crop_pct")
    numbers = {k: cfg[k] for k in keys if isinstance(cfg.get(k), (list, tuple, int, float)) and not isinstance(
        cfg.get(k), bool)}
    span = cfg.get("input_range")
    if isinstance(span, (list, tuple)) and len(span) == 2 and all(isinstance(v, (int, float)) for v in span) \
            and span[1] - span[0] > 1:
        scale = float(span[1] - span[0])
        for key in ("mean", "std"):
            if isinstance(numbers.get(key), (list, tuple)):
                numbers[key] = [float(v) / scale for v in numbers[key]]
    return numbers


def _compose_step(value: Any, name: str) -> Any:
    """The first step of class ``name`` in a ``transforms.Compose`` (not the transforms module)."""
    inner = getattr(value, "transforms", None)
    if not isinstance(inner, (list, tuple)):
        return None
    return next((t for t in inner if type(t).__name__ == name), None)


def _center_crop(value: Any) -> tuple[int, int, int] | None:
    """(3, H, W) of the ``CenterCrop`` in a module-level ``transforms.Compose``: the model's input."""
    size = getattr(_compose_step(value, "CenterCrop"), "size", None)
    if isinstance(size, int):
        size = (size, size)
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return (3, *size)
    return None


def _find_normalize(value: Any) -> Any:
    if type(value).__name__ == "Normalize" and hasattr(value, "mean") and hasattr(value, "std"):
        return value
    return _compose_step(value, "Normalize")


#: Attributes and constructor parameters that state a model's input size.
_SIZE_NAMES = ("img_size", "image_size", "input_size", "in_size", "input_resolution", "resolution", "img_res")


def size_hint(model: Any, factory: Any, built_with: dict[str, Any] | None = None
              ) -> tuple[tuple[int, int, int], str] | None:
    """The input size a model states for itself, and where: the constructor's arguments, an attribute,
    then a constructor default."""
    from noiselint.engine import input_channels

    channels = input_channels(model)
    for attr, value in (built_with or {}).items():
        side = _sides(value)
        if side:
            return (channels, *side), f"the model's constructor argument {attr}={value!r}"
    for owner, label in ((model, "the model's"), (getattr(model, "patch_embed", None), "its patch_embed's")):
        for attr in _SIZE_NAMES:
            side = _sides(getattr(owner, attr, None)) if owner is not None else None
            if side:
                return (channels, *side), f"{label} {attr} attribute"
    for function in (factory, type(model)):
        if not callable(function):
            continue
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            continue
        for attr in _SIZE_NAMES:
            side = _sides(parameters[attr].default) if attr in parameters else None
            if side:
                label = getattr(function, "__name__", "the constructor")
                return (channels, *side), f"the default {attr}={parameters[attr].default!r} of {label}()"
    return None


@contextmanager
def _constructor_sizes():
    """Maps each module built in the block to the size-named arguments its constructor got
    (``ViT(image_size=256)``), read from the outermost ``__init__`` frame of that module."""
    import torch.nn as nn

    sizes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    original = nn.Module.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        frame, outer = sys._getframe(1), None
        while frame is not None and frame.f_locals.get("self") is self:
            outer, frame = frame, frame.f_back
        if outer is not None:
            found = {name: outer.f_locals[name] for name in _SIZE_NAMES if name in outer.f_locals}
            if found:
                sizes[self] = found

    nn.Module.__init__ = init
    try:
        yield sizes
    finally:
        nn.Module.__init__ = original


def _sides(value: Any) -> tuple[int, int] | None:
    """(H, W) from H, (H, W) or (C, H, W), when plausible for an image."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return None
    h, w = value[-2:]
    return (h, w) if 8 <= h <= 8192 and 8 <= w <= 8192 else None


def _model_preprocessing(model: Any, from_file: Preprocessing) -> Preprocessing:
    """A timm ``pretrained_cfg`` on the built model, overridden by what the file states."""
    from noiselint.loaders.zoo import preprocessing_from_cfg

    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("mean") is not None:
        return preprocessing_from_cfg(cfg, "timm pretrained_cfg on the model").merged(from_file)
    return from_file
