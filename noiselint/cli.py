"""The command line: a thin layer that parses options, calls the engine and a reporter.

``noiselint TARGET...`` lints (the ``check`` command is the default); ``noiselint rules`` lists the
rules; ``noiselint explain CODE`` prints a rule's documentation. Exit codes: 0 clean, 1 findings at
or above ``--fail-on``, 2 usage or load errors.
"""

from __future__ import annotations

import sys

import click

from noiselint import __version__
from noiselint.errors import NoiselintError

FORMATS = ("text", "concise", "json")


class _DefaultCommandGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to ``check``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["check", *args]
        return super().parse_args(ctx, args)


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


def _codes(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@click.group(cls=_DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="noiselint")
def main() -> None:
    """Lint vision models for fragility to Gaussian noise.

    \b
    TARGETS: model.py, model.py:NAME, timm:resnet50, 'timm:resnet*', torchvision:vgg16, model.onnx
    """


@main.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the report here.")
@click.option("--select", help="Comma-separated rule codes, prefixes (NL3) or names to run.")
@click.option("--ignore", help="Comma-separated rule codes, prefixes or names to skip.")
@click.option("--fail-on", type=click.Choice(["info", "warning", "error"]), default="warning", show_default=True,
              help="Lowest severity that makes the exit code 1.")
@click.option("--mean", callback=_floats, help="Per-channel mean on [0,1] pixels, e.g. 0.5,0.5,0.5.")
@click.option("--std", callback=_floats, help="Per-channel std on [0,1] pixels, e.g. 0.5,0.5,0.5.")
@click.option("--input-size", callback=_size, help="Input size: 224, 224x224 or 3x224x224.")
@click.option("--rules-dir", multiple=True, type=click.Path(file_okay=False), help="Extra folder of rule modules.")
def check(targets, output_format, output, select, ignore, fail_on, mean, std, input_size, rules_dir) -> None:
    """Lint TARGETS and report what makes them fragile to Gaussian noise."""
    from noiselint import reporters
    from noiselint.engine import Options, lint
    from noiselint.findings import Severity
    from noiselint.graph import Preprocessing

    options = Options(
        select=_codes(select),
        ignore=_codes(ignore) or (),
        fail_on=Severity.parse(fail_on),
        preprocessing=Preprocessing(mean=mean, std=std, input_size=input_size, origin="command line"),
        rules_dirs=rules_dir,
    )
    try:
        render = reporters.get(output_format)
        report = lint(targets, options)
    except NoiselintError as exc:
        _fail(str(exc))
    if output:
        with open(output, "w", encoding="utf-8") as stream:
            render(report, stream)
    else:
        render(report, sys.stdout)
    sys.exit(report.exit_code)


@main.command("rules")
@click.option("--rules-dir", multiple=True, type=click.Path(file_okay=False), help="Extra folder of rule modules.")
def list_rules(rules_dir) -> None:
    """List every rule: code, name, family, default severity and summary."""
    from rich.console import Console
    from rich.table import Table

    from noiselint import registry

    try:
        classes = registry.discover(rules_dir)
    except NoiselintError as exc:
        _fail(str(exc))
    table = Table("code", "name", "family", "severity", "what it does", box=None, pad_edge=False)
    for cls in classes:
        table.add_row(cls.code, cls.name, cls.family, cls.severity.label, cls.summary())
    Console(highlight=False).print(table)


@main.command()
@click.argument("code")
@click.option("--rules-dir", multiple=True, type=click.Path(file_okay=False), help="Extra folder of rule modules.")
def explain(code, rules_dir) -> None:
    """Print the documentation of rule CODE (a code such as NL301, or a name)."""
    from rich.console import Console
    from rich.markdown import Markdown

    from noiselint import registry

    try:
        cls = registry.find(code, rules_dir)
    except NoiselintError as exc:
        _fail(str(exc))
    console = Console(highlight=False)
    console.print(f"[bold]{cls.code} {cls.name}[/] ({cls.family}, default severity {cls.severity.label})")
    console.print(Markdown(cls.docs()))
    if cls.options:
        console.print("Options: " + ", ".join(f"{k} = {v!r}" for k, v in cls.options.items()))


def _fail(message: str) -> None:
    click.echo(f"noiselint: error: {message}", err=True)
    sys.exit(2)
