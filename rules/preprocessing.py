"""NL4xx: input preprocessing (normalization statistics)."""

from __future__ import annotations

from noiselint import estimates, fixes
from noiselint.findings import Severity
from noiselint.graph import ModelGraph, Op
from noiselint.rule import Example, Range, Rule

_RGB = ("red", "green", "blue")


def _first_layer(graph: ModelGraph) -> str | None:
    """The first conv, patch embed or linear layer: where a model-level finding points."""
    return next((node_id for node_id, _ in graph.nodes(*Op.CONVOLUTIONS, Op.LINEAR)), None)


def _is_clip(std: tuple[float, ...]) -> bool:
    return len(std) == 3 and all(abs(a - b) < 1e-4 for a, b in zip(std, estimates.CLIP_STD, strict=True))


def _channel(std: tuple[float, ...], index: int) -> str:
    return f"channel {index} ({_RGB[index]})" if len(std) == 3 else f"channel {index}"


def _values(std: tuple[float, ...]) -> str:
    return ", ".join(f"{v:.4g}" for v in std)


class SmallNormalizationStd(Rule):
    """
    ## What it does
    Reports an input normalization std below Inception's 0.5 (the ``min_std`` option).

    ImageNet's std (0.229, 0.224, 0.225) is reported with its per-channel factor 0.5/std; CLIP's
    statistics are NL402's.

    ## Why is this bad?
    ``(x - mean) / std`` scales pixel noise by 1/std before the network sees it: against std 0.5,
    the same network behind ImageNet std has a pixel-space Lipschitz bound 2.23x larger (green
    channel). arXiv 2509.20939 explains the CLIP-ViT vulnerability with this bound (up to 1.91x for
    CLIP's std). It is reported as information: a network trained with a given std learns weights
    for it, so the bound compares one network behind two scalings, not two trained models.

    ## Example
    ```python
    transform = T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    ```

    ## Use instead
    ```python
    transform = T.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # when training from scratch
    ```

    ## Known problems
    Changing the std of a trained model without retraining changes its accuracy; the paper's
    evidence is for CLIP against supervised ViTs, and most timm CNNs use ImageNet's std. A worst-case
    bound, not an average-case noise figure.

    The twin study (``benchmarks/twins``) found no effect for CNNs trained with std 0.25 against 0.5,
    with a BatchNorm after the stem or without one: a network trained behind a scaling learns
    weights for it. The factor is labelled an upper bound and the rule adds nothing to ``exposure``.

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL401"
    name = "small-normalization-std"
    family = "preprocessing"
    severity = Severity.INFO
    options = {"min_std": 0.5}
    option_ranges = {"min_std": Range(0, low_open=True)}
    valid = (
        Example(
            """
            import torch.nn as nn

            MEAN = (0.5, 0.5, 0.5)
            STD = (0.5, 0.5, 0.5)

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)

                def forward(self, x):
                    return self.conv(x)

            model = Net()
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch.nn as nn

            MEAN = (0.485, 0.456, 0.406)
            STD = (0.229, 0.224, 0.225)

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)  # noiselint-expect

                def forward(self, x):
                    return self.conv(x)

            model = Net()
            """
        ),
    )

    fix_scope = "target"
    fix_summary = ("module-level `MEAN` / `STD` (or `transforms.Normalize(mean, std)`) -> 0.5 per channel; "
                   "retrain or fine-tune with them")

    def fix(self, context):
        return fixes.inception_statistics(context)

    def check(self, graph: ModelGraph):
        std, reference = graph.preprocessing.std, self.config["min_std"]
        if std is None or _is_clip(std) or min(std) >= reference:
            return
        index, factor = estimates.worst_channel(std, reference)
        yield self.finding(
            graph,
            f"normalization std ({_values(std)}, from {graph.preprocessing.origin}) scales pixel noise by "
            f"1/std: {factor:.3g}x the Lipschitz bound of std {reference:g} on {_channel(std, index)}",
            node=_first_layer(graph),
            estimate=estimates.normalization_estimate(std, reference),
        )


class ClipNormalization(Rule):
    """
    ## What it does
    Flags CLIP's normalization std on a vision transformer (information on other architectures).

    OpenAI CLIP's std is (0.2686, 0.2613, 0.2758); OpenCLIP and timm's CLIP models use it too.

    ## Why is this bad?
    Supervised ViTs rather than CLIP ViTs was one of the four design patterns that the 1,174-model
    study of arXiv 2509.20939 found to improve robustness to Gaussian noise. Its explanation: CLIP's
    smaller std amplifies pixel noise, raising the pixel-space Lipschitz bound by up to 1.91x against
    the Inception-style std 0.5 of supervised ViTs (0.5/0.2613 on the green channel). On a CNN the
    same arithmetic holds but the paper's evidence does not cover it, so it is only reported.

    ## Example
    ```python
    model = timm.create_model("vit_base_patch16_clip_224.openai")
    ```

    ## Use instead
    ```python
    model = timm.create_model("vit_base_patch16_224.augreg_in21k_ft_in1k")  # supervised, std 0.5
    ```

    ## Known problems
    CLIP and supervised ViTs also differ in data and objective; the bound isolates only the
    normalization. A fine-tuned CLIP model keeps CLIP's std, and changing it without retraining
    changes accuracy. A worst-case bound, not an average-case figure.

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    - Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", 2021
    """

    code = "NL402"
    name = "clip-normalization"
    family = "preprocessing"
    valid = (
        Example(
            """
            import torch.nn as nn

            MEAN = (0.5, 0.5, 0.5)
            STD = (0.5, 0.5, 0.5)

            class ViT(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.patch = nn.Conv2d(3, 64, 16, stride=16)
                    self.attn = nn.MultiheadAttention(64, 4, batch_first=True)

                def forward(self, x):
                    tokens = self.patch(x).flatten(2).transpose(1, 2)
                    return self.attn(tokens, tokens, tokens)[0].mean(1)

            model = ViT()
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch.nn as nn

            MEAN = (0.48145466, 0.4578275, 0.40821073)
            STD = (0.26862954, 0.26130258, 0.27577711)

            class ViT(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.patch = nn.Conv2d(3, 64, 16, stride=16)  # noiselint-expect
                    self.attn = nn.MultiheadAttention(64, 4, batch_first=True)

                def forward(self, x):
                    tokens = self.patch(x).flatten(2).transpose(1, 2)
                    return self.attn(tokens, tokens, tokens)[0].mean(1)

            model = ViT()
            """
        ),
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)  # noiselint-expect

                def forward(self, x):
                    return self.conv(x)

            model = Net()
            """,
            options={"mean": (0.48145466, 0.4578275, 0.40821073), "std": estimates.CLIP_STD},
        ),
    )

    fix_scope = "target"
    fix_summary = ("module-level `MEAN` / `STD` (or `transforms.Normalize(mean, std)`) -> 0.5 per channel; "
                   "retrain or fine-tune with them")

    def fix(self, context):
        return fixes.inception_statistics(context)

    def check(self, graph: ModelGraph):
        std = graph.preprocessing.std
        if std is None or not _is_clip(std):
            return
        index, factor = estimates.worst_channel(std)
        vit = graph.architecture == "vit"
        model = "a ViT" if vit else f"a {graph.architecture} model"
        yield self.finding(
            graph,
            f"CLIP normalization std ({_values(std)}) on {model}: {factor:.3g}x the pixel-space Lipschitz "
            f"bound of Inception-style std 0.5 on {_channel(std, index)}",
            node=_first_layer(graph),
            estimate=estimates.normalization_estimate(std),
            severity=None if vit else Severity.INFO,
        )


class UnknownPreprocessing(Rule):
    """
    ## What it does
    Reports a model whose input normalization std is unknown.

    No timm ``pretrained_cfg``, model file (``MEAN``/``STD`` or a torchvision ``Normalize``),
    configuration, command line or ONNX graph stated it.

    ## Why is this bad?
    The std sets how strongly pixel noise is amplified before the first layer (NL401, NL402); without
    it those rules cannot run, and a robustness figure measured with the wrong statistics is wrong
    too. Said out loud so that silence is never mistaken for a clean result.

    ## Example
    ```python
    model = Net()  # no MEAN / STD anywhere
    ```

    ## Use instead
    ```python
    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)
    model = Net()  # or: noiselint model.py --mean ... --std ...
    ```

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL403"
    name = "unknown-preprocessing"
    family = "preprocessing"
    severity = Severity.INFO
    valid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)

                def forward(self, x):
                    return self.conv(x)

            model = Net()
            """,
            options={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        ),
    )
    invalid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)  # noiselint-expect

                def forward(self, x):
                    return self.conv(x)

            model = Net()
            """
        ),
    )

    def check(self, graph: ModelGraph):
        if graph.preprocessing.std is not None:
            return
        yield self.finding(
            graph,
            "input normalization std unknown, so NL401 and NL402 could not run: give --mean/--std, or "
            "MEAN/STD in the model file",
            node=_first_layer(graph),
            estimate=estimates.unknown_normalization_estimate(),
        )
