"""Configuration in ``[tool.noiselint]`` of pyproject.toml, merged with the command line.

The closest ``pyproject.toml`` with a ``[tool.noiselint]`` table, from the working directory
upwards, is used; ``--config FILE`` names one (its ``[tool.noiselint]`` table, or the whole file
when it has none, as in a ``noiselint.toml``) and ``--isolated`` ignores them all. Relative paths
in the file are relative to its folder. Command-line options win over the file.
"""

from __future__ import annotations

import glob
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from noiselint.errors import UsageError, brief
from noiselint.graph import Preprocessing
from noiselint.loaders import kind_of, split_python_target
from noiselint.readers import MAX_DEPTH, depth, read_bytes

if TYPE_CHECKING:
    from noiselint.engine import Options


KEYS = (
    "models", "select", "extend-select", "ignore", "per-file-ignores", "preprocessing", "rules",
    "fail-on", "format", "rules-dirs", "baseline", "fixable", "unfixable",
)
PREPROCESSING_KEYS = ("mean", "std", "input_size")
SEVERITIES = ("info", "warning", "error")
MAX_CONFIG_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    """The validated ``[tool.noiselint]`` table; paths are already resolved against its folder."""

    path: Path | None = None
    models: tuple[str, ...] = ()
    select: tuple[str, ...] | None = None
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    preprocessing: tuple[tuple[str, Preprocessing], ...] = ()
    rule_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fail_on: str | None = None
    format: str | None = None
    rules_dirs: tuple[str, ...] = ()
    baseline: str | None = None
    fixable: tuple[str, ...] | None = None  # rule selectors whose fixes --fix may apply (None: all)
    unfixable: tuple[str, ...] = ()


def find(start: str | os.PathLike | None = None) -> Path | None:
    """The closest ``pyproject.toml`` with a ``[tool.noiselint]`` table, from ``start`` upwards."""
    folder = Path(start or os.getcwd()).resolve()
    for candidate in (folder, *folder.parents):
        path = candidate / "pyproject.toml"
        if path.is_file() and "noiselint" in path.read_text(encoding="utf-8", errors="replace"):
            if _table(_read(path), path) is not None:
                return path
    return None


def resolve(config_file: str | None = None, *, isolated: bool = False) -> Config:
    """The configuration a run uses: ``config_file``, else the closest one, else none."""
    if config_file and isolated:
        raise UsageError("--config and --isolated cannot be used together")
    if isolated:
        return Config()
    path = Path(config_file) if config_file else find()
    return load(path) if path is not None else Config()


def load(path: str | os.PathLike) -> Config:
    """Read and validate one configuration file."""
    path = Path(path)
    data = _read(path)
    table = _table(data, path)
    if table is None:
        table = {} if path.name == "pyproject.toml" else data
    return _parse(table, path)


def _table(data: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The ``[tool.noiselint]`` table of ``data``, None when there is none; an error when it is no table."""
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise UsageError(f"{_display(path)}: `tool` must be a table ([tool.noiselint]), got {brief(tool)}")
    table = tool.get("noiselint")
    if table is not None and not isinstance(table, dict):
        raise UsageError(f"{_display(path)}: [tool.noiselint] must be a table of settings, got {brief(table)}")
    return table


def _read(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(read_bytes(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror}") from None
    except RecursionError:
        raise UsageError(f"{path}: invalid TOML: nested more than {MAX_DEPTH} levels deep") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from None
    if depth(data) > MAX_DEPTH:
        raise UsageError(f"{path}: invalid TOML: nested more than {MAX_DEPTH} levels deep")
    return data


def _parse(table: dict[str, Any], path: Path) -> Config:
    root = path.resolve().parent

    def fail(key: str, message: str) -> UsageError:
        return UsageError(f"{_display(path)}: [tool.noiselint] {key}: {message}")

    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown key (expected one of: {', '.join(KEYS)})")
    strings = {key: _strings(table, key, fail) for key in ("models", "select", "extend-select", "ignore",
                                                           "rules-dirs", "fixable", "unfixable")}
    per_file = table.get("per-file-ignores", {})
    if not isinstance(per_file, dict):
        raise fail("per-file-ignores", "expected a table of glob = [codes]")
    baseline = table.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise fail("baseline", f"expected a path, got {brief(baseline)}")
    return Config(
        path=path,
        models=tuple(t for m in strings["models"] or () for t in _expand_model(m, root, fail)),
        select=strings["select"],
        extend_select=strings["extend-select"] or (),
        ignore=strings["ignore"] or (),
        per_file_ignores=tuple(
            (_absolute_pattern(pattern, root), _strings(per_file, pattern, fail, f"per-file-ignores.{pattern}"))
            for pattern in per_file
        ),
        preprocessing=_preprocessing_table(table.get("preprocessing", {}), root, _display(path), fail),
        rule_options=_rules_table(table.get("rules", {}), fail),
        fail_on=_choice(table, "fail-on", SEVERITIES, fail),
        format=_choice(table, "format", None, fail),
        rules_dirs=tuple(str(root / d) for d in strings["rules-dirs"] or ()),
        baseline=str(root / baseline) if baseline else None,
        fixable=strings["fixable"],
        unfixable=strings["unfixable"] or (),
    )


def _display(path: Path) -> str:
    from noiselint.sites import display_path

    return display_path(str(path))


def _strings(table: dict, key: str, fail, label: str | None = None) -> tuple[str, ...] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(label or key, f"expected a list of strings, got {brief(value)}")
    return tuple(value)


def _choice(table: dict, key: str, choices: Sequence[str] | None, fail) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if choices is None:
        from noiselint.reporters import REPORTERS

        choices = tuple(REPORTERS)
    if value not in choices:
        raise fail(key, f"expected one of {', '.join(choices)}, got {brief(value)}")
    return value


def _absolute_pattern(pattern: str, root: Path) -> str:
    """A glob without a slash matches file names anywhere; others are relative to ``root``."""
    return pattern if "/" not in pattern else os.path.normpath(os.path.join(root, pattern))


def target_key(target: str, root: str | os.PathLike) -> str:
    """``target`` with a file path made absolute against ``root``; registry targets stay as they are."""
    if kind_of(target) in ("timm", "torchvision") or target.startswith("hf:"):
        return target
    path, name = split_python_target(target)
    full = os.path.normpath(os.path.join(root, path))
    return f"{full}:{name}" if name else full


def _expand_model(model: str, root: Path, fail) -> list[str]:
    """A configured target, relative to the working directory; file wildcards expanded."""
    from noiselint.sites import display_path

    if kind_of(model) in ("timm", "torchvision") or model.startswith("hf:"):
        return [model]
    path, name = split_python_target(target_key(model, root))
    paths = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    if not paths:
        raise fail("models", f"{model!r} matches no file")
    return [display_path(p) + (f":{name}" if name else "") for p in paths]


def _preprocessing_table(table: Any, root: Path, origin: str, fail) -> tuple[tuple[str, Preprocessing], ...]:
    if not isinstance(table, dict):
        raise fail("preprocessing", "expected a table of target = {mean, std, input_size}")
    entries = []
    for target, values in table.items():
        key = f"preprocessing.{target!r}"
        if not isinstance(values, dict):
            raise fail(key, "expected a table with mean, std and/or input_size")
        unknown = sorted(set(values) - set(PREPROCESSING_KEYS))
        if unknown:
            raise fail(f"{key}.{unknown[0]}", f"unknown key (expected {', '.join(PREPROCESSING_KEYS)})")
        stats = {name: _numbers(values, name, f"{key}.{name}", fail) for name in ("mean", "std")}
        if stats["std"] and any(v <= 0 for v in stats["std"]):
            raise fail(f"{key}.std", "every std must be positive")
        size = _input_size(values, f"{key}.input_size", fail)
        try:
            preprocessing = Preprocessing(mean=stats["mean"], std=stats["std"], input_size=size, origin=origin)
        except UsageError as exc:
            raise fail(key, str(exc)) from None
        entries.append((target_key(target, root), preprocessing))
    return tuple(entries)


def _numbers(values: dict, name: str, key: str, fail) -> tuple[float, ...] | None:
    value = values.get(name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise fail(key, f"expected a number or a list of numbers, got {brief(value)}")
    return tuple(float(v) for v in value)


def _input_size(values: dict, key: str, fail) -> tuple[int, int, int] | None:
    value = values.get("input_size")
    if value is None:
        return None
    dims = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(dims, list) or not 1 <= len(dims) <= 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)):
        raise fail(key, f"expected H, [H, W] or [C, H, W] (positive integers), got {brief(value)}")
    return tuple(dims) if len(dims) == 3 else (3, dims[0], dims[-1])


def _rules_table(table: Any, fail) -> dict[str, dict[str, Any]]:
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise fail("rules", "expected tables of rule options, e.g. [tool.noiselint.rules.NL201]")
    return {code: dict(options) for code, options in table.items()}


def configured_preprocessing(entries: Sequence[tuple[str, Preprocessing]], target: str) -> Preprocessing | None:
    """What the configuration sets for ``target`` (a key may be a glob, or name a whole file)."""
    key = target_key(target, os.getcwd())
    path, name = split_python_target(key)
    found = None
    for pattern, preprocessing in entries:
        if fnmatchcase(key, pattern) or (name is not None and fnmatchcase(path, pattern)):
            found = preprocessing if found is None else replace(found.merged(preprocessing),
                                                                 origin=preprocessing.origin)
    return found


@dataclass(frozen=True)
class Run:
    """A run's targets, options, format and baseline, from the configuration and the command line."""

    targets: tuple[str, ...]
    options: Options
    format: str
    baseline: str | None
    fixable: tuple[str, ...] | None = None
    unfixable: tuple[str, ...] = ()


def make_options(
    config: Config,
    *,
    select: Sequence[str] | None = None,
    extend_select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    fail_on: str | None = None,
    preprocessing: Preprocessing | None = None,
    rules_dirs: Sequence[str] = (),
    hook: bool = False,
) -> Options:
    """Engine options: the arguments (the command line, or the API's) over ``config``.

    A ``select`` given here replaces the configured selection and its ``ignore`` (as in ruff);
    otherwise ``extend_select`` and ``ignore`` add to the configured ones.
    """
    from noiselint import registry
    from noiselint.engine import Options
    from noiselint.findings import Severity

    if select is not None:
        chosen, ignored = [*select, *extend_select], list(ignore)
    else:
        chosen = None if config.select is None else [*config.select, *config.extend_select, *extend_select]
        ignored = [*config.ignore, *ignore]
    all_dirs = (*config.rules_dirs, *rules_dirs)
    classes = registry.discover(all_dirs)
    for _, codes in config.per_file_ignores:
        registry.select(classes, codes)
    return Options(
        select=chosen,
        ignore=tuple(ignored),
        fail_on=Severity.parse(fail_on or config.fail_on or "warning"),
        preprocessing=preprocessing or Preprocessing(),
        rules_dirs=all_dirs,
        rule_options=_check_rule_options(config, classes),
        per_file_ignores=config.per_file_ignores,
        preprocessing_by_target=config.preprocessing,
        skip_no_model=hook,
    )


def build_run(
    config: Config,
    *,
    targets: Sequence[str] = (),
    output_format: str | None = None,
    baseline: str | None = None,
    **options: Any,
) -> Run:
    """Targets, options, format and baseline: the command line over ``config``."""
    targets = tuple(targets) or config.models
    if not targets:
        raise UsageError("no targets: name models on the command line or in [tool.noiselint] models")
    return Run(targets=targets, options=make_options(config, **options),
               format=output_format or config.format or "text", baseline=baseline or config.baseline,
               fixable=config.fixable, unfixable=config.unfixable)


def _check_rule_options(config: Config, classes) -> dict[str, dict[str, Any]]:
    """Rule options keyed by rule code, each known to its rule and of its default's type."""
    by_key = {key: cls for cls in classes for key in (cls.code, cls.name)}
    checked = {}
    for key, options in config.rule_options.items():
        where = f"{_display(config.path)}: [tool.noiselint.rules.{key}]"
        cls = by_key.get(key) or by_key.get(key.upper())
        if cls is None:
            raise UsageError(f"{where} no such rule (see `noiselint rules`)")
        for name, value in options.items():
            if name not in cls.options:
                known = ", ".join(cls.options) or "none"
                raise UsageError(f"{where} unknown option {brief(name)} (options of {cls.code}: {known})")
            default = cls.options[name]
            if default is not None and not _same_type(value, default):
                raise UsageError(f"{where} {name} must be a {type(default).__name__}, got {brief(value)}")
            problem = cls.option_problem(name, value)
            if problem:
                raise UsageError(f"{where} {name} {problem}, got {brief(value)}")
        checked[cls.code] = dict(options)
    return checked


def _same_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))
