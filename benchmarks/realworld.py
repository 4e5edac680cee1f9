"""Cold-lint the real-world corpus (fixtures/realworld/corpus.toml) and time it against `import torch`.

Each target is linted in a fresh interpreter, `python -m noiselint check TARGET --format json --no-cache`,
run from the repository root, and `python -c "import torch"` is timed interleaved with the lints in the
same run, so that both see the same machine load. Every measurement is repeated (--repeats) and the
median is kept.

A target is *reported cleanly* when the CLI exits 0 or 1, stderr holds no traceback, stdout is valid JSON
and no model of the report fell back to the `structural` trace level.

    python benchmarks/realworld.py                # the whole corpus, 3 repeats
    python benchmarks/realworld.py --quick        # one target per repository, 1 repeat
    python benchmarks/realworld.py --json out.json --repeats 5

Prints: reported cleanly K/N, trace-level counts, each target's cold-lint time as a ratio to `import
torch` (median and worst), the expected findings' codes matched (from corpus.toml's `expected`), the
targets whose correct outcome is a load error, the ratios over the targets whose own files import
torchvision (corpus.toml's ``imports_torchvision``; ``import torchvision`` is timed beside them) and
over the others, and, with ``--imports``, which targets' lint imports torch._dynamo or sympy beyond
what the model's own imports and build already do.
Always exits 0: it measures, it does not judge.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "realworld" / "corpus.toml"


def load_corpus(path: Path) -> list[dict]:
    with path.open("rb") as handle:
        return tomllib.load(handle)["target"]


def quick_subset(targets: list[dict]) -> list[dict]:
    """The first target of each repository, in corpus order."""
    seen, subset = set(), []
    for target in targets:
        if target["repo"] not in seen:
            seen.add(target["repo"])
            subset.append(target)
    return subset


def timed(command: list[str], env: dict, timeout: float) -> tuple[float, subprocess.CompletedProcess | None]:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, None
    return time.perf_counter() - start, done


def outcome(done: subprocess.CompletedProcess | None) -> dict:
    """What one lint run reported: clean or not, and why; trace levels and codes."""
    if done is None:
        return {"clean": False, "why": "timed out", "levels": [], "codes": [], "errors": []}
    result = {"exit_code": done.returncode, "levels": [], "codes": [], "errors": []}
    problems = []
    if done.returncode not in (0, 1):
        problems.append(f"exit {done.returncode}")
    if "Traceback (most recent call last)" in done.stderr:
        problems.append("traceback in stderr")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        problems.append("stdout is not valid JSON")
        report = None
    if report is not None:
        for model in report.get("models", []):
            graph = model.get("graph") or {}
            result["levels"].append(graph.get("trace_level") or model.get("status") or "none")
            result["codes"].extend(finding["code"] for finding in model.get("findings", []))
            if model.get("error"):
                result["errors"].append(str(model["error"]))
        if "structural" in result["levels"]:
            problems.append("structural trace level")
        if not report.get("models"):
            problems.append("no model in the report")
    result["clean"] = not problems
    result["why"] = ", ".join(problems)
    return result


#: Heavy modules the issue asks a lint not to import: torch.export/torch.compile's machinery.
WATCHED = ("torch._dynamo", "sympy")
_LINT_IMPORTS = """
import json, runpy, sys
target = sys.argv[1]
sys.argv = ["noiselint", "check", target, "--no-cache", "--in-process", "--format", "json"]
try:
    runpy.run_module("noiselint", run_name="__main__")
except SystemExit:
    pass
sys.stderr.write("\\n" + json.dumps([m for m in WATCHED if m in sys.modules]) + "\\n")
""".replace("WATCHED", repr(WATCHED))
_LOAD_IMPORTS = """
import json, sys
from noiselint.loaders import expand, load
try:
    for name in expand(sys.argv[1]):
        list(load(name))
except Exception:
    pass
sys.stderr.write("\\n" + json.dumps([m for m in WATCHED if m in sys.modules]) + "\\n")
""".replace("WATCHED", repr(WATCHED))


def watched_imports(script: str, target: str, env: dict, timeout: float) -> list[str] | None:
    """Which :data:`WATCHED` modules a fresh interpreter running ``script`` on ``target`` imported."""
    _, done = timed([sys.executable, "-c", script, target], env, timeout)
    lines = done.stderr.strip().splitlines() if done is not None else []
    return json.loads(lines[-1]) if lines and lines[-1].startswith("[") else None


def expected_match(target: dict, codes: list[str]) -> bool | None:
    """Whether the run found every certain expected finding's code (as many times) and no code the manifest
    does not mention; None for a target whose correct outcome is a load error."""
    if target.get("expected_error"):
        return None
    expected = target.get("expected", [])
    wanted = Counter(item["code"] for item in expected if not item.get("uncertain"))
    mentioned = {item["code"] for item in expected}
    got = Counter(codes)
    return all(got[code] >= n for code, n in wanted.items()) and all(code in mentioned for code in got)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the manifest (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="one target per repository, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 3; --quick 1)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a lint counts as timed out")
    parser.add_argument("--select", default="", help="only targets whose path contains this text")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--imports", action="store_true",
                        help="also record, in two untimed runs per target, whether linting imports torch._dynamo "
                             "or sympy, and whether importing and building the model alone already does")
    args = parser.parse_args(argv)

    targets = load_corpus(args.corpus)
    if args.quick:
        targets = quick_subset(targets)
    if args.select:
        targets = [t for t in targets if args.select in t["target"]]
    repeats = args.repeats or (1 if args.quick else 3)

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cache_dir = tempfile.mkdtemp(prefix="noiselint-realworld-")  # --no-cache, and a fresh folder besides
    torch_command = [sys.executable, "-c", "import torch"]
    torchvision_command = [sys.executable, "-c", "import torchvision"]
    torch_times: list[float] = []
    torchvision_times: list[float] = []
    rows = []
    for index, target in enumerate(targets, 1):
        command = [sys.executable, "-m", "noiselint", "check", target["target"], "--format", "json",
                   "--no-cache", "--cache-dir", cache_dir]
        lint_times, result = [], None
        for _ in range(repeats):
            torch_times.append(timed(torch_command, env, args.timeout)[0])
            seconds, done = timed(command, env, args.timeout)
            lint_times.append(seconds)
            result = outcome(done)
        if target.get("imports_torchvision"):
            torchvision_times.append(timed(torchvision_command, env, args.timeout)[0])
        row = {"target": target["target"], "repo": target["repo"], "seconds": statistics.median(lint_times),
               "expected_error": bool(target.get("expected_error")),
               "imports_torchvision": bool(target.get("imports_torchvision")), **result}
        row["expected_codes_match"] = expected_match(target, result["codes"])
        if args.imports:
            row["lint_imports"] = watched_imports(_LINT_IMPORTS, target["target"], env, args.timeout)
            row["model_imports"] = watched_imports(_LOAD_IMPORTS, target["target"], env, args.timeout)
        rows.append(row)
        mark = "ok " if result["clean"] else "BAD"
        print(f"[{index:>2}/{len(targets)}] {mark} {row['seconds']:6.2f}s {target['target']}"
              + (f"  ({result['why']})" if result["why"] else ""), flush=True)

    torch_median = statistics.median(torch_times)
    for row in rows:
        row["ratio"] = row["seconds"] / torch_median

    clean = sum(row["clean"] for row in rows)
    levels = Counter(level for row in rows for level in (row["levels"] or ["none"]))
    ratios = sorted(row["ratio"] for row in rows)
    worst = max(rows, key=lambda row: row["ratio"])
    matched = [row["expected_codes_match"] for row in rows if row["expected_codes_match"] is not None]

    print()
    print(f"python -c 'import torch': median {torch_median:.2f}s over {len(torch_times)} runs")
    print(f"{'ratio':>6}  {'level':<10} {'exit':>4}  target")
    for row in rows:
        level = ",".join(row["levels"]) or "-"
        print(f"{row['ratio']:6.2f}  {level:<10} {row.get('exit_code', '-'):>4}  {row['target']}")
    print()
    print(f"reported cleanly: {clean}/{len(rows)} ({100 * clean / max(len(rows), 1):.1f} %)")
    print("trace levels: " + ", ".join(f"{level} {count}" for level, count in sorted(levels.items())))
    print(f"cold lint / import torch: median {statistics.median(ratios):.2f}x, worst {worst['ratio']:.2f}x "
          f"({worst['target']})")
    own = [row for row in rows if not row["imports_torchvision"]]
    if own and len(own) < len(rows):
        own_worst = max(own, key=lambda row: row["ratio"])
        floor = statistics.median(torchvision_times) / torch_median
        print(f"  over the {len(own)} targets whose own files do not import torchvision: median "
              f"{statistics.median(row['ratio'] for row in own):.2f}x, worst {own_worst['ratio']:.2f}x "
              f"({own_worst['target']})")
        print(f"  over the {len(rows) - len(own)} that do (corpus.toml's imports_torchvision; `import torchvision` "
              f"alone takes {floor:.2f}x import torch, torch._dynamo with it): median "
              f"{statistics.median(row['ratio'] for row in rows if row['imports_torchvision']):.2f}x")
    print(f"expected codes matched (certain expectations): {sum(matched)}/{len(matched)}")
    expected_errors = [row for row in rows if row["expected_error"]]
    if expected_errors:
        print(f"targets whose correct outcome is a load error: {len(expected_errors)} "
              f"(of them reported with exit 2 and no traceback: "
              f"{sum(r.get('exit_code') == 2 and 'traceback' not in r['why'] for r in expected_errors)})")

    if args.imports:
        for module in WATCHED:
            lint = [row for row in rows if module in (row["lint_imports"] or ())]
            added = [row["target"] for row in lint if module not in (row["model_imports"] or ())]
            print(f"{module}: imported while linting {len(lint)}/{len(rows)}; by the model's own imports and "
                  f"build in {len(lint) - len(added)} of them; added by noiselint in {len(added)}: "
                  + ", ".join(target.split("/")[-1] for target in added))

    if args.json:
        args.json.write_text(json.dumps({
            "import_torch_median_s": torch_median, "import_torch_runs": torch_times, "repeats": repeats,
            "import_torchvision_runs": torchvision_times,
            "clean": clean, "total": len(rows), "levels": dict(levels),
            "median_ratio": statistics.median(ratios), "worst_ratio": worst["ratio"], "targets": rows,
        }, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
