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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType

from noiselint.graph import Op, SourceLocation


def display_path(path: str) -> str:
    """``path`` relative to the working directory when inside it, else absolute."""
    return _display_path(path, os.getcwd())


@functools.lru_cache(maxsize=4096)  # called for every module built: relpath is slow
def _display_path(path: str, cwd: str) -> str:
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute, cwd)
    return absolute if relative.startswith("..") else relative


def _location(frame: FrameType) -> SourceLocation:
    return _spot_location(_spot(frame))


def _spot(frame: FrameType) -> tuple:
    """What locates a frame's current line, cheap to keep: (code, instruction offset, line)."""
    return frame.f_code, frame.f_lasti, frame.f_lineno


def _spot_location(spot: tuple) -> SourceLocation:
    code, lasti, line = spot
    position = next(itertools.islice(code.co_positions(), lasti // 2, None), None)
    column = position[2] + 1 if position is not None and position[2] is not None else 1
    return SourceLocation(display_path(code.co_filename), line, column)


def _self_of(frame: FrameType) -> object:
    """The frame's ``self`` argument, reading ``f_locals`` (a copy on 3.11) only for methods."""
    code = frame.f_code
    return frame.f_locals.get("self") if code.co_argcount and code.co_varnames[0] == "self" else None


#: Op kinds a rule looks at; a module holding at most one layer of these is a wrapper
#: (``ConvBlock`` = conv + norm + activation) whose call site, not its body, is the model's line.
_SUBSTANTIVE = frozenset({Op.CONV, Op.LINEAR, Op.BLUR, *Op.POOLING})
_COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


@functools.cache
def internal_dirs() -> tuple[str, ...]:
    """The installed torch and noiselint package folders: machinery, never the model's code (a
    user's own checkout may be named noiselint, so the test is the folders, not a path fragment)."""
    import torch

    import noiselint

    return tuple(os.path.dirname(p.__file__) + os.sep for p in (torch, noiselint))


def _construction_chain(module: object) -> list[tuple[str, tuple, weakref.ref | None]]:
    """The frames that were building ``module``, innermost first: (absolute file, its spot, the
    ``nn.Module`` that frame's ``self`` was building, if any), up to noiselint's own frame that
    asked for the model. Torch's frames are left out, and so is the module's own ``__init__``
    chain but for its innermost user line."""
    import torch.nn as nn

    chain = []
    internal, own = internal_dirs(), internal_dirs()[1]
    frame = sys._getframe(2)
    while frame is not None and _self_of(frame) is module:
        if not chain and not frame.f_code.co_filename.startswith(internal):
            # the innermost line of a user's layer subclass (``Conv2dSame.__init__``): the helper's line
            chain.append((os.path.abspath(frame.f_code.co_filename), _spot(frame), None))
        frame = frame.f_back
    inner = None  # a comprehension's line, which belongs to the frame that runs it
    while frame is not None and not frame.f_code.co_filename.startswith(own):
        path = frame.f_code.co_filename
        if frame.f_code.co_name in _COMPREHENSIONS:
            inner = inner or _spot(frame)
        elif not path.startswith(internal):
            owner = _self_of(frame)
            chain.append((os.path.abspath(path), inner or _spot(frame),
                          weakref.ref(owner) if isinstance(owner, nn.Module) else None))
            inner = None
        frame = frame.f_back
    return chain


def _is_wrapper(owner: object) -> bool:
    """At most one substantive layer (conv, linear, pooling, blur, patch partition) inside ``owner``."""
    from noiselint.ops import module_op

    count = 0
    for child in owner.modules():
        kind, attrs = module_op(child)
        if child is not owner and (kind in _SUBSTANTIVE or "patch" in attrs):
            count += 1
            if count > 1:
                return False
    return True


def resolve(chain: Sequence[tuple[str, tuple, weakref.ref | None]], prefer: Sequence[str],
            wrapper: Callable[[object], bool] = _is_wrapper) -> SourceLocation | None:
    """The model's line for a module built along ``chain``.

    Walking outwards from the innermost frame, the first frame whose ``self`` is a module that is
    not a wrapper: the ``self.stem = conv_bn(...)`` line of the model's class rather than the
    ``nn.Conv2d`` inside ``conv_bn``. Without one, the outermost frame that built a module, else
    the outermost function's frame (a factory's ``nn.Sequential(Conv(...), ...)`` line, not the
    script line that called the factory), else the innermost frame. Frames in ``prefer`` folders
    win when there are any (a model file that calls ``timm.create_model`` is located at that call).
    The innermost frame, the helper's line, is kept as the location's ``related`` when it differs.
    """
    if not chain:
        return None
    frames = [entry for entry in chain if entry[0].startswith(tuple(prefer))] or list(chain)
    owned = [(spot, ref()) for _, spot, ref in frames if ref is not None and ref() is not None]
    primary = next((spot for spot, owner in owned if not wrapper(owner)), owned[-1][0] if owned else None)
    if primary is None:  # built by functions only: the outermost function's line
        primary = next((spot for _, spot, _ in reversed(frames) if spot[0].co_name != "<module>"), frames[0][1])
    helper = chain[0][1]
    location = _spot_location(primary)
    return location if helper == primary else replace(location, related=(_spot_location(helper),))


@contextmanager
def recording(prefer: Sequence[str] = ()) -> Iterator[dict]:
    """Map every module constructed inside the block to its :class:`SourceLocation`.

    The map is filled when the block ends, once the whole model exists (the wrapper test reads
    the finished modules).
    """
    import torch.nn as nn

    sites: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    chains: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    original_init = nn.Module.__init__
    prefer = tuple(os.path.abspath(p) + os.sep for p in prefer)

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self not in chains:
            chains[self] = _construction_chain(self)

    nn.Module.__init__ = init
    try:
        yield sites
    finally:
        nn.Module.__init__ = original_init
        wrapper = functools.lru_cache(maxsize=None)(_is_wrapper)
        for module, chain in list(chains.items()):
            location = resolve(chain, prefer, wrapper)
            if location is not None:
                sites[module] = location


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
