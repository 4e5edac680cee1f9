"""Reading files that users name or that lie on disk (baselines, configurations, cache entries).

Only regular files are read, and only up to a size limit: a FIFO, a device (``/dev/zero``), a
socket or a folder is refused without blocking, whatever symlink leads to it. JSON is parsed with
a bounded nesting depth.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any

#: Deepest nesting of lists and objects accepted in a JSON or TOML document.
MAX_DEPTH = 64
#: Largest file read, in bytes (a baseline of a million findings is about 250 MB).
MAX_BYTES = 512 * 1024 * 1024


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a socket or a folder."""

    def __init__(self, path: str | os.PathLike, mode: int) -> None:
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a file")
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", str(path))


def open_regular(path: str | os.PathLike) -> int:
    """A read-only descriptor of the regular file at ``path``; :class:`NotRegularFile` otherwise.

    The file is opened without blocking (a FIFO would wait for a writer) and checked after opening,
    so nothing can swap it between the check and the read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(path, mode)
    return fd


def read_bytes(path: str | os.PathLike, limit: int = MAX_BYTES) -> bytes:
    """The content of the regular file at ``path``, at most ``limit`` bytes (``OSError`` otherwise)."""
    with os.fdopen(open_regular(path), "rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data


def depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in item)
    return deepest


def load_json(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON; ``ValueError`` when it is invalid or nests deeper than ``max_depth``."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"nested more than {max_depth} levels deep") from None
    if depth(value) > max_depth:
        raise ValueError(f"nested more than {max_depth} levels deep")
    return value
