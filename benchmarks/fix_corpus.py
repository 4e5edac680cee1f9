"""``--fix --unsafe-fixes`` over the real-world corpus, on a copy: does every fixed model still hold?

    python benchmarks/fix_corpus.py [--keep DIR]

Copies ``fixtures/realworld`` to a temporary folder, lints every corpus target there (one CLI run,
JSON), then runs ``noiselint check TARGETS --fix --unsafe-fixes`` once over all of them, and lints the
copy again. For each target it compares, before and after: the model still loads and traces above
the structural level, its output shapes (``python -m noiselint.fixes probe``, a fresh process per
target), and which findings remain. A fixed finding is one that was fixable before and whose code and
module path are gone after. Prints per-target lines and the counts: files changed, fixes applied,
fixes refused with their reasons, and every target whose shape or build changed (the goal: none).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fixtures" / "realworld"


def _lint(targets: list[str], cwd: Path, extra: list[str], report: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "noiselint", "check", *targets, "--no-cache", "--jobs", "1",
               "--format", "concise", "--report", f"json:{report}", *extra]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=3600)


def _models(report: Path) -> dict[str, dict]:
    return {m["target"]: m for m in json.loads(report.read_text())["models"]}


def _probe(target: str, cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "noiselint.fixes", "probe", target], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}


def _findings(model: dict) -> set[tuple[str, str]]:
    return {(f["code"], f["module_path"]) for f in model.get("findings", [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="noiselint-fix-corpus-"))
    shutil.copytree(CORPUS, work / "fixtures" / "realworld", dirs_exist_ok=True)
    entries = tomllib.loads((CORPUS / "corpus.toml").read_text())["target"]
    targets = [e["target"] for e in entries if "expected_error" not in e]
    start = time.perf_counter()

    before_probe = {t: _probe(t, work) for t in targets}
    _lint(targets, work, [], work / "before.json")
    before = _models(work / "before.json")
    fixing = _lint(targets, work, ["--fix", "--unsafe-fixes"], work / "fixing.json")
    _lint(targets, work, [], work / "after.json")
    after = _models(work / "after.json")
    after_probe = {t: _probe(t, work) for t in targets}

    applied = [line for line in fixing.stderr.splitlines() if line.startswith("noiselint: fixed ")]
    refused = [line for line in fixing.stderr.splitlines() if line.startswith("noiselint: not fixed: ")]
    reasons = Counter(line.split(": ", 3)[-1].split(" (")[0] for line in refused)
    changed = sorted(str(p.relative_to(work)) for p in (work / "fixtures" / "realworld").rglob("*.py")
                     if p.read_bytes() != (ROOT / p.relative_to(work)).read_bytes())

    broken, fixable_targets, fixed_total, left_total = [], 0, 0, 0
    for target in targets:
        old, new = before[target], after[target]
        fixable = {(f["code"], f["module_path"]) for f in old.get("findings", []) if f.get("fixable")}
        if not fixable:
            continue
        fixable_targets += 1
        gone = fixable - _findings(new)
        fixed_total += len(gone)
        left_total += len(fixable) - len(gone)
        problems = []
        if new["status"] != "ok" or new["graph"]["trace_level"] == "structural":
            problems.append(f"status {new['status']} level {new['graph']['trace_level']}: {new.get('error')}")
        if before_probe[target].get("outputs") != after_probe[target].get("outputs"):
            problems.append(f"outputs {before_probe[target].get('outputs')} -> {after_probe[target].get('outputs')}")
        if problems:
            broken.append(target)
        name = target.split("/")[-1]
        verdict = "; ".join(problems) or "builds, same shape"
        print(f"{name:60s} fixable {len(fixable):2d}  gone {len(gone):2d}  {verdict}")

    print()
    print(f"targets: {len(targets)} linted, {fixable_targets} with fixable findings")
    print(f"files changed: {len(changed)}")
    print(f"fixes applied (stderr 'fixed' lines): {len(applied)}; refused: {len(refused)}")
    for reason, count in reasons.most_common():
        print(f"  refused x{count}: {reason}")
    print(f"fixable findings gone after the fix: {fixed_total}; still reported: {left_total}")
    print(f"targets whose model no longer builds or changed output shape: {len(broken)} {broken}")
    print(f"fix run exit code {fixing.returncode}; traceback in stderr: {'Traceback' in fixing.stderr}")
    print(f"wall {time.perf_counter() - start:.0f} s; work folder {work}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if broken or "Traceback" in fixing.stderr else 0


if __name__ == "__main__":
    raise SystemExit(main())
