"""NL1xx: the stem, the first layers that filter the input noise."""

from __future__ import annotations

from noiselint import estimates, fixes
from noiselint.findings import Severity
from noiselint.graph import ModelGraph, Op
from noiselint.rule import Example, Range, Rule

# Ops a stem conv's output may pass through on its way to the next stem conv.
_CHAIN_OPS = frozenset({Op.NORM, Op.ACTIVATION, Op.OTHER, Op.RESHAPE})


def _square(value) -> int | None:
    """The side of a square kernel or stride (1 when absent), None for a non-square one."""
    if not value:
        return 1
    return value[0] if len(set(value)) == 1 else None


def _spatial_conv(data: dict) -> bool:
    """A dense conv with a square kernel larger than 1x1: one layer of a conv stem."""
    attrs = data["attrs"]
    kernel = _square(attrs.get("kernel"))
    return data["op"] == Op.CONV and attrs.get("groups", 1) == 1 and kernel is not None and kernel > 1


def _next_in_chain(graph: ModelGraph, node_id: str) -> str | None:
    consumers = [
        s for s in graph.successors(node_id)
        if graph.node(s)["op"] != Op.OUTPUT and (graph.node(s)["op"] != Op.OTHER or graph.node(s)["shape"])
    ]
    return consumers[0] if len(consumers) == 1 and graph.node(consumers[0])["stem"] else None


def stem_convs(graph: ModelGraph) -> list[str]:
    """The stem's conv stack: the first convolution and the dense spatial convs chained after it.

    The chain follows the data through norms and activations; it ends at a branch, a pooling layer,
    a 1x1 or grouped conv (the first block begins), or the end of the stem.
    """
    first = next((n for n, d in graph.nodes(Op.CONV, Op.PATCH_EMBED) if d["stem"]), None)
    if first is None or _square(graph.node(first)["attrs"].get("kernel")) is None:
        return []
    stack, current = [first], _next_in_chain(graph, first)
    while current is not None:
        data = graph.node(current)
        if _spatial_conv(data):
            stack.append(current)
        elif data["op"] not in _CHAIN_OPS:
            break
        current = _next_in_chain(graph, current)
    return stack


def _layers(graph: ModelGraph, stack: list[str]) -> list[tuple[int, int]]:
    """(kernel, stride) of each conv in a stem stack."""
    return [(_square(graph.node(n)["attrs"]["kernel"]), _square(graph.node(n)["attrs"].get("stride")) or 1)
            for n in stack]


class SmallStemKernel(Rule):
    """
    ## What it does
    Flags a CNN stem that filters the input less than one 7x7 conv (the ``min_kernel`` option) would.

    A single 3x3 stem conv, two stacked 3x3 convs or a 4x4 patchify stem are flagged. A stack of
    convs counts by its composed filter (its receptive field), so the three 3x3 convs of a
    ResNet-C/D deep stem pass.

    ## Why is this bad?
    The stem is the first filter the input noise meets. Seen as a mean (low-pass) filter, the least
    noisy filter with unit DC gain, a k x k stem keeps 1/k^2 of white input noise variance: 1/9 for
    3x3, 1/49 for 7x7; a stack keeps sum(h^2) of its composed kernel (0.0149 for 3x3/s2 > 3x3 > 3x3).
    Larger stem kernels were one of the four design patterns that the 1,174-model study of arXiv
    2509.20939 found to improve robustness to Gaussian noise, and its theory shows the low-pass gain
    falling quadratically with kernel size. ViT patch embeddings are NL102's.

    ## Example
    ```python
    self.stem = nn.Conv2d(3, 32, kernel_size=3, stride=2, padding=1)
    ```

    ## Use instead
    ```python
    self.stem = nn.Conv2d(3, 32, kernel_size=7, stride=2, padding=3)
    # or a deep stem: 3x3/s2 > 3x3 > 3x3 (receptive field 11)
    ```

    ## Known problems
    The gain is that of a mean filter: learned stem kernels are not low-pass, and their exact gain
    needs the weights (NL601). A gain measured for Gaussian noise need not transfer to other
    corruptions such as blur (arXiv 2606.07593). On trained twins (``benchmarks/twins``) larger stem
    kernels and patchify stems helped on every seed, with a measured stage factor within 2x of this one.

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL101"
    name = "small-stem-kernel"
    family = "stem"
    options = {"min_kernel": 7}
    option_ranges = {"min_kernel": Range(1, 4096)}
    valid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)
                    self.pool = nn.AdaptiveAvgPool2d(1)

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """
        ),
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.stem = nn.Sequential(
                        nn.Conv2d(3, 16, 3, stride=2, padding=1),
                        nn.ReLU(),
                        nn.Conv2d(16, 16, 3, padding=1),
                        nn.ReLU(),
                        nn.Conv2d(16, 32, 3, padding=1),
                    )
                    self.pool = nn.AdaptiveAvgPool2d(1)

                def forward(self, x):
                    return self.pool(self.stem(x))

            model = Net()
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)  # noiselint-expect
                    self.pool = nn.AdaptiveAvgPool2d(1)

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """
        ),
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)  # noiselint-expect
                    self.bn1 = nn.BatchNorm2d(16)
                    self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
                    self.pool = nn.AdaptiveAvgPool2d(1)

                def forward(self, x):
                    return self.pool(self.conv2(self.bn1(self.conv1(x)).relu()))

            model = Net()
            """
        ),
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.patchify = nn.Conv2d(3, 64, 4, stride=4)  # noiselint-expect
                    self.pool = nn.AdaptiveAvgPool2d(1)

                def forward(self, x):
                    return self.pool(self.patchify(x))

            model = Net()
            """
        ),
    )

    fix_summary = "the stem conv's kernel -> `min_kernel` (7), its padding grown to keep the output shape"

    def fix(self, context):
        return fixes.larger_stem_kernel(context, self.config["min_kernel"])

    def check(self, graph: ModelGraph):
        stack = stem_convs(graph)
        if not stack or (graph.node(stack[0])["op"] == Op.PATCH_EMBED and graph.architecture == "vit"):
            return
        layers = _layers(graph, stack)
        kernels, strides = [k for k, _ in layers], [s for _, s in layers]
        k = self.config["min_kernel"]
        gain, limit = estimates.composed_box_gain(kernels, strides), estimates.box_filter_gain(k)
        if gain <= limit * (1 + 1e-9):
            return
        if len(layers) == 1:
            what = f"{kernels[0]}x{kernels[0]} stem conv"
            current = kernels[0]
        else:
            field = estimates.receptive_field(kernels, strides)
            convs = " > ".join(f"{size}x{size}/s{stride}" for size, stride in layers)
            what = f"stem of {convs} convs (receptive field {field})"
            current = layers
        yield self.finding(
            graph,
            f"{what}: as a mean filter it keeps {gain:.3g} of the input noise variance, a {k}x{k} stem "
            f"{limit:.3g}",
            node=stack[0],
            estimate=estimates.stem_kernel_estimate(current, k),
        )


class SmallPatchSize(Rule):
    """
    ## What it does
    Flags a vision transformer with patches smaller than 16x16 (the ``min_patch`` option).

    ViT-B/8, ViT-L/14 and 4x4 patch embeddings are flagged; ViT-B/16 and ViT-B/32 pass.

    ## Why is this bad?
    For a ViT the patch size is the stem kernel: each token averages a p x p patch, and a p x p mean
    filter keeps 1/p^2 of white input noise variance (1/64 for p=8, 1/256 for p=16). Larger stem
    kernels were one of the four design patterns that the 1,174-model study of arXiv 2509.20939
    found to improve robustness to Gaussian noise; public reviews of the paper read the patch size as
    the ViT's stem kernel.

    ## Example
    ```python
    self.patch_embed = PatchEmbed(img_size=224, patch_size=8, embed_dim=768)
    ```

    ## Use instead
    ```python
    self.patch_embed = PatchEmbed(img_size=224, patch_size=16, embed_dim=768)
    ```

    ## Known problems
    A learned embedding is not a mean filter, and a larger patch at the same resolution means fewer
    tokens, which usually costs clean accuracy. Hierarchical transformers (Swin) embed 4x4 patches
    by design; for them a larger overlapping stem conv is the practical change. The gain is for
    Gaussian noise and need not transfer to other corruptions (arXiv 2606.07593).

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL102"
    name = "small-patch-size"
    family = "stem"
    options = {"min_patch": 16}
    option_ranges = {"min_patch": Range(1, 4096)}
    valid = (
        Example(
            """
            import torch.nn as nn

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

            class ViT(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.patch = nn.Conv2d(3, 64, 8, stride=8)  # noiselint-expect
                    self.attn = nn.MultiheadAttention(64, 4, batch_first=True)

                def forward(self, x):
                    tokens = self.patch(x).flatten(2).transpose(1, 2)
                    return self.attn(tokens, tokens, tokens)[0].mean(1)

            model = ViT()
            """
        ),
    )

    def check(self, graph: ModelGraph):
        if graph.architecture != "vit":
            return
        target = self.config["min_patch"]
        for node_id, data in graph.nodes(Op.PATCH_EMBED):
            patch = min(data["attrs"]["kernel"])
            if not data["stem"] or patch >= target:
                continue
            yield self.finding(
                graph,
                f"{patch}x{patch} patches: as a mean filter a token keeps 1/{patch * patch} of the white "
                f"noise variance, {target}x{target} patches 1/{target * target}",
                node=node_id,
                estimate=estimates.patch_size_estimate(patch, target),
            )


class AliasedStemDownsampling(Rule):
    """
    ## What it does
    Reports strided stem convs with no low-pass filter (blur or average pooling) before the stride.

    ## Why is this bad?
    A strided conv filters and then keeps every s-th sample: noise above the new Nyquist frequency
    folds back (aliases) into the kept samples instead of being removed. Low-pass filtering before
    the subsampling, as anti-aliased CNNs do (timm's ``aa_layer=BlurPool2d``), removes it: with an
    ideal low-pass filter the noise variance per kept sample falls by about 1/s^2. This is the
    theory of arXiv 2509.20939 (anti-aliased downsampling reduces noise energy roughly in proportion
    to the square of the downsampling factor); patch embeddings are left alone, as a p x p patch
    already averages its whole stride.

    ## Example
    ```python
    self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
    ```

    ## Use instead
    ```python
    self.conv1 = nn.Conv2d(3, 64, 7, stride=1, padding=3)
    self.blur = BlurPool2d(64, filt_size=3, stride=2)  # timm.layers
    ```

    ## Known problems
    The 1/s^2 figure treats the noise reaching the stride as white; a stem kernel that already
    low-passes (a large, smooth learned filter) gains less. A stride-1 conv at full resolution costs
    s^2 times its compute. The gain is for Gaussian noise and need not transfer to blur or other
    corruptions (arXiv 2606.07593).

    The twin study (``benchmarks/twins``) found no effect: a blur before the stride lowered the noise
    at the stem but not at the logits, and did not make its twins more robust; the rule adds nothing
    to ``exposure``.

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    - Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019
    """

    code = "NL103"
    name = "aliased-stem-downsampling"
    family = "stem"
    severity = Severity.INFO
    valid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, padding=3)
                    self.blur = nn.AvgPool2d(2)
                    self.head = nn.AdaptiveAvgPool2d(1)

                def forward(self, x):
                    return self.head(self.blur(self.conv(x)))

            model = Net()
            """
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
                    self.head = nn.AdaptiveAvgPool2d(1)

                def forward(self, x):
                    return self.head(self.conv(x))

            model = Net()
            """
        ),
    )

    fix_summary = ("a strided stem conv -> `nn.Sequential(<the conv at stride 1>, nn.AvgPool2d(s, s, ceil_mode=True, "
                   "count_include_pad=False))`, as timm's `aa_layer=nn.AvgPool2d` (same output shape)")

    def fix(self, context):
        return fixes.blur_after_stride(context)

    def check(self, graph: ModelGraph):
        for node_id in stem_convs(graph):
            data = graph.node(node_id)
            stride = _square(data["attrs"].get("stride"))
            if data["op"] == Op.PATCH_EMBED or not stride or stride == 1 or self._low_passed(graph, node_id):
                continue
            yield self.finding(
                graph,
                f"stride {stride} with no blur or average pooling before it: noise above the new Nyquist "
                f"frequency aliases into the kept samples",
                node=node_id,
                estimate=estimates.antialias_estimate(stride),
            )

    @staticmethod
    def _low_passed(graph: ModelGraph, node_id: str) -> bool:
        import networkx as nx  # lazily: rule discovery runs on warm-cache runs, which need no graph

        return any(graph.node(a)["op"] in (Op.BLUR, Op.AVG_POOL) for a in nx.ancestors(graph.graph, node_id))
