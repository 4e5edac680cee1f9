"""Property test over configuration, baseline and cache files: a few hundred seeded hostile cases of each kind
are accepted or rejected with a one-line error (a cache entry: a miss), never a traceback, a hang or a rule
that crashes under options that validated. The full 2,000-case runs are ``benchmarks/fuzz_files.py``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter

import pytest

from .conftest import FIXTURES, ROOT

CASES = 300


@pytest.fixture(scope="module")
def fuzz():
    sys.path.insert(0, str(FIXTURES))
    try:
        spec = importlib.util.spec_from_file_location("file_fuzz", FIXTURES / "file_fuzz.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(FIXTURES))
    return module


@pytest.mark.parametrize("kind", ["config", "baseline", "cache"])
def test_hostile_files_never_end_in_a_traceback(fuzz, kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fuzzer = fuzz.Fuzzer(tmp_path, seconds=10)
    outcomes = Counter()
    for index in range(CASES):
        outcome, detail = fuzzer.case(kind, f"test-{index}")
        assert outcome in ("accepted", "rejected"), f"{kind} case test-{index}: {outcome}\n{detail}"
        outcomes[outcome] += 1
    assert outcomes["accepted"] >= CASES // 20 and outcomes["rejected"] >= CASES // 5, outcomes  # both paths run


def test_fuzz_benchmark_smoke():
    command = [sys.executable, str(ROOT / "benchmarks" / "fuzz_files.py"), "--cases", "25", "--seed", "7"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for kind in ("config", "baseline", "cache"):
        assert any(line.startswith(f"{kind}: 25 cases") and "traceback 0, hang 0" in line for line in lines), lines
