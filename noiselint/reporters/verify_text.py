"""Text rendering of ``--verify`` results: rich tables under each model's findings."""

from __future__ import annotations

from rich.console import Console

from noiselint.reporters.escape import rich
from noiselint.verify.report import (
    ADAPT_DEFINITION,
    GAIN_DEFINITION,
    MATCH_TOLERANCE,
    NOISE_MODELS,
    ROBUSTNESS_DEFINITION,
    WHAT_IF_CAVEAT,
    Verification,
)


def render_verification(verification: Verification, console: Console) -> None:
    """Tables for a rich console (fit 80 columns): curves, stability, node gains, what-ifs."""
    from rich.table import Table

    sweep = verification.sweep
    console.print(
        f"  [bold]verify[/] on {rich(verification.device)}, batch {verification.batch_size}; "
        f"weights: {rich(verification.weights)}"
    )
    labelled = "labelled" if verification.labelled else "label-free"
    console.print(f"    data: {verification.images} images, {labelled}: {rich(verification.data)}")
    console.print(
        f"    noise ({verification.noise_at} protocol): {NOISE_MODELS[verification.noise_at]}; "
        f"{verification.draws} draw(s), seed {verification.seed}"
    )
    table = Table(
        "sigma",
        "accuracy",
        "agreement",
        "top-5 overlap",
        "confident agr.",
        box=None,
        padding=(0, 1),
        pad_edge=False,
    )
    table.add_row(
        "clean", _pct(sweep.clean_accuracy), "100%", "100%", "100%" if sweep.confident_images else "-"
    )
    for p in sweep.points:
        table.add_row(
            f"{p.sigma:g}",
            _pct(p.accuracy, p.accuracy_std),
            _pct(p.agreement, p.agreement_std),
            _pct(p.top5_overlap),
            _pct(p.confident_agreement),
        )
    _print(console, table)
    console.print(
        f"    [dim]agreement: top-1 equals the clean top-1; confident: the {sweep.confident_images} "
        f"images with clean softmax max >= 0.5; ± spread across draws[/]"
    )
    if sweep.stability:
        values = ", ".join(f"rho {rho:g}: {value:.3f}" for rho, value in sweep.stability)
        console.print(f"    noise stability (mean cosine of centred logits): {values}")
    if verification.probe:
        console.print(f"    noise-to-signal at the logits: {_probe(verification.probe)}")
    if verification.gains:
        console.print(
            f"    [bold]node noise gains[/] [dim]({GAIN_DEFINITION}; ok = within "
            f"{MATCH_TOLERANCE:.0%})[/]"
        )
        gains = Table(
            "node",
            "op",
            "analytic",
            "noise only",
            "on input",
            "in model",
            "vs analytic",
            box=None,
            padding=(0, 1),
            pad_edge=False,
        )
        for column in gains.columns:
            column.no_wrap = True
        for g in verification.gains:
            gains.add_row(
                rich(g.module_path),
                rich(g.op),
                _num(g.analytic),
                _num(g.noise_only),
                _num(g.real_input),
                _num(g.in_model),
                _check(g.relative_error),
            )
        _print(console, gains)
    if verification.what_ifs:
        metric = "accuracy" if verification.labelled else "agreement"
        console.print(f"    [bold]what-if[/] [dim]({WHAT_IF_CAVEAT}; {ROBUSTNESS_DEFINITION})[/]")
        if any(w.adapted is not None for w in verification.what_ifs):
            console.print(f"    [dim]{ADAPT_DEFINITION}[/]")
        console.print(
            f"      original: {metric} "
            + " ".join(_pct(v) for v in sweep.curve())
            + f" at sigma {', '.join(f'{s:g}' for s in verification.sigmas)}"
        )
        for w in verification.what_ifs:
            console.print(f"      {rich(w.name)}: {rich(w.change)}")
            if w.predicted is not None:
                console.print(
                    f"        node gain {_factor(w.predicted)} predicted; measured "
                    f"{_factor(w.measured_real_input)} on its input, {_factor(w.measured_noise_only)} "
                    f"noise only, {_factor(w.measured_in_model)} in the model"
                )
            if w.low_pass is not None:
                g = w.low_pass
                console.print(
                    f"        its {rich(g.op.removeprefix('what-if '))} alone: "
                    f"{_num(g.noise_only)} noise only "
                    f"vs analytic {_num(g.analytic)} ({_check(g.relative_error)}), {_num(g.real_input)} "
                    f"on its input, {_num(g.in_model)} in the model"
                )
            if w.probe:
                console.print(f"        noise-to-signal: {_probe(w.probe)}")
            console.print(
                f"        clean top-1 kept {_pct(w.clean_agreement)}; {metric} "
                + " ".join(_pct(v) for v in w.sweep.curve())
                + f"; robustness {w.sweep.robustness:.3f}"
            )
            if w.adapted is not None:
                a = w.adapted
                console.print(
                    f"        adapted ({a.steps} steps, {a.parameters} weights in {len(a.trained)} layers, "
                    f"loss {a.first_loss:.3g} -> {a.last_loss:.3g}): clean top-1 agrees "
                    f"{_pct(a.clean_agreement)} on {a.held_out} held-out images; {metric} "
                    + " ".join(_pct(v) for v in a.sweep.curve())
                )
                console.print(
                    f"        robustness original {sweep.robustness:.3f}, training-free "
                    f"{w.sweep.robustness:.3f}, adapted {a.sweep.robustness:.3f} "
                    f"({a.vs_original:+.3f} vs original, {a.vs_training_free:+.3f} vs training-free)"
                )
    console.print(
        f"    [dim]{sweep.forwards} forward passes in {sweep.seconds:.1f} s "
        f"({sweep.images_per_s:.0f} images/s); verify took {verification.seconds:.1f} s[/]"
    )
    for note in verification.notes:
        console.print(f"    [dim]note: {rich(note)}[/]")

def _print(console, table) -> None:
    """A table indented under its model, at least 100 columns wide so it never folds its cells."""
    from rich.padding import Padding

    width = console.width
    console.width = max(width, 100)
    try:
        console.print(Padding(table, (0, 0, 0, 4), expand=False))
    finally:
        console.width = width


def _pct(value: float | None, spread: float | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.1%}"
    return text + f" ±{spread:.1%}" if spread else text


def _check(error: float | None) -> str:
    if error is None:
        return "-"
    return f"{error:+.1%}" + (" ok" if abs(error) <= MATCH_TOLERANCE else "")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _factor(value: float | None) -> str:
    return "-" if value is None else f"x{value:#.3g}"


def _probe(values) -> str:
    return ", ".join(f"sigma {sigma:g}: {ratio:.4f}" for sigma, ratio in values)
