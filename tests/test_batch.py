"""Batch runs: per-target isolation in worker processes, JSON lines, sorting, the summary table."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from noiselint import batch
from noiselint.engine import Options
from noiselint.findings import GraphSummary, ModelReport, Report
from noiselint.reporters import jsonl, text

from .conftest import FIXTURES, MODELS, ROOT

BATCH = FIXTURES / "batch"


def test_a_segfault_an_abort_and_a_hang_become_error_records_and_the_run_goes_on():
    targets = [BATCH / name for name in ("segfault.py", "good.py", "hang.py", "abort.py")]
    result = subprocess.run(
        [sys.executable, "-m", "noiselint", *map(str, targets), "--jobs", "2", "--timeout", "10",
         "--format", "jsonl", "--no-cache", "--isolated"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    *models, summary = lines
    assert summary["type"] == "summary" and summary["summary"]["models"] == 4 == len(models)
    assert summary["summary"]["failed"] == 3
    by_file = {m["model"].split("/")[-1].split(":")[0]: m for m in models}
    assert by_file["good.py"]["status"] == "ok" and by_file["good.py"]["graph"]["trace_level"] == "fx"
    assert "killed by SIGSEGV" in by_file["segfault.py"]["error"]
    assert "killed by SIGABRT" in by_file["abort.py"]["error"]
    assert "gave up after 10 s (--timeout)" in by_file["hang.py"]["error"]


def _report(name: str, exposure: float | None, ok: bool = True) -> ModelReport:
    graph = GraphSummary(trace_level="fx", coverage=1.0, nodes=3, input_size=(3, 32, 32), architecture="cnn",
                         weights=False) if ok else None
    return ModelReport(target=name, model=name, graph=graph, exposure=exposure,
                       load_error=None if ok else f"{name}: no such file")


def test_sort_by_exposure_puts_the_most_exposed_first_and_unknown_last(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reports = {"a.py": _report("a.py", 1.0), "b.py": _report("b.py", None, ok=False), "c.py": _report("c.py", 3.5),
               "d.py": _report("d.py", 0.0)}
    monkeypatch.setattr(batch, "lint_one", lambda target, *a, **k: ([reports[target]], None))
    report = batch.run(list(reports), Options(), batch.BatchSettings(sort="exposure", in_process=True))
    assert [m.model for m in report.models] == ["c.py", "a.py", "d.py", "b.py"]
    report = batch.run(list(reports), Options(), batch.BatchSettings(in_process=True))
    assert [m.model for m in report.models] == list(reports)


def test_in_process_run_streams_each_report_as_it_is_known():
    seen = []
    report = batch.run([str(MODELS / "resnet_maxpool.py"), "missing.py"], Options(),
                       batch.BatchSettings(in_process=True), on_report=seen.append)
    assert list(report.models) == seen
    assert seen[0].ok and not seen[1].ok and "no such file" in seen[1].load_error


def test_jsonl_lines_then_a_summary():
    report = Report(models=(_report("a.py", 1.0), _report("b.py", None, ok=False)))
    stream = io.StringIO()
    jsonl.render(report, stream)
    first, second, summary = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["type"] == "model" and first["model"] == "a.py" and first["exposure"] == 1.0
    assert second["status"] == "error"
    assert summary["type"] == "summary" and summary["summary"]["failed"] == 1 and "models" not in summary


def test_text_report_ends_with_a_summary_table_for_several_models():
    stream = io.StringIO()
    text.render(Report(models=(_report("a.py", 1.0), _report("b.py", None, ok=False))), stream)
    table = stream.getvalue().split("model ")[-1]
    assert "exposure" in table and "failed" in table
    single = io.StringIO()
    text.render(Report(models=(_report("a.py", 1.0),)), single)
    assert "exposure " not in single.getvalue().split("\n\n")[-1]


def test_a_worker_the_run_no_longer_needs_ends_quietly():
    """Two targets start two workers; when one lints both, the other is closed while it starts up:
    it must end without a traceback on stderr (README command 1 is such a run)."""
    for _ in range(3):
        done = subprocess.run([sys.executable, "-m", "noiselint", "check", str(MODELS / "resnet_maxpool.py"),
                               str(MODELS / "robust_net.py"), "--no-cache", "--jobs", "2"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
