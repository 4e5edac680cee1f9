"""Record the source line where each ``nn.Module`` was constructed.

While :func:`recording` is active, ``nn.Module.__init__`` is wrapped so that each new module
remembers the first frame outside its own ``__init__`` chain: the ``self.pool = nn.MaxPool2d(3)``
line. Frames in ``prefer`` folders win over helper factories elsewhere (``timm.layers.create_conv2d``
called from ``timm/models/resnet.py`` points at the model file).
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import os
import sys
import textwrap
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from noiselint.graph import SourceLocation


def display_path(path: str) -> str:
    """``path`` relative to the working directory when inside it, else absolute."""
    return _display_path(path, os.getcwd())


@functools.lru_cache(maxsize=4096)  # called for every module built: relpath is slow
def _display_path(path: str, cwd: str) -> str:
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, cwd)
    return absolute if relative.startswith("..") else relative


def _location(frame: FrameType) -> SourceLocation:
    position = next(itertools.islice(frame.f_code.co_positions(), frame.f_lasti // 2, None), None)
    column = position[2] + 1 if position is not None and position[2] is not None else 1
    return SourceLocation(display_path(frame.f_code.co_filename), frame.f_lineno, column)


def _construction_frame(module: object, prefer: Sequence[str]) -> FrameType | None:
    frame = sys._getframe(2)
    while frame is not None and frame.f_locals.get("self") is module:
        frame = frame.f_back
    caller = frame
    while frame is not None and prefer:
        if frame.f_code.co_filename.startswith(tuple(prefer)):
            return frame
        frame = frame.f_back
    return caller


@contextmanager
def recording(prefer: Sequence[str] = ()) -> Iterator[weakref.WeakKeyDictionary]:
    """Map every module constructed inside the block to its :class:`SourceLocation`."""
    import torch.nn as nn

    sites: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    original_init = nn.Module.__init__
    prefer = tuple(os.path.abspath(p) for p in prefer)

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self not in sites:
            frame = _construction_frame(self, prefer)
            if frame is not None:
                sites[self] = _location(frame)

    nn.Module.__init__ = init
    try:
        yield sites
    finally:
        nn.Module.__init__ = original_init


def class_sites(model: object) -> dict:
    """Best-effort construction lines for a model built outside :func:`recording`.

    Each submodule gets the ``self.NAME = ...`` line in its parent's class source; children of
    containers (``nn.Sequential``, ``nn.ModuleList``) get their container's line.
    """
    sites = {}
    for path, module in model.named_modules():
        if not path:
            continue
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        site = _assignment_site(type(parent), attr)
        location = SourceLocation(display_path(site[0]), *site[1:]) if site else sites.get(parent)
        if location is not None:
            sites[module] = location
    return sites


@functools.lru_cache(maxsize=1024)
def _assignment_site(cls: type, attr: str) -> tuple[str, int, int] | None:
    """(file, line, column) where a method of ``cls`` or a base class assigns ``self.<attr>``."""
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in ("torch", "builtins"):
            continue
        for function in vars(klass).values():
            if not inspect.isfunction(function):
                continue
            try:
                lines, start = inspect.getsourcelines(function)
                tree = ast.parse(textwrap.dedent("".join(lines)))
            except (OSError, TypeError, SyntaxError):
                continue
            indent = len(lines[0]) - len(lines[0].lstrip())
            for node in ast.walk(tree):
                if _assigns(node, attr):
                    return function.__code__.co_filename, start + node.lineno - 1, indent + node.value.col_offset + 1
    return None


def _assigns(node: ast.AST, attr: str) -> bool:
    """True for ``self.<attr> = value`` (plain or annotated), a constant (``= None``) not counting."""
    if isinstance(getattr(node, "value", None), ast.Constant):
        return False
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets = [node.target]
    else:
        return False
    return any(isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name)
               and t.value.id == "self" for t in targets)
