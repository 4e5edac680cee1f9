"""Output is data, never instructions: hostile names from an ONNX file, a file name and a torch module path
go through every format without starting a runner command, reaching the terminal as an escape sequence
or rendering as Markdown; JSON, JSONL and SARIF stay strict JSON with NaN weights."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from noiselint.engine import lint
from noiselint.findings import Evidence, Finding, ModelReport, Report, Severity, StudyRow
from noiselint.reporters import REPORTERS, escape, get

#: Every trick at once: a new line that starts a command, ESC, Markdown image and HTML, rich markup, a
#: legacy runner command (``##[``) and a bidirectional override.
HOSTILE = "\n::error file=x::pwned\x1b[31m![x](http://e)<script>alert(1)</script>[bold]##[add-mask]s\u202e"
FILE_NAME = "::stop-commands::tok\x1b[2J##[set-output name=x;]y.onnx"
TORCH_MODEL = f'''\
import torch.nn as nn

HOSTILE = {HOSTILE!r}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.add_module("pool" + HOSTILE, nn.MaxPool2d(3, 2))

    def forward(self, x):
        return getattr(self, "pool" + HOSTILE)(self.conv(x))


model = Net()
'''
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _hostile_onnx(path) -> None:
    """Conv 7x7/2 with a NaN and an infinite weight, max pooling, a classifier; every node name hostile."""
    weight = np.random.default_rng(0).standard_normal((8, 3, 7, 7)).astype(np.float32)
    weight[0, 0, 0, :2] = (np.nan, np.inf)
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["c"], name="conv" + HOSTILE, kernel_shape=[7, 7], strides=[2, 2],
                         pads=[3, 3, 3, 3]),
        helper.make_node("MaxPool", ["c"], ["p"], name="pool" + HOSTILE, kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name=HOSTILE),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten" + HOSTILE),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], name="fc" + HOSTILE, transB=1),
    ]
    graph = helper.make_graph(
        nodes, "hostile", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(weight, "w"),
                     numpy_helper.from_array(np.ones((10, 8), np.float32), "fc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, str]:
    """The hostile ONNX file and torch model linted once, rendered in every format."""
    folder = tmp_path_factory.mktemp("hostile")
    _hostile_onnx(folder / FILE_NAME)
    (folder / "net.py").write_text(TORCH_MODEL)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        report = lint([FILE_NAME, "net.py"])
        assert all(m.ok for m in report.models), [m.load_error for m in report.models]
        assert {f.module_path for f in report.findings} >= {"conv" + HOSTILE, "pool" + HOSTILE}
        rendered = {}
        for name in REPORTERS:
            stream = io.StringIO()
            get(name)(report, stream)
            rendered[name] = stream.getvalue()
    return rendered


@pytest.mark.parametrize("name", ["text", "concise", "markdown", "github"])
def test_no_line_is_a_runner_command_or_a_terminal_escape(outputs, name):
    lines = outputs[name].split("\n")
    for line in lines:
        assert not UNSAFE.search(line), line
        assert "##[" not in line, line
        commands = re.match(r"::(notice|warning|error) [^:]*::", line)
        assert not line.lstrip().startswith("::") or (name == "github" and commands), line
    if name == "github":  # one command per finding, then the summary: no line of a name's own
        assert all(line.startswith(("::notice ", "::warning ", "::error ")) for line in lines[:-2]), lines
        assert lines[-1] == "" and lines[-2].endswith(".")


def test_text_prints_rich_markup_from_a_name_as_itself(outputs):
    assert "[bold]" in outputs["text"] and "[31m" in outputs["text"]
    assert "\\n::error file=x::pwned\\x1b[31m" in outputs["text"]  # the name, readable, on one line


def test_markdown_renders_no_link_image_or_html_from_a_name(outputs):
    text = outputs["markdown"]
    prose = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text)  # code spans render their content as text
    assert not re.search(r"(?<!\\)[<\[\]!`]", prose), prose
    assert "http://" not in prose and "<script>" not in prose
    assert all(line.count("|") - line.count("\\|") == 7 for line in text.split("\n") if line.startswith("| "))


@pytest.mark.parametrize("name", ["json", "jsonl", "sarif"])
def test_json_formats_are_strict_and_keep_names_exact(outputs, name):
    text = outputs[name]
    documents = [_strict(line) for line in text.splitlines()] if name == "jsonl" else [_strict(text)]
    assert "##[" not in text  # written ##\u005b, which decodes to the same string
    strings = set(_strings(documents))
    assert "pool" + HOSTILE in strings and "conv" + HOSTILE in strings


def test_nan_weights_become_null_with_a_note(outputs):
    report = _strict(outputs["json"])
    onnx_model = next(m for m in report["models"] if m["target"] == FILE_NAME)
    notes = onnx_model["non_finite"]
    assert notes and {n["value"] for n in notes} <= {"NaN", "Infinity", "-Infinity"}
    for note in notes:
        assert _pointer(onnx_model, note["path"]) is None


def test_sarif_lists_non_finite_numbers_in_the_run():
    row = StudyRow(task="natural", change="max -> avg", stage="stem", seeds=5, predicted_stage_factor=None,
                   measured_stage_factor=float("nan"), stage_factor_range=(0.1, float("inf")), logit_factor=1.0,
                   robustness_difference=0.1, robustness_difference_sd=None, seeds_better=5, verdict="effect")
    finding = Finding(code="NL301", rule="max-pooling", severity=Severity.WARNING, message="m", model="m.onnx",
                      evidence=Evidence("effect", (row,)))
    stream = io.StringIO()
    get("sarif")(Report((ModelReport(target="m.onnx", model="m.onnx", findings=(finding,)),)), stream)
    sarif = _strict(stream.getvalue())
    notes = sarif["runs"][0]["properties"]["nonFinite"]
    assert [n["value"] for n in notes] == ["NaN", "Infinity"]
    assert all(_pointer(sarif, n["path"]) is None for n in notes)


@pytest.mark.parametrize(("value", "plain"), [
    ("a\nb\r\tc", "a\\nb\\r\\tc"),
    ("\x1b[31m\x9b\u2028\u202e", "\\x1b[31m\\x9b\\u2028\\u202e"),
    ("  ::add-mask::x", "  \\x3a:add-mask::x"),
    ("x[..., ::2] ##[error]y", "x[..., ::2] #\\x23[error]y"),
])
def test_plain(value, plain):
    assert escape.plain(value) == plain


def test_command_line_warnings_are_escaped(capsys):
    from noiselint.cli import _warn

    _warn(f"a message with {HOSTILE} in it")
    err = capsys.readouterr().err
    assert err.startswith("noiselint: warning: a message with \\n::error file=x::pwned\\x1b[31m")
    assert err.count("\n") == 1
    assert not UNSAFE.search(err[:-1]) and "##[" not in err


def test_markdown_and_code_spans():
    assert escape.markdown("![x](http://e) <b> a|b www.e.com") == "\\!\\[x\\]\\(http\\://e\\) \\<b\\> a\\|b www\\.e.com"
    assert escape.code_span("a`b|c") == "``a`b\\|c``"
    assert escape.code_span("`x`") == "`` `x` ``"


def test_finite_lists_what_it_replaced():
    data, notes = escape.finite({"a": [1.0, float("nan")], "b/c": {"d": float("-inf")}, "e": "NaN"})
    assert data == {"a": [1.0, None], "b/c": {"d": None}, "e": "NaN"}
    assert notes == [{"path": "/a/1", "value": "NaN"}, {"path": "/b~1c/d", "value": "-Infinity"}]
    with pytest.raises(ValueError):
        escape.json_text(float("inf"))


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _pointer(document, pointer: str):
    for part in pointer.strip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document
