"""The memory budget (``--max-memory``, issue 15): what grows with the input is checked before it is
allocated: the hooks level's CPU forward, ONNX initializers read by weight rules, ``--weights``
checkpoints (keys first, declared zip sizes, no inflation of a file that does not match)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from benchmarks.memory_budget import BRANCHY, write_bomb, write_sparse_onnx
from noiselint.engine import Options, lint
from noiselint.errors import LoadError
from noiselint.graph import Preprocessing
from noiselint.loaders.onnx_loader import load_onnx
from noiselint.memory import MemoryBudgetError, parse_size, resident_bytes
from noiselint.tracing import _Budget
from noiselint.verify.weights import read_state_dict


def test_sizes_parse_and_bad_ones_are_one_line_errors():
    assert parse_size("4G") == 4 * 2**30 and parse_size("512MiB") == 512 * 2**20 and parse_size("1.5g") == 3 * 2**29
    for bad in ("lots", "-1G", "10"):
        with pytest.raises(Exception, match="size|below 1 MiB"):
            parse_size(bad)


def test_the_hooks_cpu_forward_stops_at_the_budget_and_stays_under_it(tmp_path):
    """At 3x3000x3000 and a 4 GiB budget the convolutions' workspaces would pass it: refused before they run,
    not killed by the worker watchdog."""
    (tmp_path / "branchy.py").write_text(BRANCHY)
    budget = 4 * 2**30
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); print(r.stdout)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "noiselint", "branchy.py", "--input-size",
                          "3x3000x3000", "--max-memory", str(budget), "--no-cache", "--isolated", "--format", "json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240).stdout
    peak, report = out.split("\n", 1)
    assert int(peak) < budget
    assert '"trace_level": "structural"' in report and "would pass the memory budget of 4 GiB" in report


def test_a_convolution_is_refused_when_its_im2col_workspace_would_not_fit():
    """A 3x3 conv at 16x512x512 outputs 16 MiB but its im2col buffer is 144 MiB: refused under 100 MiB more."""
    x, weight = torch.randn(1, 16, 512, 512), torch.randn(16, 16, 3, 3)
    budget = _Budget(resident_bytes() + 100 * 2**20, "3x512x512")
    budget.held.update(t.untyped_storage().data_ptr() for t in (x, weight))
    with pytest.raises(MemoryBudgetError, match="at conv2d"):
        budget.check(F.conv2d, (x, weight), {"padding": 1})
    budget.check(F.conv2d, (x, weight[:, :, :1, :1]), {})  # 1x1: no im2col, output and a reorder fit


def test_the_hooks_cpu_forward_runs_within_the_budget(tmp_path):
    (tmp_path / "branchy.py").write_text(BRANCHY)
    options = Options(preprocessing=Preprocessing(input_size=(3, 64, 64)))
    graph = lint([str(tmp_path / "branchy.py")], options).models[0].graph
    assert graph.trace_level == "hooks" and any("ran it once on CPU" in note for note in graph.notes)


def test_onnx_weights_past_the_budget_are_not_read_and_the_report_says_so(tmp_path):
    path = str(write_sparse_onnx(tmp_path, 40))
    tight = lint([path], Options(select=["NL601"], max_memory=resident_bytes() + 100 * 2**20)).models[0]
    assert tight.ok and not tight.rule_errors
    assert any("not read" in note and "--max-memory" in note for note in tight.graph.notes)
    roomy = lint([path], Options(select=["NL601"], max_memory=resident_bytes() + 2**30)).models[0]
    assert not any("not read" in note for note in roomy.graph.notes)


def test_an_onnx_file_with_its_weights_inside_is_refused_before_it_is_parsed(tmp_path):
    """The checker and shape inference parse the whole file: its size is checked against the budget first."""
    path = tmp_path / "inside.onnx"
    weight = numpy_helper.from_array(np.zeros((8000, 3, 7, 7), np.float32), "w")  # 4.7 MB inside the file
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[7, 7])], "inside",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8000, 26, 26])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    size = path.stat().st_size
    with pytest.raises(LoadError, match=r"inside.onnx: reading this 4.49 MiB file .* over the memory budget of "
                                        r".* \(--max-memory\); raise --max-memory or save the weights as external"):
        load_onnx(path, max_memory=resident_bytes() + 2 * size)
    assert load_onnx(path, max_memory=resident_bytes() + 64 * size).weights


def test_a_deflate_bomb_checkpoint_is_refused_or_checked_before_it_is_inflated(tmp_path):

    bomb = str(write_bomb(tmp_path / "bomb.pth", 256))
    with pytest.raises(MemoryBudgetError, match="zip records inflate to 256 MiB"):
        read_state_dict(bomb, 128 * 2**20)
    code = ("import resource, sys, torch.nn as nn; from noiselint.verify.weights import apply_weights\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    apply_weights(nn.Linear(2, 2), sys.argv[1], 'net.py', 2**30)\n"
            "except Exception as exc:\n    print(exc)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)")
    out = subprocess.run([sys.executable, "-c", code, bomb], capture_output=True, text=True, timeout=120).stdout
    message, grown = out.strip().splitlines()
    assert "does not match" in message and int(grown) < 64 * 2**20  # the 256 MiB record was never inflated
