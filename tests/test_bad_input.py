"""Bad input: a one-line error and exit 2, never a traceback or a hang; a corrupt cache entry is a miss."""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from noiselint import baseline, cache, config, readers
from noiselint.cli import main
from noiselint.engine import Options
from noiselint.errors import UsageError
from noiselint.findings import Basis, Estimate, Finding, GraphSummary, ModelReport, Report, Severity
from noiselint.graph import SourceLocation


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("noiselint: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@contextmanager
def deadline(seconds: int = 20):
    """Fail instead of hanging (a FIFO read would block for ever)."""
    def expire(*_):
        raise TimeoutError("hung")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("toml", "words"), [
    ("tool = 5  # noiselint", ["`tool` must be a table", "got 5"]),
    ('tool = "noiselint"', ["`tool` must be a table", "got 'noiselint'"]),
    ("[tool]\nnoiselint = 5", ["[tool.noiselint] must be a table", "got 5"]),
    ("[tool]\nnoiselint = [[1]]", ["[tool.noiselint] must be a table", "got [[1]]"]),
    ("[tool.noiselint]\nmodels = [[1]]", ["models: expected a list of strings"]),
    ("[tool.noiselint.rules.NL101]\nmin_kernel = -5", ["min_kernel must be >= 1"]),
    ("[tool.noiselint.rules.NL101]\nmin_kernel = 0", ["min_kernel must be >= 1"]),
    ("[tool.noiselint.rules.NL401]\nmin_std = nan", ["min_std must be a finite number"]),
    ("[tool.noiselint.rules.NL601]\nmax_gain = 0.0", ["max_gain must be > 0"]),
    ("[tool.noiselint.rules.NL502]\nmax_passed_share = 2.0", ["max_passed_share must be >= 0 and <= 1"]),
    ("[tool.noiselint]\nmodels = " + "[" * 200 + "]" * 200, ["nested more than 64 levels deep"]),
    ("[tool.noiselint]\nmodels = " + "[" * 100_000 + "]" * 100_000, ["nested more than 64 levels deep"]),
    ("[tool.noiselint]\nselect = [" + ", ".join(['"x"'] * 50) + ", 1]", ["expected a list of strings", "..."]),
])
def test_a_bad_pyproject_is_a_one_line_error(folder, toml, words):
    (folder / "pyproject.toml").write_text(toml + "\n")
    assert_one_line_error(run("model.onnx"), "pyproject.toml", *words)


def test_a_rules_folder_name_too_long_for_the_file_system(folder):
    (folder / "pyproject.toml").write_text(f'[tool.noiselint]\nrules-dirs = ["{"x" * 5000}"]\n')
    assert_one_line_error(run("m.onnx"), "not a rules folder: File name too long")


def test_config_that_is_not_a_regular_file(folder):
    assert_one_line_error(run("m.onnx", "--config", "/dev/null"), "/dev/null", "not a regular file (a device)")
    os.mkfifo(folder / "fifo.toml")
    with deadline():
        assert_one_line_error(run("m.onnx", "--config", "fifo.toml"), "not a regular file (a FIFO)")
    assert_one_line_error(run("m.onnx", "--config", "missing.toml"), "missing.toml: no such configuration file")


def test_option_values_are_checked_against_the_rules_ranges():
    from rules.stem import SmallStemKernel

    assert SmallStemKernel.option_problem("min_kernel", 9) is None
    assert SmallStemKernel.option_problem("min_kernel", -5) == "must be >= 1 and <= 4096"
    assert SmallStemKernel.option_problem("min_kernel", float("inf")) == "must be a finite number"


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(("args", "words"), [
    (["--timeout", "inf"], ["--timeout inf", "finite number of seconds"]),
    (["--timeout", "nan"], ["--timeout nan", "finite number of seconds"]),
    (["--mean", "1e308", "--std", "1e-308"], ["overflow", "finite"]),
    (["--std", "1e-200"], ["overflow"]),
    (["--input-size", "3x32x2147483648"], ["too large", "16384 pixels a side"]),
])
def test_bad_numbers_on_the_command_line(folder, args, words):
    assert_one_line_error(run("m.onnx", "--isolated", *args), *words)


@pytest.mark.parametrize(("args", "words"), [
    (["m.onnx", "--timeout", "-1"], ["Invalid value for '--timeout'", "(see noiselint check --help)"]),
    (["m.onnx", "--jobs", "x"], ["'--jobs': 'x' is not a valid integer", "(see noiselint check --help)"]),
    (["m.onnx", "--format", "yaml"], ["'--format': 'yaml' is not one of", "(see noiselint check --help)"]),
    (["m.onnx", "--input-size", "3x"], ["expected H, HxW or CxHxW, got '3x'"]),
    (["m.onnx", "--no-such-option"], ["No such option '--no-such-option'"]),
    (["m.onnx", "--verify", "--images", "0"], ["'--images': 0 is not in the range x>=1"]),
    (["explain"], ["Missing argument 'CODE' (see noiselint explain --help)"]),
    (["rules", "--jobs", "2"], ["No such option '--jobs' (see noiselint rules --help)"]),
])
def test_click_usage_errors_are_one_line(folder, args, words):
    """Wrong option types and unknown options: one line saying where to look, not click's usage block."""
    assert_one_line_error(run(*args), *words)


def test_a_symlink_loop_as_target_is_a_load_error(folder):
    for name in ("a.py", "b.onnx"):
        os.symlink(name, folder / f"loop-{name}")
        os.symlink(f"loop-{name}", folder / name)
    result = run("a.py", "b.onnx", "--isolated", "--format", "json")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    models = json.loads(result.stdout)["models"]
    assert [m["status"] for m in models] == ["error", "error"]
    for model in models:
        assert model["error"].startswith(f"{model['target']}: a symlink loop (ELOOP")
        assert "\n" not in model["error"]


# --------------------------------------------------------------------------- baselines


def test_bad_baselines_are_one_line_errors(folder):
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "nested.json").write_text(json.dumps({"schema": "noiselint-baseline", "schema_version": 1,
                                                    "findings": [{"fingerprint": [[["x"]]]}]}))
    os.mkfifo(folder / "fifo.json")
    os.symlink("/dev/zero", folder / "zero.json")
    cases = {
        "deep.json": "nested more than 64 levels deep",
        "nested.json": "a baseline entry has no fingerprint",
        "fifo.json": "cannot read the baseline: not a regular file (a FIFO)",
        "zero.json": "cannot read the baseline: not a regular file (a device)",
        "/dev/null": "cannot read the baseline: not a regular file (a device)",
        "missing.json": "no such baseline",
    }
    for path, words in cases.items():
        with deadline():
            assert_one_line_error(run("m.onnx", "--isolated", "--baseline", path), path, words)


def test_a_baseline_is_not_written_into_a_fifo(folder):
    os.mkfifo(folder / "fifo.json")
    with deadline(), pytest.raises(UsageError, match="not a regular file"):
        baseline.write(Report(), folder / "fifo.json")


# --------------------------------------------------------------------------- cache entries


REPORT = ModelReport(
    target="model.onnx", model="model.onnx",
    findings=(Finding(code="NL301", rule="max-pooling", severity=Severity.WARNING, message="3x3 max pooling",
                      model="model.onnx", node="pool", module_path="pool",
                      location=SourceLocation("model.onnx", 1, 1)),),
    graph=GraphSummary(trace_level="onnx", coverage=1.0, nodes=3, input_size=(3, 8, 8), architecture="cnn",
                       weights=True),
    exposure=0.5,
)


def _edit(path: Path, change) -> None:
    entry = json.loads(path.read_text())
    change(entry)
    path.write_text(json.dumps(entry))


def _model(entry) -> dict:
    return entry["models"][0]


CORRUPTIONS = {
    "a list": lambda p: p.write_text("[]"),
    "a float": lambda p: p.write_text("3.5"),
    "deep nesting": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
    "not JSON": lambda p: p.write_text('{"deps": '),
    "not UTF-8": lambda p: p.write_bytes(b"\xff\xfe\x00{"),
    "models a dict": lambda p: _edit(p, lambda e: e.update(models={"a": 1})),
    "a model a float": lambda p: _edit(p, lambda e: e.update(models=[2.5])),
    "deps a list": lambda p: _edit(p, lambda e: e.update(deps=[1])),
    "exposure a string": lambda p: _edit(p, lambda e: _model(e).update(exposure="high")),
    "exposure a list": lambda p: _edit(p, lambda e: _model(e).update(exposure=[1.0])),
    "location line a string": lambda p: _edit(p, lambda e: _model(e)["findings"][0]["location"].update(line="ten")),
    "location a list": lambda p: _edit(p, lambda e: _model(e)["findings"][0].update(location=[1, 2])),
    "severity unknown": lambda p: _edit(p, lambda e: _model(e)["findings"][0].update(severity=99)),
    "an unknown field": lambda p: _edit(p, lambda e: _model(e).update(surprise=1)),
    "notes a string": lambda p: _edit(p, lambda e: _model(e)["graph"].update(notes="abc")),
    "a negative std": lambda p: _edit(p, lambda e: _model(e).update(preprocessing={"std": [-1.0]})),
    "a verification": lambda p: _edit(p, lambda e: _model(e).update(verification={"images": 1})),
}


@pytest.fixture
def entry(folder) -> tuple[cache.Cache, Path]:
    (folder / "model.onnx").write_bytes(b"not really onnx")
    results = cache.Cache(folder / "cache", Options())
    results.store("model.onnx", [REPORT], cache.dependencies("model.onnx", set()))
    assert results.lookup("model.onnx") == [REPORT]
    (path,) = (folder / "cache").glob("*.json")
    return results, path


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_cache_entry_is_a_miss_and_is_removed(entry, corruption):
    results, path = entry
    CORRUPTIONS[corruption](path)
    assert results.lookup("model.onnx") is None
    assert results.misses == 1 and not path.exists()


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/null", "loop"])
def test_special_files_in_the_cache_never_block(entry, folder, special):
    results, path = entry
    target = folder / "special"
    if special == "fifo":
        os.mkfifo(target)
    elif special == "loop":
        os.symlink("special", target)
    else:
        os.symlink(special, target)
    _edit(path, lambda e: e.update(deps={str(target): "0" * 64}))  # a dependency that is not a file
    with deadline():
        assert results.lookup("model.onnx") is None
    if special == "loop":  # the entry itself is one
        path.unlink()
        os.symlink(path.name, path)
    else:
        os.replace(target, path)
    with deadline():
        assert results.lookup("model.onnx") is None
    assert cache.file_hash(folder / "model.onnx") is not None


def test_a_negative_variance_factor_has_no_sigma_equivalent():
    estimate = Estimate(quantity="noise variance", factor=-0.5, basis=Basis.ANALYTIC, formula="f")
    assert estimate.sigma_factor is None
    assert estimate.summary() == "noise variance x-0.5 (input sigma unknown) [analytic]"


def test_read_bytes_refuses_what_is_not_a_regular_file(folder):
    with pytest.raises(readers.NotRegularFile, match="a folder"):
        readers.read_bytes(folder)
    with pytest.raises(OSError, match="larger than 4 bytes"):
        (folder / "big").write_bytes(b"12345")
        readers.read_bytes(folder / "big", limit=4)
    assert readers.depth([[1, {"a": [2]}], 3]) == 4 and readers.depth(5) == 0


def test_config_depth_is_bounded_too(folder):
    (folder / "x.toml").write_text("a = " + "[" * 70 + "]" * 70 + "\n")
    with pytest.raises(UsageError, match="nested more than 64 levels"):
        config.load(folder / "x.toml")
