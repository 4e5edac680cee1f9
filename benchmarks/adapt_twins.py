"""Adapted vs training-free what-ifs against trained twins, and the probe's rank correlation.

``python -m benchmarks.adapt_twins [--seeds 0 1] [--tasks natural digits] [--steps 200]`` from the
repository root. For each task and seed, every twin variant of :mod:`benchmarks.twins` is trained
with the study's recipe and measured as the study does (robustness = mean over sigmas of noisy /
clean accuracy, sensor and input noise). On the flagged twin (``base``) noiselint's what-if for a
rule is applied training-free (:func:`noiselint.verify.whatif.applied`) and adapted
(:func:`noiselint.verify.adapt.adapted`: distilled on the task's training images, no labels), and
their robustness gains over ``base`` are set against the trained twin's (same seed). The probe
(:func:`noiselint.verify.probe.noise_to_signal`) runs on every variant; its Spearman against
measured robustness is printed with the study's own logit NSR for comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import mean

import torch

from benchmarks.twins import data, models, study
from benchmarks.twins.summary import spearman

#: (rule, the what-if on base, trained twins with that rule's advice followed).
RULES = (("NL101", "box pre-filter", ("k5", "k7")), ("NL301", "avg pool", ("avgpool",)))
PROBE_SIGMA = 0.02


def _setup(net, task: data.Task, variant: str):
    """(graph, findings, executor) of a trained twin, through noiselint's own lint and verify code."""
    import noiselint
    from noiselint.engine import read_graph
    from noiselint.graph import Preprocessing
    from noiselint.loaders import LoadedModel
    from noiselint.verify.execute import TorchExecutor

    size, std = models.input_size(variant, task.name), models.VARIANTS[variant].std
    pre = Preprocessing(mean=(study.MEAN,) * task.channels, std=(std,) * task.channels,
                        input_size=(task.channels, size, size))
    report = noiselint.lint(net, mean=pre.mean, std=pre.std, input_size=pre.input_size, name=variant,
                            ignore=["NL6"])
    graph = read_graph(LoadedModel(variant, variant, net), pre)
    executor = TorchExecutor(net, torch.device("cpu"), pre, task.channels, None)
    return graph, report.models[0].findings, executor


def _patches(net, graph, findings, executor, x: torch.Tensor):
    """noiselint's what-ifs for the twin, by name."""
    from noiselint.verify import gains
    from noiselint.verify.whatif import patches

    found = gains.probes(graph, net)
    clean = executor.normalize(x)
    gains.capture(net, found, clean, clean)
    return patches(findings, [p for p in found if p.clean is not None])


def _robustness(acc: dict) -> dict[str, float]:
    return {p: sum(acc[p]) / len(acc[p]) / acc["clean"] for p in ("sensor", "input")}


@torch.no_grad()
def _top1(net, x: torch.Tensor, std: float) -> torch.Tensor:
    return torch.cat([net(study.normalize(x[i:i + 512], std)).argmax(1) for i in range(0, len(x), 512)])


def run_seed(task: data.Task, seed: int, steps: int) -> dict:
    """Every variant trained and measured, and the what-ifs on base, for one task and seed."""
    from noiselint.verify import adapt
    from noiselint.verify.probe import noise_to_signal
    from noiselint.verify.whatif import applied

    recipe, out = study.RECIPES[task.name], {"variants": {}, "what_ifs": {}}
    for variant in models.TASK_VARIANTS[task.name]:
        started = time.perf_counter()
        size, std = models.input_size(variant, task.name), models.VARIANTS[variant].std
        torch.manual_seed(seed)
        net = models.build(variant, task.channels, task.classes)
        study.train(net, task, size, std, recipe, seed)
        acc = study.accuracies(net, task, size, std)
        graph, findings, executor = _setup(net, task, variant)
        test = data.to_model(task.x_test, size)
        probe = noise_to_signal(executor, test[:study.PROBE_IMAGES], seed=0)
        out["variants"][variant] = {
            "robustness": _robustness(acc), "clean": acc["clean"],
            "probe": dict(probe), "study_logit_nsr": study.stage_nsr(net, task, size, std)["logits"],
        }
        if variant == "base":
            patches = _patches(net, graph, findings, executor, test[:8])
            reference = _top1(net, test, std)
            for rule, name, _ in RULES:
                patch = next(p for p in patches if name in p.name)
                with applied(net, [patch], executor.device, False):
                    free = _robustness(study.accuracies(net, task, size, std))
                train = data.to_model(task.x_train, size)
                with adapt.adapted(net, graph, [patch], executor, train, steps, seed) as done:
                    adapted = _robustness(study.accuracies(net, task, size, std))
                    agreement = (_top1(net, test, std) == reference).float().mean().item()
                out["what_ifs"][rule] = {"patch": patch.name, "training_free": free, "adapted": adapted,
                                         "adapted_clean_agreement": agreement, "trained": list(done.trained),
                                         "loss": [done.first_loss, done.last_loss]}
        print(f"{task.name} seed {seed} {variant}: robustness {out['variants'][variant]['robustness']['sensor']:.3f}"
              f" ({time.perf_counter() - started:.0f} s)", flush=True)
    return out


def _gain(seeds: list[dict], robustness) -> float:
    """Mean over seeds of ``robustness(seed record)`` minus base's (sensor noise), paired by seed."""
    return mean(robustness(s) - s["variants"]["base"]["robustness"]["sensor"] for s in seeds)


def table(runs: dict[str, list[dict]]) -> tuple[list[str], list[str]]:
    """Markdown lines: the gains side by side per rule, and the probe's Spearman per task."""
    gains = ["| task | rule | what-if on base | trained twin | trained gain | training-free gain | "
             "adapted gain | adapted closer | adapted clean agreement |", "|---|---|---|---|---|---|---|---|---|"]
    ranks = ["| task | variants | probe (sigma 0.02) vs robustness, sensor | vs robustness, input | "
             "study's logit NSR vs robustness, sensor |", "|---|---|---|---|---|"]
    for task, seeds in runs.items():
        for rule, _, twins in RULES:
            free = _gain(seeds, lambda s, rule=rule: s["what_ifs"][rule]["training_free"]["sensor"])
            adapted = _gain(seeds, lambda s, rule=rule: s["what_ifs"][rule]["adapted"]["sensor"])
            agree = mean(s["what_ifs"][rule]["adapted_clean_agreement"] for s in seeds)
            for twin in twins:
                trained = _gain(seeds, lambda s, twin=twin: s["variants"][twin]["robustness"]["sensor"])
                closer = "yes" if abs(adapted - trained) < abs(free - trained) else "no"
                gains.append(f"| {task} | {rule} | {seeds[0]['what_ifs'][rule]['patch']} | {twin} | "
                             f"{trained:+.3f} | {free:+.3f} | {adapted:+.3f} | {closer} | {agree:.1%} |")
        names = list(seeds[0]["variants"])
        probe = [mean(s["variants"][v]["probe"][PROBE_SIGMA] for s in seeds) for v in names]
        sensor = [mean(s["variants"][v]["robustness"]["sensor"] for s in seeds) for v in names]
        given = [mean(s["variants"][v]["robustness"]["input"] for s in seeds) for v in names]
        nsr = [mean(s["variants"][v]["study_logit_nsr"] for s in seeds) for v in names]
        ranks.append(f"| {task} | {len(names)} | {spearman(probe, sensor):.3f} | {spearman(probe, given):.3f} | "
                     f"{spearman(nsr, sensor):.3f} |")
    return gains, ranks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--tasks", nargs="+", default=["natural", "digits"], choices=["natural", "digits"])
    parser.add_argument("--steps", type=int, default=200, help="distillation steps of the adapted what-if")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/twins/results/adapt_twins.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    runs = {}
    for name in args.tasks:
        task = data.natural() if name == "natural" else data.digits()
        runs[name] = [run_seed(task, seed, args.steps) for seed in args.seeds]
    args.out.write_text(json.dumps({"seeds": args.seeds, "steps": args.steps, "runs": runs}, indent=1))
    gains, ranks = table(runs)
    print("\n".join(["", *gains, "", *ranks, "", f"{time.perf_counter() - started:.0f} s"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
