"""NL3xx: pooling and subsampling."""

from __future__ import annotations

import math

from noiselint import estimates, fixes
from noiselint.graph import ModelGraph, Op
from noiselint.rule import Example, Rule


class MaxPooling(Rule):
    """
    ## What it does
    Flags max pooling layers (``nn.MaxPool2d``, ``F.max_pool2d``, ONNX ``MaxPool``) with a window
    larger than one value.

    ## Why is this bad?
    On a noisy input, the maximum of a window picks the largest noise sample: it is biased upwards
    by E[max of n normals] times sigma and its mean-squared error grows with the window, while
    average pooling is unbiased and divides the noise variance by the window area n. For a 3x3
    window the noise MSE is 2.56 sigma^2 for max against 0.11 sigma^2 for average pooling
    (analytic, noise-only input). Average pooling was one of the four design patterns that the
    1,174-model study of arXiv 2509.20939 found to improve robustness to Gaussian noise.

    ## Example
    ```python
    self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    ```

    ## Use instead
    ```python
    self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)
    ```

    Or, where max pooling's selectivity and shift invariance are wanted, anti-aliased max pooling
    (Zhang, "Making Convolutional Networks Shift-Invariant Again", 2019), which this rule accepts:
    ```python
    self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), timm.layers.BlurPool2d(stride=2))
    ```

    ## Options
    - ``fix_style`` (``"average"``): what ``--fix`` writes: ``"average"`` (``nn.AvgPool2d``) or
      ``"antialiased"`` (the stride-1 max pool and timm's ``BlurPool2d`` above).

    ## Known problems
    On trained twins (``benchmarks/twins``) the swap helped on every seed of both tasks, but the
    measured noise reduction at the pool was several times smaller than the noise-only figure: the
    factor is labelled an upper bound on the gain.

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL301"
    name = "max-pooling"
    family = "pooling"
    valid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 7, stride=2, padding=3)
                    self.pool = nn.AvgPool2d(3, stride=2, padding=1)

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """
        ),
        Example(
            """
            import torch.nn as nn
            from timm.layers import BlurPool2d

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 7, stride=2, padding=3)
                    self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), BlurPool2d(stride=2))

                def forward(self, x):
                    return self.pool(self.conv(x))

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
                    self.conv = nn.Conv2d(3, 8, 7, stride=2, padding=3)
                    self.pool = nn.MaxPool2d(3, stride=2, padding=1)  # noiselint-expect

                def forward(self, x):
                    return self.pool(self.conv(x))

            model = Net()
            """
        ),
        Example(
            """
            import torch.nn as nn
            import torch.nn.functional as F

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 3, padding=1)

                def forward(self, x):
                    return F.max_pool2d(self.conv(x), 2)  # noiselint-expect

            model = Net()
            """
        ),
    )

    options = {"fix_style": "average"}
    fix_summary = ("`nn.MaxPool2d(k, s, p)` -> `nn.AvgPool2d(k, s, p)` (padding excluded from the average), "
                   "`F.max_pool2d` -> `F.avg_pool2d`; with `fix_style = \"antialiased\"`, "
                   "`nn.Sequential(nn.MaxPool2d(k, 1, p), BlurPool2d(stride=s))` with timm's `BlurPool2d`")

    @classmethod
    def option_problem(cls, name, value):
        if name == "fix_style" and value not in ("average", "antialiased"):
            return 'must be "average" or "antialiased"'
        return super().option_problem(name, value)

    def fix(self, context):
        return fixes.max_to_average_pooling(context, antialiased=self.config["fix_style"] == "antialiased")

    def check(self, graph: ModelGraph):
        for node_id, data in graph.nodes(Op.MAX_POOL):
            window = data["attrs"].get("window")
            if not window or all(w == 1 for w in window):
                continue
            if all(s == 1 for s in data["attrs"].get("stride", ())) and _feeds(graph, node_id, Op.BLUR):
                continue  # anti-aliased max pooling (MaxBlurPool): the blur takes the stride
            where = "stem" if data["stem"] else "in-stage"
            size = "x".join(str(w) for w in window)
            yield self.finding(
                graph,
                f"{size} max pooling ({where}): average pooling with the same window is unbiased and "
                f"divides the noise variance by {math.prod(window)}",
                node=node_id,
                estimate=estimates.max_pool_estimate(tuple(window[:2])),
            )



def _feeds(graph: ModelGraph, node_id: str, op: str) -> str | None:
    """The ``op`` node this node's output reaches through norms and pass-through ops, if any."""
    frontier = graph.successors(node_id)
    while frontier:
        current = frontier.pop()
        kind = graph.node(current)["op"]
        if kind == op:
            return current
        if kind in (Op.NORM, Op.OTHER):
            frontier.extend(graph.successors(current))
    return None


class StridedSubsampling(Rule):
    """
    ## What it does
    Flags strided 1x1 convs, which subsample by keeping one pixel of every s x s block.

    The projection shortcuts of timm's default, C and S ResNets are such convs.

    ## Why is this bad?
    A 1x1 conv with stride s keeps one sample per s x s block and drops the rest, so the noise in
    the kept samples passes whole (nearest-neighbour subsampling, variance factor 1). An s x s
    average pool before the 1x1 conv, as in ResNet-D and ResNet-T, keeps 1/s^2 of it with the same
    weights. Average pooling was one of the four design patterns that the 1,174-model study of
    arXiv 2509.20939 found to improve robustness to Gaussian noise; public reviews of the paper
    report that in its comparison of timm's ResNet C/D/T/S variants the average-pool downsampling
    of D and T beat this subsampling.

    ## Example
    ```python
    self.downsample = nn.Sequential(nn.Conv2d(256, 512, 1, stride=2), nn.BatchNorm2d(512))
    ```

    ## Use instead
    ```python
    self.downsample = nn.Sequential(
        nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False),
        nn.Conv2d(256, 512, 1),
        nn.BatchNorm2d(512),
    )
    ```

    ## Known problems
    The 1/s^2 figure assumes white noise at the shortcut's input; deeper in a network the noise is
    correlated and the gain smaller. It is for Gaussian noise and need not transfer to other
    corruptions (arXiv 2606.07593).

    The twin study (``benchmarks/twins``, small CPU-trained ResNets) found no effect: ResNet-D
    shortcuts did not make its twins more robust, so the factor is labelled an upper bound and the
    rule adds nothing to ``exposure``.

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    - He et al., "Bag of Tricks for Image Classification with CNNs" (ResNet-D), CVPR 2019
    """

    code = "NL302"
    name = "strided-subsampling"
    family = "pooling"
    valid = (
        Example(
            """
            import torch.nn as nn

            class Block(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 32, 3, stride=2, padding=1)
                    self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(3, 32, 1))

                def forward(self, x):
                    return self.conv(x) + self.shortcut(x)

            model = Block()
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch.nn as nn

            class Block(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 32, 3, stride=2, padding=1)
                    self.shortcut = nn.Conv2d(3, 32, 1, stride=2)  # noiselint-expect

                def forward(self, x):
                    return self.conv(x) + self.shortcut(x)

            model = Block()
            """
        ),
    )

    fix_summary = ("a 1x1 stride-s conv -> `nn.Sequential(nn.AvgPool2d(s, s, ceil_mode=True, count_include_pad=False), "
                   "<the conv at stride 1>)` (ResNet-D); `x[:, :, ::2, ::2]` -> `F.avg_pool2d(x, 2, ceil_mode=True)`; "
                   "`timm.create_model('resnet50')` -> `'resnet50d'`")

    def fix(self, context):
        return fixes.average_pool_shortcut(context)

    def check(self, graph: ModelGraph):
        for node_id, data in graph.nodes(Op.SUBSAMPLE):
            stride = max(data["attrs"]["stride"])
            where = "shortcut" if _feeds(graph, node_id, Op.ADD) else "conv"
            what = f"slicing x[..., ::{stride}, ::{stride}]" if data["attrs"].get("slice") else \
                f"1x1 stride-{stride} {where}"
            yield self.finding(
                graph,
                f"{what} keeps one pixel per {stride}x{stride} block, noise and all: "
                f"a {stride}x{stride} average pool before it (ResNet-D) keeps 1/{stride * stride} of the "
                f"noise variance",
                node=node_id,
                estimate=estimates.subsample_estimate(stride),
            )


_POOL_LABELS = {
    "max": "global max pooling",
    "avgmax": "avgmax pooling, (mean + max)/2,",
    "catavgmax": "max pooling for half the features (catavgmax)",
}


class GlobalMaxPooling(Rule):
    """
    ## What it does
    Flags global (adaptive) max pooling.

    That is ``nn.AdaptiveMaxPool2d``, ``x.amax((2, 3))``, ONNX ``GlobalMaxPool``, and timm's
    ``global_pool="max"``, ``"avgmax"`` or ``"catavgmax"``.

    ## Why is this bad?
    The maximum over a whole feature map of n values picks its largest noise sample: on noise alone
    it is biased by E[max of n normals] times sigma (2.24 sigma for a 7x7 map) and its mean-squared
    error grows with n, while the global average is unbiased and divides the noise variance by n.
    timm's avgmax, (mean + max)/2, halves the bias but keeps most of the error. Average pooling was
    one of the four design patterns that the 1,174-model study of arXiv 2509.20939 found to
    improve robustness to Gaussian noise.

    ## Example
    ```python
    model = timm.create_model("resnet50", global_pool="max")
    ```

    ## Use instead
    ```python
    model = timm.create_model("resnet50", global_pool="avg")
    ```

    ## Known problems
    The figures are for noise-only input; on real features the max follows the strongest response
    and the error is smaller. Max pooling inside attention gates (CBAM) is flagged as well.

    ## References
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL303"
    name = "global-max-pooling"
    family = "pooling"
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
    )
    invalid = (
        Example(
            """
            import torch.nn as nn

            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)
                    self.pool = nn.AdaptiveMaxPool2d(1)  # noiselint-expect

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
                    self.conv = nn.Conv2d(3, 16, 7, stride=2, padding=3)

                def forward(self, x):
                    features = self.conv(x)
                    return (features.mean((2, 3)) + features.amax((2, 3))) / 2  # noiselint-expect

            model = Net()
            """
        ),
    )

    fix_summary = ("`nn.AdaptiveMaxPool2d(o)` -> `nn.AdaptiveAvgPool2d(o)`, `F.adaptive_max_pool2d` likewise, "
                   "`x.amax(...)` -> `x.mean(...)`")

    def fix(self, context):
        return fixes.global_max_to_average(context)

    def check(self, graph: ModelGraph):
        for node_id, data in graph.nodes(Op.ADAPTIVE_MAX_POOL):
            kind = self._kind(graph, node_id, data["attrs"].get("pool_type"))
            n = self._window(graph, node_id, data["attrs"].get("output_size"))
            if n is None:
                estimate = estimates.unknown_window_pool_estimate()
            elif kind == "avgmax":
                estimate = estimates.global_avgmax_pool_estimate(n)
            else:
                estimate = estimates.global_max_pool_estimate(n)
            values = f"{n} values" if n is not None else "a feature map of unknown size"
            yield self.finding(
                graph,
                f"{_POOL_LABELS[kind]} over {values}: a global average is unbiased and divides the noise "
                f"variance by the number of values",
                node=node_id,
                estimate=estimate,
            )

    @staticmethod
    def _kind(graph: ModelGraph, node_id: str, pool_type: str | None) -> str:
        """max, avgmax or catavgmax: from timm's pool_type, or a sum or concat with a global average."""
        if pool_type in ("avgmax", "catavgmax"):
            return pool_type
        for op, kind in ((Op.ADD, "avgmax"), (Op.CONCAT, "catavgmax")):
            joined = _feeds(graph, node_id, op)
            if joined and Op.ADAPTIVE_AVG_POOL in {graph.node(p)["op"] for p in graph.predecessors(joined)}:
                return kind
        return "max"

    @staticmethod
    def _window(graph: ModelGraph, node_id: str, output_size) -> int | None:
        """Values per output cell: H*W of the input over the output cells, None when not traced."""
        shape = graph.input_shape(node_id)
        if shape is None or len(shape) < 3:
            return None
        cells = math.prod(output_size) if output_size and None not in output_size else 1
        return max(1, math.prod(shape[2:]) // cells)
