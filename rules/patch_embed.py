"""NL5xx: the patch embedding of vision transformers."""

from __future__ import annotations

from noiselint import estimates
from noiselint.findings import Severity
from noiselint.graph import ModelGraph, Op
from noiselint.rule import Example, Range, Rule


def _shape(data: dict) -> tuple[int, int, int] | None:
    """(patch, in_chans, embed_dim) of a square patch embedding, None when a dimension is unknown."""
    attrs = data["attrs"]
    kernel, chans, dim = attrs.get("kernel"), attrs.get("in_channels"), attrs.get("out_channels")
    if not kernel or len(set(kernel)) != 1 or not chans or not dim:
        return None
    return kernel[0], chans, dim


def _patch_with_nullspace(patch: int, in_chans: int, embed_dim: int) -> int:
    """The smallest doubling of ``patch`` whose C p^2 inputs exceed D, so some noise is blocked."""
    while in_chans * patch * patch <= embed_dim:
        patch *= 2
    return patch


def _patch_embeds(graph: ModelGraph):
    """(node id, (patch, in_chans, embed_dim)) of each ViT stem patch embedding with a known shape."""
    if graph.architecture != "vit":
        return
    for node_id, data in graph.nodes(Op.PATCH_EMBED):
        shape = _shape(data)
        if data["stem"] and shape is not None:
            yield node_id, shape


class PatchEmbeddingWithoutNullspace(Rule):
    """
    ## What it does
    Reports a ViT patch embedding with no nullspace, which blocks no direction of white noise.

    That is when its C p^2 inputs per patch do not exceed its width D (ViT-B/16: 3 x 16 x 16 = 768
    = D). With real weights NL502 reports the measured rank instead.

    ## Why is this bad?
    A p x p patch embedding is a linear map from C p^2 pixel values to D dims; when C p^2 > D it has
    a nullspace of dimension at least C p^2 - D, and noise in that subspace never reaches the model
    (arXiv 2403.10476). ViT-B/32 blocks at least 2,304 of its 3,072 input dims, 75 % of white-noise
    energy; ViT-B/16 and ViT-L/14 block none. Information, not a defect: it explains part of why
    larger patches were more robust in arXiv 2509.20939's zoo.

    ## Example
    ```python
    self.patch_embed = nn.Conv2d(3, 768, kernel_size=16, stride=16)  # 768 inputs -> 768 dims
    ```

    ## Use instead
    ```python
    self.patch_embed = nn.Conv2d(3, 768, kernel_size=32, stride=32)  # 3072 inputs -> 768 dims
    ```

    ## Known problems
    A nullspace blocks noise and signal alike, and a larger patch means fewer tokens. The encoder
    is not linear, so blocked input noise is only part of the story; noise stability
    (arXiv 2602.08287) describes how the rest propagates.

    ## References
    - Liu et al., "Approximate Nullspace Augmented Finetuning for Robust Vision Transformers",
      arXiv:2403.10476
    - Kim et al., "Unlocking Noise-Resistant Vision", arXiv:2509.20939 (2025)
    """

    code = "NL501"
    name = "patch-embedding-without-nullspace"
    family = "patch_embed"
    severity = Severity.INFO
    valid = (
        Example(
            """
            import torch.nn as nn

            class ViT(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.patch = nn.Conv2d(3, 384, 16, stride=16)
                    self.attn = nn.MultiheadAttention(384, 6, batch_first=True)

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
                    self.patch = nn.Conv2d(3, 768, 16, stride=16)  # noiselint-expect
                    self.attn = nn.MultiheadAttention(768, 12, batch_first=True)

                def forward(self, x):
                    tokens = self.patch(x).flatten(2).transpose(1, 2)
                    return self.attn(tokens, tokens, tokens)[0].mean(1)

            model = ViT()
            """
        ),
    )

    def check(self, graph: ModelGraph):
        for node_id, (patch, chans, dim) in _patch_embeds(graph):
            if node_id in graph.parameters or estimates.patch_nullspace_dim(patch, chans, dim) > 0:
                continue
            larger = _patch_with_nullspace(patch, chans, dim)
            blocked = estimates.patch_nullspace_dim(larger, chans, dim)
            yield self.finding(
                graph,
                f"{chans} x {patch} x {patch} = {chans * patch * patch} inputs per patch into {dim} dims: no "
                f"nullspace, all white noise reaches the encoder; {larger}x{larger} patches would block at "
                f"least {blocked} of {chans * larger * larger} dims",
                node=node_id,
                estimate=estimates.patch_nullspace_estimate(patch, chans, dim, proposed_patch=larger),
            )


class PatchEmbeddingPassesNoise(Rule):
    """
    ## What it does
    With real weights, reports a ViT patch embedding that passes at least 90 % of white-noise energy.

    The share is the rank of its weight (from an SVD) over its C p^2 input dims; the threshold is
    the ``max_passed_share`` option.

    ## Why is this bad?
    White noise in the nullspace of the embedding weight never reaches the model (arXiv
    2403.10476); the share that passes is rank / (C p^2). A trained ViT-B/16 embedding is usually
    full rank, passing all of it; a ViT-B/32 passes at most a quarter. The report also gives
    ||W||_F^2, the summed noise variance of the embedding's outputs, to show how much of what
    passes is amplified.

    ## Example
    ```python
    self.patch_embed = nn.Conv2d(3, 48, kernel_size=4, stride=4)  # trained: rank 48 of 48
    ```

    ## Use instead
    ```python
    self.patch_embed = nn.Conv2d(3, 48, kernel_size=8, stride=8)  # rank <= 48 of 192
    ```

    ## Known problems
    The rank counts directions, not how strongly each is passed: a direction with a tiny singular
    value counts as passed. Noise stability (arXiv 2602.08287) describes what the encoder does with
    the rest.

    ## References
    - Liu et al., "Approximate Nullspace Augmented Finetuning for Robust Vision Transformers",
      arXiv:2403.10476
    """

    code = "NL502"
    name = "patch-embedding-passes-noise"
    family = "patch_embed"
    severity = Severity.INFO
    options = {"max_passed_share": 0.9}
    option_ranges = {"max_passed_share": Range(0, 1)}
    valid = (
        Example(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F

            class ViT(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.patch = nn.Conv2d(3, 16, 4, stride=4)

                def forward(self, x):
                    tokens = self.patch(x).flatten(2).transpose(1, 2)
                    return F.scaled_dot_product_attention(tokens, tokens, tokens).mean(1)

            torch.manual_seed(0)
            with torch.device("cpu"):  # real weights
                model = ViT().eval()
            """
        ),
    )
    invalid = (
        Example(
            """
            import torch
            import torch.nn as nn
            import torch.nn.functional as F

            class ViT(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.patch = nn.Conv2d(3, 48, 4, stride=4)  # noiselint-expect

                def forward(self, x):
                    tokens = self.patch(x).flatten(2).transpose(1, 2)
                    return F.scaled_dot_product_attention(tokens, tokens, tokens).mean(1)

            torch.manual_seed(0)
            with torch.device("cpu"):  # real weights
                model = ViT().eval()
            """
        ),
    )

    def check(self, graph: ModelGraph):
        for node_id, (patch, chans, dim) in _patch_embeds(graph):
            if node_id not in graph.parameters:
                continue
            noise = estimates.patch_embed_noise_share(graph.parameters[node_id]()["weight"])
            if noise.passed_share < self.config["max_passed_share"]:
                continue
            larger = _patch_with_nullspace(patch, chans, dim)
            yield self.finding(
                graph,
                f"weight rank {noise.rank} of {noise.input_dim} inputs: {noise.passed_share:.0%} of "
                f"white-noise energy reaches the encoder (||W||_F^2 = {noise.noise_gain:.3g})",
                node=node_id,
                estimate=estimates.patch_weight_estimate(noise, larger, dim, chans),
            )
