"""What each command imports: torch only for torch models, timm only for timm models.

Each test runs the CLI in a fresh interpreter through a tiny wrapper that reports, at exit, which
heavy modules ended up in ``sys.modules``; a lint runs ``--in-process`` so that its imports are seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FIXTURES, MODELS, ROOT

HEAVY = ("torch", "timm", "torchvision", "onnx", "numpy", "networkx", "scipy")
WRAPPER = """
import json, sys
sys.argv = ["noiselint", *sys.argv[1:]]
code = 0
try:
    from noiselint.cli import main
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": [m for m in HEAVY if m in sys.modules]}), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def run_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> tuple[int, set[str], str]:
    """Run ``noiselint ARGS`` in a fresh interpreter: (exit code, heavy modules imported, stdout)."""
    result = subprocess.run([sys.executable, "-c", WRAPPER, *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, env={**os.environ, **(env or {})}, timeout=300)
    status = json.loads(result.stderr.strip().splitlines()[-1])
    return status["code"], set(status["loaded"]), result.stdout


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("rules",), ("explain", "NL301")])
def test_help_rules_and_explain_import_neither_torch_nor_timm(args):
    code, loaded, output = run_cli(*args)
    assert code == 0, output
    assert not loaded & {"torch", "timm", "torchvision"}, loaded


def test_help_imports_nothing_heavy():
    assert run_cli("--help")[1] == set()


def test_onnx_file_never_imports_torch(tmp_path):
    sys.path.insert(0, str(FIXTURES))
    try:
        import onnx_models
    finally:
        sys.path.remove(str(FIXTURES))
    path = onnx_models.save(onnx_models.build_resnet_stem(), tmp_path / "stem.onnx")
    code, loaded, output = run_cli(path, "--no-cache", "--isolated", "--in-process", "--format", "json")
    assert json.loads(output)["models"][0]["status"] == "ok", output
    assert code in (0, 1) and "onnx" in loaded
    assert not loaded & {"torch", "timm", "torchvision"}, loaded


def test_model_file_without_timm_never_imports_timm():
    code, loaded, output = run_cli(MODELS / "resnet_maxpool.py", "--no-cache", "--isolated", "--in-process")
    assert code == 1, output
    assert "torch" in loaded
    assert not loaded & {"timm", "torchvision"}, loaded
