"""Every rule's valid and invalid examples run as tests, with no test file to edit (Fixit-style)."""

from __future__ import annotations

import pytest

from noiselint import registry
from noiselint.engine import Options, lint
from noiselint.graph import Preprocessing

RULES = registry.discover()
CASES = [
    pytest.param(cls, kind, index, example, id=f"{cls.code}-{kind}-{index}")
    for cls in RULES
    for kind in ("valid", "invalid")
    for index, example in enumerate(getattr(cls, kind))
]


def _preprocessing(options: dict) -> Preprocessing:
    size = options.get("input_size")
    return Preprocessing(
        mean=tuple(options["mean"]) if "mean" in options else None,
        std=tuple(options["std"]) if "std" in options else None,
        input_size=tuple(size) if size else None,
        origin="rule example",
    )


def test_every_rule_has_examples_and_docs():
    for cls in RULES:
        assert cls.invalid, f"{cls.code} has no invalid example"
        assert cls.valid, f"{cls.code} has no valid example"
        for heading in ("## What it does", "## Why is this bad?", "## Example", "## Use instead", "## References"):
            assert heading in cls.docs(), f"{cls.code} docs lack {heading!r}"


@pytest.mark.parametrize(("cls", "kind", "index", "example"), CASES)
def test_rule_example(cls, kind, index, example, tmp_path):
    if example.source:
        path = tmp_path / f"example_{cls.code.lower()}_{kind}_{index}.py"
        path.write_text(example.code)
        target = f"{path}:{example.target}"
    else:
        target = example.target
    options = Options(select=[cls.code], preprocessing=_preprocessing(example.options))
    report = lint([target], options)
    (model,) = report.models
    assert model.ok, model.load_error
    assert not model.rule_errors, model.rule_errors
    if kind == "valid":
        assert model.findings == (), [f.message for f in model.findings]
    else:
        assert model.findings, f"{cls.code} found nothing in its invalid example {index}"
        if example.source:
            lines = sorted(f.location.line for f in model.findings)
            assert lines == example.expected_lines
            assert all(f.location.path.endswith(path.name) for f in model.findings)
