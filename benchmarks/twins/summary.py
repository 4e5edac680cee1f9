"""From the raw records to the study's figures: per-variant means, per-pair paired differences,
Spearman correlations of exposure with measured robustness, a markdown table and the packaged data.

Deterministic: the same raw files give byte-identical output (tests/test_twins.py checks the
packaged ``noiselint/data/twins.json`` against a recomputation from the committed raw results).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from benchmarks.twins import models

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "noiselint" / "data" / "twins.json"


def load(out: Path, mode: str) -> tuple[list[dict], dict]:
    """Raw records (one per trained model) and the lint file of a run."""
    records = [json.loads(line) for line in (out / f"{mode}.jsonl").read_text().splitlines() if line]
    return records, json.loads((out / f"{mode}_lint.json").read_text())


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _geo(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties given their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rho (Pearson on average ranks); None when either side is constant."""
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    sa = math.sqrt(sum((x - ma) ** 2 for x in ra))
    sb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    if sa == 0 or sb == 0:
        return None
    return sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True)) / (sa * sb)


def variant_table(records: list[dict]) -> dict[str, dict[str, dict]]:
    """task -> variant -> means over seeds."""
    table: dict[str, dict[str, dict]] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["task"], r["variant"]), []).append(r)
    for (task, variant), rows in sorted(groups.items()):
        table.setdefault(task, {})[variant] = {
            "seeds": len(rows),
            "clean": _r(statistics.fmean(r["accuracy"]["clean"] for r in rows)),
            "robustness": _r(statistics.fmean(r["robustness"]["sensor"] for r in rows)),
            "robustness_sd": _r(statistics.stdev(r["robustness"]["sensor"] for r in rows)) if len(rows) > 1 else None,
            "robustness_input_protocol": _r(statistics.fmean(r["robustness"]["input"] for r in rows)),
            "logit_nsr": _r(_geo([r["nsr"]["logits"] for r in rows]), 6),
        }
    return table


def _finding_value(lint: dict, code: str, stage: str) -> tuple[float, dict] | None:
    """(variance-units current value, estimate) of the variant's finding of ``code`` nearest ``stage``."""
    found = [f for f in lint["findings"] if f["code"] == code and f["estimate"]]
    if not found:
        return None
    found.sort(key=lambda f: not (f["module_path"] or "").startswith(stage))
    return found[0]["estimate"]["current"], found[0]["estimate"]


def predicted(lint: dict, flagged: str, fixed: str, code: str, task: str, stage: str) -> float | None:
    """The analytic stage factor noiselint predicts for a pair, in noise-variance units.

    The fixed twin's own finding value over the flagged one's when the fixed twin is still flagged,
    else the flagged finding's factor (the advice followed in full). A Lipschitz factor is squared.
    """
    a = _finding_value(lint[f"{task}/{flagged}"], code, stage)
    if a is None:
        return None
    current, estimate = a
    b = _finding_value(lint[f"{task}/{fixed}"], code, stage)
    if estimate["factor"] is None:
        return None
    factor = b[0] / current if b is not None and current else estimate["factor"]
    return factor**2 if estimate["scales_sigma"] else factor


def verdict(differences: list[float]) -> str:
    """'effect' when at most one seed disagrees and the mean is over twice its standard error, 'none'
    when it is not, 'opposite' for a clear effect the other way."""
    n = len(differences)
    mean = statistics.fmean(differences)
    se = statistics.stdev(differences) / math.sqrt(n) if n > 1 else math.inf
    better = sum(d > 0 for d in differences)
    if better >= n - 1 and mean > 2 * se:
        return "effect"
    if better <= 1 and mean < -2 * se:
        return "opposite"
    return "none"


def pair_table(records: list[dict], lint: dict) -> list[dict]:
    """One row per (task, pair): paired by seed, advice followed minus flagged."""
    by_key = {(r["task"], r["variant"], r["seed"]): r for r in records}
    rows = []
    for task in ("natural", "digits"):
        for flagged, fixed, code, change, stage in models.PAIRS:
            if flagged not in models.TASK_VARIANTS[task] or fixed not in models.TASK_VARIANTS[task]:
                continue
            seeds = sorted(s for (t, v, s) in by_key if t == task and v == flagged and (t, fixed, s) in by_key)
            if not seeds:
                continue
            protocols = ("sensor", "input") if code == "NL201" else ("sensor",)
            for protocol in protocols:
                a = [by_key[(task, flagged, s)] for s in seeds]
                b = [by_key[(task, fixed, s)] for s in seeds]
                diffs = [y["robustness"][protocol] - x["robustness"][protocol] for x, y in zip(a, b, strict=True)]
                stage_ratios = [y["nsr"][stage] / x["nsr"][stage] for x, y in zip(a, b, strict=True)]
                logit_ratios = [y["nsr"]["logits"] / x["nsr"]["logits"] for x, y in zip(a, b, strict=True)]
                if protocol == "input":  # noise after the resize: no input-stage factor is measured
                    stage_ratios = [1.0] * len(seeds)
                rows.append({
                    "task": task, "rule": code, "change": change, "flagged": flagged, "fixed": fixed,
                    "protocol": protocol, "stage": stage, "seeds": len(seeds),
                    "predicted_stage_factor": _r(predicted(lint, flagged, fixed, code, task, stage)
                                                 if protocol == "sensor" else None),
                    "measured_stage_factor": _r(_geo(stage_ratios)),
                    "stage_factor_range": [_r(min(stage_ratios)), _r(max(stage_ratios))],
                    "logit_factor": _r(_geo(logit_ratios)),
                    "logit_factor_range": [_r(min(logit_ratios)), _r(max(logit_ratios))],
                    "robustness_difference": _r(statistics.fmean(diffs)),
                    "robustness_difference_sd": _r(statistics.stdev(diffs)) if len(diffs) > 1 else None,
                    "seeds_better": sum(d > 0 for d in diffs),
                    "verdict": verdict(diffs),
                })
    return rows


def packaged(pairs: list[dict], meta: dict, variants: dict) -> dict:
    """The evidence file shipped as ``noiselint/data/twins.json``: per rule, its study rows."""
    rules: dict[str, list[dict]] = {}
    for row in pairs:
        rules.setdefault(row["rule"], []).append({k: v for k, v in row.items() if k != "rule"})
    scope = {task: {"variants": len(v), "parameters": "about 78 k", "clean_accuracy": [
        min(x["clean"] for x in v.values()), max(x["clean"] for x in v.values())]} for task, v in variants.items()}
    return {
        "source": "benchmarks/twins (python -m benchmarks.twins.run), generated; do not edit by hand",
        "mode": meta["mode"],
        "scope": {
            "architecture": "small ResNet, 16-32-64 channels, one basic block per stage",
            "tasks": {"natural": "which of 17 scikit-image images a crop is from, 48 px sensor crops at 32 px",
                      "digits": "scikit-learn digits, 8x8 upsampled to 16x16"},
            "per_task": scope,
            "robustness": "mean over sigma of noisy / clean accuracy, sigma " + ", ".join(map(str, meta["sigmas"])),
            "noise": "pixel noise added at sensor resolution, before the resize to the model input",
            "seeds": len(meta["seeds"]), "recipes": meta["recipes"],
        },
        "rules": dict(sorted(rules.items())),
    }


def old_exposure(findings: list[dict]) -> float:
    """The exposure before the twin study: log10 of the product of every finding's analytic advice term
    (NL201 left out: its estimate had no factor then)."""
    from noiselint import estimates
    from noiselint import evidence as ev

    terms = [estimates.advice_term(f.estimate) for f in ev.findings_from_dicts(findings, "")
             if f.estimate is not None and f.code != "NL201"]
    return estimates.combine_exposure(t for t in terms if t is not None)


def exposure_check(lint: dict, variants: dict, evidence: dict) -> dict[str, dict]:
    """Per task: Spearman of the old (analytic) and new (evidence) exposure, and of the measured logit
    NSR, with the variant mean robustness; the exposures per variant."""
    from noiselint import evidence as ev

    out = {}
    for task, table in variants.items():
        names = sorted(table)
        robustness = [table[v]["robustness"] for v in names]
        old = [old_exposure(lint[f"{task}/{v}"]["findings"]) for v in names]
        new = [ev.exposure(ev.findings_from_dicts(lint[f"{task}/{v}"]["findings"], v), evidence) for v in names]
        out[task] = {
            "variants": names,
            "old_exposure": [_r(x) for x in old],
            "new_exposure": [_r(x) for x in new],
            "spearman_old": _r(spearman(old, robustness), 3),
            "spearman_new": _r(spearman(new, robustness), 3),
            "spearman_logit_nsr": _r(spearman([table[v]["logit_nsr"] for v in names], robustness), 3),
        }
    return out


def markdown(variants: dict, pairs: list[dict], check: dict, meta: dict) -> str:
    lines = [f"# Twin study, {meta['mode']} mode", "",
             f"Seeds {len(meta['seeds'])}; sigma {', '.join(map(str, meta['sigmas']))}; noise at sensor resolution "
             f"(natural: 48 px, resized to the model input); robustness = mean noisy/clean accuracy. "
             f"Torch {meta['torch']}, {meta['threads']} thread(s), device {meta['device']}.", "",
             "## Per rule (paired by seed: advice followed minus flagged)", "",
             "| task | rule | twins | protocol | predicted stage factor | measured stage factor (range) | "
             "logit NSR factor | robustness difference | seeds better | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        pred = "-" if p["predicted_stage_factor"] is None else f"{p['predicted_stage_factor']:.3g}"
        lo, hi = p["stage_factor_range"]
        sd = p["robustness_difference_sd"]
        lines.append(
            f"| {p['task']} | {p['rule']} | {p['change']} | {p['protocol']} | {pred} | "
            f"{p['measured_stage_factor']:.3g} ({lo:.3g}-{hi:.3g}) at {p['stage']} | {p['logit_factor']:.3g} | "
            f"{p['robustness_difference']:+.3f} ± {sd if sd is None else f'{sd:.3f}'} | "
            f"{p['seeds_better']}/{p['seeds']} | {p['verdict']} |")
    lines += ["", "## Per variant (means over seeds) and exposure", ""]
    for task, table in variants.items():
        c = check[task]
        lines += [f"### {task}: Spearman with robustness: old exposure {c['spearman_old']}, new exposure "
                  f"{c['spearman_new']}, measured logit NSR {c['spearman_logit_nsr']}", "",
                  "| variant | clean | robustness (sensor noise) | robustness (noise after resize) | logit NSR | "
                  "old exposure | new exposure |", "|---|---|---|---|---|---|---|"]
        for i, v in enumerate(c["variants"]):
            row = table[v]
            sd = row["robustness_sd"]
            lines.append(f"| {v} | {row['clean']:.3f} | {row['robustness']:.3f} ± {sd if sd is None else f'{sd:.3f}'}"
                         f" | {row['robustness_input_protocol']:.3f} | {row['logit_nsr']:.3g} | "
                         f"{c['old_exposure'][i]:.3g} | {c['new_exposure'][i]:.3g} |")
        lines.append("")
    return "\n".join(lines)


def compute(out: Path, mode: str) -> dict:
    """Everything the summary writes, as one dict (no files touched)."""
    records, lint_file = load(out, mode)
    meta, lint = lint_file["meta"], lint_file["lint"]
    variants = variant_table(records)
    pairs = pair_table(records, lint)
    evidence = packaged(pairs, meta, variants)
    check = exposure_check(lint, variants, evidence)
    return {"meta": meta, "variants": variants, "pairs": pairs, "exposure": check, "evidence": evidence}


def dumps(value: dict) -> str:
    return json.dumps(value, indent=1, sort_keys=False) + "\n"


def write(out: Path, mode: str, package: bool) -> dict:
    """Write ``<mode>_summary.json``, ``<mode>.md`` and (``package``) the packaged evidence."""
    result = compute(out, mode)
    (out / f"{mode}_summary.json").write_text(dumps({k: v for k, v in result.items() if k != "evidence"}))
    (out / f"{mode}.md").write_text(markdown(result["variants"], result["pairs"], result["exposure"], result["meta"]))
    target = PACKAGED if package else out / f"{mode}_twins.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dumps(result["evidence"]))
    return result


if __name__ == "__main__":
    import sys

    mode = sys.argv[1] if len(sys.argv) > 1 else "full"
    write(Path(__file__).resolve().parent / "results", mode, package=mode == "full")
