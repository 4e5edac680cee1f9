"""``--plot``: accuracy (labelled data) or agreement against sigma, per model, with its what-if variants."""

from __future__ import annotations

from noiselint.verify.options import VerifyError
from noiselint.verify.report import Verification


def plot(verifications: list[Verification], path: str) -> None:
    """One panel per model; sigma 0 is the clean point (accuracy, or agreement 1)."""
    if not verifications:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5 * len(verifications), 4.2), layout="constrained")
    canvas = FigureCanvasAgg(figure)
    for index, verification in enumerate(verifications, 1):
        axes = figure.add_subplot(1, len(verifications), index)
        metric = "accuracy" if verification.labelled else "agreement with clean top-1"
        sigmas = [0.0, *verification.sigmas]
        lines = [("original", verification.sweep)] + [(w.name, w.sweep) for w in verification.what_ifs]
        for label, sweep in lines:
            start = sweep.clean_accuracy if verification.labelled else 1.0
            axes.plot(
                sigmas,
                [start, *sweep.curve()],
                marker="o",
                label=label,
                linestyle="-" if label == "original" else "--",
            )
        axes.set_title(verification.model, fontsize=9)
        axes.set_xlabel("Gaussian noise sigma on [0, 1] pixels")
        axes.set_ylabel(metric)
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    try:
        canvas.print_figure(path)
    except OSError as exc:
        raise VerifyError(f"--plot {path}: cannot write it ({exc})") from None
