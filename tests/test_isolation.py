"""Isolation in every mode (issue 15): each target is linted, and verified, in a supervised worker
process by default, even alone, with one job or one usable core; whatever a model does (segfault,
abort, hang, memory hog, KeyboardInterrupt, BaseException, failing on real data, weights that do not
fit it) becomes that target's error record and every other target is still reported."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import pytest
import torch

from noiselint import api, batch
from noiselint.engine import Options
from noiselint.verify import VerifyOptions

GOOD = '''
import torch.nn as nn

INPUT_SIZE = (3, 16, 16)


class Good(nn.Module):
    def __init__(self, width={width}):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, 4)
        self.real = not self.conv.weight.is_meta  # built for --verify: linting stays on the meta device

    def forward(self, x):
        if self.real:
            {on_real_data}
        return self.fc(self.pool(self.conv(x)).flatten(1))
'''
HOG = '''
import time

chunks = []
for _ in range(40):  # 2.5 GiB at most, so a broken watchdog cannot take the machine's memory
    chunks.append(bytearray(64 << 20))
    time.sleep(0.02)
time.sleep(60)
'''
AT_IMPORT = {
    "segfault": "import ctypes\nctypes.string_at(0)\n",
    "abort": "import os\nos.abort()\n",
    "hang": "import time\nwhile True:\n    time.sleep(1)\n",
    "hog": HOG,
    "interrupt": "raise KeyboardInterrupt\n",
    "base": "class Stop(BaseException):\n    pass\n\n\nraise Stop('a BaseException from model code')\n",
}
ON_REAL_DATA = {
    "good": "pass",
    "raises": "raise RuntimeError('fails on real data')",
    "segfaults": "import ctypes; ctypes.string_at(0)",
    "hangs": "import time; time.sleep(600)",
    "interrupts": "raise KeyboardInterrupt",
}
FAST_VERIFY = ["--verify", "--images", "2", "--draws", "1", "--sigmas", "0.1", "--device", "cpu"]
VERIFY = VerifyOptions(images=2, draws=1, sigmas=(0.1,), rhos=(), gain_images=2, device="cpu")


def good(width: int = 8, on_real_data: str = "pass") -> str:
    return GOOD.format(width=width, on_real_data=on_real_data)


def write_batch(folder) -> dict[str, str]:
    """20 model files: what each does, by file name."""
    plan = {"segfault": 1, "abort": 1, "hang": 1, "hog": 1, "interrupt": 2, "base": 2}
    files = {}
    for kind, count in plan.items():
        for i in range(count):
            files[f"{kind}{i}.py"] = AT_IMPORT[kind]
    for kind, count in {"good": 8, "raises": 1, "segfaults": 1, "hangs": 1, "interrupts": 1}.items():
        for i in range(count):
            files[f"{kind}{i}.py"] = good(on_real_data=ON_REAL_DATA[kind])
    for name, source in files.items():
        (folder / name).write_text(source)
    return files


def noiselint(*args, cwd, one_core: bool = True) -> subprocess.CompletedProcess:
    prefix = ["taskset", "-c", "0"] if one_core else []
    return subprocess.run([*prefix, sys.executable, "-m", "noiselint", *map(str, args), "--no-cache", "--isolated",
                           "--format", "jsonl"], cwd=cwd, capture_output=True, text=True, timeout=240)


def by_file(result: subprocess.CompletedProcess) -> dict[str, dict]:
    *models, summary = (json.loads(line) for line in result.stdout.splitlines())
    assert summary["type"] == "summary" and summary["summary"]["models"] == len(models)
    return {m["target"].split("/")[-1].split(":")[0]: m for m in models}


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_one_core_batch_of_20_hostile_models_reports_all_20_with_and_without_verify(tmp_path):
    files = write_batch(tmp_path)
    started = time.monotonic()
    targets = sorted(files)
    plain = noiselint(*targets, "--timeout", "3", "--max-memory", "1200M", cwd=tmp_path)
    print(f"lint: {time.monotonic() - started:.1f} s")
    verified = noiselint(*targets, "--timeout", "8", "--max-memory", "1200M", *FAST_VERIFY, cwd=tmp_path)
    print(f"lint and verify: {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 180  # about 60 s on an idle 2-core machine
    for result in (plain, verified):
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "Aborted" not in result.stderr
        models = by_file(result)
        assert sorted(models) == targets
        for name in targets:
            error = models[name]["error"] or ""
            kind = re.sub(r"\d+\.py$", "", name)
            if kind == "segfault":
                assert "killed by SIGSEGV" in error
            elif kind == "abort":
                assert "killed by SIGABRT" in error
            elif kind == "hang":
                assert "(--timeout)" in error
            elif kind == "hog":
                assert "--max-memory" in error and "killed" in error
            elif kind == "interrupt":
                assert "KeyboardInterrupt" in error
            elif kind == "base":
                assert "Stop: a BaseException from model code" in error
            elif result is plain:  # every other file lints cleanly
                assert models[name]["status"] == "ok", name
    models = by_file(verified)
    for i in range(8):
        model = models[f"good{i}.py"]
        assert model["status"] == "ok" and model["verification"]["data"]["images"] == 2, model["error"]
    assert "--verify failed: RuntimeError: fails on real data" in models["raises0.py"]["error"]
    assert "died while verifying it (killed by SIGSEGV)" in models["segfaults0.py"]["error"]
    assert "--verify: gave up after 8 s (--timeout)" in models["hangs0.py"]["error"]
    assert "--verify failed: KeyboardInterrupt" in models["interrupts0.py"]["error"]
    assert models["raises0.py"]["findings"]  # the lint's findings stay in the record


def test_a_single_target_runs_in_a_worker_so_a_segfault_is_a_record(tmp_path):
    (tmp_path / "crash.py").write_text(AT_IMPORT["segfault"])
    result = noiselint("crash.py", "--jobs", "1", cwd=tmp_path, one_core=False)
    assert result.returncode == 2
    assert "killed by SIGSEGV" in by_file(result)["crash.py"]["error"]


def test_in_process_needs_no_timeout_and_lets_ctrl_c_stop_the_run(tmp_path):
    (tmp_path / "interrupt.py").write_text(AT_IMPORT["interrupt"])
    (tmp_path / "base.py").write_text(AT_IMPORT["base"])
    with pytest.raises(KeyboardInterrupt):
        batch.run([str(tmp_path / "interrupt.py")], Options(), batch.BatchSettings(in_process=True))
    report = batch.run([str(tmp_path / "base.py")], Options(), batch.BatchSettings(in_process=True))
    assert "Stop: a BaseException from model code" in report.models[0].load_error and report.exit_code == 2
    result = noiselint("base.py", "--in-process", "--timeout", "5", cwd=tmp_path, one_core=False)
    assert result.returncode == 2 and "--timeout needs worker processes" in result.stderr


def test_verify_failure_and_weights_that_fit_one_target_are_errors_of_that_target_only(tmp_path):
    for name, source in {"a.py": good(8), "b.py": good(6), "fails.py": good(8, ON_REAL_DATA["raises"])}.items():
        (tmp_path / name).write_text(source)
    from noiselint.loaders import load

    weights = tmp_path / "a.pt"
    torch.save(load(str(tmp_path / "a.py"), device="cpu")[0].module.state_dict(), weights)
    targets = [str(tmp_path / n) for n in ("a.py", "b.py", "fails.py")]
    settings = api.RunSettings(in_process=True)
    verify = VerifyOptions(**{**VERIFY.__dict__, "weights": str(weights)})
    report = api.check(targets, Options(), settings, verify=verify)
    a, b, fails = report.models
    assert a.ok and a.verification.weights == f"--weights {weights}"
    assert not b.ok and "--verify: --weights" in b.load_error and "does not match" in b.load_error and b.findings
    assert fails.verification is None and "fails on real data" in fails.load_error
    assert report.exit_code == 2
