"""The command line: a thin layer that parses options, calls the engine and a reporter.

``noiselint TARGET...`` lints (the ``check`` command is the default); ``noiselint rules`` lists the
rules; ``noiselint explain CODE`` prints a rule's documentation. Exit codes: 0 clean, 1 findings at
or above ``--fail-on``, 2 usage or load errors.
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from dataclasses import replace

import click

from noiselint import __version__
from noiselint.errors import NoiselintError
from noiselint.reporters import REPORTERS

FORMATS = tuple(REPORTERS)


class _DefaultCommandGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to ``check`` (no arguments too:
    the configured models); click's usage errors, its own and its commands', are one line and exit 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h", "--version")):
            args = ["check", *args]
        return super().parse_args(ctx, args)

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context):
        with _one_line_usage_errors():  # the command's own arguments are parsed here
            return super().invoke(ctx)


@contextmanager
def _one_line_usage_errors():
    """``noiselint: error: <click's message> (see noiselint COMMAND --help)`` and exit 2, not click's usage
    block (a usage line, a hint and the error on separate lines)."""
    try:
        yield
    except click.UsageError as exc:
        command = exc.ctx.command.name if exc.ctx is not None and exc.ctx.parent is not None else None
        _fail(f"{exc.format_message().rstrip('.')} (see noiselint {command + ' ' if command else ''}--help)")


def _floats(ctx, param, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


def _size(ctx, param, value: str | None) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        dims = tuple(int(v) for v in value.lower().replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"expected H, HxW or CxHxW, got {value!r}") from None
    if len(dims) == 1:
        return (3, dims[0], dims[0])
    if len(dims) == 2:
        return (3, *dims)
    if len(dims) == 3:
        return dims
    raise click.BadParameter(f"expected H, HxW or CxHxW, got {value!r}")


def _memory(ctx, param, value: str | None) -> int | None:
    from noiselint.memory import parse_size

    try:
        return None if value is None else parse_size(value)
    except NoiselintError as exc:
        raise click.BadParameter(str(exc)) from None


def _codes(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _reports(ctx, param, values: tuple[str, ...]) -> list[tuple[str, str]]:
    specs = []
    for value in values:
        name, sep, path = value.partition(":")
        if not sep or not path or name not in FORMATS:
            raise click.BadParameter(f"expected FORMAT:FILE with FORMAT one of {', '.join(FORMATS)}, got {value!r}")
        specs.append((name, path))
    return specs


_VERIFY_OPTIONS = (
    click.option("--verify", is_flag=True, help="After linting, run each model on noisy images and measure "
                 "accuracy/agreement per sigma, node noise gains and what-ifs (README: Verify)."),
    click.option("--weights", type=click.Path(dir_okay=False),
                 help="--verify: a state_dict or .safetensors file."),
    click.option("--data", help="--verify: an image folder (class subfolders = labels), 'natural' or 'digits' "
                 "[default: digits for 1-channel models, else natural]."),
    click.option("--sigmas", callback=_floats, help="--verify: noise std on [0,1] pixels "
                 "[default: 0.08,0.12,0.18,0.26,0.38, ImageNet-C]."),
    click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]),
                 help="--verify: where to run [default: auto]."),
    click.option("--images", type=click.IntRange(min=1),
                 help="--verify: at most this many images [default: 512]."),
    click.option("--draws", type=click.IntRange(min=1),
                 help="--verify: noise draws per image and sigma [default: 3]."),
    click.option("--seed", type=int, help="--verify: noise seed; a fixed seed repeats a run [default: 0]."),
    click.option("--plot", type=click.Path(dir_okay=False),
                 help="--verify: draw accuracy/agreement vs sigma here (.png)."),
    click.option("--adapt", type=click.IntRange(min=1), metavar="STEPS",
                 help="--verify: also adapt each what-if: train the stem and changed layers STEPS steps to "
                 "match the original's logits on clean images, then measure it [default: off]."),
    click.option("--noise-at", type=click.Choice(["input", "sensor"]),
                 help="--verify: add the noise to the model input (after resize and crop) or to the image "
                 "at its own resolution before them [default: input]."),
)


def _verify_options(command):
    for option in reversed(_VERIFY_OPTIONS):
        command = option(command)
    return command


def _verify_settings(values: dict):
    """VerifyOptions for --verify, or None; verify options without --verify are a usage error."""
    given = {k: v for k, v in values.items() if k != "verify" and v is not None}
    if not values["verify"]:
        if given:
            raise NoiselintError(f"--{next(iter(given))} needs --verify")
        return None
    from noiselint.verify import VerifyOptions

    options = VerifyOptions(**given, progress=sys.stderr.isatty())
    options.validate()
    return options


@click.group(cls=_DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="noiselint")
def main() -> None:
    """Lint vision models for fragility to Gaussian noise.

    \b
    TARGETS: model.py, model.py:NAME, timm:resnet50, 'timm:resnet*', torchvision:vgg16, model.onnx
    """


@main.command()
@click.argument("targets", nargs=-1)
@click.option("--format", "output_format", type=click.Choice(FORMATS), help="Report format [default: text].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the report here.")
@click.option("--report", "extra_reports", multiple=True, callback=_reports, metavar="FORMAT:FILE",
              help="Also write the report in FORMAT to FILE (repeatable), e.g. sarif:noiselint.sarif.")
@click.option("--select", help="Comma-separated rule codes, prefixes (NL3) or names to run.")
@click.option("--extend-select", help="Comma-separated rule selectors to add to the selection.")
@click.option("--ignore", help="Comma-separated rule codes, prefixes or names to skip.")
@click.option("--fail-on", type=click.Choice(["info", "warning", "error"]),
              help="Lowest severity that makes the exit code 1 [default: warning].")
@click.option("--mean", callback=_floats, help="Per-channel mean on [0,1] pixels, e.g. 0.5,0.5,0.5.")
@click.option("--std", callback=_floats, help="Per-channel std on [0,1] pixels, e.g. 0.5,0.5,0.5.")
@click.option("--input-size", callback=_size, help="Input size: 224, 224x224 or 3x224x224.")
@click.option("--rules-dir", multiple=True, type=click.Path(file_okay=False), help="Extra folder of rule modules.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Settings file (default: the closest pyproject.toml with [tool.noiselint]).")
@click.option("--isolated", is_flag=True, help="Ignore configuration files.")
@click.option("--baseline", "baseline_file", type=click.Path(dir_okay=False),
              help="Hide the findings recorded in this baseline.")
@click.option("--write-baseline", type=click.Path(dir_okay=False), help="Record the current findings as a baseline.")
@click.option("--hook", is_flag=True, help="pre-commit mode: skip Python files that define no model.")
@click.option("-j", "--jobs", type=click.IntRange(min=1),
              help="Worker processes for many targets [default: one per core].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Give up on a target after SECONDS (lint, and --verify).")
@click.option("--in-process", is_flag=True,
              help="Lint (and verify) in this process, not in worker processes: faster to start, but a "
                   "crashing model ends the run; no --timeout.")
@click.option("--max-memory", callback=_memory, metavar="SIZE",
              help="Memory budget, e.g. 4G or 512M: checked before allocating, and a worker that grows past "
                   "it is killed [default: 4G, or half the RAM when less].")
@click.option("--sort", type=click.Choice(["input", "exposure"]), default="input", show_default=True,
              help="Order of the models in the report; exposure: most exposed to noise first.")
@click.option("--cache-dir", envvar="NOISELINT_CACHE_DIR", type=click.Path(file_okay=False),
              help="Results cache folder [default: .noiselint_cache].")
@click.option("--no-cache", is_flag=True, envvar="NOISELINT_NO_CACHE", help="Neither read nor write cached results.")
@click.option("--diff", "show_diff", is_flag=True,
              help="Print the fixes as a unified diff and change nothing (exit 1 if any would apply).")
@click.option("--fix", "apply_fixes", is_flag=True,
              help="Apply the fixes, check that each fixed model still builds with the same output shape, "
                   "then report what remains.")
@click.option("--unsafe-fixes", is_flag=True,
              help="Allow fixes that change the model's outputs: every noiselint fix does (retrain or fine-tune "
                   "after it).")
@click.option("--fix-only", is_flag=True, help="Like --fix, but print no report of the remaining findings.")
@_verify_options
def check(targets, output_format, output, extra_reports, select, extend_select, ignore, fail_on, mean, std,
          input_size, rules_dir, config_file, isolated, baseline_file, write_baseline, hook, jobs, timeout, in_process,
          max_memory, sort, cache_dir, no_cache, show_diff, apply_fixes, unsafe_fixes, fix_only, **verify) -> None:
    """Lint TARGETS (default: `models` in [tool.noiselint]) and report what makes them fragile to noise."""
    from noiselint import api, baseline, config, reporters
    from noiselint.cache import DEFAULT_DIR
    from noiselint.graph import Preprocessing

    try:
        if timeout is not None and not math.isfinite(timeout):  # inf would overflow a deadline, nan never fire
            raise NoiselintError(f"--timeout {timeout}: give a finite number of seconds (leave it out for none)")
        run = config.build_run(
            config.resolve(config_file, isolated=isolated),
            targets=targets, select=_codes(select), extend_select=_codes(extend_select) or (),
            ignore=_codes(ignore) or (), fail_on=fail_on, output_format=output_format,
            preprocessing=Preprocessing(mean=mean, std=std, input_size=input_size, origin="command line"),
            rules_dirs=rules_dir, baseline=baseline_file, hook=hook,
        )
        outputs = [(reporters.get(run.format), output), *((reporters.get(f), p) for f, p in extra_reports)]
        for _, path in outputs:  # fail before linting, not after
            if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                raise NoiselintError(f"{path}: cannot write the report: its folder does not exist")
        verify_options = _verify_settings(verify)
        live = None
        if run.format == "jsonl" and verify_options is None and sort == "input":  # stream each model's line
            from noiselint.reporters.jsonl import LiveWriter

            live, outputs = LiveWriter(output), outputs[1:]
        settings = api.RunSettings(jobs=jobs, timeout=timeout, sort=sort, progress=sys.stderr.isatty(),
                                   cache_dir=None if no_cache else cache_dir or DEFAULT_DIR, in_process=in_process)
        if max_memory is not None:
            run = replace(run, options=replace(run.options, max_memory=max_memory))
        if show_diff or apply_fixes or fix_only:
            if verify_options is not None or write_baseline:
                raise NoiselintError("--diff and --fix cannot be combined with --verify or --write-baseline")
            outcome = api.fix(run.targets, run.options, settings, write=not show_diff, unsafe=unsafe_fixes,
                              fixable=run.fixable, unfixable=run.unfixable, baseline=run.baseline)
            _say_fixes(outcome, applied=not show_diff)
            if show_diff:
                sys.stdout.write("".join(f.diff() for f in outcome.files))
                sys.exit(1 if outcome.files else 0)
            if fix_only:
                sys.exit(2 if any(not m.ok for m in outcome.report.models) else 0)
            live, report = None, outcome.report
            _render(outputs, report)
            sys.exit(report.exit_code)
        report = api.check(run.targets, run.options, settings, verify=verify_options,
                           baseline=None if write_baseline else run.baseline,
                           on_report=live.model if live else None,
                           warn=_warn)
        if write_baseline:
            count = baseline.write(report, write_baseline)
            click.echo(f"noiselint: recorded {count} finding(s) in {write_baseline}", err=True)
    except NoiselintError as exc:
        _fail(str(exc))
    if live is not None:
        live.finish(report)
    _render(outputs, report)
    sys.exit(report.exit_code if not write_baseline or report.exit_code == 2 else 0)


def _render(outputs, report) -> None:
    for render, path in outputs:
        if path is None:
            render(report, sys.stdout)
            continue
        try:
            with open(path, "w", encoding="utf-8") as stream:
                render(report, stream)
        except OSError as exc:
            _fail(f"{path}: cannot write the report: {exc.strerror}")


def _say_fixes(outcome, *, applied: bool) -> None:
    """What ``--fix`` changed (or ``--diff`` would), what it refused and why, on stderr."""
    from noiselint.fixes import UNSAFE_NOTE

    for file_fix in outcome.files:
        for item in file_fix.applied:
            where = f"{file_fix.path}:{item.finding.location.line}" if item.finding.location else file_fix.path
            verb = "fixed" if applied else "would fix"
            click.echo(f"noiselint: {verb} {where} {item.finding.code}: {item.description}", err=True)
    for finding, reason in outcome.refused:
        where = str(finding.location) if finding.location else finding.model
        click.echo(f"noiselint: not fixed: {where} {finding.code}: {reason}", err=True)
    if outcome.hidden:
        click.echo(f"noiselint: {outcome.hidden} fix(es) available with --unsafe-fixes ({UNSAFE_NOTE})", err=True)


@main.command("rules")
@click.option("--rules-dir", multiple=True, type=click.Path(file_okay=False), help="Extra folder of rule modules.")
def list_rules(rules_dir) -> None:
    """List every rule: code, name, family, default severity and summary."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from noiselint import config, registry

    try:
        classes = registry.discover((*config.resolve().rules_dirs, *rules_dir))
    except NoiselintError as exc:
        _fail(str(exc))
    table = Table(box=None, pad_edge=False)
    for column in ("code", "name", "family", "severity"):
        table.add_column(column, no_wrap=True)
    table.add_column("what it does")
    for cls in classes:
        table.add_row(cls.code, cls.name, cls.family, cls.severity.label, escape(cls.summary()))
    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: one line per rule rather than an 80-column wrap
        console.width = 250
    console.print(table)


@main.command()
@click.argument("code")
@click.option("--rules-dir", multiple=True, type=click.Path(file_okay=False), help="Extra folder of rule modules.")
def explain(code, rules_dir) -> None:
    """Print the documentation of rule CODE (a code such as NL301, or a name), or of ``exposure``."""
    from rich.console import Console
    from rich.markdown import Markdown

    from noiselint import config, registry

    if code.lower() == "exposure":  # the model-level figure, documented like a rule
        from noiselint.evidence import exposure_docs

        Console(highlight=False).print(Markdown(exposure_docs()))
        return
    try:
        cls = registry.find(code, (*config.resolve().rules_dirs, *rules_dir))
    except NoiselintError as exc:
        _fail(str(exc))
    console = Console(highlight=False)
    console.print(f"[bold]{cls.code} {cls.name}[/] ({cls.family}, default severity {cls.severity.label})")
    console.print(Markdown(cls.docs()))
    if cls.fix_summary:
        from noiselint.fixes import UNSAFE_NOTE

        console.print(Markdown(f"## Fix (`--fix --unsafe-fixes`)\n{cls.fix_summary}. Applied only after the fixed "
                               f"model is checked to build with the same output shape; {UNSAFE_NOTE}."))
    if cls.options:
        console.print("Options: " + ", ".join(f"{k} = {v!r}" for k, v in cls.options.items()))


def _warn(message: str) -> None:
    from noiselint.reporters.escape import plain

    click.echo(f"noiselint: warning: {plain(message)}", err=True)


def _fail(message: str) -> None:
    from noiselint.reporters.escape import plain

    click.echo(f"noiselint: error: {plain(message)}", err=True)
    sys.exit(2)
