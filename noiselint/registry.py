"""Discover rules: the built-in ``rules/`` folder, extra folders, and ``noiselint.rules`` entry points.

Rule folders are loaded as plain modules (named ``noiselint_rules.<stem>``), never installed as a
package called ``rules``. A duplicate code fails loudly.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from noiselint.errors import UsageError, brief, one_line
from noiselint.rule import Rule


def builtin_rules_dir() -> Path:
    """``rules/`` next to the package in a checkout or editable install, ``noiselint/_rules`` in a wheel."""
    package = Path(__file__).resolve().parent
    shipped = package / "_rules"
    return shipped if shipped.is_dir() else package.parent / "rules"


def _rules_in_module(module) -> list[type[Rule]]:
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, Rule) and value is not Rule
        and value.__module__ == module.__name__ and not inspect.isabstract(value)
    ]


def _load_folder(folder: Path) -> list[type[Rule]]:
    try:
        is_folder = folder.is_dir()
    except OSError as exc:  # a name too long for the file system
        raise UsageError(f"{brief(str(folder))}: not a rules folder: {exc.strerror}") from None
    if not is_folder:
        raise UsageError(f"{folder}: no such rules folder")
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"noiselint_rules.{folder.name}.{path.stem}"
        module = sys.modules.get(name)
        if module is None or getattr(module, "__file__", None) != str(path):
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - a broken rule file is a usage error
                raise UsageError(f"{path}: could not load rules: {one_line(exc)}") from None
            sys.modules[name] = module
        found.extend(_rules_in_module(module))
    return found


def _entry_point_rules() -> list[type[Rule]]:
    from importlib.metadata import entry_points

    found = []
    for entry in entry_points(group="noiselint.rules"):
        try:
            loaded = entry.load()
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"rule plugin {entry.name!r} failed to load: {one_line(exc)}") from None
        if inspect.ismodule(loaded):
            found.extend(_rules_in_module(loaded))
        elif inspect.isclass(loaded) and issubclass(loaded, Rule):
            found.append(loaded)
    return found


def discover(rules_dirs: Sequence[str | Path] = (), *, plugins: bool = True) -> list[type[Rule]]:
    """Every rule class, sorted by code; duplicate codes or names raise :class:`UsageError`."""
    classes = _load_folder(builtin_rules_dir())
    for folder in rules_dirs:
        classes.extend(_load_folder(Path(folder)))
    if plugins:
        classes.extend(_entry_point_rules())
    by_code: dict[str, type[Rule]] = {}
    by_name: dict[str, type[Rule]] = {}
    for cls in classes:
        for key, index in ((cls.code, by_code), (cls.name, by_name)):
            if key in index and index[key] is not cls:
                raise UsageError(f"duplicate rule {key!r}: {index[key].__module__} and {cls.__module__}")
            index[key] = cls
    return sorted(by_code.values(), key=lambda cls: cls.code)


def matches(cls: type[Rule], selectors: Iterable[str]) -> bool:
    """True when a selector is the rule's code, a prefix of it (``NL3``), its name, or ``ALL``."""
    return any(s == "ALL" or cls.code.startswith(s) or s == cls.name for s in selectors)


def select(
    classes: Sequence[type[Rule]],
    select: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
) -> list[type[Rule]]:
    """Rules chosen by ``select`` (all when None) minus ``ignore``; unknown selectors are an error."""
    for selector in [*(select or ()), *ignore]:
        if selector != "ALL" and not any(matches(cls, [selector]) for cls in classes):
            raise UsageError(f"unknown rule selector {selector!r} (see `noiselint rules`)")
    chosen = [cls for cls in classes if select is None or matches(cls, select)]
    return [cls for cls in chosen if not matches(cls, ignore)]


def find(code_or_name: str, rules_dirs: Sequence[str | Path] = ()) -> type[Rule]:
    for cls in discover(rules_dirs):
        if code_or_name.upper() == cls.code or code_or_name == cls.name:
            return cls
    raise UsageError(f"no rule {code_or_name!r} (see `noiselint rules`)")
