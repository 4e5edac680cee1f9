"""The GitHub Action's lint step (``action.yml`` runs ``python -m noiselint.github_action``).

Inputs arrive as environment variables: ``INPUT_TARGETS`` and ``INPUT_ARGS`` (shell-quoted),
``INPUT_SARIF`` (true/false) and ``INPUT_SARIF_FILE``. One noiselint run prints annotations
(``--format github``), writes the Markdown job summary to ``$GITHUB_STEP_SUMMARY`` and, when asked,
SARIF; the step's outputs ``sarif-file`` and ``exit-code`` go to ``$GITHUB_OUTPUT``. The step exits
with noiselint's exit code.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

TRUE = ("true", "yes", "on", "1")


def command_line(env: dict[str, str]) -> list[str]:
    """The noiselint command the step runs for these inputs."""
    argv = [sys.executable, "-m", "noiselint", "check",
            *shlex.split(env.get("INPUT_TARGETS", "")), *shlex.split(env.get("INPUT_ARGS", "")),
            "--format", "github"]
    if env.get("GITHUB_STEP_SUMMARY"):
        argv += ["--report", f"markdown:{env['GITHUB_STEP_SUMMARY']}"]
    if env.get("INPUT_SARIF", "").strip().lower() in TRUE:
        argv += ["--report", f"sarif:{env.get('INPUT_SARIF_FILE') or 'noiselint.sarif'}"]
    return argv


def main() -> int:
    env = dict(os.environ)
    try:
        argv = command_line(env)
    except ValueError as exc:
        print(f"::error title=noiselint action::bad targets or args input: {exc}")
        return 2
    sys.stdout.flush()
    code = subprocess.call(argv)
    sarif = next((a.partition(":")[2] for a in argv if a.startswith("sarif:")), "")
    if env.get("GITHUB_OUTPUT"):
        with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as stream:
            stream.write(f"sarif-file={sarif}\nexit-code={code}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
