"""Lint many targets: cached results first, the rest in supervised worker processes.

:func:`run` expands ``timm:`` wildcards, answers every target it can from the cache (without
importing torch), and lints the others in up to ``jobs`` worker processes (``spawn``: torch is
fragile in forked children), even for a single target or one job; ``in_process`` lints in this
process instead, without isolation. Each worker imports torch (and timm or torchvision when a target
needs them) once, then lints one target at a time and sends back its reports. Every target is
isolated: a worker that crashes (even a segfault), runs past ``timeout`` or grows past the memory
budget (``Options.max_memory``) is killed and replaced, and the target becomes an error record; the
run goes on. A worker also retires after :data:`TASKS_PER_WORKER` targets or once it holds more than
the budget, to bound memory. ``--verify`` runs the same way afterwards: each linted model in its own
task of one verify worker at a time (verify uses every core, or the GPU).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from noiselint.cache import Cache, dependencies, import_roots, local_imports
from noiselint.errors import NoiselintError, one_line
from noiselint.findings import ModelReport, Report
from noiselint.loaders import kind_of
from noiselint.memory import resident_bytes, shown

TASKS_PER_WORKER = 1000
#: How often (seconds) the parent reads the resident memory of busy workers.
MEMORY_POLL = 0.2
_PRELOAD = {
    "python": ("torch", "noiselint.tracing"),
    "timm": ("torch", "timm", "noiselint.tracing"),
    "torchvision": ("torch", "torchvision", "noiselint.tracing"),
    "onnx": ("noiselint.loaders.onnx_loader",),
}


@dataclass(frozen=True)
class BatchSettings:
    """How a run is carried out; none of this changes a model's report."""

    jobs: int | None = None  # worker processes; None: one per core
    timeout: float | None = None  # seconds per target (lint, then verify)
    sort: str = "input"  # "input": targets in the order given; "exposure": most exposed first
    progress: bool = False  # a progress bar on stderr
    in_process: bool = False  # lint and verify in this process: no isolation, no timeout


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
    verify: Any = None,
    warn: Callable[[str], None] = lambda message: None,
) -> Report:
    """Lint every target, then verify each linted model when ``verify`` (``VerifyOptions``) is given;
    ``on_report`` sees each model's final report as soon as it is known."""
    if settings.in_process and settings.timeout is not None:
        raise NoiselintError("--timeout needs worker processes: drop --in-process")
    names: list[str] = []
    slots: list[list[ModelReport] | None] = []
    streaming = on_report if verify is None else None

    def finish(index: int, reports: list[ModelReport]) -> None:
        slots[index] = reports
        for report in reports if streaming is not None else ():
            streaming(report)

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
    if verify is not None:
        models = _verify(models, verify, options, settings, warn)
        for model in models if on_report is not None else ():
            on_report(model)
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


def lint_one(target: str, rules: Sequence[Any], options: Any, *, with_deps: bool,
             in_worker: bool = False) -> tuple[list, dict | None]:
    """The reports of one target and, when asked, the files they depend on with their hashes.

    Whatever the model's code raises becomes the target's error record, ``BaseException`` included;
    in this process (``in_worker`` false) a ``KeyboardInterrupt`` still stops the run (Ctrl-C)."""
    from noiselint.engine import lint_target

    with local_imports(import_roots(target)) as files:
        try:
            reports = list(lint_target(target, rules, options))
        except BaseException as exc:  # noqa: BLE001 - one target must never end the run
            if isinstance(exc, KeyboardInterrupt) and not in_worker:
                raise
            reports = [ModelReport(target=target, model=target, load_error=f"{target}: {one_line(exc)}")]
    return reports, dependencies(target, files) if with_deps else None


def _lint(names: list[str], misses: list[int], options: Any, settings: BatchSettings, cache: Cache | None,
          finish: Callable[[int, list[ModelReport]], None]) -> None:
    from noiselint.engine import make_rules

    rules = make_rules(options)  # a usage error (unknown rule, bad rule option) ends the run here
    jobs = settings.jobs or default_jobs()

    def done(index: int, result: tuple[list[ModelReport], dict | None]) -> None:
        reports, deps = result
        if cache is not None:
            cache.store(names[index], reports, deps)
        finish(index, reports)
        progress.advance()

    with _Progress(len(misses), settings.progress and len(misses) > 1) as progress:
        if settings.in_process:
            for index in misses:
                done(index, lint_one(names[index], rules, options, with_deps=cache is not None))
            return
        kinds = {kind_of(names[i]) for i in misses}
        preload = tuple(dict.fromkeys(module for kind in sorted(kinds) for module in _PRELOAD.get(kind, ())))
        job = _LintJob(options, with_deps=cache is not None)
        _Pool(job, names, preload, settings.timeout, options.max_memory).run(misses, min(jobs, len(misses)), done)


def _verify(models: list[ModelReport], verify: Any, options: Any, settings: BatchSettings,
            warn: Callable[[str], None]) -> list[ModelReport]:
    """Every model that linted cleanly, verified one at a time (a failure is that model's error)."""
    from noiselint.verify import runner

    verify = replace(verify, max_memory=options.max_memory)
    device = runner.prepare(verify, any(m.ok for m in models), warn)
    models = list(models)
    todo = [i for i, m in enumerate(models) if m.ok]

    def done(index: int, model: ModelReport) -> None:
        models[index] = model

    if settings.in_process:
        for index in todo:
            done(index, runner.verify_or_error(models[index], verify, device))
    elif todo:
        kinds = sorted({kind_of(models[i].target) for i in todo})
        preload = tuple(dict.fromkeys(["torch", *(m for k in kinds for m in _PRELOAD.get(k, ())),
                                       "noiselint.verify.runner"]))
        _Pool(_VerifyJob(verify, str(device), models), [m.model for m in models], preload, settings.timeout,
              options.max_memory).run(todo, 1, done)
    runner.plot_all(models, verify)
    return models


class _LintJob:
    """What a lint worker does with a task (a target name): its reports and dependencies."""

    verb = "linting"

    def __init__(self, options: Any, *, with_deps: bool) -> None:
        self.options, self.with_deps = options, with_deps

    def start(self) -> None:
        from noiselint.engine import make_rules

        self.rules = make_rules(self.options)

    def task(self, index: int, name: str) -> str:
        return name

    def __call__(self, target: str) -> tuple[list[ModelReport], dict | None]:
        return lint_one(target, self.rules, self.options, with_deps=self.with_deps, in_worker=True)

    def failed(self, index: int, name: str, reason: str) -> tuple[list[ModelReport], None]:
        return [ModelReport(target=name, model=name, load_error=f"{name}: {reason}")], None


class _VerifyJob:
    """What a verify worker does with a task (a linted model's report): the report, verified."""

    verb = "verifying"

    def __init__(self, options: Any, device: str, models: list[ModelReport]) -> None:
        self.options, self.device, self.models = options, device, models

    def __getstate__(self) -> dict:
        return {"options": self.options, "device": self.device, "models": []}  # tasks travel one by one

    def start(self) -> None:
        import torch

        self.device = torch.device(self.device)

    def task(self, index: int, name: str) -> ModelReport:
        return self.models[index]

    def __call__(self, model: ModelReport) -> ModelReport:
        from noiselint.verify.runner import verify_or_error

        return verify_or_error(model, self.options, self.device, in_worker=True)

    def failed(self, index: int, name: str, reason: str) -> ModelReport:
        return replace(self.models[index], load_error=f"{name}: --verify: {reason}")


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


def _serve(conn: Any, job: Any, preload: Sequence[str], memory_limit: int) -> None:
    """A worker: import the heavy modules once, then run tasks until told to stop or retired."""
    import importlib
    import warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the workers
    os.dup2(2, 1)  # a model file that prints must not corrupt a report written to stdout
    warnings.simplefilter("ignore")
    for name in preload:
        importlib.import_module(name)
    job.start()
    try:
        conn.send(("ready",))
        for count in range(1, TASKS_PER_WORKER + 1):
            task = conn.recv()
            result = job(task)
            retiring = count == TASKS_PER_WORKER or resident_bytes() > memory_limit
            conn.send(("done", result, retiring))
            if retiring:
                break
    except (EOFError, ConnectionError):  # the parent closed the pipe: it needs this worker no more
        pass
    _end_now()


def _end_now() -> None:
    """End the worker without the interpreter's teardown, which takes about 0.5 s once torch is
    imported (as long as a small model's whole lint) while the parent waits to join it. Every result
    has been sent; what the model's code printed is flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken by the model's code: nothing left to keep
            pass
    os._exit(0)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Worker:
    def __init__(self, context: Any, job: Any, preload: Sequence[str], memory_limit: int) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, job, preload, memory_limit),
                                       name="noiselint-worker")
        self.process.start()
        child.close()
        self.ready = False
        self.retiring = False
        self.task: int | None = None
        self.deadline: float | None = None

    def stop(self) -> int | None:
        """End the process (killing it if it does not end within a second); its exit code.

        The pipe is closed first: an idle worker waiting for its next task then ends at once."""
        self.conn.close()
        self.process.join(1)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        return self.process.exitcode


class _Pool:
    """Worker processes fed one task at a time, replaced when they crash, hang, grow or retire."""

    def __init__(self, job: Any, names: list[str], preload: Sequence[str], timeout: float | None,
                 memory_limit: int) -> None:
        import multiprocessing

        self.context = multiprocessing.get_context("spawn")
        self.job, self.names, self.preload = job, names, preload
        self.timeout, self.memory_limit = timeout, memory_limit

    def run(self, indices: list[int], jobs: int, done: Callable[[int, Any], None]) -> None:
        from multiprocessing.connection import wait

        queue = deque(indices)
        workers: list[_Worker] = []
        failed_starts = 0
        try:
            while queue or any(w.task is not None for w in workers):
                busy = sum(w.task is not None for w in workers)
                while len(workers) < min(jobs, len(queue) + busy):
                    workers.append(_Worker(self.context, self.job, self.preload, self.memory_limit))
                for worker in workers:
                    if worker.ready and not worker.retiring and worker.task is None and queue:
                        self._assign(worker, queue)
                wait([w.conn for w in workers] + [w.process.sentinel for w in workers], self._wait_time(workers))
                for worker in list(workers):
                    alive = self._receive(worker, done)
                    if alive and worker.deadline is not None and time.monotonic() >= worker.deadline:
                        self._fail(worker, f"gave up after {self.timeout:g} s (--timeout)", done)
                    elif alive and worker.task is not None and self._too_big(worker):
                        self._fail(worker, f"the worker process grew past the memory budget of "
                                           f"{shown(self.memory_limit)} while {self.job.verb} it and was "
                                           f"killed (--max-memory)", done)
                    elif not alive and worker.task is not None:
                        reason = _exit_reason(worker.stop())
                        self._fail(worker, f"the worker process died while {self.job.verb} it ({reason})", done)
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

    def _wait_time(self, workers: list[_Worker]) -> float | None:
        """Until the next deadline, and no longer than :data:`MEMORY_POLL` while a worker is busy."""
        limits = [w.deadline - time.monotonic() for w in workers if w.deadline is not None]
        limits += [MEMORY_POLL] if any(w.task is not None for w in workers) else []
        return max(0.0, min(limits)) if limits else None

    def _too_big(self, worker: _Worker) -> bool:
        return resident_bytes(worker.process.pid) > self.memory_limit

    def _assign(self, worker: _Worker, queue: deque) -> None:
        index = queue.popleft()
        try:
            worker.conn.send(self.job.task(index, self.names[index]))
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
                worker.retiring = message[2]
                done(index, message[1])
        except (EOFError, OSError):
            return False
        return alive

    def _fail(self, worker: _Worker, reason: str, done: Callable) -> None:
        worker.stop()
        index, worker.task, worker.deadline = worker.task, None, None
        done(index, self.job.failed(index, self.names[index], reason))
