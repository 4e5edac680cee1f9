"""``--diff`` / ``--fix``: fixture pairs compared byte for byte (torchfix's layout), idempotence, the
check after fixing, and the CLI and pre-commit flows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from noiselint import fixes
from noiselint.cli import main
from noiselint.engine import Options, lint, make_rules

from .conftest import ROOT

PAIRS = sorted((ROOT / "fixtures" / "fixes").glob("*.in.py"))
#: Rule options of the pairs that need them (by the pair's name).
PAIR_OPTIONS = {"NL301_antialiased": {"NL301": {"fix_style": "antialiased"}}}


def _plan(path: Path, code: str, rule_options: dict | None = None) -> list[fixes.FileFix]:
    options = Options(select=[code], rule_options=rule_options or {})
    report = lint([str(path)], options)
    assert all(m.ok for m in report.models), [m.load_error for m in report.models]
    return fixes.plan(report, fixes.rules_by_code(make_rules(options)))


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name[: -len(".in.py")])
def test_fixture_pair_byte_for_byte_and_idempotent(pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = pair.name.split("_")[0]
    rule_options = PAIR_OPTIONS.get(pair.name[: -len(".in.py")])
    model = tmp_path / "model.py"
    shutil.copy(pair, model)
    plans = _plan(model, code, rule_options)
    assert plans and plans[0].applied and not plans[0].refused, [(f.code, r) for p in plans for f, r in p.refused]
    expected = pair.with_name(pair.name.replace(".in.py", ".out.py")).read_bytes()
    assert plans[0].fixed.encode() == expected
    model.write_text(plans[0].fixed)
    assert not any(p.applied for p in _plan(model, code, rule_options)), "fixing the fixed file changed it again"


def test_fix_applies_checks_and_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "fixtures" / "fixes" / "NL301_module.in.py", "model.py")
    result = CliRunner().invoke(main, ["model.py", "--select", "NL301", "--fix", "--unsafe-fixes", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "fixed model.py:9 NL301: MaxPool2d -> AvgPool2d" in result.output
    assert "0 findings in 1 model" in result.output
    assert (tmp_path / "model.py").read_bytes() == (ROOT / "fixtures" / "fixes" / "NL301_module.out.py").read_bytes()


def test_a_fix_that_breaks_the_model_is_undone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = (ROOT / "fixtures" / "fixes" / "NL301_module.in.py").read_text().replace(
        "        return self.head(", "        assert isinstance(self.pool, nn.MaxPool2d)\n        return self.head(")
    Path("model.py").write_text(source)
    result = CliRunner().invoke(main, ["model.py", "--select", "NL301", "--fix", "--unsafe-fixes", "--no-cache"])
    assert "not fixed: model.py:9:21 NL301: after the fix the model's forward no longer runs" in result.output
    assert Path("model.py").read_text() == source
    assert result.exit_code == 1  # the finding remains


def test_diff_changes_nothing_and_fixes_wait_for_unsafe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "fixtures" / "fixes" / "NL301_module.in.py", "model.py")
    before = Path("model.py").read_text()
    result = CliRunner().invoke(main, ["model.py", "--select", "NL301", "--diff", "--unsafe-fixes", "--no-cache"])
    assert result.exit_code == 1
    assert "-        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # trailing comment" in result.output
    assert "+        self.pool = nn.AvgPool2d(" in result.output
    result = CliRunner().invoke(main, ["model.py", "--select", "NL301", "--fix", "--no-cache"])
    assert "1 fix(es) available with --unsafe-fixes" in result.output and result.exit_code == 1
    assert Path("model.py").read_text() == before
    result = CliRunner().invoke(main, ["model.py", "--select", "NL301", "--no-cache"])
    assert "NL301 [*] max-pooling" in result.output
    assert "[*] 1 fixable with --fix --unsafe-fixes" in result.output


def test_unfixable_in_the_configuration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "fixtures" / "fixes" / "NL301_module.in.py", "model.py")
    Path("pyproject.toml").write_text('[tool.noiselint]\nselect = ["NL301"]\nunfixable = ["NL3"]\n')
    result = CliRunner().invoke(main, ["model.py", "--fix", "--unsafe-fixes", "--no-cache"])
    assert "fixed" not in result.output and "1 fix(es) available" in result.output
    assert "MaxPool2d" in Path("model.py").read_text()


def test_installed_packages_are_never_fixed():
    report = lint(["timm:resnet18"], Options(select=["NL301"]))
    (finding,) = report.findings
    assert "site-packages" in finding.location.path and not finding.fixable


def test_precommit_fix_hook_rewrites_the_file(tmp_path):
    hooks = {hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    hook = hooks["noiselint-fix"]
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    shutil.copy(ROOT / "fixtures" / "fixes" / "NL301_module.in.py", repo / "model.py")
    (repo / "pyproject.toml").write_text('[tool.noiselint]\nselect = ["NL301"]\n')
    entry = hook["entry"].replace("noiselint", f"{sys.executable} -m noiselint", 1)
    local = {**hook, "language": "system", "entry": entry}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    env = {"PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "NOISELINT_NO_CACHE": "1",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pre_commit", "run", "noiselint-fix", "--files", "model.py",
                             "--color", "never"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr  # pre-commit fails a hook that changed files
    assert "files were modified by this hook" in result.stdout
    assert (repo / "model.py").read_bytes() == (ROOT / "fixtures" / "fixes" / "NL301_module.out.py").read_bytes()
