"""The real-world corpus (fixtures/realworld/corpus.toml) linted as its users would, checked against
golden expectations read from the vendored sources: per target the findings' codes, module paths, the
line each points at (the model's own line) and the helper's line behind it (``related``), a trace
level that is not the structural fallback, and for the targets that cannot be linted as they stand,
a one-line error that says what to do.

Bug classes of issue 9, each with real files here: export attributes (cct_7, swin, CLIP, DINOv2 at
the export level), value-touching construction (ConvNeXt/Swin drop-path schedules), package imports
(osmr's relative imports, dinov2), input size (CIFAR nets at 32), preprocessing in the file
(DMWideResNet's forward normalization, BNInception's 0..255 settings, a torchvision Compose),
stdout (readme_vit prints), locations (helper-built layers), recognition (Rearrange + Linear, x[::2]).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from .conftest import ROOT

CORPUS = tomllib.loads((ROOT / "fixtures" / "realworld" / "corpus.toml").read_text())["target"]


def _path(path: str) -> str:
    """Paths inside an installed package compared from the package on (``torchvision/models/...``)."""
    return path.split("site-packages/", 1)[1] if "site-packages/" in path else path


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, dict]:
    """Every corpus target linted in one CLI run, in process (``--jobs 1``), as JSON by target."""
    out = tmp_path_factory.mktemp("realworld") / "report.json"
    targets = [t["target"] for t in CORPUS]
    done = subprocess.run([sys.executable, "-m", "noiselint", "check", *targets, "--no-cache", "--jobs", "1",
                           "--format", "concise", "--report", f"json:{out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode in (0, 1, 2), done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return {m["target"]: m for m in json.loads(out.read_text())["models"]}


@pytest.mark.parametrize("entry", CORPUS, ids=[t["target"].split("/")[-1] for t in CORPUS])
def test_corpus_target(entry, reports):
    model = reports[entry["target"]]
    if "expected_error" in entry:
        assert model["status"] == "error"
        assert "\n" not in model["error"] and len(model["error"]) < 600
        return
    assert model["status"] == "ok", model["error"]
    assert not model["rule_errors"], model["rule_errors"]
    assert model["graph"]["trace_level"] in ("fx", "export", "hooks")
    found = {(f["code"], f["module_path"], f"{_path(f['location']['path'])}:{f['location']['line']}",
              tuple(f"{_path(r['path'])}:{r['line']}" for r in f["location"]["related"])) for f in model["findings"]}
    expected = {(e["code"], e["module"], e["at"], (e["related"],) if e.get("related") else ())
                for e in entry["expected"]}
    assert found == expected


def test_a_model_that_prints_leaves_the_json_on_stdout_valid():
    target = "fixtures/realworld/lucidrains_vit_pytorch/readme_vit.py:v"  # prints its output shape
    done = subprocess.run([sys.executable, "-m", "noiselint", "check", target, "--no-cache", "--format", "json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr
    assert json.loads(done.stdout)["models"][0]["status"] == "ok"
    assert "torch.Size" in done.stderr


def test_output_written_to_file_descriptor_1_goes_to_stderr(tmp_path):
    model = tmp_path / "noisy.py"
    model.write_text("import os\nimport torch.nn as nn\nos.write(1, b'from C\\n')\n"
                     "def model():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n")
    done = subprocess.run([sys.executable, "-m", "noiselint", "check", f"{model}:model", "--no-cache",
                           "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert json.loads(done.stdout)["models"][0]["status"] == "ok"
    assert "from C" in done.stderr


@pytest.mark.parametrize("suffix", ["vit_pytorch/cct.py:cct_7", "dinov2/models/vision_transformer.py:vit_large"])
def test_a_drop_path_schedule_is_read_on_the_meta_device(suffix, reports):
    """``[x.item() for x in torch.linspace(0, rate, depth)]`` (CCT, DINOv2): the values are known from the
    arguments, so the model builds on the meta device, with no CPU build and no weights allocated."""
    (model,) = [m for target, m in reports.items() if target.endswith(suffix)]
    assert model["status"] == "ok"
    assert not any("built on the CPU" in note for note in model["graph"]["notes"]), model["graph"]["notes"]


def test_a_constructor_that_copies_tensor_values_falls_back_to_a_cpu_build_and_says_so():
    """torchvision's RegNets copy a meta tensor's values while they are built: built on the CPU instead
    (initializers skipped), then linted like any other, and the report says which build was used."""
    done = subprocess.run([sys.executable, "-m", "noiselint", "check", "torchvision:regnet_y_400mf", "--no-cache",
                           "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-2000:]
    (model,) = json.loads(done.stdout)["models"]
    assert model["graph"]["trace_level"] == "fx"
    assert any(note.startswith("built on the CPU with initializers skipped") and "Cannot copy out of meta tensor"
               in note for note in model["graph"]["notes"])
    assert {"NL101", "NL302"} <= {f["code"] for f in model["findings"]}


def test_linting_imports_neither_torch_dynamo_nor_sympy():
    """Every corpus target whose own files do not import torchvision (``imports_torchvision`` names the
    others and why), linted in one process: torch._dynamo and sympy (about 1.5 s of imports, pulled in by
    the first Python meta kernel or torch.export) are never imported."""
    targets = [t["target"] for t in CORPUS if "imports_torchvision" not in t]
    code = (
        "import json, runpy, sys\n"
        "sys.argv = ['noiselint', 'check', *sys.argv[1:], '--no-cache', '--in-process', '--format', 'concise']\n"
        "try:\n    runpy.run_module('noiselint', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('\\n' + json.dumps([m for m in ('torch._dynamo', 'sympy') if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *targets], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_a_factory_that_moves_the_model_to_cuda_builds_on_meta_without_a_gpu(reports):
    """airbench's ``make_net94()`` ends with ``net.half().cuda()``: linted here without a GPU, on the meta
    device, and the report says the ``.cuda()`` call was kept there."""
    (model,) = [m for target, m in reports.items() if target.endswith("lib_airbench94.py:make_net94")]
    assert model["status"] == "ok"
    assert any(".cuda()" in note and "meta device" in note for note in model["graph"]["notes"])
