"""Suppression: ``# noqa`` on a layer's line, file-level ``# noiselint: noqa``, per-file-ignores, NL001."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from noiselint import suppression
from noiselint.cli import main
from noiselint.engine import Options, lint

from .conftest import MODELS

BASE = (MODELS / "resnet_maxpool.py").read_text()
POOL = "self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)"
BN = "self.bn1 = nn.BatchNorm2d(16)\n"


def model_file(tmp_path: Path, old: str, new: str, name: str = "net.py") -> Path:
    assert old in BASE
    path = tmp_path / name
    path.write_text(BASE.replace(old, new, 1))
    return path


def findings(path: Path, *select: str, **options):
    (model,) = lint([str(path)], Options(select=list(select or ["NL301", "NL001"]), **options)).models
    assert model.ok, model.load_error
    return [(f.code, f.location.line, f.message) for f in model.findings]


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_parse_line_file_and_multi_line_directives():
    source = textwrap.dedent('''
        # noiselint: noqa: NL101
        x = 1  # noqa
        y = f(  # explain why # noqa: NL301,NL302 E501
            2,
        )
        s = "# noqa: NL999"
        z = g(
            3)  # NOQA:NL303
        # noqa: NL304
        # noiselint: noqa
    ''')
    parsed = suppression.parse(source)
    assert [(d.line, d.codes) for d in parsed.file_level] == [(2, frozenset({"NL101"})), (11, None)]
    assert parsed.by_line[3][0].codes is None
    for line in (4, 5, 6):
        assert parsed.by_line[line][0].codes == frozenset({"NL301", "NL302", "E501"})
    assert 7 not in parsed.by_line
    assert parsed.by_line[8][0].codes == parsed.by_line[9][0].codes == frozenset({"NL303"})
    assert parsed.by_line[10][0].codes == frozenset({"NL304"}) and 11 not in parsed.by_line
    assert suppression.parse("def broken(:\n  x = (  # noqa\n").file_level == ()


def test_noqa_with_the_code_suppresses_and_a_stale_one_is_nl001(tmp_path):
    path = model_file(tmp_path, POOL, POOL + "  # noqa: NL301")
    assert findings(path) == []
    path = model_file(tmp_path, BN, BN.rstrip() + "  # noqa: NL301, E501\n")
    bn_line = line_of(path, "nn.BatchNorm2d(16)  # noqa")
    assert findings(path) == [
        ("NL001", bn_line, "unused `noqa` directive (unused: NL301)"),
        ("NL301", line_of(path, POOL), findings(MODELS / "resnet_maxpool.py")[0][2]),
    ]


def test_bare_noqa_suppresses_everything_and_other_codes_do_not(tmp_path):
    assert findings(model_file(tmp_path, POOL, POOL + "  # noqa")) == []
    path = model_file(tmp_path, POOL, POOL + "  # noqa: NL302")
    assert [f[0] for f in findings(path)] == ["NL301"]


def test_unused_blanket_noqa_and_codes_of_rules_that_did_not_run(tmp_path):
    path = model_file(tmp_path, BN, BN.rstrip() + "  # noqa\n")
    assert findings(path, "NL001") == [
        ("NL001", line_of(path, "# noqa"), "unused blanket `noqa` directive: no finding on this line")]
    path = model_file(tmp_path, BN, BN.rstrip() + "  # noqa: NL301\n")
    assert findings(path, "NL001") == []


def test_nl001_is_off_when_not_selected(tmp_path):
    path = model_file(tmp_path, BN, BN.rstrip() + "  # noqa: NL301\n")
    assert [f[0] for f in findings(path, "NL301")] == ["NL301"]


def test_file_level_directive(tmp_path):
    path = model_file(tmp_path, "import torch.nn as nn\n", "import torch.nn as nn\n\n# noiselint: noqa: NL301\n")
    assert findings(path) == []
    path = model_file(tmp_path, "import torch.nn as nn\n", "import torch.nn as nn\n# noiselint: noqa: NL101\n")
    assert [f[0] for f in findings(path)] == ["NL301"]


def test_file_level_directive_in_the_target_file_covers_layers_built_elsewhere(tmp_path):
    (tmp_path / "blocks.py").write_text(BASE)
    target = tmp_path / "model.py"
    target.write_text("from blocks import TinyResNet\n\nmodel = TinyResNet()\n")
    assert [f[0] for f in findings(target)] == ["NL301"]
    target.write_text("# noiselint: noqa\nfrom blocks import TinyResNet\n\nmodel = TinyResNet()\n")
    assert findings(target) == []


def test_per_file_ignores(tmp_path, monkeypatch):
    path = model_file(tmp_path, "", "", name="legacy_net.py")
    assert findings(path, per_file_ignores=[("legacy_*.py", ["NL3"])]) == []
    assert findings(path, per_file_ignores=[(str(tmp_path / "other" / "*"), ["NL301"])]) != []
    assert findings(path, per_file_ignores=[(str(tmp_path / "*"), ["max-pooling"])]) == []
    (tmp_path / "pyproject.toml").write_text('[tool.noiselint.per-file-ignores]\n"legacy_*.py" = ["NL301"]\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [path.name, "--select", "NL301"])
    assert result.exit_code == 0, result.output


def test_comments_in_installed_packages_are_not_read(tmp_path):
    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "vendor.py").write_text("x = 1  # noqa\n")
    assert suppression.directives(str(site / "vendor.py")).by_line == {}
    (tmp_path / "mine.py").write_text("x = 1  # noqa\n")
    assert suppression.directives(str(tmp_path / "mine.py")).by_line


@pytest.mark.parametrize("comment", ["# noqa:NL301", "# NOQA: nl301", "#noqa: NL301 , NL302"])
def test_noqa_spellings(comment):
    (directive,) = suppression.parse(f"x = 1  {comment}\n").by_line[1]
    assert "NL301" in directive.codes
