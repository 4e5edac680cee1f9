"""Every rule over every timm architecture: how often each fires, crashes (must be 0) and time.

    python benchmarks/rule_counts.py [--workers 2] [--timeout 180] [--per-child 40] [PATTERN]

Each architecture is built on the meta device (no weights) and linted with every rule, in worker
processes that are replaced every ``--per-child`` models to bound memory. A model that does not
finish within ``--timeout`` seconds is counted as a timeout. A crash is a rule error record or an
exception that escaped the engine; load failures (timm cannot build the model) are counted apart.
Also compares the max-pooling rule with the architectures that contain an ``nn.MaxPool2d``.
Exits 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import signal
import statistics
import sys
import time
from collections import Counter

_RULES: list = []


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout


def _start_worker() -> None:
    from noiselint.engine import Options, make_rules

    _RULES.extend(make_rules(Options()))
    signal.signal(signal.SIGALRM, _on_alarm)


def lint_architecture(task: tuple[str, int]) -> dict:
    """One architecture's rule codes and facts; never raises."""
    import torch.nn as nn

    from noiselint.engine import Options, lint_loaded
    from noiselint.errors import NoiselintError, one_line
    from noiselint.loaders import load

    name, timeout = task
    result = {"name": name, "codes": Counter(), "maxpool": False, "level": None, "errors": []}
    started = time.perf_counter()
    signal.alarm(timeout)
    try:
        (loaded,) = load(f"timm:{name}")
        result["maxpool"] = any(isinstance(m, nn.MaxPool2d) for m in loaded.module.modules())
        report = lint_loaded(loaded, _RULES, Options())
        if report.load_error:
            result["status"] = "load_error"
            result["errors"] = [report.load_error]
        else:
            result["status"] = "ok"
            result["level"] = report.graph.trace_level
            result["codes"] = Counter(f.code for f in report.findings)
            result["errors"] = [f"{e.code}: {e.error}" for e in report.rule_errors]
    except _Timeout:
        result["status"] = "timeout"
    except NoiselintError as exc:
        result["status"], result["errors"] = "load_error", [one_line(exc)]
    except Exception as exc:  # noqa: BLE001 - an escaped exception is what this benchmark counts
        result["status"], result["errors"] = "crash", [one_line(exc)]
    finally:
        signal.alarm(0)
    result["seconds"] = time.perf_counter() - started
    return result


def _summary(results: list[dict], elapsed: float, workers: int) -> tuple[str, int]:
    import timm
    import torch

    from noiselint import registry

    ok = [r for r in results if r["status"] == "ok"]
    fired = Counter(code for r in ok for code in r["codes"])
    total = sum((r["codes"] for r in ok), Counter())
    crashes = [r for r in results if r["status"] == "crash" or r["errors"] and r["status"] == "ok"]
    lines = [
        f"{len(results)} timm architectures (timm {timm.__version__}, torch {torch.__version__}, meta "
        f"device), {workers} workers on {os.cpu_count()} cores ({platform.machine()})",
        "",
        f"{'code':6} {'name':36} {'severity':8} {'archs':>6} {'findings':>8}",
    ]
    for cls in registry.discover():
        counts = f"{fired[cls.code]:6} {total[cls.code]:8}"
        lines.append(f"{cls.code:6} {cls.name:36} {cls.severity.label:8} {counts}")
    with_module = {r["name"] for r in ok if r["maxpool"]}
    flagged = {r["name"] for r in ok if r["codes"]["NL301"]}
    levels = Counter(r["level"] for r in ok)
    seconds = [r["seconds"] for r in results]
    lines += [
        "",
        f"MaxPool2d: {len(with_module)} architectures contain an nn.MaxPool2d module; NL301 fires on "
        f"{len(flagged)}; on both {len(with_module & flagged)}",
        f"  module, no NL301 ({len(with_module - flagged)}): {_names(with_module - flagged)}",
        f"  NL301, no module ({len(flagged - with_module)}): {_names(flagged - with_module)}",
        "trace levels: " + ", ".join(f"{level} {count}" for level, count in levels.most_common()),
        f"linted {len(ok)}; load errors {_count(results, 'load_error')}; timeouts "
        f"{_count(results, 'timeout')} ({_names({r['name'] for r in results if r['status'] == 'timeout'})})",
        f"crashes: {len(crashes)}",
    ]
    lines += [f"  {r['name']}: {'; '.join(r['errors'])}" for r in crashes]
    lines.append(
        f"elapsed {elapsed:.0f} s; per model median {statistics.median(seconds):.2f} s, "
        f"max {max(seconds):.1f} s ({max(results, key=lambda r: r['seconds'])['name']})"
    )
    return "\n".join(lines), len(crashes)


def _count(results: list[dict], status: str) -> int:
    return sum(r["status"] == status for r in results)


def _names(names: set[str], shown: int = 12) -> str:
    ordered = sorted(names)
    more = f", ... {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more if ordered else "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("pattern", nargs="?", default="*", help="timm.list_models pattern (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=180, help="seconds per architecture")
    parser.add_argument("--per-child", type=int, default=40, help="architectures per worker process")
    args = parser.parse_args(argv)

    import timm

    names = timm.list_models(args.pattern)
    started = time.perf_counter()
    results = []
    tasks = [(name, args.timeout) for name in names]
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_start_worker, maxtasksperchild=args.per_child) as pool:
        for done, result in enumerate(pool.imap_unordered(lint_architecture, tasks), 1):
            results.append(result)
            if done % 100 == 0:
                elapsed = time.perf_counter() - started
                print(f"[{done}/{len(names)}] {elapsed:.0f} s", file=sys.stderr, flush=True)
        pool.close()
        pool.join()
    text, crashes = _summary(results, time.perf_counter() - started, args.workers)
    print(text)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
