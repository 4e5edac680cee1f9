"""Record the source line where each ``nn.Module`` was constructed.

While :func:`recording` is active, ``nn.Module.__init__`` is wrapped so that each new module
remembers the first frame outside its own ``__init__`` chain: the ``self.pool = nn.MaxPool2d(3)``
line. Frames in ``prefer`` folders win over helper factories elsewhere (``timm.layers.create_conv2d``
called from ``timm/models/resnet.py`` points at the model file).
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from noiselint.graph import SourceLocation


def display_path(path: str) -> str:
    """``path`` relative to the working directory when inside it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative.startswith("..") else relative


def _location(frame: FrameType) -> SourceLocation:
    column = 1
    positions = list(frame.f_code.co_positions())
    index = frame.f_lasti // 2
    if 0 <= index < len(positions) and positions[index][2] is not None:
        column = positions[index][2] + 1
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
