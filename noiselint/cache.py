"""A results cache, so an unchanged model re-lints in a fraction of a second without importing torch.

An entry holds the :class:`~noiselint.findings.ModelReport` records of one target, as JSON. Its file
name is a hash of what the result depends on that is known before linting:

* the engine: the noiselint version, the source of the noiselint package, of the rule folders
  (built-in and ``rules_dirs``) and the ``noiselint.rules`` plugins' names and versions;
* the effective configuration: every :class:`~noiselint.engine.Options` field except ``fail_on``
  (which only sets the exit code), and the working directory (report paths are relative to it);
* the target: its string; for ``timm:`` the timm and torch versions, for ``torchvision:`` the
  torchvision and torch versions, for files the torch, torchvision and timm versions (a model file
  may use any of them) or the onnx version.

Inside, the entry records the content hash (sha256) of every file the result came from: the model
file, and for Python files the project-local modules its load imported (modules whose files lie
under the model's folder or the working directory, outside installed packages). The entry is used
only when all of them still hash the same. Reports with a load error are never stored: they may
come from the environment (a package not installed yet). Expansions of ``timm:`` wildcards are
cached too, keyed on the timm version, so a warm ``timm:resnet*`` run never imports timm.

An entry that cannot be read back exactly (not JSON, nested too deeply, a field of the wrong type
or shape, a dependency that is not a regular file) is a miss, and it is deleted.

The folder defaults to ``.noiselint_cache`` in the working directory (like ``.ruff_cache``), with a
``.gitignore`` so it is never committed; ``--cache-dir`` or ``NOISELINT_CACHE_DIR`` move it.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib.util
import json
import os
import sys
import sysconfig
import tempfile
import types
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from noiselint.errors import NoiselintError
from noiselint.findings import ModelReport
from noiselint.loaders import kind_of, split_python_target
from noiselint.readers import load_json, open_regular, read_bytes

DEFAULT_DIR = ".noiselint_cache"
FORMAT = 1  # bump when the entry layout changes


# --------------------------------------------------------------------------- (de)serialization


def to_dict(report: ModelReport) -> dict[str, Any]:
    """``report`` as JSON-ready data; :func:`from_dict` gives back an equal record."""
    return _plain(report)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def from_dict(data: dict[str, Any]) -> ModelReport:
    """The :class:`ModelReport` that :func:`to_dict` wrote."""
    return _build(ModelReport, data)


def _build(cls: type, data: Any) -> Any:
    if not isinstance(data, dict) or not set(data) <= {f.name for f in dataclasses.fields(cls)}:
        raise TypeError(f"not a {cls.__name__} record")
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls)
                  if f.name in data})


def _convert(hint: Any, value: Any) -> Any:
    """``value`` as the type ``hint`` names: dataclasses, enums and tuples rebuilt from JSON.

    ``TypeError`` or ``ValueError`` when the value is not of that type: an entry is read back exactly
    or not at all. ``Any`` (a verification, never cached) admits only ``None``.
    """
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value)
    if origin is typing.Literal:
        if value not in typing.get_args(hint) or not isinstance(value, str):
            raise ValueError(f"{value!r} is not one of {typing.get_args(hint)}")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if hint in _SCALARS and isinstance(value, _SCALARS[hint]) and (hint is bool or not isinstance(value, bool)):
        return value
    raise TypeError(f"expected {getattr(hint, '__name__', hint)}, got {type(value).__name__}")


_SCALARS: dict[Any, type | tuple[type, ...]] = {str: str, int: int, float: (int, float), bool: bool}


# --------------------------------------------------------------------------- hashing


def file_hash(path: str | os.PathLike) -> str | None:
    """sha256 of a regular file's content, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with os.fdopen(open_regular(path), "rb") as stream:  # never a FIFO or a device
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    return digest.hexdigest()


def _tree_hash(digest: Any, folder: Path) -> None:
    for path in sorted(folder.rglob("*.py")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes())


def package_version(name: str) -> str | None:
    """An installed distribution's version, read without importing it (None when absent)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    site = Path(spec.origin).parent.parent
    try:
        for entry in os.scandir(site):
            if entry.name.startswith(name + "-") and entry.name.endswith(".dist-info"):
                return entry.name[len(name) + 1:-len(".dist-info")]
    except OSError:
        pass
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def engine_fingerprint(rules_dirs: Sequence[str] = ()) -> str:
    """Hash of what turns a model into a report: noiselint's source, its rules and rule plugins."""
    from importlib.metadata import entry_points

    from noiselint import __version__, registry

    digest = hashlib.sha256(f"noiselint {__version__}\0".encode())
    for folder in (Path(__file__).resolve().parent, registry.builtin_rules_dir(), *map(Path, rules_dirs)):
        digest.update(str(folder.resolve()).encode() + b"\0")
        if folder.is_dir():
            _tree_hash(digest, folder)
    for entry in sorted(entry_points(group="noiselint.rules"), key=lambda e: e.name):
        dist = getattr(entry, "dist", None)
        digest.update(f"{entry.name}={entry.value} {dist.version if dist else ''}\0".encode())
    return digest.hexdigest()


def options_key(options: Any) -> str:
    """Every option that changes a model's report, as canonical JSON (``fail_on`` only sets the exit code)."""
    values = {f.name: _plain(getattr(options, f.name)) for f in dataclasses.fields(options) if f.name != "fail_on"}
    return json.dumps(values, sort_keys=True, default=repr)


def _versions(kind: str) -> dict[str, str | None]:
    names = {"timm": ("timm", "torch"), "torchvision": ("torchvision", "torch"), "onnx": ("onnx",),
             "python": ("torch", "torchvision", "timm"), "hf": ("transformers", "torch")}[kind]
    return {name: package_version(name) for name in names}


# --------------------------------------------------------------------------- local imports


def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.add(str(Path(__file__).resolve().parent))
    from noiselint import registry

    roots.add(str(registry.builtin_rules_dir()))
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots)


def _is_local(path: str, roots: Sequence[str], installed: Sequence[str]) -> bool:
    if not path.startswith(roots) or path.startswith(installed):
        return False
    parts = Path(path).parts
    return "site-packages" not in parts and "dist-packages" not in parts


@contextmanager
def local_imports(roots: Sequence[str]) -> Iterator[set[str]]:
    """Collect the files of project-local modules first imported in the block, then forget them.

    A module is local when its file lies under one of ``roots`` and outside installed packages and
    noiselint itself. They are dropped from ``sys.modules`` at the end, so the next target linted
    in the same process imports its own copy (and is seen importing it).
    """
    before = set(sys.modules)
    files: set[str] = set()
    try:
        yield files
    finally:
        prefixes = tuple(os.path.join(os.path.realpath(r), "") for r in roots)
        installed = _installed_roots()
        for name in set(sys.modules) - before:
            path = getattr(sys.modules[name], "__file__", None)
            if not isinstance(path, str) or not os.path.isabs(path):  # torch._ops has __file__ "_ops.py"
                continue
            path = os.path.realpath(path)
            if _is_local(path, prefixes, installed):
                files.add(path)
                del sys.modules[name]


def dependencies(target: str, local_files: set[str]) -> dict[str, str] | None:
    """{file: sha256} a target's result depends on; None when a file cannot be read (do not cache)."""
    kind = kind_of(target)
    files = set(local_files) if kind == "python" else set()
    if kind in ("python", "onnx"):
        files.add(os.path.realpath(split_python_target(target)[0]))
    if kind == "hf":
        from noiselint.loaders.hf import dependency_files

        hf_files = dependency_files(target)
        if hf_files is None:
            return None
        files.update(hf_files)
    hashes = {path: file_hash(path) for path in sorted(files)}
    return None if None in hashes.values() else hashes


def import_roots(target: str) -> list[str]:
    """Folders whose modules count as the target's own: its package root (or folder) and the working directory."""
    roots = [os.getcwd()]
    if kind_of(target) == "python":
        from noiselint.loaders.pyfile import module_identity

        try:
            roots.append(module_identity(split_python_target(target)[0])[0])
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13): the loader reports it
            pass
    return roots


# --------------------------------------------------------------------------- the cache


class Cache:
    """Entries in one folder for one engine and configuration; counts its hits and misses."""

    def __init__(self, folder: str | os.PathLike, options: Any) -> None:
        self.folder = Path(folder)
        digest = hashlib.sha256()
        for part in (str(FORMAT), engine_fingerprint(options.rules_dirs), options_key(options), os.getcwd()):
            digest.update(part.encode() + b"\0")
        self._base = digest.hexdigest()
        self.hits = 0
        self.misses = 0

    def _path(self, *key: Any) -> Path:
        digest = hashlib.sha256(json.dumps([self._base, *key], default=str).encode())
        return self.folder / f"{digest.hexdigest()[:40]}.json"

    def _entry_path(self, target: str) -> Path | None:
        kind = kind_of(target)
        if kind == "checkpoint":
            return None
        location = os.path.realpath(split_python_target(target)[0]) if kind in ("python", "onnx") else None
        return self._path("target", target, location, _versions(kind))

    def lookup(self, target: str) -> list[ModelReport] | None:
        """The cached reports of ``target`` when every file they came from is unchanged."""
        path = self._entry_path(target)
        entry = _read(path) if path else None
        reports = None
        if entry is not None:
            try:
                reports = _reports(entry)
            except (KeyError, TypeError, ValueError, NoiselintError):
                _remove(path)
        if reports is None:
            self.misses += 1
        else:
            self.hits += 1
        return reports

    def store(self, target: str, reports: Sequence[ModelReport], deps: dict[str, str] | None) -> None:
        """Record ``reports`` unless a load failed, a file could not be hashed or a report was verified."""
        path = self._entry_path(target)
        if path is None or deps is None or any(not r.ok or r.verification is not None for r in reports):
            return
        _write(path, {"target": target, "deps": deps, "models": [to_dict(r) for r in reports]})

    def expansion(self, target: str) -> list[str] | None:
        """The targets a ``timm:`` wildcard expanded to with this timm version, when known."""
        entry = _read(self._path("expand", target, package_version("timm")))
        names = entry.get("names") if isinstance(entry, dict) else None
        return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None

    def store_expansion(self, target: str, names: Sequence[str]) -> None:
        _write(self._path("expand", target, package_version("timm")), {"target": target, "names": list(names)})


def _reports(entry: Any) -> list[ModelReport] | None:
    """An entry's reports when its files still hash the same, else None; an error when it is malformed."""
    deps, models = entry["deps"], entry["models"]
    if not (isinstance(deps, dict) and all(isinstance(h, str) for h in deps.values()) and isinstance(models, list)):
        raise TypeError("not a cache entry")
    reports = [from_dict(m) for m in models]
    return reports if all(file_hash(f) == h for f, h in deps.items()) else None


def _read(path: Path) -> Any:
    """The JSON in ``path``; None when it is missing, unreadable or invalid (an invalid one is deleted)."""
    try:
        return load_json(read_bytes(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        _remove(path)
        return None


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # a folder in its place, or a read-only cache: it stays a miss
        pass


def _write(path: Path, data: Any) -> None:
    """Write atomically; a cache that cannot be written is skipped silently (it only costs speed)."""
    temporary = None
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / ".gitignore").write_text("# created by noiselint\n*\n", encoding="utf-8")
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
