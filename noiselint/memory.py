"""The memory budget of a run (``--max-memory``): its default, parsing and the checks made against it.

Linting builds models on the meta device, so it needs little memory; what could grow with the input
is checked against the budget before it is allocated: the CPU forward of the value-dependent tracing
fallback (:mod:`noiselint.tracing`), an ONNX file's size before it is parsed, ONNX initializers read
for weight rules, and the declared uncompressed size of a zip checkpoint given to ``--weights``.
Worker processes that grow past the budget anyway are killed (:mod:`noiselint.batch`).
"""

from __future__ import annotations

import os
import re

from noiselint.errors import NoiselintError

_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def physical_memory() -> int | None:
    """This machine's RAM in bytes, when the system says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None


def default_budget() -> int:
    """4 GiB, or half the machine's RAM when that is less."""
    ram = physical_memory()
    return min(4 * 2**30, ram // 2) if ram else 4 * 2**30


DEFAULT_MAX_MEMORY = default_budget()


class MemoryBudgetError(NoiselintError):
    """Reading or running something would pass the memory budget (``--max-memory``)."""


def resident_bytes(pid: int | str = "self") -> int:
    """The resident memory of process ``pid`` (``"self"``: this one); 0 when unknown."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def parse_size(text: str) -> int:
    """``4G``, ``512M``, ``1.5GiB``, ``2048`` (bytes) as a positive number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if match is None:
        raise NoiselintError(f"expected a size such as 4G, 512M or 1.5GiB, got {text!r}")
    size = int(float(match[1]) * _UNITS[match[2]])
    if size < 2**20:
        raise NoiselintError(f"a memory budget of {text!r} is below 1 MiB")
    return size


def shown(size: int) -> str:
    """``size`` bytes as GiB, or MiB below one GiB, for messages."""
    return f"{size / 2**30:.3g} GiB" if size >= 2**30 else f"{size / 2**20:.3g} MiB"
