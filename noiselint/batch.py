"""Lint many targets: cached results first, the rest in this process or in worker processes.

:func:`run` expands ``timm:`` wildcards, answers every target it can from the cache (without
importing torch), and lints the others. With one job, or a single target to lint and no timeout, it
lints in this process. Otherwise it starts up to ``jobs`` worker processes (``spawn``: torch is
fragile in forked children); each imports torch (and timm or torchvision when a target needs them)
once, then lints one target at a time and sends back its reports. Every target is isolated: a worker
that crashes (even a segfault) or runs past ``timeout`` is killed and replaced, and the target
becomes an error record; the run goes on. A worker also retires after :data:`TASKS_PER_WORKER`
targets or once it holds more than :data:`WORKER_MEMORY_LIMIT` bytes, to bound memory.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from noiselint.cache import Cache, dependencies, import_roots, local_imports
from noiselint.errors import NoiselintError, one_line
from noiselint.findings import ModelReport, Report
from noiselint.loaders import kind_of

TASKS_PER_WORKER = 1000
WORKER_MEMORY_LIMIT = 4 << 30
_PRELOAD = {
    "python": ("torch", "noiselint.tracing"),
    "timm": ("torch", "timm", "noiselint.tracing"),
    "torchvision": ("torch", "torchvision", "noiselint.tracing"),
    "onnx": ("noiselint.loaders.onnx_loader",),
}


@dataclass(frozen=True)
class BatchSettings:
    """How a run is carried out; none of this changes a model's report."""

    jobs: int | None = None  # worker processes; None: one per core; 1: lint in this process
    timeout: float | None = None  # seconds per target; needs worker processes
    sort: str = "input"  # "input": targets in the order given; "exposure": most exposed first
    progress: bool = False  # a progress bar on stderr


def default_jobs() -> int:
    """The number of cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def run(
    targets: Iterable[str],
    options: Any,
    settings: BatchSettings = BatchSettings(),
    *,
    cache: Cache | None = None,
    on_report: Callable[[ModelReport], None] | None = None,
) -> Report:
    """Lint every target; ``on_report`` sees each model's report as soon as it is known."""
    names: list[str] = []
    slots: list[list[ModelReport] | None] = []

    def finish(index: int, reports: list[ModelReport]) -> None:
        slots[index] = reports
        for report in reports if on_report is not None else ():
            on_report(report)

    for target in targets:
        try:
            expanded = _expand(target, cache)
        except NoiselintError as exc:
            names.append(target)
            slots.append(None)
            finish(len(slots) - 1, [ModelReport(target=target, model=target, load_error=str(exc))])
            continue
        for name in expanded:
            names.append(name)
            slots.append(None)
            cached = cache.lookup(name) if cache is not None else None
            if cached is not None:
                finish(len(slots) - 1, cached)
    misses = [i for i, slot in enumerate(slots) if slot is None]
    if misses:
        _lint(names, misses, options, settings, cache, finish)
    models = [m for slot in slots for m in slot or ()]
    if settings.sort == "exposure":
        models.sort(key=lambda m: (m.exposure is None, -(m.exposure or 0.0)))
    return Report(models=tuple(models), fail_on=options.fail_on)


def _expand(target: str, cache: Cache | None) -> list[str]:
    from noiselint.loaders import expand

    if not (target.startswith("timm:") and any(c in target for c in "*?[")):
        return [target]
    names = cache.expansion(target) if cache is not None else None
    if names is None:
        names = expand(target)
        if cache is not None:
            cache.store_expansion(target, names)
    return names


def lint_one(target: str, rules: Sequence[Any], options: Any, *, with_deps: bool) -> tuple[list, dict | None]:
    """The reports of one target and, when asked, the files they depend on with their hashes."""
    from noiselint.engine import lint_target

    with local_imports(import_roots(target)) as files:
        try:
            reports = list(lint_target(target, rules, options))
        except Exception as exc:  # noqa: BLE001 - one target must never end the run
            reports = [ModelReport(target=target, model=target, load_error=f"{target}: {one_line(exc)}")]
    return reports, dependencies(target, files) if with_deps else None


def _lint(names: list[str], misses: list[int], options: Any, settings: BatchSettings, cache: Cache | None,
          finish: Callable[[int, list[ModelReport]], None]) -> None:
    from noiselint.engine import make_rules

    rules = make_rules(options)  # a usage error (unknown rule, bad rule option) ends the run here
    jobs = settings.jobs or default_jobs()

    def done(index: int, reports: list[ModelReport], deps: dict | None) -> None:
        if cache is not None:
            cache.store(names[index], reports, deps)
        finish(index, reports)
        progress.advance()

    with _Progress(len(misses), settings.progress and len(misses) > 1) as progress:
        if settings.timeout is None and (jobs == 1 or len(misses) == 1):
            for index in misses:
                done(index, *lint_one(names[index], rules, options, with_deps=cache is not None))
        else:
            _Pool(names, options, settings, with_deps=cache is not None).run(misses, min(jobs, len(misses)), done)


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress("linting", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("linting", total=total)

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)


# --------------------------------------------------------------------------- worker processes


def _serve(conn: Any, options: Any, preload: Sequence[str], with_deps: bool) -> None:
    """A worker: import the heavy modules once, then lint targets until told to stop or retired."""
    import importlib
    import warnings

    from noiselint.engine import make_rules

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the workers
    os.dup2(2, 1)  # a model file that prints must not corrupt a report written to stdout
    warnings.simplefilter("ignore")
    for name in preload:
        importlib.import_module(name)
    rules = make_rules(options)
    conn.send(("ready",))
    for count in range(1, TASKS_PER_WORKER + 1):
        try:
            target = conn.recv()
        except EOFError:
            return
        reports, deps = lint_one(target, rules, options, with_deps=with_deps)
        retiring = count == TASKS_PER_WORKER or _resident_bytes() > WORKER_MEMORY_LIMIT
        conn.send(("done", reports, deps, retiring))
        if retiring:
            return


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Worker:
    def __init__(self, context: Any, options: Any, preload: Sequence[str], with_deps: bool) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, options, preload, with_deps),
                                       name="noiselint-worker")
        self.process.start()
        child.close()
        self.ready = False
        self.retiring = False
        self.task: int | None = None
        self.deadline: float | None = None

    def stop(self) -> int | None:
        """End the process (killing it if it does not end within a second); its exit code."""
        self.process.join(1)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()
        return self.process.exitcode


class _Pool:
    """Worker processes fed one target at a time, replaced when they crash, hang or retire."""

    def __init__(self, names: list[str], options: Any, settings: BatchSettings, *, with_deps: bool) -> None:
        import multiprocessing

        self.context = multiprocessing.get_context("spawn")
        self.names = names
        self.options = options
        self.timeout = settings.timeout
        self.with_deps = with_deps

    def run(self, indices: list[int], jobs: int, done: Callable[[int, list, dict | None], None]) -> None:
        from multiprocessing.connection import wait

        queue = deque(indices)
        kinds = sorted({kind_of(self.names[i]) for i in indices})
        preload = tuple(dict.fromkeys(module for kind in kinds for module in _PRELOAD.get(kind, ())))
        workers: list[_Worker] = []
        failed_starts = 0
        try:
            while queue or any(w.task is not None for w in workers):
                busy = sum(w.task is not None for w in workers)
                while len(workers) < min(jobs, len(queue) + busy):
                    workers.append(_Worker(self.context, self.options, preload, self.with_deps))
                for worker in workers:
                    if worker.ready and not worker.retiring and worker.task is None and queue:
                        self._assign(worker, queue)
                deadlines = [w.deadline for w in workers if w.deadline is not None]
                wait([w.conn for w in workers] + [w.process.sentinel for w in workers],
                     max(0.0, min(deadlines) - time.monotonic()) if deadlines else None)
                for worker in list(workers):
                    alive = self._receive(worker, done)
                    if alive and worker.deadline is not None and time.monotonic() >= worker.deadline:
                        self._fail(worker, f"gave up after {self.timeout:g} s (--timeout)", done)
                    elif not alive and worker.task is not None:
                        reason = _exit_reason(worker.stop())
                        self._fail(worker, f"the worker process died while linting it ({reason})", done)
                    elif not alive and not worker.ready:
                        failed_starts += 1
                        if failed_starts >= 3:
                            reason = _exit_reason(worker.stop())
                            raise NoiselintError(f"worker processes fail to start ({reason})")
                    elif alive and not worker.retiring:
                        failed_starts = 0 if worker.ready else failed_starts
                        continue
                    worker.stop()
                    workers.remove(worker)
        finally:
            for worker in workers:
                worker.stop()

    def _assign(self, worker: _Worker, queue: deque) -> None:
        index = queue.popleft()
        try:
            worker.conn.send(self.names[index])
        except OSError:  # it died while idle: the next check replaces it
            queue.appendleft(index)
            return
        worker.task = index
        worker.deadline = None if self.timeout is None else time.monotonic() + self.timeout

    def _receive(self, worker: _Worker, done: Callable) -> bool:
        """Handle the worker's messages; False when it has exited (checked first: nothing is lost)."""
        alive = worker.process.is_alive()
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "ready":
                    worker.ready = True
                    continue
                index, worker.task, worker.deadline = worker.task, None, None
                worker.retiring = message[3]
                done(index, message[1], message[2])
        except (EOFError, OSError):
            return False
        return alive

    def _fail(self, worker: _Worker, reason: str, done: Callable) -> None:
        worker.stop()
        index, worker.task, worker.deadline = worker.task, None, None
        name = self.names[index]
        done(index, [ModelReport(target=name, model=name, load_error=f"{name}: {reason}")], None)
